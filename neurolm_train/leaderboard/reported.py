"""Published results as versioned data: load and validate ``manifests/reported/*.toml``.

File format (see ``manifests/reported/neurolm_labram.toml``): ``schema_version = 1``; ``[sources.ID]``
tables with ``citation``, ``via`` (where in the project reference it was transcribed from) and an optional
``note``; ``[[row]]`` entries with ``model``, ``task``, ``source`` (a source ID), optional ``params`` and
``note``, and one inline table per metric: ``{ value, std (optional), tag, hard_labels (optional) }``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from neurolm_train.leaderboard.scoring import BINARY_METRICS, MULTICLASS_METRICS

#: The folder of shipped reported-result files: package data at ``neurolm_data/manifests/reported`` (a link to
#: ``manifests/reported`` in a checkout, the files themselves in a wheel).
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "neurolm_data" / "manifests" / "reported"
#: Trust tags (docs/neurolm-reference.md, "How far to trust each fact"), plus ``untagged`` for numbers it quotes bare
#: and ``fig`` for numbers read from the authors' own figure or table image.
TAGS = ("paper", "2nd", "mem", "untagged", "fig")
METRICS = tuple(dict.fromkeys(BINARY_METRICS + MULTICLASS_METRICS))


class ReportedFormatError(ValueError):
    """A reported-results file does not follow the format (the message names file, row and field)."""


@dataclass(frozen=True)
class ReportedValue:
    """One published number: ``value`` (fraction, 0..1; kappa may be negative), optional ``std``,
    trust ``tag`` and whether it was computed from hard labels (reference §5.3)."""

    value: float
    std: float | None
    tag: str
    hard_labels: bool = False


@dataclass(frozen=True)
class ReportedRow:
    """A published row: model, task, metrics and where it comes from (``citation``, ``via``)."""

    model: str
    task: str
    source: str
    citation: str
    via: str
    params: str | None
    note: str | None
    metrics: dict[str, ReportedValue]
    file: str
    file_sha256: str
    missing: str | None = None


def _value(raw: object, where: str) -> ReportedValue:
    if not isinstance(raw, dict) or "value" not in raw or "tag" not in raw:
        raise ReportedFormatError(f"{where}: expected {{ value = ..., tag = ... }}, got {raw!r}")
    unknown = set(raw) - {"value", "std", "tag", "hard_labels"}
    if unknown:
        raise ReportedFormatError(f"{where}: unknown field(s) {sorted(unknown)}")
    value = float(raw["value"])
    if not -1.0 <= value <= 1.0:
        raise ReportedFormatError(f"{where}: value {value} is not a fraction (write 0.8140, not 81.40)")
    if raw["tag"] not in TAGS:
        raise ReportedFormatError(f"{where}: tag {raw['tag']!r} not in {TAGS}")
    std = raw.get("std")
    return ReportedValue(
        value, None if std is None else float(std), str(raw["tag"]), bool(raw.get("hard_labels", False))
    )


def load_file(path: Path) -> list[ReportedRow]:
    """Rows of one TOML file. Raises :class:`ReportedFormatError` on any deviation from the format."""
    path = Path(path)
    blob = path.read_bytes()
    doc = tomllib.loads(blob.decode())
    if doc.get("schema_version") != 1:
        raise ReportedFormatError(f"{path}: schema_version must be 1")
    sources = doc.get("sources", {})
    rows = []
    for i, raw in enumerate(doc.get("row", [])):
        where = f"{path.name} row {i} ({raw.get('model')!r}, {raw.get('task')!r})"
        for key in ("model", "task", "source"):
            if not isinstance(raw.get(key), str):
                raise ReportedFormatError(f"{where}: missing {key!r}")
        if raw["source"] not in sources:
            raise ReportedFormatError(f"{where}: source {raw['source']!r} not declared under [sources]")
        unknown = set(raw) - {"model", "task", "source", "params", "note", "missing", *METRICS}
        if unknown:
            raise ReportedFormatError(f"{where}: unknown field(s) {sorted(unknown)}")
        metrics = {m: _value(raw[m], f"{where} {m}") for m in METRICS if m in raw}
        missing = raw.get("missing")
        if bool(metrics) == bool(missing):
            raise ReportedFormatError(
                f'{where}: give either metrics or `missing = "why"`, not both or neither'
            )
        src = sources[raw["source"]]
        rows.append(
            ReportedRow(
                model=raw["model"],
                task=raw["task"],
                source=raw["source"],
                citation=src["citation"],
                via=src.get("via", ""),
                params=raw.get("params"),
                note=raw.get("note") or src.get("note"),
                metrics=metrics,
                file=str(path),
                file_sha256=hashlib.sha256(blob).hexdigest(),
                missing=missing,
            )
        )
    return rows


def load_reported(folder: Path = DEFAULT_DIR) -> list[ReportedRow]:
    """Rows of every ``*.toml`` in ``folder`` (sorted by file name); empty if the folder is absent."""
    folder = Path(folder)
    return [row for path in sorted(folder.glob("*.toml")) for row in load_file(path)]
