"""The typed ``Source`` interface: discover the recordings of a native corpus layout, read one recording.

Adding a corpus is one module in ``neurolm_data/sources/`` that subclasses ``Source`` and decorates it with
``@register_source``. Data flows one way: a source yields ``RecordingRef`` rows (from paths first, headers
second), ``read`` turns one into a ``RawSignal`` (µV, native sfreq), and everything after that
(channel mapping, preprocessing, storage, splitting, windowing) is source-agnostic.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from neurolm_data.store import content_hash


class RecordingError(Exception):
    """A recording (or its annotation file) cannot be used. The message names the file and the problem.

    Ingest catches it, records ``(path, reason)`` in the ledger and goes on with the other recordings.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class Event:
    """One annotated interval of a recording, in seconds from the recording start.

    ``label`` is the task's integer class; ``description`` is the annotation text as written in the file.
    """

    onset_s: float
    duration_s: float
    label: int
    description: str = ""


@dataclass(frozen=True)
class RecordingRef:
    """One recording as discovered in a native layout, before it is read.

    Attributes:
        source: the source name (``workload``, ``tueg``, ...).
        subject: subject identifier as the corpus writes it (``Subject00``, ``aaaaaaaa``).
        session: session identifier (``s001_2015``), or ``""``.
        run: run / token identifier (``t000``, ``1``), or ``""``.
        path: the signal file.
        label: recording-level label (Workload rest=0/task=1, TUAB normal=0/abnormal=1), or None.
        official_split: the corpus's own split for this recording (``train``/``eval``), or None.
        annotation_path: a partner annotation file, if the corpus has one.
        extra: source-specific metadata that must survive into the manifest (JSON-serializable).
    """

    source: str
    subject: str
    session: str
    run: str
    path: Path
    label: int | None = None
    official_split: str | None = None
    annotation_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def recording_id(self) -> str:
        """Stable identifier, safe as a file name and a WebDataset key (letters, digits, ``_``, ``-``)."""
        parts = [self.source, self.subject, self.session, self.run]
        return safe_key("_".join(p for p in parts if p))


@dataclass(frozen=True)
class DigitalSamples:
    """Integer samples of a recording's kept channels as stored in the file, with their calibration.

    The physical signal is ``µV = (samples + offset[:, None]) * gain[:, None]`` (EDF spec: the digital value
    plus EDFlib's offset ``pmax / bitvalue - dmax``, times ``bitvalue = (pmax - pmin) / (dmax - dmin)`` and the
    unit's factor to µV). Readers that decode integer samples themselves (``readers.read_edf``) hand these to
    ``RawSignal`` so that ingest can hash and preprocess the recording without a float64 copy.

    Attributes:
        samples: C-contiguous int16 (EDF) or int32 (BDF, sign-extended int24) array (n_channels, n_samples).
        gain: float64 (n_channels,), µV per digital unit.
        offset: float64 (n_channels,), digital units added before scaling.
    """

    samples: np.ndarray
    gain: np.ndarray
    offset: np.ndarray

    def decode(self) -> np.ndarray:
        """float64 (n_channels, n_samples) µV: ``(samples + offset) * gain`` per channel, in that order."""
        out = np.empty(self.samples.shape, dtype=np.float64)
        for row in range(out.shape[0]):
            o = out[row]
            o[:] = self.samples[row]
            o += self.offset[row]
            o *= self.gain[row]
        return out

    def take(self, rows: list[int]) -> DigitalSamples:
        """The channels ``rows``, in that order."""
        return DigitalSamples(np.ascontiguousarray(self.samples[rows]), self.gain[rows], self.offset[rows])

    def content_hash(self) -> str:
        """``store.content_hash`` (XXH3-128) of the samples' C-order little-endian bytes, then ``gain`` and
        ``offset`` as float64 LE.

        These determine the decoded µV signal exactly (``decode``); this is the ``signal_hash`` of a recording
        read from integer samples (docs/architecture.md).
        """
        return content_hash(
            np.ascontiguousarray(self.samples, self.samples.dtype.newbyteorder("<")),
            np.ascontiguousarray(self.gain, "<f8"),
            np.ascontiguousarray(self.offset, "<f8"),
        )


class RawSignal:
    """One recording as read from disk, before preprocessing.

    Attributes:
        data: float64 array (n_channels, n_samples) in µV. A reader may give ``digital`` instead; ``data`` is
            then decoded from it on first access, and from that moment ``data`` is the signal (a source may
            change it) and ``digital`` is None. Assigning ``data`` also clears ``digital``.
        ch_names: channel names as written in the file (``len == n_channels``).
        sfreq: sampling frequency in Hz (all channels share it; readers resample or drop odd-rate
            channels such as TUH's 1-Hz IBI/BURSTS/SUPPR and say so in ``dropped``).
        events: annotated intervals (for event-labelled corpora), possibly empty.
        dropped: ``(raw channel name, reason)`` for channels the reader itself skipped.
        meta: header facts learned while reading (reader used, file type, ...), JSON-serializable; ingest
            stores them in the manifest's ``extra`` column under ``"reader"``.
        digital: the integer samples and calibration that ``data`` decodes from, while ``data`` has not been
            materialized; else None.
        warnings: per-event problems of the annotations (a malformed row, an overlap, an event past the end),
            each naming the file and the event; those events are left out of ``events``. Ingest writes them to
            the ledger's ``warnings`` column.
    """

    def __init__(
        self,
        data: np.ndarray | None = None,
        ch_names: list[str] | None = None,
        sfreq: float = 0.0,
        events: list[Event] | None = None,
        dropped: list[tuple[str, str]] | None = None,
        meta: dict[str, Any] | None = None,
        *,
        digital: DigitalSamples | None = None,
        warnings: list[str] | None = None,
    ):
        if (data is None) == (digital is None):
            raise ValueError("RawSignal needs exactly one of data (float64 µV) and digital (integer samples)")
        self._data = data
        self._digital = digital
        self.ch_names = list(ch_names or [])
        self.sfreq = sfreq
        self.events = list(events or [])
        self.dropped = list(dropped or [])
        self.meta = dict(meta or {})
        self.warnings = list(warnings or [])

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            self._data, self._digital = self._digital.decode(), None
        return self._data

    @data.setter
    def data(self, value: np.ndarray) -> None:
        self._data, self._digital = value, None

    @property
    def digital(self) -> DigitalSamples | None:
        return self._digital

    @property
    def n_channels(self) -> int:
        """Channels, without decoding."""
        return (self._data if self._data is not None else self._digital.samples).shape[0]

    @property
    def n_samples(self) -> int:
        """Samples per channel, without decoding."""
        return (self._data if self._data is not None else self._digital.samples).shape[1]

    def __repr__(self) -> str:
        kind = "digital" if self._data is None else "float64"
        return (
            f"RawSignal({self.n_channels} x {self.n_samples} {kind}, sfreq={self.sfreq:g}, "
            f"ch_names={self.ch_names}, events={len(self.events)}, dropped={len(self.dropped)})"
        )


class Source(ABC):
    """A corpus in its native, as-distributed layout.

    Class attributes (documented per subclass with their sources):
        name: registry key, used on the command line (``neurolm-data ingest NAME ROOT``).
        mains_hz: mains frequency of the recording site; the notch is applied there.
        channels: canonical channel names kept, in order, or None to keep every EEG channel.
        min_duration_s: shortest usable recording in s (one window of the source's task); ingest records
            shorter ones as failed. Default 1.0 = one 1-s patch, the smallest NeuroLM sample (reference §1.1).
        citation, license: shown in the README's source table.
    """

    name: ClassVar[str]
    mains_hz: ClassVar[float] = 50.0
    channels: ClassVar[tuple[str, ...] | None] = None
    min_duration_s: ClassVar[float] = 1.0
    citation: ClassVar[str] = ""
    license: ClassVar[str] = ""

    def __init__(self, **options: Any):
        self.options = options

    @abstractmethod
    def discover(self, root: Path) -> list[RecordingRef]:
        """All recordings under ``root``, sorted by path. Never reads signal data.

        Raises:
            FileNotFoundError: ``root`` does not exist or holds no recognisable files of this layout.
        """

    @abstractmethod
    def read(self, ref: RecordingRef) -> RawSignal:
        """Read one recording (and its annotations). Raises ``RecordingError`` naming the file and the problem."""

    def skipped(self, root: Path) -> list[tuple[Path, str]]:
        """Files under ``root`` that look like input but are deliberately not ingested, with the reason.

        Ingest writes them to the ledger with status ``skipped``. The default is none; override in sources
        whose layout lets a file be recognisably out of place (e.g. an EDF outside the TUEG folder pattern).
        """
        return []


_REGISTRY: dict[str, type[Source]] = {}


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator: make a ``Source`` subclass available under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"source name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


#: Other names of registered sources: the dataset's own name where the source is named after its task
#: (PhysioNet publishes the Workload corpus as "EEGMAT", https://physionet.org/content/eegmat/1.0.0/).
SOURCE_ALIASES: dict[str, str] = {"eegmat": "workload"}


def canonical_source(name: str) -> str:
    """The registered name for ``name`` (an alias such as ``eegmat`` gives ``workload``).

    Raises:
        KeyError: unknown name; the message suggests the closest known names ("did you mean ...?") and lists
            them all.
    """
    from difflib import get_close_matches

    from neurolm_data import sources  # noqa: F401  (imports every source module, filling the registry)

    key = SOURCE_ALIASES.get(name.lower(), name)
    if key in _REGISTRY:
        return key
    close = get_close_matches(name.lower(), [*_REGISTRY, *SOURCE_ALIASES], n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(SOURCE_ALIASES.get(c, c)) for c in close)}?" if close else ""
    raise KeyError(
        f"unknown source {name!r}{hint} (known: {', '.join(sorted(_REGISTRY))}; "
        f"aliases: {', '.join(f'{a}={t}' for a, t in SOURCE_ALIASES.items())})"
    )


def get_source(name: str, **options: Any) -> Source:
    """Instantiate a registered source by name or alias (``SOURCE_ALIASES``).

    Raises:
        KeyError: unknown name, with "did you mean" suggestions and the known names.
    """
    return _REGISTRY[canonical_source(name)](**options)


def available_sources() -> dict[str, type[Source]]:
    """Name -> class of every registered source."""
    from neurolm_data import sources  # noqa: F401

    return dict(sorted(_REGISTRY.items()))


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_key(s: str) -> str:
    """Replace every run of characters other than letters, digits, ``_`` and ``-`` with ``-``.

    WebDataset splits keys at the first dot, so keys and recording ids must not contain one.
    """
    return _UNSAFE.sub("-", s).strip("-")
