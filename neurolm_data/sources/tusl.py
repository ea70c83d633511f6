"""TUSL: the TUH EEG Slowing Corpus (background / seizure / slowing), the NeuroLM "TUSL" task.

Layout: TUH EDF files anywhere under ``root`` (v1 ``edf/01_tcp_ar/<group>/<subject>/<session>/...`` or v2
``edf/<subject>/<session>/01_tcp_ar/...``), each with a partner annotation file of the same name. Partner
files are looked up in this order (option ``annotation`` picks one): ``.tse_agg`` (what the official
``prepare_TUSL.py`` reads, reference §2.4), ``.tse``, ``.csv`` (v2 per-channel), ``.csv_bi``, ``.lbl_agg``,
``.lbl``. The subject, session and run come from the file name (``aaaaaapr_s001_t000``). TUSL has no official
split: the protocol splits by subject (hash rule), not by ``os.walk`` file order as the official maker does
(reference §2.4, §9.15).

Labels: ``bckg`` 0, ``seiz`` 1, ``slow`` 2 (reference §2.4). Term files are used as they are; per-channel files
(``.csv``, ``.lbl``) are aggregated to whole-recording terms with priority seiz > slow > bckg
(``annotations.term_segments``). TSE rows need not tile the recording (the official maker only needs each
segment to be 10 s); unannotated stretches give no window. A malformed row, an unknown label, a row past the end
of the signal or overlapping rows cost only those rows (listed in the ledger's ``warnings`` column); a missing
partner, or one without a valid row, fails the recording with that reason.

Channels: the 23 TUAB channels (reference §2.4). Notch: 60 Hz (TUH mains; also what ``prepare_TUSL.py`` uses).

Citation: von Weltin E, Ahsan T, Shah V, Jamshed D, Golmohammadi M, Obeid I, Picone J. "Electroencephalographic
Slowing: A Primary Source of Error in Automatic Seizure Detection." IEEE SPMB (2017),
doi:10.1109/SPMB.2017.8257018; and the TUH EEG corpus (Obeid & Picone 2016).
License: TUH EEG Corpus data-use agreement (registration with Temple NEDC; no redistribution).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from neurolm_data.annotations import (
    TUSL_CLASSES,
    read_lbl,
    read_tse,
    read_tuh_csv,
    segments_to_events,
    term_segments,
)
from neurolm_data.readers import read_edf
from neurolm_data.sources._readers import (
    check_options,
    duration_s,
    edf_files,
    notch_option,
    require_channels,
    tuh_ids,
)
from neurolm_data.sources.base import RawSignal, RecordingError, RecordingRef, Source, register_source
from neurolm_data.sources.tuab import TUAB_CHANNELS, TUH_CITATION, TUH_LICENSE, TUH_MAINS_HZ

#: Partner annotation extensions, in lookup order.
TUSL_ANNOTATIONS: tuple[str, ...] = (".tse_agg", ".tse", ".csv", ".csv_bi", ".lbl_agg", ".lbl")
#: Label priority when aggregating channel-based rows to terms.
TUSL_PRIORITY: tuple[str, ...] = ("seiz", "slow", "bckg")


def read_tuh_term_events(
    path: Path,
    duration_s: float,
    classes: dict[str, int],
    priority: tuple[str, ...],
    problems: list[str] | None = None,
):
    """Parse any TUH annotation file (``.tse*``, ``.csv*``, ``.lbl*``) into whole-recording term events.

    ``problems``: None fails on any problem; a list collects per-event problems and leaves those events out
    (see ``neurolm_data.annotations``).

    Raises:
        RecordingError: missing or malformed file (see the parsers in ``neurolm_data.annotations``).
    """
    ext = path.suffix.lower()
    if ext.startswith(".tse"):
        segs = read_tse(path, duration_s=duration_s, labels=classes, problems=problems)
    elif ext.startswith(".csv"):
        segs, _ = read_tuh_csv(path, duration_s=duration_s, labels=classes, problems=problems)
    elif ext.startswith(".lbl"):
        segs = read_lbl(path, duration_s=duration_s, labels=classes, problems=problems)
    else:
        raise RecordingError(path, f"unsupported annotation type {ext!r}")
    return segments_to_events(path, term_segments(segs, priority), classes)


def partner(path: Path, exts: tuple[str, ...]) -> Path:
    """The first existing ``path.with_suffix(ext)`` for ``ext`` in ``exts``, else the first candidate (which
    ``read`` then reports as a missing partner file)."""
    for ext in exts:
        if path.with_suffix(ext).is_file():
            return path.with_suffix(ext)
    return path.with_suffix(exts[0])


@register_source
class TuslSource(Source):
    """TUSL; 23 channels; term events bckg 0 / seiz 1 / slow 2.

    Options:
        annotation: force one partner extension (one of ``TUSL_ANNOTATIONS``).
        notch_hz: notch frequency (default 60, TUH mains).
    """

    name = "tusl"
    mains_hz = TUH_MAINS_HZ
    channels = TUAB_CHANNELS
    min_duration_s = 10.0  # one 10-s TUSL window (reference §2.4)
    subject_namespace: ClassVar[str] = "tuh"
    citation = (
        "von Weltin E et al. Electroencephalographic Slowing: A Primary Source of Error in Automatic "
        "Seizure Detection. IEEE SPMB 2017, doi:10.1109/SPMB.2017.8257018; " + TUH_CITATION
    )
    license = TUH_LICENSE

    def __init__(self, **options):
        check_options(self.name, options, {"annotation", "notch_hz"})
        super().__init__(**options)
        self.mains_hz = notch_option(options, TUH_MAINS_HZ)
        ann = options.get("annotation")
        if ann is not None and ("." + str(ann).lstrip(".")) not in TUSL_ANNOTATIONS:
            raise ValueError(f"annotation must be one of {TUSL_ANNOTATIONS}, got {ann!r}")
        self.exts = ("." + str(ann).lstrip("."),) if ann else TUSL_ANNOTATIONS

    def discover(self, root: Path) -> list[RecordingRef]:
        """Every ``*.edf`` under ``root`` with its partner annotation path.

        Raises:
            FileNotFoundError: ``root`` is missing or holds no EDF file.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder")
        refs = []
        for p in edf_files(root):
            subject, session, run = tuh_ids(p)
            refs.append(
                RecordingRef(
                    source=self.name,
                    subject=subject,
                    session=session,
                    run=run,
                    path=p,
                    annotation_path=partner(p, self.exts),
                )
            )
        if not refs:
            raise FileNotFoundError(f"{root}: no EDF file")
        return refs

    def read(self, ref: RecordingRef) -> RawSignal:
        """The 23 channels in µV plus term events from the partner file.

        Raises:
            RecordingError: unreadable EDF, a missing channel, or a missing/malformed annotation file.
        """
        sig = require_channels(ref.path, read_edf(ref.path, channels=TUAB_CHANNELS), TUAB_CHANNELS, "TUSL")
        ann = ref.annotation_path or partner(ref.path, self.exts)
        sig.events = read_tuh_term_events(ann, duration_s(sig), TUSL_CLASSES, TUSL_PRIORITY, sig.warnings)
        return sig
