"""Split protocols: typed loading and validation of ``manifests/protocols/*.toml``.

A protocol says which subjects of which source go to ``train``/``val``/``test``. It is a versioned text file
kept in the repository so that every split can be reproduced and reviewed (docs/neurolm-reference.md §9.15: the
official makers' splits are unseeded, order-dependent or per recording; ours are per subject and stored).

Schema (one TOML file per protocol)::

    version = 1                  # protocol version (int >= 1): bump it whenever the assignment changes
    name = "workload"            # must equal the file stem
    source = "workload"          # the ``recordings.parquet`` ``source`` it splits, or "*" for every source
    task = "workload"            # the task (``neurolm_data.tasks``) the protocol is meant for
    description = "..."          # free text (optional)
    reference = "..."            # where the rule comes from (optional)

    [split]
    rule = "explicit"            # explicit | official | hash | sorted | group | kfold
    salt = ""                    # string mixed into every hash (hash rule, and official val carving)

    # rule = "explicit": subject lists; unlisted subjects are an error unless unlisted = "drop"
    unlisted = "error"
    [split.subjects]
    train = ["Subject00", ...]
    val = [...]
    test = [...]

    # rule = "hash": fractions over train/val/test (any subset), summing to 1
    [split.fractions]
    train = 0.95
    val = 0.05

    # rule = "official": the recordings' ``official_split`` column, mapped to our split names; subjects
    # that map to "train" are moved to "val" when their hash bucket is below val_fraction.
    val_fraction = 0.2
    [split.official]
    train = "train"
    eval = "test"

    # rule = "sorted": subjects sorted by id (per source); the first counts[train] go to train, the next
    # counts[val] to val, ...(in SPLITS order), every remaining subject to ``rest`` (HMC: 100 / 25 / rest)
    rest = "test"
    [split.counts]
    train = 100
    val = 25

    # rule = "group": a within-subject split. Every subject is assigned to the marker split "by_group" in
    # splits.parquet, and each WINDOW goes to the split listing its group (``TaskSpec.window_group``, e.g.
    # SEED's ``trial3``); windows of unlisted groups are left out. The window audit then checks that no
    # (recording, group) and no two overlapping windows straddle splits.
    [split.groups]
    train = ["trial0", ...]
    val = [...]
    test = [...]

    # rule = "kfold": subject-level k-fold cross-validation. Each subject's test fold is
    # floor(hash_bucket(salt, source, subject) * n_folds): every subject is tested in exactly one fold, and
    # adding subjects moves no existing one. In fold f the test subjects are those of fold f, the validation
    # subjects those of fold (f + 1) % n_folds (carved from fold f's training subjects), the rest train.
    # splits.parquet gives every subject the marker split "cv" and its ``fold``; windows are written once.
    n_folds = 5

Hash buckets (``hash_bucket``) are ``int(sha256(salt + "\\x1f" + source + "\\x1f" + subject)[:16], 16) / 2**64``,
a number in [0, 1) that depends on nothing but that subject, so adding recordings or subjects never moves
an existing subject.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

#: Folder of the shipped protocol files: package data at ``neurolm_data/manifests/protocols`` (in a checkout
#: that path is a link to ``manifests/protocols`` at the repository root; a wheel carries the files themselves).
PROTOCOL_DIR: Path = Path(__file__).resolve().parent / "manifests" / "protocols"
#: Split names, in the canonical order used for hash-bucket boundaries and reports.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Split rules understood by ``neurolm_data.split``.
RULES: tuple[str, ...] = ("explicit", "official", "hash", "sorted", "group", "kfold")

_TOP_KEYS = {"version", "name", "source", "task", "description", "reference", "split"}
_SPLIT_KEYS = {
    "explicit": {"rule", "salt", "subjects", "unlisted"},
    "hash": {"rule", "salt", "fractions"},
    "official": {"rule", "salt", "official", "val_fraction"},
    "sorted": {"rule", "salt", "counts", "rest"},
    "group": {"rule", "salt", "groups"},
    "kfold": {"rule", "salt", "n_folds"},
}


class ProtocolError(ValueError):
    """A protocol file is missing or invalid. The message starts with the file path."""


@dataclass(frozen=True)
class Protocol:
    """One validated split protocol.

    Attributes:
        name: protocol name (the file stem), recorded in ``splits.parquet``.
        version: protocol version, recorded in ``splits.parquet`` as ``protocol_version``.
        source: source name the protocol splits, or ``"*"`` for every source in the manifest.
        task: the task the protocol is meant for (``shard`` refuses another task).
        rule: ``explicit``, ``official``, ``hash``, ``sorted`` or ``group``.
        salt: string mixed into hash buckets (``hash`` rule, ``official`` val carving); "" for ``explicit``.
        subjects: ``explicit``: split -> sorted subject ids.
        unlisted: ``explicit``: what to do with manifest subjects in no list: ``error`` or ``drop``.
        fractions: ``hash``: split -> fraction of subjects (sums to 1).
        official: ``official``: ``official_split`` value -> our split name.
        val_fraction: ``official``: fraction of official-train subjects moved to ``val`` by hash bucket.
        counts, rest: ``sorted``: split -> number of subjects taken in sorted-id order; the split of the rest.
        groups: ``group``: split -> window groups (``TaskSpec.window_group``) assigned to it.
        n_folds: ``kfold``: number of subject folds (>= 3: a test, a validation and a training fold).
        description, reference: free text.
        path: the file it was loaded from (not part of ``protocol_hash``).
    """

    name: str
    version: int
    source: str
    task: str
    rule: str
    salt: str = ""
    subjects: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unlisted: str = "error"
    fractions: dict[str, float] = field(default_factory=dict)
    official: dict[str, str] = field(default_factory=dict)
    val_fraction: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    rest: str = ""
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    n_folds: int = 0
    description: str = ""
    reference: str = ""
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field except ``path`` (the content that defines the split)."""
        d = asdict(self)
        d.pop("path")
        for k in ("counts", "rest", "groups", "n_folds"):  # rules sorted/group/kfold only: older hashes kept
            if not d[k]:
                d.pop(k)
        if "groups" in d:
            d["groups"] = {k: list(v) for k, v in self.groups.items()}
        d["subjects"] = {k: list(v) for k, v in self.subjects.items()}
        return d

    @property
    def protocol_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of ``to_dict()``: identifies the assignment rule exactly."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def hash_bucket(salt: str, source: str, subject: str) -> float:
    """The subject's position in [0, 1): first 64 bits of sha256(salt␟source␟subject) over 2**64.

    ``␟`` is the ASCII unit separator (0x1f), so ``("ab", "c")`` and ``("a", "bc")`` differ. Depends on
    nothing but these three strings: adding or removing other subjects never moves this one.
    """
    digest = hashlib.sha256(f"{salt}\x1f{source}\x1f{subject}".encode()).hexdigest()
    return int(digest[:16], 16) / 2.0**64


def protocol_path(name_or_path: str | Path) -> Path:
    """Resolve a protocol argument: an existing file path, or a name in ``PROTOCOL_DIR`` (``.toml`` added).

    Raises:
        ProtocolError: neither exists; the message lists the shipped protocols.
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    candidate = PROTOCOL_DIR / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    known = ", ".join(available_protocols()) or "none"
    raise ProtocolError(f"{name_or_path}: no such protocol file or name in {PROTOCOL_DIR} (known: {known})")


def available_protocols() -> list[str]:
    """Names of the protocol files shipped in ``PROTOCOL_DIR``, sorted."""
    return sorted(p.stem for p in PROTOCOL_DIR.glob("*.toml"))


def load_protocol(name_or_path: str | Path) -> Protocol:
    """Load and validate one protocol (see the module docstring for the schema).

    Raises:
        ProtocolError: unreadable TOML, unknown or missing keys, wrong types, a bad rule, fractions that
            do not sum to 1, split names outside ``SPLITS``, a name that differs from the file stem. The
            message starts with the file path.
    """
    path = protocol_path(name_or_path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ProtocolError(f"{path}: cannot read protocol: {e}") from e
    return _validate(doc, path)


def _validate(doc: dict[str, Any], path: Path) -> Protocol:
    def fail(msg: str) -> ProtocolError:
        return ProtocolError(f"{path}: {msg}")

    def get(d: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str = "") -> Any:
        if key not in d:
            raise fail(f"missing key {where}{key!r}")
        v = d[key]
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise fail(f"{where}{key!r} must be {getattr(typ, '__name__', typ)}, got {type(v).__name__}")
        return v

    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)} (allowed: {sorted(_TOP_KEYS)})")
    version = get(doc, "version", int)
    if version < 1:
        raise fail(f"version must be >= 1, got {version}")
    name = get(doc, "name", str)
    if name != path.stem:
        raise fail(f"name {name!r} must equal the file name {path.stem!r}")
    source = get(doc, "source", str)
    task = get(doc, "task", str)
    if not source or not task:
        raise fail("'source' and 'task' must not be empty")
    description = doc.get("description", "")
    reference = doc.get("reference", "")
    split = get(doc, "split", dict)
    rule = get(split, "rule", str, "split.")
    if rule not in RULES:
        raise fail(f"split.rule must be one of {list(RULES)}, got {rule!r}")
    unknown = set(split) - _SPLIT_KEYS[rule]
    if unknown:
        raise fail(
            f"unknown keys for rule {rule!r}: {sorted(unknown)} (allowed: {sorted(_SPLIT_KEYS[rule])})"
        )
    salt = split.get("salt", "")
    if not isinstance(salt, str):
        raise fail("split.salt must be a string")
    kw: dict[str, Any] = {}

    def check_split_names(names: Any, where: str) -> None:
        bad = sorted(set(names) - set(SPLITS))
        if bad:
            raise fail(f"{where}: unknown split names {bad} (allowed: {list(SPLITS)})")

    if rule == "explicit":
        subjects = get(split, "subjects", dict, "split.")
        check_split_names(subjects, "split.subjects")
        lists: dict[str, tuple[str, ...]] = {}
        for s in SPLITS:
            if s in subjects:
                v = subjects[s]
                if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                    raise fail(f"split.subjects.{s} must be a list of non-empty strings")
                if len(set(v)) != len(v):
                    dup = sorted({x for x in v if v.count(x) > 1})
                    raise fail(f"split.subjects.{s} lists {dup} more than once")
                lists[s] = tuple(sorted(v))
        if not lists:
            raise fail("split.subjects lists no split")
        unlisted = split.get("unlisted", "error")
        if unlisted not in ("error", "drop"):
            raise fail(f"split.unlisted must be 'error' or 'drop', got {unlisted!r}")
        kw.update(subjects=lists, unlisted=unlisted)
    elif rule == "hash":
        fractions = get(split, "fractions", dict, "split.")
        check_split_names(fractions, "split.fractions")
        fr: dict[str, float] = {}
        for s in SPLITS:
            if s in fractions:
                v = fractions[s]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                    raise fail(f"split.fractions.{s} must be a number in [0, 1], got {v!r}")
                fr[s] = float(v)
        if abs(sum(fr.values()) - 1.0) > 1e-9:
            raise fail(f"split.fractions must sum to 1, got {sum(fr.values())}")
        kw.update(fractions=fr)
    elif rule == "sorted":
        counts = get(split, "counts", dict, "split.")
        check_split_names(counts, "split.counts")
        for k, v in counts.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise fail(f"split.counts.{k} must be a non-negative integer, got {v!r}")
        rest = get(split, "rest", str, "split.")
        check_split_names([rest], "split.rest")
        if rest in counts:
            raise fail(f"split.rest {rest!r} must not also have a count")
        kw.update(counts={k: counts[k] for k in SPLITS if k in counts}, rest=rest)
    elif rule == "group":
        groups = get(split, "groups", dict, "split.")
        check_split_names(groups, "split.groups")
        lists_g: dict[str, tuple[str, ...]] = {}
        seen: dict[str, str] = {}
        for k in SPLITS:
            if k in groups:
                v = groups[k]
                if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                    raise fail(f"split.groups.{k} must be a list of non-empty strings")
                for g in v:
                    if g in seen:
                        raise fail(f"group {g!r} is listed in split.groups.{seen[g]} and split.groups.{k}")
                    seen[g] = k
                lists_g[k] = tuple(v)
        if not lists_g:
            raise fail("split.groups lists no split")
        kw.update(groups=lists_g)
    elif rule == "kfold":
        n_folds = get(split, "n_folds", int, "split.")
        if n_folds < 3:
            raise fail(
                f"split.n_folds must be >= 3 (a test, a validation and a training fold), got {n_folds}"
            )
        kw.update(n_folds=n_folds)
    else:  # official
        mapping = get(split, "official", dict, "split.")
        if not mapping or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
            raise fail("split.official must map official_split values to split names")
        check_split_names(mapping.values(), "split.official")
        vf = get(split, "val_fraction", (int, float), "split.")
        if isinstance(vf, bool) or not 0.0 <= vf < 1.0:
            raise fail(f"split.val_fraction must be in [0, 1), got {vf!r}")
        kw.update(official=dict(sorted(mapping.items())), val_fraction=float(vf))
    if not isinstance(description, str) or not isinstance(reference, str):
        raise fail("'description' and 'reference' must be strings")
    return Protocol(
        name=name,
        version=version,
        source=source,
        task=task,
        rule=rule,
        salt=salt,
        description=description,
        reference=reference,
        path=str(path),
        **kw,
    )
