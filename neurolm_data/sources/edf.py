"""``edf``: any folder of EDF/EDF+/BDF/BDF+ files, unlabeled (pre-training input).

Every ``*.edf`` / ``*.bdf`` under the root (any case, any depth) is one recording. The subject is the file stem;
the session is the folder relative to the root (so equal stems in different folders stay distinct). Every
EEG channel that maps to the ``standard_1020`` vocabulary is kept; channels at a rate other than the EEG
majority (TUH's 1-Hz ``IBI``/``BURSTS``/``SUPPR``) and non-EEG channels are dropped and listed
(``neurolm_data.readers``). EDF+ annotations are kept as unlabelled events (label -1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from neurolm_data.readers import read_edf
from neurolm_data.sources.base import RawSignal, RecordingRef, Source, register_source, safe_key

_SUFFIXES = {".edf", ".bdf"}
_OPTIONS = {"notch_hz", "annotations", "merge_synonyms", "subject_regex"}


def _as_bool(v: Any) -> bool:
    if isinstance(v, str):
        if v.lower() in {"1", "true", "yes", "on"}:
            return True
        if v.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected a boolean, got {v!r}")
    return bool(v)


@register_source
class EdfSource(Source):
    """A folder of EDF/BDF files.

    Options:
        notch_hz: mains frequency of the recording site, Hz (default 50, the notch of most official makers,
            reference §1.1; pass 60 for North American data).
        annotations: read EDF+ annotations into events (default true); an unreadable annotation channel then
            fails the recording.
        merge_synonyms: map T3/T4/T5/T6 to T7/T8/P7/P8 (default false, as the official code, reference §9.25).
        subject_regex: a regular expression searched in the file stem whose group ``subject`` (or first group)
            is the subject, e.g. ``(?P<subject>Subject\\d+)_`` for EEGMAT, so that a person's recordings share
            one subject and subject-level splits keep them together. The run is then the whole stem (recording
            ids stay unique). Without it the subject is the stem. A stem that does not match raises
            ``ValueError`` naming the file (discovery must not silently split a person).
    """

    name: ClassVar[str] = "edf"
    mains_hz: ClassVar[float] = 50.0
    channels: ClassVar[tuple[str, ...] | None] = None
    min_duration_s: ClassVar[float] = 1.0
    citation: ClassVar[str] = "(the user's own files)"
    license: ClassVar[str] = "(the user's own files)"

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise ValueError(f"source 'edf': unknown option(s) {unknown} (allowed: {sorted(_OPTIONS)})")
        super().__init__(**options)
        if "notch_hz" in options:
            self.mains_hz = float(options["notch_hz"])
        self.annotations = _as_bool(options.get("annotations", True))
        self.merge_synonyms = _as_bool(options.get("merge_synonyms", False))
        pattern = options.get("subject_regex")
        try:
            self.subject_regex = re.compile(pattern) if pattern else None
        except re.error as e:
            raise ValueError(
                f"source 'edf': subject_regex {pattern!r} is not a regular expression: {e}"
            ) from None

    def _subject_run(self, path: Path) -> tuple[str, str]:
        """(subject, run) of a file: the stem and "" by default, or the ``subject_regex`` match and the stem."""
        if self.subject_regex is None:
            return safe_key(path.stem), ""
        m = self.subject_regex.search(path.stem)
        if m is None:
            raise ValueError(f"{path}: file name does not match subject_regex {self.subject_regex.pattern!r}")
        subject = (
            m.group("subject")
            if "subject" in self.subject_regex.groupindex
            else m.group(1 if m.groups() else 0)
        )
        return safe_key(subject), safe_key(path.stem)

    def discover(self, root: Path) -> list[RecordingRef]:
        """Every EDF/BDF under ``root``, sorted by relative path. Reads no data."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"EDF folder {root} does not exist")
        files = sorted(
            (p for p in root.rglob("*") if p.suffix.lower() in _SUFFIXES and p.is_file()),
            key=lambda p: p.relative_to(root).as_posix(),
        )
        if not files:
            raise FileNotFoundError(f"no .edf/.bdf files under {root}")
        refs = []
        for p in files:
            folder = p.parent.relative_to(root).as_posix()
            subject, run = self._subject_run(p)
            refs.append(
                RecordingRef(
                    source=self.name,
                    subject=subject,
                    session="" if folder == "." else safe_key(folder),
                    run=run,
                    path=p,
                    extra={"format": p.suffix.lower().lstrip(".")},
                )
            )
        return refs

    def read(self, ref: RecordingRef) -> RawSignal:
        """Every vocabulary EEG channel at the EEG rate, µV. Raises ``RecordingError`` (see ``read_edf``)."""
        return read_edf(ref.path, annotations=self.annotations, merge_synonyms=self.merge_synonyms)
