"""The ``TaskSpec`` interface: how a task cuts one stored recording into labelled windows.

Adding a task is one module ``neurolm_data/tasks/<name>.py`` (plus its name in ``tasks/__init__.py``)::

    @dataclass(frozen=True)
    class TuabConfig(TaskConfig):
        window_s: int = 10                       # docs/neurolm-reference.md §2.2

    @register_task
    class TuabTask(TaskSpec):
        name = "tuab"                            # --task NAME; shard folder OUT/shards/tuab/
        version = 1                              # bump when the windowing logic changes
        default_protocol = "tuab"                # manifests/protocols/tuab.toml
        labelled = True
        classes = ("normal", "abnormal")         # label k is classes[k]
        channels = ("FP1", "FP2", ...)           # canonical names, in model order; None = every stored channel
        config_class = TuabConfig

        def windows(self, rec, data):
            step = self.config.window_s * SFREQ
            return [Window(s, step, rec.label) for s in range(0, rec.n_samples - step + 1, step)]

The shard step (``neurolm_data.shard``) calls, per recording of the split manifest, in ``recording_id`` order:

1. ``rows = task.select_channels(rec)``: rows of the stored array to keep, in the task's channel order.
2. ``task.min_duration_s(rec, len(rows))``: shorter recordings are skipped (listed in ``shards.json``).
3. ``task.windows(rec, data)``: the windows, as ``Window(start, length, label)`` in samples at 200 Hz.

``select_channels`` and ``windows`` raise ``TaskError`` for a recording the task cannot use (missing
channels, no label, no usable event); the shard step skips it and records the reason. Windows must lie
inside the recording and last a whole number of seconds (patch = 200 samples, docs/neurolm-reference.md §1.1); the
shard step checks this and raises ``ValueError`` on a task bug. Event-based tasks (TUEV, TUSL, HMC, SEED)
read ``rec.events``, parsed from the ``events`` JSON column into ``Event(onset_s, duration_s, label,
description)``; recording-level tasks (TUAB, Workload) read ``rec.label``. ``windows`` must be a pure
function of ``(rec, data, self.config)``: shards must be byte-identical across runs.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from neurolm_data.sources.base import Event

#: Sampling frequency of every stored recording and window, Hz (docs/architecture.md; docs/neurolm-reference.md §1.1).
SFREQ: int = 200
#: Samples per token patch: 1 s at 200 Hz. Window lengths must be multiples of it (docs/neurolm-reference.md §1.1).
PATCH: int = 200


class TaskError(ValueError):
    """A recording cannot be windowed by a task (missing channels, no label, too short, no usable event).

    The shard step skips the recording and lists ``(recording_id, message)`` in ``shards.json``.
    """


@dataclass(frozen=True)
class Recording:
    """One row of ``OUT/recordings.parquet`` (docs/architecture.md), typed, with JSON columns parsed.

    Attributes:
        recording_id: stable id, no dots. source, subject, session, run: from the native layout.
        label: recording-level label, or None. official_split: the corpus's split, or None.
        path: input file relative to the ingest root. store_path: array file relative to OUT.
        sfreq: always 200.0 Hz. n_samples: samples at 200 Hz. duration_s: ``n_samples / 200``.
        channels: canonical ``standard_1020`` names in array row order. channel_indices: their indices.
        montage: ``REF``, ``LE``, ``AR``, ``bipolar``, ...
        events: annotated intervals (onset and duration in s from the recording start).
        extra: source-specific metadata.
    """

    recording_id: str
    source: str
    subject: str
    session: str
    run: str
    label: int | None
    official_split: str | None
    path: str
    store_path: str
    sfreq: float
    n_samples: int
    duration_s: float
    channels: tuple[str, ...]
    channel_indices: tuple[int, ...]
    montage: str
    events: tuple[Event, ...]
    extra: Mapping[str, Any]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Recording:
        """Build from a ``recordings.parquet`` row dict (e.g. ``polars.DataFrame.iter_rows(named=True)``).

        Raises:
            ValueError: the ``events`` or ``extra`` JSON cannot be parsed (naming the recording).
        """
        rid = row["recording_id"]
        try:
            events = tuple(
                Event(float(e[0]), float(e[1]), int(e[2]), str(e[3]) if len(e) > 3 else "")
                for e in json.loads(row.get("events") or "[]")
            )
            extra = json.loads(row.get("extra") or "{}")
        except (ValueError, TypeError, IndexError) as e:
            raise ValueError(f"recording {rid}: bad events/extra JSON in recordings.parquet: {e}") from e
        return cls(
            recording_id=rid,
            source=row["source"],
            subject=row["subject"],
            session=row.get("session") or "",
            run=row.get("run") or "",
            label=None if row.get("label") is None else int(row["label"]),
            official_split=row.get("official_split"),
            path=row.get("path") or "",
            store_path=row["store_path"],
            sfreq=float(row["sfreq"]),
            n_samples=int(row["n_samples"]),
            duration_s=float(row.get("duration_s") or int(row["n_samples"]) / SFREQ),
            channels=tuple(row["channels"]),
            channel_indices=tuple(int(i) for i in row["channel_indices"]),
            montage=row.get("montage") or "",
            events=events,
            extra=extra,
        )


@dataclass(frozen=True)
class Window:
    """One window of a recording.

    Attributes:
        start: first sample (at 200 Hz) in the stored array.
        length: number of samples, a positive multiple of ``PATCH`` (200).
        label: class index into the task's ``classes``, or None (unlabeled, e.g. ``pretrain``).
    """

    start: int
    length: int
    label: int | None


@dataclass(frozen=True)
class TaskConfig:
    """Base of the per-task typed configs; saved (``asdict``) and hashed into ``shards.json``.

    Attributes:
        min_duration_s: recordings shorter than this are skipped with a reason (seconds).
    """

    min_duration_s: float = 0.0


class TaskSpec(ABC):
    """How one task turns stored recordings into labelled windows (see the module docstring).

    Class attributes:
        name: registry key and shard folder name (letters, digits, ``_``; no dots).
        version: bump whenever the windowing changes for an unchanged config (it enters the config hash).
        default_protocol: protocol name used by ``shard`` when ``OUT/splits.parquet`` is absent.
        labelled: whether windows carry labels (``pretrain`` does not).
        classes: class names, ``classes[k]`` is label ``k``.
        channels: canonical channel names in the order the model sees them, or None for every stored
            channel in stored order.
        config_class: the task's ``TaskConfig`` subclass.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    default_protocol: ClassVar[str]
    labelled: ClassVar[bool] = True
    classes: ClassVar[tuple[str, ...]] = ()
    channels: ClassVar[tuple[str, ...] | None] = None
    config_class: ClassVar[type[TaskConfig]] = TaskConfig

    def __init__(self, config: TaskConfig | None = None):
        if config is not None and not isinstance(config, self.config_class):
            raise TypeError(f"task {self.name}: config must be {self.config_class.__name__}")
        self.config = config if config is not None else self.config_class()

    def select_channels(self, rec: Recording) -> list[int]:
        """Rows of the stored array to keep, in the task's channel order (all rows if ``channels`` is None).

        Raises:
            TaskError: a required channel is missing (the message lists them).
        """
        if self.channels is None:
            if not rec.channels:
                raise TaskError(f"{rec.recording_id}: no channels")
            return list(range(len(rec.channels)))
        pos = {c.upper(): i for i, c in enumerate(rec.channels)}
        missing = [c for c in self.channels if c.upper() not in pos]
        if missing:
            raise TaskError(f"{rec.recording_id}: lacks channel(s) {missing} required by task {self.name!r}")
        return [pos[c.upper()] for c in self.channels]

    def min_duration_s(self, rec: Recording, n_channels: int) -> float:
        """Shortest usable recording in seconds (default ``config.min_duration_s``) for ``n_channels`` kept."""
        return float(self.config.min_duration_s)

    @abstractmethod
    def windows(self, rec: Recording, data: np.ndarray) -> list[Window]:
        """The windows of one recording, in increasing ``start`` order.

        Args:
            rec: the recording's manifest row.
            data: the stored array, memory-mapped, float32 ``(len(rec.channels), rec.n_samples)`` in µV
                (all stored channels; the shard step applies ``select_channels`` afterwards).

        Raises:
            TaskError: the recording has nothing this task can use.
        """

    def window_group(self, rec: Recording, window: Window) -> str:
        """The group of a window under a ``group`` (within-subject) protocol, e.g. SEED's ``trial3``.

        Raises:
            TaskError: the task defines no window groups (the default), so it cannot follow such a protocol.
        """
        raise TaskError(
            f"{rec.recording_id}: task {self.name!r} defines no window groups, which a protocol "
            "with rule 'group' needs"
        )

    def describe(self) -> dict[str, Any]:
        """JSON-ready description saved in ``shards.json``: name, version, channels, classes, config."""
        return {
            "name": self.name,
            "version": self.version,
            "labelled": self.labelled,
            "classes": list(self.classes),
            "channels": None if self.channels is None else list(self.channels),
            "config": asdict(self.config),
        }

    def config_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of ``describe()``."""
        blob = json.dumps(self.describe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


_REGISTRY: dict[str, type[TaskSpec]] = {}


def register_task(cls: type[TaskSpec]) -> type[TaskSpec]:
    """Class decorator: make a ``TaskSpec`` subclass available under ``cls.name``.

    Raises:
        ValueError: the name is taken by another class, or contains characters other than letters,
            digits and ``_`` (it becomes a folder name and part of shard file names).
    """
    if not cls.name.replace("_", "").isalnum():
        raise ValueError(f"task name {cls.name!r} must be letters, digits and '_'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"task name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def get_task(name: str, config: TaskConfig | None = None) -> TaskSpec:
    """Instantiate a registered task by name. Raises KeyError listing the known names."""
    from neurolm_data import tasks  # noqa: F401  (imports every task module, filling the registry)

    try:
        cls = _REGISTRY[name]
    except KeyError:
        from difflib import get_close_matches

        close = get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"unknown task {name!r}{hint} (known: {', '.join(sorted(_REGISTRY))})") from None
    return cls(config)


def available_tasks() -> dict[str, type[TaskSpec]]:
    """Name -> class of every registered task."""
    from neurolm_data import tasks  # noqa: F401

    return dict(sorted(_REGISTRY.items()))
