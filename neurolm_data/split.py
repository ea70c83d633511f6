"""Subject-level splits from a protocol, the leakage audit, and ``OUT/splits.parquet``.

``run_split(out, protocol)`` reads ``OUT/recordings.parquet`` (written by ingest), assigns every subject of
the protocol's source to ``train``/``val``/``test`` by the protocol's rule (``neurolm_data.protocols``),
audits the result (no subject in two splits) and writes ``OUT/splits.parquet`` atomically: one row per
``(source, subject)``, sorted, with the columns of docs/architecture.md. The parquet's key-value metadata
holds the full protocol (JSON), its hash and the sha256 of the ``recordings.parquet`` it was computed from.
The same inputs give byte-identical files.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from neurolm_data.lock import locked
from neurolm_data.protocols import SPLITS, Protocol, hash_bucket, load_protocol
from neurolm_data.remote import url_outputs
from neurolm_data.splits_file import (  # noqa: F401  re-exported: the splits file's contract lives there
    CV_SPLIT,
    GROUP_SPLIT,
    KFOLD_SPLITS_SCHEMA,
    META_EXCLUDED,
    META_PROTOCOL,
    META_PROTOCOL_HASH,
    META_RECORDINGS_SHA256,
    SPLITS_SCHEMA,
    read_splits,
)
from neurolm_data.store import sha256_file, write_parquet_atomic


class LeakageError(Exception):
    """A subject would land in more than one split.

    Attributes:
        leaks: ``[(source, subject, [splits...]), ...]`` for every offending subject, sorted.
    """

    def __init__(self, leaks: list[tuple[str, str, list[str]]], context: str = ""):
        self.leaks = sorted(leaks)
        shown = "; ".join(f"{src}/{subj} in {'+'.join(sp)}" for src, subj, sp in self.leaks[:20])
        more = f" (and {len(self.leaks) - 20} more)" if len(self.leaks) > 20 else ""
        prefix = f"{context}: " if context else ""
        super().__init__(f"{prefix}{len(self.leaks)} subject(s) in more than one split: {shown}{more}")


class SplitError(ValueError):
    """The recordings cannot be split by this protocol (no recordings of its source, unlisted subjects,
    unmapped ``official_split`` values). The message names the protocol file and the offending ids."""


@dataclass(frozen=True)
class SplitResult:
    """What ``run_split`` wrote.

    Attributes:
        path: ``OUT/splits.parquet``.
        protocol: the protocol used.
        subjects: split -> number of subjects.
        recordings: split -> number of recordings of those subjects.
        dropped: subjects in the manifest that the protocol leaves out (``unlisted = "drop"``).
        absent: subjects the protocol lists that have no recording in the manifest (explicit rule).
        excluded: ``source/subject`` removed by ``exclude_eval_of`` (listed in ``OUT/exclusions.parquet``).
        folds: ``kfold`` protocols: fold -> number of test subjects (a fold may be empty on a small corpus).
    """

    path: Path
    protocol: Protocol
    subjects: dict[str, int]
    recordings: dict[str, int]
    dropped: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    folds: dict[int, int] = field(default_factory=dict)


def read_recordings(out: str | Path) -> pl.DataFrame:
    """``OUT/recordings.parquet`` as a polars DataFrame. Raises FileNotFoundError naming the path."""
    path = Path(out) / "recordings.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `neurolm-data ingest ... --out {out}` first")
    return pl.read_parquet(path)


def _select(recordings: pl.DataFrame, protocol: Protocol) -> pl.DataFrame:
    rec = recordings if protocol.source == "*" else recordings.filter(pl.col("source") == protocol.source)
    if rec.height == 0:
        have = sorted(recordings["source"].unique().to_list())
        raise SplitError(
            f"{protocol.path}: no recordings of source {protocol.source!r} (manifest has {have})"
        )
    return rec


@dataclass(frozen=True)
class Assignment:
    """What a splitter returns.

    Attributes:
        rows: ``(source, subject, split)`` triples; a subject may appear twice when the rule puts it in two
            splits (``audit_splits`` rejects that).
        dropped: ``source/subject`` left out by ``unlisted = "drop"``.
        absent: listed subjects with no recording (explicit rule).
        folds: ``kfold``: ``(source, subject) -> test fold``; empty for the other rules.
    """

    rows: list[tuple[str, str, str]]
    dropped: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    folds: dict[tuple[str, str], int] = field(default_factory=dict)


class Splitter(ABC):
    """A split rule as a small object with one ``split`` method (as MOABB's evaluation splitters).

    ``split(rec, pairs)`` gets the protocol's recordings (``recordings.parquet`` rows of its source) and the
    sorted ``(source, subject)`` pairs, and returns an :class:`Assignment`. One subclass per protocol rule,
    registered in :data:`SPLITTERS`.
    """

    rule: str = ""

    def __init__(self, protocol: Protocol):
        self.protocol = protocol

    @abstractmethod
    def split(self, rec: pl.DataFrame, pairs: list[tuple[str, str]]) -> Assignment:
        """The assignment of every ``(source, subject)`` pair of ``pairs`` (one subclass per rule)."""


class ExplicitSplitter(Splitter):
    """Subject lists per split (Workload, reference §2.6); unlisted subjects are an error or dropped."""

    rule = "explicit"

    def split(self, rec: pl.DataFrame, pairs: list[tuple[str, str]]) -> Assignment:
        """Raises:
        LeakageError: the protocol lists a subject in two splits. SplitError: unlisted subjects (``error``).
        """
        protocol = self.protocol
        where: dict[str, list[str]] = defaultdict(list)
        for split_name in SPLITS:
            for subj in protocol.subjects.get(split_name, ()):
                where[subj].append(split_name)
        twice = [(protocol.source, s, sp) for s, sp in where.items() if len(sp) > 1]
        if twice:
            raise LeakageError(twice, f"{protocol.path}: protocol lists subjects in two splits")
        unlisted = [f"{src}/{s}" for src, s in pairs if s not in where]
        if unlisted and protocol.unlisted == "error":
            raise SplitError(
                f"{protocol.path}: {len(unlisted)} subject(s) in no split list: {', '.join(unlisted[:20])}"
                ' (list them, or set split.unlisted = "drop")'
            )
        present = {s for _, s in pairs}
        absent = sorted(s for s in where if s not in present)
        rows = [(src, s, sp) for src, s in pairs for sp in where.get(s, [])]
        return Assignment(rows, unlisted, absent)


class HashSplitter(Splitter):
    """Salted-hash buckets cut by cumulative fractions in ``SPLITS`` order (TUSL, pretrain)."""

    rule = "hash"

    def split(self, rec: pl.DataFrame, pairs: list[tuple[str, str]]) -> Assignment:
        protocol = self.protocol
        bounds: list[tuple[float, str]] = []
        acc = 0.0
        for split_name in SPLITS:
            if split_name in protocol.fractions:
                acc += protocol.fractions[split_name]
                bounds.append((acc, split_name))
        rows = []
        for src, s in pairs:
            u = hash_bucket(protocol.salt, src, s)
            rows.append((src, s, next((sp for b, sp in bounds if u < b), bounds[-1][1])))
        return Assignment(rows)


class SortedSplitter(Splitter):
    """Sorted subject ids cut by counts per source (HMC, reference §2.5); the remainder goes to ``rest``."""

    rule = "sorted"

    def split(self, rec: pl.DataFrame, pairs: list[tuple[str, str]]) -> Assignment:
        protocol = self.protocol
        by_source: dict[str, list[str]] = defaultdict(list)
        for src, s in pairs:
            by_source[src].append(s)
        rows: list[tuple[str, str, str]] = []
        for src, subs in sorted(by_source.items()):
            k = 0
            for split_name, n in protocol.counts.items():
                rows += [(src, s, split_name) for s in subs[k : k + n]]
                k += n
            rows += [(src, s, protocol.rest) for s in subs[k:]]
        return Assignment(rows)


class GroupSplitter(Splitter):
    """Within-subject split by window group (SEED, reference §2.7): every subject gets ``GROUP_SPLIT``."""

    rule = "group"

    def split(self, rec: pl.DataFrame, pairs: list[tuple[str, str]]) -> Assignment:
        return Assignment([(src, s, GROUP_SPLIT) for src, s in pairs])


class OfficialSplitter(Splitter):
    """The corpus's own ``official_split`` mapped to ours; val carved from train subjects by hash (TUAB, TUEV)."""

    rule = "official"

    def split(self, rec: pl.DataFrame, pairs: list[tuple[str, str]]) -> Assignment:
        """Raises:
        SplitError: a recording whose ``official_split`` the protocol does not map.
        """
        protocol = self.protocol
        off = rec.select("source", "subject", "recording_id", "official_split").sort("recording_id")
        bad = off.filter(
            ~pl.col("official_split").is_in(list(protocol.official)) | pl.col("official_split").is_null()
        )
        if bad.height:
            ids = ", ".join(f"{r}={o!r}" for r, o in bad.select("recording_id", "official_split").rows()[:20])
            raise SplitError(
                f"{protocol.path}: {bad.height} recording(s) with an official_split not in "
                f"{sorted(protocol.official)}: {ids}"
            )
        mapped = off.with_columns(pl.col("official_split").replace_strict(protocol.official).alias("split"))
        rows = []
        for src, s, sp in mapped.select("source", "subject", "split").unique().sort(pl.all()).rows():
            if sp == "train" and hash_bucket(protocol.salt, src, s) < protocol.val_fraction:
                sp = "val"
            rows.append((src, s, sp))
        return Assignment(rows)


class KFoldSplitter(Splitter):
    """Subject-level k-fold cross-validation: fold = ``floor(hash_bucket(salt, source, subject) * n_folds)``.

    Every subject gets the marker split ``CV_SPLIT`` and its test fold. In fold ``f``, :func:`fold_split`
    puts fold ``f`` in test, fold ``(f + 1) % n_folds`` in val and the other folds in train. The fold
    depends on nothing but the subject, so adding subjects moves no existing one; fold sizes therefore
    vary (binomially) around ``n / n_folds``.
    """

    rule = "kfold"

    def split(self, rec: pl.DataFrame, pairs: list[tuple[str, str]]) -> Assignment:
        protocol = self.protocol
        folds = {(src, s): subject_fold(protocol.salt, src, s, protocol.n_folds) for src, s in pairs}
        return Assignment([(src, s, CV_SPLIT) for src, s in pairs], folds=folds)


#: Splitter class per protocol rule.
SPLITTERS: dict[str, type[Splitter]] = {
    cls.rule: cls
    for cls in (
        ExplicitSplitter,
        HashSplitter,
        SortedSplitter,
        GroupSplitter,
        OfficialSplitter,
        KFoldSplitter,
    )
}


def get_splitter(protocol: Protocol) -> Splitter:
    """The splitter of the protocol's rule. Raises KeyError for a rule without one."""
    try:
        return SPLITTERS[protocol.rule](protocol)
    except KeyError:
        raise KeyError(f"no splitter for rule {protocol.rule!r}; known: {sorted(SPLITTERS)}") from None


def subject_fold(salt: str, source: str, subject: str, n_folds: int) -> int:
    """The subject's test fold under a ``kfold`` protocol: ``floor(hash_bucket(salt, source, subject) * n_folds)``."""
    return min(int(hash_bucket(salt, source, subject) * n_folds), n_folds - 1)


def fold_split(subject_fold_: int, fold: int, n_folds: int) -> str:
    """Split of a subject whose test fold is ``subject_fold_``, in CV fold ``fold``: ``test`` if it is ``fold``,
    ``val`` if it is ``(fold + 1) % n_folds``, else ``train``."""
    if subject_fold_ == fold:
        return "test"
    return "val" if subject_fold_ == (fold + 1) % n_folds else "train"


def with_fold_splits(table: pl.DataFrame, fold: int, n_folds: int) -> pl.DataFrame:
    """``table`` (rows with a ``fold`` column: ``splits.parquet`` or ``windows.parquet`` of a ``kfold``
    protocol) with its ``split`` column replaced by the split in CV fold ``fold`` (:func:`fold_split`).

    Raises:
        ValueError: no ``fold`` column, or ``fold`` outside ``0..n_folds-1``.
    """
    if "fold" not in table.columns:
        raise ValueError("table has no 'fold' column: it does not come from a kfold protocol")
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold {fold} outside 0..{n_folds - 1}")
    split = (
        pl.when(pl.col("fold") == fold)
        .then(pl.lit("test"))
        .when(pl.col("fold") == (fold + 1) % n_folds)
        .then(pl.lit("val"))
        .otherwise(pl.lit("train"))
    )
    return table.with_columns(split.alias("split"))


def assign_subjects(
    recordings: pl.DataFrame, protocol: Protocol
) -> tuple[pl.DataFrame, list[str], list[str]]:
    """Apply the protocol's rule (its :class:`Splitter`) to the recordings' subjects, without auditing.

    Args:
        recordings: rows of ``recordings.parquet`` (needs ``source``, ``subject``, ``recording_id``,
            and ``official_split`` for the official rule).
        protocol: a loaded protocol.

    Returns:
        ``(assignments, dropped, absent)``: a DataFrame ``(source, subject, split)`` (plus ``fold`` for a
        ``kfold`` protocol) that may hold a subject more than once when the rule puts it in two splits
        (``audit_splits`` rejects that); the subjects dropped by ``unlisted = "drop"``; the listed subjects
        with no recording.

    Raises:
        SplitError: see the class. LeakageError: an explicit protocol lists a subject in two splits.
    """
    rec = _select(recordings, protocol)
    pairs = rec.select("source", "subject").unique().sort("source", "subject").rows()
    a = get_splitter(protocol).split(rec, pairs)
    df = pl.DataFrame(
        a.rows, schema={"source": pl.String, "subject": pl.String, "split": pl.String}, orient="row"
    )
    if protocol.rule == "kfold":
        df = df.with_columns(pl.Series("fold", [a.folds[(src, s)] for src, s, _ in a.rows], dtype=pl.Int64))
    return df, a.dropped, a.absent


def audit_splits(assignments: pl.DataFrame, context: str = "") -> None:
    """Leakage audit: every ``(source, subject)`` must have exactly one split.

    Raises:
        LeakageError: naming each subject found in two or more splits.
    """
    multi = (
        assignments.group_by("source", "subject")
        .agg(pl.col("split").unique().sort())
        .filter(pl.col("split").list.len() > 1)
        .sort("source", "subject")
    )
    if multi.height:
        raise LeakageError([(a, b, list(c)) for a, b, c in multi.rows()], context)


def compute_splits(recordings: pl.DataFrame, protocol: Protocol) -> pl.DataFrame:
    """Audited splits table: one row per ``(source, subject)`` with the ``SPLITS_SCHEMA`` columns, sorted.

    Raises:
        LeakageError, SplitError: see ``assign_subjects`` and ``audit_splits``.
    """
    assignments, _, _ = assign_subjects(recordings, protocol)
    return _finalize(assignments, protocol)


def _finalize(assignments: pl.DataFrame, protocol: Protocol) -> pl.DataFrame:
    audit_splits(assignments, str(protocol.path))
    return (
        assignments.unique()
        .sort("source", "subject")
        .with_columns(
            rule=pl.lit(protocol.rule),
            protocol=pl.lit(protocol.name),
            protocol_version=pl.lit(protocol.version, dtype=pl.Int64),
            salt=pl.lit(protocol.salt),
        )
    )


@url_outputs
@locked("neurolm-data split")
def run_split(
    out: str | Path,
    protocol: str | Path | Protocol,
    *,
    exclude_eval_of: list[str | Path] | tuple[str | Path, ...] = (),
) -> SplitResult:
    """Split the subjects of ``OUT/recordings.parquet`` and write ``OUT/splits.parquet`` atomically.

    Args:
        out: the ingest output folder.
        protocol: a protocol name in ``manifests/protocols``, a path to a protocol file, or a ``Protocol``.
        exclude_eval_of: ingest outputs of downstream corpora whose evaluation (``test``) subjects must not be
            in these splits: subjects with the same id (same namespace) or sharing a recording's signal are
            removed (``neurolm_data.audit.exclusion_table``) and listed in ``OUT/exclusions.parquet``.

    Returns:
        A ``SplitResult`` with per-split subject and recording counts.

    Raises:
        FileNotFoundError: no ``recordings.parquet``. ProtocolError: bad protocol. SplitError, LeakageError:
            the recordings cannot be split cleanly; nothing is written.
    """
    out = Path(out)
    proto = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    recordings = read_recordings(out)
    assignments, dropped, absent = assign_subjects(recordings, proto)
    excluded: list[str] = []
    if exclude_eval_of:
        from neurolm_data.audit import exclusion_table, write_exclusions

        ex = exclusion_table(out, list(exclude_eval_of))
        gone = ex.select("source", "subject").unique()
        excluded = [f"{a}/{b}" for a, b in gone.sort("source", "subject").rows()]
        assignments = assignments.join(gone, on=["source", "subject"], how="anti")
        write_exclusions(out, ex)
    else:
        (out / "exclusions.parquet").unlink(missing_ok=True)
    table = _finalize(assignments, proto)
    meta = {
        META_PROTOCOL: json.dumps(proto.to_dict(), sort_keys=True, ensure_ascii=False).encode(),
        META_PROTOCOL_HASH: proto.protocol_hash.encode(),
        META_RECORDINGS_SHA256: sha256_file(out / "recordings.parquet").encode(),
    }
    if exclude_eval_of:
        meta[META_EXCLUDED] = json.dumps(
            {str(o): sha256_file(Path(o) / "recordings.parquet") for o in exclude_eval_of}, sort_keys=True
        ).encode()
    schema = KFOLD_SPLITS_SCHEMA if proto.rule == "kfold" else SPLITS_SCHEMA
    arrow = table.select(schema.names).to_arrow().cast(schema).replace_schema_metadata(meta)
    path = out / "splits.parquet"
    write_parquet_atomic(path, arrow)
    per_rec = _select(recordings, proto).join(table, on=["source", "subject"], how="inner")
    return SplitResult(
        path=path,
        protocol=proto,
        subjects={
            s: int((table["split"] == s).sum())
            for s in (*SPLITS, GROUP_SPLIT, CV_SPLIT)
            if (table["split"] == s).any()
        },
        recordings={
            s: int((per_rec["split"] == s).sum())
            for s in (*SPLITS, GROUP_SPLIT, CV_SPLIT)
            if (per_rec["split"] == s).any()
        },
        folds=(
            {f: int((table["fold"] == f).sum()) for f in range(proto.n_folds)}
            if proto.rule == "kfold"
            else {}
        ),
        dropped=dropped,
        absent=absent,
        excluded=excluded,
    )
