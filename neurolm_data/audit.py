"""Cross-corpus leakage audit and the pre-training exclusion of downstream evaluation subjects.

TUAB, TUEV, TUSL and TUSZ recordings are part of the TUH EEG corpus (TUEG), and the official NeuroLM
pre-training data contains their test subjects (docs/neurolm-reference.md §7, §8 issue #5, §9.14). Two tools:

- ``run_audit(outs)`` (``neurolm-data audit OUT...``): splits every ingest output into groups
  ``(out, source, split)`` and reports, for every pair of groups, the subjects they share and the recordings
  whose signal they share, as a JSON report. An overlap is a **leak** when the two groups are in different
  splits and one of them is an evaluation split (``test``/``val``, or the corpus's official ``eval``/``dev``
  when the OUT has no ``splits.parquet``).
- ``exclusion_table(target, eval_outs)`` (``neurolm-data split OUT --exclude-eval-of OUT_TUAB,...``): the
  subjects of a pre-training OUT that must leave its splits because they are (or share a recording with) an
  evaluation subject of a downstream OUT.

How overlaps are found:

- **Subjects** are compared by id within a namespace: the TUH family (``tueg``, ``tuab``, ``tuev``, ``tusl``,
  ``tusz``) shares TUH's anonymised ids (``aaaaaaaa``), other sources are their own namespace (a source class
  may declare ``subject_namespace``).
- **Signals** are compared three ways, strongest first: (1) ``signal_hash`` equality (the whole decoded
  input, recordings.parquet: for EDF/BDF its integer samples and per-channel calibration, which determine the
  decoded µV exactly; docs/architecture.md; both OUTs need ingest's schema version, part of their config);
  (2) per-channel fingerprints: content hash (XXH3-128, ``store.content_hash``) of the first ``FINGERPRINT_S`` seconds of
  each stored channel (float32, 200 Hz), keyed by channel name and length: ingest's filters act on each
  channel independently, so the same input channel gives the same stored row whatever other channels a source
  keeps (TUAB keeps 23, TUEG every vocabulary channel; ``tests/test_audit.py`` guards this); flat channels (std below ``FLAT_UV``) are ignored; this
  needs the two OUTs to share the preprocessing config; (3) when the preprocessing differs (e.g. TUAB with the
  paper's 50-Hz notch against TUEG at 60 Hz), recordings of equal length are compared by the correlation of
  their first ``CORR_S`` seconds per common channel; a median |r| >= ``CORR_MIN`` is a match.
  A signal match also catches a subject re-identified under another id (TUAB v2 ``00000021`` vs TUEG v2
  ``aaaaaaaa``).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from neurolm_data.store import content_hash, write_json_atomic, write_parquet_atomic

#: Report format version.
REPORT_VERSION = 1
#: Seconds of each stored channel hashed into its fingerprint (60 s = 12,000 float32 samples: unique for real
#: EEG, and cheap: one 48-KB read per channel from the memory-mapped store).
FINGERPRINT_S = 60
#: Channels whose fingerprint window has a standard deviation below this (µV) are flat and never matched
#: (a zeroed channel would otherwise "match" across unrelated recordings).
FLAT_UV = 1e-3
#: Seconds compared by correlation when two OUTs were preprocessed differently.
CORR_S = 10
#: Median |Pearson r| over common channels at or above which two equal-length recordings are the same signal.
#: Different notch settings change broadband EEG by far less; unrelated recordings correlate near 0.
CORR_MIN = 0.99
#: Most candidate pairs checked by correlation per pair of OUTs (equal ``n_samples``); beyond it the report
#: says the check was truncated.
CORR_MAX_PAIRS = 200_000
#: Subject-id namespaces: sources whose subject ids name the same people.
SUBJECT_NAMESPACES: dict[str, str] = {
    "tueg": "tuh",
    "tuab": "tuh",
    "tuev": "tuh",
    "tusl": "tuh",
    "tusz": "tuh",
}
#: Split names that make an overlap a leak (evaluation data).
EVAL_SPLITS: frozenset[str] = frozenset({"test", "val", "official:eval", "official:dev", "official:test"})
#: Group split of recordings whose subject an OUT's ``splits.parquet`` leaves out (dropped or excluded): they
#: are in no shard, so their overlaps are reported but never leaks.
UNASSIGNED = "unassigned"
#: Exclusion table written by ``split --exclude-eval-of``.
EXCLUSIONS_FILE = "exclusions.parquet"
EXCLUSIONS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("subject", pa.string()),
        ("reason", pa.string()),
        ("eval_out", pa.string()),
        ("eval_source", pa.string()),
        ("eval_subject", pa.string()),
        ("eval_recording", pa.string()),
        ("recording", pa.string()),
    ]
)


def namespace(source: str) -> str:
    """Subject-id namespace of a source (``subject_namespace`` of its class, ``SUBJECT_NAMESPACES``, or itself)."""
    from neurolm_data.sources.base import available_sources

    cls = available_sources().get(source)
    return getattr(cls, "subject_namespace", None) or SUBJECT_NAMESPACES.get(source, source)


@dataclass
class OutIndex:
    """One ingest output, read for the audit.

    Attributes:
        out: the folder. preprocess_hash: hash of its preprocessing config (``ingest_config.json``).
        recordings: ``recordings.parquet`` plus columns ``split`` (group split), ``namespace``.
        protocol: the protocol name of ``splits.parquet``, or None.
        fingerprints: recording_id -> {(channel, n_samples): content hash} (computed lazily).
    """

    out: Path
    preprocess_hash: str
    recordings: pl.DataFrame
    protocol: str | None
    fingerprints: dict[str, dict[tuple[str, int], str]] = field(default_factory=dict)
    _rows: dict[str, tuple[str, list[str]]] = field(default_factory=dict)

    def _row(self, rid: str) -> tuple[str, list[str]]:
        """(store_path, channels) of one recording."""
        if not self._rows:
            self._rows = {
                r: (sp, list(ch))
                for r, sp, ch in self.recordings.select("recording_id", "store_path", "channels").rows()
            }
        return self._rows[rid]

    def fingerprint(self, rid: str) -> dict[tuple[str, int], str]:
        """Per-channel fingerprints of one recording (see the module docstring)."""
        if rid not in self.fingerprints:
            store_path, channels = self._row(rid)
            x = np.load(self.out / store_path, mmap_mode="r", allow_pickle=False)
            n = min(x.shape[1], FINGERPRINT_S * 200)
            fp = {}
            for ch, r in zip(channels, x[:, :n], strict=True):
                seg = np.ascontiguousarray(r, dtype=np.float32)
                if seg.size and float(seg.std()) >= FLAT_UV:
                    fp[(ch, n)] = content_hash(seg)
            self.fingerprints[rid] = fp
        return self.fingerprints[rid]

    def head(self, rid: str, seconds: int) -> tuple[list[str], np.ndarray]:
        """Channel names and the first ``seconds`` of the stored array (float64)."""
        store_path, channels = self._row(rid)
        x = np.load(self.out / store_path, mmap_mode="r", allow_pickle=False)
        return channels, np.asarray(x[:, : seconds * 200], dtype=np.float64)


def load_out(out: str | Path) -> OutIndex:
    """Read ``OUT/recordings.parquet``, ``OUT/splits.parquet`` (if any) and the preprocessing config.

    Each recording gets its group ``split``: the ``splits.parquet`` split of its subject, ``unassigned`` when
    the OUT has splits but not for this subject, else ``official:<official_split>`` or ``all``.

    Raises:
        FileNotFoundError: no ``recordings.parquet`` (the message names the OUT).
    """
    out = Path(out)
    path = out / "recordings.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `neurolm-data ingest ... --out {out}` first")
    rec = pl.read_parquet(path)
    cfg_path = out / "ingest_config.json"
    prep = {}
    if cfg_path.is_file():
        prep = json.loads(cfg_path.read_text("utf-8")).get("config", {}).get("preprocess", {})
    prep_hash = hashlib.sha256(json.dumps(prep, sort_keys=True).encode()).hexdigest()[:16]
    protocol = None
    sp_path = out / "splits.parquet"
    if sp_path.is_file():
        from neurolm_data.splits_file import read_splits

        splits, meta = read_splits(out)
        protocol = str(meta["protocol"].get("name"))
        rec = rec.join(splits.select("source", "subject", "split"), on=["source", "subject"], how="left")
        rec = rec.with_columns(pl.col("split").fill_null(UNASSIGNED))
    else:
        rec = rec.with_columns(
            pl.when(pl.col("official_split").is_not_null())
            .then(pl.lit("official:") + pl.col("official_split"))
            .otherwise(pl.lit("all"))
            .alias("split")
        )
    ns = {s: namespace(s) for s in rec["source"].unique().to_list()}
    rec = rec.with_columns(pl.col("source").replace_strict(ns, return_dtype=pl.String).alias("namespace"))
    return OutIndex(
        out=out, preprocess_hash=prep_hash, recordings=rec.sort("recording_id"), protocol=protocol
    )


@dataclass(frozen=True)
class ContentMatch:
    """Two recordings with the same signal: how it was found and on how many channels."""

    a_recording: str
    b_recording: str
    a_subject: str
    b_subject: str
    method: str  # signal_hash | channel_hash | correlation
    channels: int
    score: float = 1.0


def content_matches(
    a: OutIndex, b: OutIndex, a_ids: list[str], b_ids: list[str], *, stats: dict[str, Any] | None = None
) -> list[ContentMatch]:
    """Recordings of ``a_ids`` (in ``a``) and ``b_ids`` (in ``b``) that share signal (module docstring).

    Args:
        stats: if given, receives ``correlation_pairs`` and ``correlation_truncated``.
    """
    if not a_ids or not b_ids:
        return []
    ra = a.recordings.filter(pl.col("recording_id").is_in(a_ids))
    rb = b.recordings.filter(pl.col("recording_id").is_in(b_ids))
    subj_a = dict(zip(ra["recording_id"], ra["subject"], strict=True))
    subj_b = dict(zip(rb["recording_id"], rb["subject"], strict=True))
    found: dict[tuple[str, str], ContentMatch] = {}
    by_hash = defaultdict(list)
    for rid, h in zip(rb["recording_id"], rb["signal_hash"], strict=True):
        by_hash[h].append(rid)
    for rid, h in zip(ra["recording_id"], ra["signal_hash"], strict=True):
        for other in by_hash.get(h, []):
            if (a.out, rid) != (b.out, other):
                found[(rid, other)] = ContentMatch(
                    rid, other, subj_a[rid], subj_b[other], "signal_hash", len(a._row(rid)[1])
                )
    if a.preprocess_hash == b.preprocess_hash:
        index: dict[tuple[tuple[str, int], str], list[str]] = defaultdict(list)
        for rid in rb["recording_id"]:
            for key, h in b.fingerprint(rid).items():
                index[(key, h)].append(rid)
        for rid in ra["recording_id"]:
            hits: dict[str, int] = defaultdict(int)
            for key, h in a.fingerprint(rid).items():
                for other in index.get((key, h), []):
                    hits[other] += 1
            for other, k in hits.items():
                if (a.out, rid) != (b.out, other) and (rid, other) not in found:
                    found[(rid, other)] = ContentMatch(
                        rid, other, subj_a[rid], subj_b[other], "channel_hash", k
                    )
    else:
        len_b = defaultdict(list)
        for rid, n in zip(rb["recording_id"], rb["n_samples"], strict=True):
            len_b[n].append(rid)
        pairs = [
            (rid, other)
            for rid, n in zip(ra["recording_id"], ra["n_samples"], strict=True)
            for other in len_b.get(n, [])
            if (rid, other) not in found
        ]
        truncated = len(pairs) > CORR_MAX_PAIRS
        if stats is not None:
            stats["correlation_pairs"] = stats.get("correlation_pairs", 0) + min(len(pairs), CORR_MAX_PAIRS)
            stats["correlation_truncated"] = stats.get("correlation_truncated", False) or truncated
        for rid, other in pairs[:CORR_MAX_PAIRS]:
            r = _head_correlation(a, rid, b, other)
            if r is not None and r[0] >= CORR_MIN:
                found[(rid, other)] = ContentMatch(
                    rid, other, subj_a[rid], subj_b[other], "correlation", r[1], round(r[0], 6)
                )
    return sorted(found.values(), key=lambda m: (m.a_recording, m.b_recording))


def _head_correlation(a: OutIndex, rid_a: str, b: OutIndex, rid_b: str) -> tuple[float, int] | None:
    """(median |r| over common non-flat channels, number of channels) of the first ``CORR_S`` seconds."""
    ca, xa = a.head(rid_a, CORR_S)
    cb, xb = b.head(rid_b, CORR_S)
    pos_b = {c: i for i, c in enumerate(cb)}
    rs = []
    for i, c in enumerate(ca):
        j = pos_b.get(c)
        if j is None:
            continue
        u, v = xa[i] - xa[i].mean(), xb[j] - xb[j].mean()
        su, sv = float(np.sqrt(u @ u)), float(np.sqrt(v @ v))
        if su < FLAT_UV or sv < FLAT_UV:
            continue
        rs.append(abs(float(u @ v) / (su * sv)))
    return (float(np.median(rs)), len(rs)) if rs else None


def _groups(idx: OutIndex) -> dict[tuple[str, str], pl.DataFrame]:
    return {
        (src, sp): df for (src, sp), df in idx.recordings.group_by(["source", "split"], maintain_order=True)
    }


def is_leak(split_a: str, split_b: str) -> bool:
    """An overlap is a leak when the splits differ, one is an evaluation split, and neither is unassigned."""
    if UNASSIGNED in (split_a, split_b):
        return False
    return split_a != split_b and bool({split_a, split_b} & EVAL_SPLITS)


def run_audit(outs: list[str | Path], report: str | Path | None = None) -> dict[str, Any]:
    """Audit every pair of ``(out, source, split)`` groups of the given ingest outputs for shared subjects and
    shared signals; write the JSON report to ``report`` (atomically) if given.

    Returns:
        The report: ``{"version", "outs": [...], "groups": [...], "pairs": [...], "leaks", "ok"}``. Each pair:
        ``a``/``b`` (out, source, split), ``leak`` (bool), ``subjects`` (shared ids, same namespace),
        ``content`` (matched recordings with method and channel count). Pairs without overlap are listed
        with empty lists so the report says what was compared.

    Raises:
        FileNotFoundError: an OUT without ``recordings.parquet``.
    """
    idx = [load_out(o) for o in outs]
    groups = []
    for i, ix in enumerate(idx):
        for (src, sp), df in sorted(_groups(ix).items()):
            groups.append((i, src, sp, df))
    stats: dict[str, Any] = {}
    pairs = []
    leaks = 0
    for (ia, sa, pa_, da), (ib, sb, pb, db) in combinations(groups, 2):
        subjects = []
        if namespace(sa) == namespace(sb):
            subjects = sorted(set(da["subject"].to_list()) & set(db["subject"].to_list()))
        content = content_matches(
            idx[ia], idx[ib], da["recording_id"].to_list(), db["recording_id"].to_list(), stats=stats
        )
        leak = is_leak(pa_, pb) and bool(subjects or content)
        leaks += leak
        pairs.append(
            {
                "a": {"out": str(idx[ia].out), "source": sa, "split": pa_},
                "b": {"out": str(idx[ib].out), "source": sb, "split": pb},
                "leak": leak,
                "subjects": subjects,
                "content": [m.__dict__ for m in content],
            }
        )
    result = {
        "version": REPORT_VERSION,
        "outs": [
            {
                "out": str(ix.out),
                "protocol": ix.protocol,
                "preprocess_hash": ix.preprocess_hash,
                "recordings": ix.recordings.height,
                "subjects": ix.recordings["subject"].n_unique(),
                "sources": sorted(ix.recordings["source"].unique().to_list()),
            }
            for ix in idx
        ],
        "groups": [
            {
                "out": str(idx[i].out),
                "source": s,
                "split": sp,
                "namespace": namespace(s),
                "recordings": df.height,
                "subjects": df["subject"].n_unique(),
            }
            for i, s, sp, df in groups
        ],
        "pairs": pairs,
        "leaks": leaks,
        "overlapping_pairs": sum(bool(p["subjects"] or p["content"]) for p in pairs),
        "correlation": {
            "pairs_checked": stats.get("correlation_pairs", 0),
            "truncated": stats.get("correlation_truncated", False),
            "threshold": CORR_MIN,
            "seconds": CORR_S,
        },
        "ok": leaks == 0,
    }
    if report is not None:
        write_json_atomic(report, result)
    return result


def eval_recordings(idx: OutIndex, splits: tuple[str, ...] = ("test",)) -> pl.DataFrame:
    """Recordings of a downstream OUT's evaluation subjects: its ``splits.parquet`` ``splits`` (default
    ``test``), or, without splits, the recordings whose official split is ``eval``/``test``."""
    if idx.protocol is not None:
        return idx.recordings.filter(pl.col("split").is_in(list(splits)))
    return idx.recordings.filter(pl.col("split").is_in(["official:eval", "official:test"]))


def exclusion_table(
    target: str | Path, eval_outs: list[str | Path], splits: tuple[str, ...] = ("test",)
) -> pl.DataFrame:
    """Subjects of ``target`` to exclude from its splits: every subject that is an evaluation subject of one of
    ``eval_outs`` (same id in the same namespace) or that has a recording sharing signal with an evaluation
    recording (any of the three content checks). Sorted, one row per (source, subject, eval match).

    Returns:
        DataFrame with ``EXCLUSIONS_SCHEMA`` columns.

    Raises:
        FileNotFoundError: an OUT without ``recordings.parquet``.
    """
    tgt = load_out(target)
    rows: list[dict[str, Any]] = []
    for eo in eval_outs:
        ev = load_out(eo)
        evr = eval_recordings(ev, splits)
        ev_subj = {
            (ns, s): (src, s) for ns, s, src in evr.select("namespace", "subject", "source").unique().rows()
        }
        for src, subj, ns in (
            tgt.recordings.select("source", "subject", "namespace").unique().sort(pl.all()).rows()
        ):
            if (ns, subj) in ev_subj:
                rows.append(
                    {
                        "source": src,
                        "subject": subj,
                        "reason": "evaluation subject id",
                        "eval_out": str(ev.out),
                        "eval_source": ev_subj[(ns, subj)][0],
                        "eval_subject": subj,
                        "eval_recording": None,
                        "recording": None,
                    }
                )
        src_of = dict(zip(tgt.recordings["recording_id"], tgt.recordings["source"], strict=True))
        ev_src = dict(zip(evr["recording_id"], evr["source"], strict=True))
        for m in content_matches(
            tgt, ev, tgt.recordings["recording_id"].to_list(), evr["recording_id"].to_list()
        ):
            rows.append(
                {
                    "source": src_of[m.a_recording],
                    "subject": m.a_subject,
                    "reason": f"shares signal with an evaluation recording ({m.method}, {m.channels} channels)",
                    "eval_out": str(ev.out),
                    "eval_source": ev_src[m.b_recording],
                    "eval_subject": m.b_subject,
                    "eval_recording": m.b_recording,
                    "recording": m.a_recording,
                }
            )
    df = pl.DataFrame(rows, schema={f.name: pl.String for f in EXCLUSIONS_SCHEMA}, orient="row")
    return df.unique().sort(pl.all(), nulls_last=True)


def write_exclusions(out: str | Path, table: pl.DataFrame) -> Path:
    """Write ``OUT/exclusions.parquet`` atomically (sorted rows, ``EXCLUSIONS_SCHEMA``)."""
    path = Path(out) / EXCLUSIONS_FILE
    write_parquet_atomic(path, table.to_arrow().cast(EXCLUSIONS_SCHEMA))
    return path
