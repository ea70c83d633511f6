"""``mne``: any folder of recordings MNE reads (FIF, BrainVision, EEGLAB, GDF, Neuroscan CNT, EDF/BDF, Curry).

Every file under the root whose name ends in one of :data:`SUFFIXES` (any case, any depth) is one recording; a
BrainVision recording is its ``.vhdr`` header and an EEGLAB one its ``.set`` file. Files are read with
``mne.io.read_raw`` (MNE picks the reader from the extension, https://mne.tools/stable/generated/mne.io.read_raw.html).
The subject is the file stem, or the match of ``subject_regex``; the session is the folder relative to the root.

Channels: MNE's ``eeg`` channels whose names map to the ``standard_1020`` vocabulary
(``neurolm_data.channels``) are kept; other channel types (stim, EOG, ECG, misc, ...) and unmapped names are
dropped and listed. A ``rename`` option maps a file's own names first, for files that number their electrodes
(``1``, ``2`` ... in Neuroscan CNT, ``EEG 000`` in EEGLAB) instead of naming them.

Events: the file's annotations (BrainVision markers, EEGLAB events, CNT triggers, EDF+ annotations) become
events; with an ``events`` mapping, annotations whose description is mapped get that integer label and the
others label -1 (unlabelled), as in the ``edf`` source.

Recordings sampled at or below 150 Hz are first up-sampled to 200 Hz (``scipy.signal.resample_poly``, a
band-limited interpolation that adds nothing above their Nyquist frequency), because the pipeline's 75-Hz
low-pass needs a sampling rate above 150 Hz (docs/neurolm-reference.md §1.1).
"""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from neurolm_data.channels import map_channels
from neurolm_data.sources.base import (
    Event,
    RawSignal,
    RecordingError,
    RecordingRef,
    Source,
    register_source,
    safe_key,
)

#: File endings read by this source, each a reader of ``mne.io.read_raw``.
SUFFIXES: tuple[str, ...] = (".fif", ".fif.gz", ".vhdr", ".set", ".gdf", ".cnt", ".edf", ".bdf", ".cdt")
#: Lowest input rate preprocessed as is: the 75-Hz low-pass needs a Nyquist frequency above 75 Hz.
MIN_SFREQ: float = 150.0
#: Rate that slower recordings are up-sampled to before preprocessing (the pipeline's output rate).
UPSAMPLE_TO: float = 200.0
_OPTIONS = {"notch_hz", "subject_regex", "events", "rename", "data_format", "merge_synonyms"}


def parse_mapping(value: str | dict | None, what: str, *, integer: bool) -> dict[str, Any]:
    """``"a:0,b:1"`` or the path of a JSON object file -> ``{"a": 0, "b": 1}`` (values int when ``integer``).

    Raises:
        ValueError: malformed text, unreadable file, or a non-integer label; the message names the option.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        raw = value
    elif value.strip().endswith(".json") and Path(value.strip()).is_file():
        try:
            raw = json.loads(Path(value.strip()).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"option {what}: cannot read {value}: {e}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"option {what}: {value} must hold a JSON object")
    else:
        raw = {}
        for item in value.split(","):
            key, sep, val = item.rpartition(":")
            if not sep or not key.strip():
                raise ValueError(
                    f"option {what}: expected NAME:VALUE[,NAME:VALUE...] or a .json file, got {item!r}"
                )
            raw[key.strip()] = val.strip()
    if not integer:
        return {str(k): str(v) for k, v in raw.items()}
    try:
        return {str(k): int(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise ValueError(f"option {what}: labels must be integers, got {raw}") from None


def _as_bool(v: Any) -> bool:
    s = str(v).lower()
    if s in {"1", "true", "yes", "on"}:
        return True
    if s in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean, got {v!r}")


def raw_to_signal(
    raw,
    path: Path,
    *,
    rename: dict[str, str],
    events: dict[str, int],
    merge_synonyms: bool,
    meta: dict[str, Any],
) -> RawSignal:
    """An ``mne.io.Raw`` as a :class:`RawSignal`: vocabulary EEG channels in µV (float64), annotations as events.

    Raises:
        RecordingError: no EEG channel maps to the vocabulary, or the data is not finite.
    """
    if rename:
        raw.rename_channels({k: v for k, v in rename.items() if k in raw.ch_names})
    types = raw.get_channel_types()
    eeg = [i for i, t in enumerate(types) if t == "eeg"]
    dropped = [(raw.ch_names[i], f"MNE channel type {types[i]}") for i, t in enumerate(types) if t != "eeg"]
    names = [raw.ch_names[i] for i in eeg]
    cmap = map_channels(names, merge_synonyms=merge_synonyms)
    dropped += cmap.dropped
    if not cmap.picks:
        raise RecordingError(
            path,
            f"no usable EEG channel: none of {names} maps to the standard_1020 vocabulary "
            "(map them with -o rename=OLD:NEW,...)",
        )
    picks = [eeg[p] for p in cmap.picks]
    try:
        data = raw.get_data(picks=picks) * 1e6  # (C, N) float64 µV (MNE stores volts)
    except Exception as e:  # noqa: BLE001 - MNE raises many types for bad data
        raise RecordingError(path, f"cannot decode the signals: {type(e).__name__}: {e}") from None
    if not np.isfinite(data).all():
        raise RecordingError(path, "signals contain non-finite samples")
    sfreq = float(raw.info["sfreq"])
    if sfreq <= MIN_SFREQ:
        from scipy.signal import resample_poly

        ratio = Fraction(UPSAMPLE_TO / sfreq).limit_denominator(1000)
        data = resample_poly(data, ratio.numerator, ratio.denominator, axis=1)
        meta = {**meta, "upsampled_from_hz": sfreq}
        sfreq = sfreq * ratio.numerator / ratio.denominator
    # onsets count from the measurement start when the annotations have an orig_time, else from the first sample
    start = raw.first_time if raw.annotations.orig_time is not None else 0.0
    evs = [
        Event(
            float(a["onset"]) - start,
            float(a["duration"]),
            events.get(str(a["description"]), -1),
            str(a["description"]),
        )
        for a in raw.annotations
    ]
    return RawSignal(
        data=np.ascontiguousarray(data),
        ch_names=[raw.ch_names[i] for i in picks],
        sfreq=sfreq,
        events=evs,
        dropped=dropped,
        meta=meta,
    )


def read_raw_mne(path: Path, *, data_format: str | None = None):
    """``mne.io.read_raw(path)`` (CNT files with ``data_format``), errors as :class:`RecordingError`."""
    import mne

    kwargs: dict[str, Any] = {}
    if path.suffix.lower() == ".cnt":
        kwargs["data_format"] = data_format or "auto"
    try:
        return mne.io.read_raw(path, preload=True, verbose="error", **kwargs)
    except Exception as e:  # noqa: BLE001 - each MNE reader raises its own types for bad files
        hint = " (Neuroscan CNT: pass -o data_format=int16 or int32)" if path.suffix.lower() == ".cnt" else ""
        raise RecordingError(path, f"MNE cannot read it: {type(e).__name__}: {e}{hint}") from None


@register_source
class MneFolderSource(Source):
    """A folder of recordings in any format ``mne.io.read_raw`` reads.

    Options (``-o KEY=VALUE``):
        notch_hz: mains frequency of the recording site, Hz (default 50; 60 for the Americas).
        subject_regex: regular expression searched in the file stem; its group ``subject`` (or first group) is
            the subject, so a person's files share one subject. Without it the subject is the stem.
        events: annotation description -> integer label, as ``rest:0,task:1`` or a ``.json`` file.
        rename: file channel name -> standard_1020 name, as ``1:FP1,2:FP2`` or a ``.json`` file.
        data_format: Neuroscan CNT sample format, ``int16`` or ``int32`` (MNE's ``auto`` guesses wrong on some
            files).
        merge_synonyms: map T3/T4/T5/T6 to T7/T8/P7/P8 (default false, as the official code).
    """

    name: ClassVar[str] = "mne"
    mains_hz: ClassVar[float] = 50.0
    min_duration_s: ClassVar[float] = 1.0
    citation: ClassVar[str] = "(the user's own files)"
    license: ClassVar[str] = "(the user's own files)"

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise ValueError(f"source 'mne': unknown option(s) {unknown} (allowed: {sorted(_OPTIONS)})")
        super().__init__(**options)
        if "notch_hz" in options:
            self.mains_hz = float(options["notch_hz"])
        self.events = parse_mapping(options.get("events"), "events", integer=True)
        self.rename = parse_mapping(options.get("rename"), "rename", integer=False)
        self.data_format = options.get("data_format") or None
        if self.data_format not in (None, "auto", "int16", "int32"):
            raise ValueError(
                f"source 'mne': data_format must be auto, int16 or int32, got {self.data_format!r}"
            )
        self.merge_synonyms = _as_bool(options.get("merge_synonyms", False))
        pattern = options.get("subject_regex")
        try:
            self.subject_regex = re.compile(pattern) if pattern else None
        except re.error as e:
            raise ValueError(
                f"source 'mne': subject_regex {pattern!r} is not a regular expression: {e}"
            ) from None

    def _stem(self, path: Path) -> str:
        name = path.name
        for sfx in sorted(SUFFIXES, key=len, reverse=True):
            if name.lower().endswith(sfx):
                return name[: -len(sfx)]
        return path.stem

    def discover(self, root: Path) -> list[RecordingRef]:
        """Every readable file under ``root``, sorted by relative path. Reads no data.

        Raises:
            FileNotFoundError: ``root`` is missing or holds no file with a supported ending. ValueError: a
            file stem that does not match ``subject_regex``.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"folder {root} does not exist")
        files = sorted(
            (p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES)),
            key=lambda p: p.relative_to(root).as_posix(),
        )
        if not files:
            raise FileNotFoundError(f"no file MNE reads ({', '.join(SUFFIXES)}) under {root}")
        refs = []
        for p in files:
            stem = self._stem(p)
            if self.subject_regex is None:
                subject, run = safe_key(stem), ""
            else:
                m = self.subject_regex.search(stem)
                if m is None:
                    raise ValueError(
                        f"{p}: file name does not match subject_regex {self.subject_regex.pattern!r}"
                    )
                g = self.subject_regex.groupindex
                subject, run = (
                    safe_key(m.group("subject") if "subject" in g else m.group(1 if m.groups() else 0)),
                    safe_key(stem),
                )
            folder = p.parent.relative_to(root).as_posix()
            refs.append(
                RecordingRef(
                    source=self.name,
                    subject=subject,
                    session="" if folder == "." else safe_key(folder),
                    run=run or safe_key(p.suffix.lstrip(".")),
                    path=p,
                    extra={"format": p.suffix.lower().lstrip(".")},
                )
            )
        return refs

    def read(self, ref: RecordingRef) -> RawSignal:
        """Vocabulary EEG channels in µV at the file's rate (>= 150 Hz, see the module docstring) plus events.

        Raises:
            RecordingError: MNE cannot read the file, no channel maps to the vocabulary, non-finite samples.
        """
        raw = read_raw_mne(ref.path, data_format=self.data_format)
        return raw_to_signal(
            raw,
            ref.path,
            rename=self.rename,
            events=self.events,
            merge_synonyms=self.merge_synonyms,
            meta={"reader": "mne", "format": ref.extra["format"]},
        )
