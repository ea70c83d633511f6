"""TUSZ: the TUH EEG Seizure Corpus, as a pre-training source (unlabeled windows; seizure terms kept as events).

Layouts: v2.0.x ``edf/{train,dev,eval}/<subject>/<session>_<year>/<montage>/<subject>_<session>_<token>.edf``
with ``.csv`` (per channel) and ``.csv_bi`` (term, seizure vs background) partners; v1.5.x
``edf/{train,dev}/<montage>/<group>/<subject>/<session>/<file>.edf`` with ``.tse``/``.tse_bi``/``.lbl``
(FIXTURES.md §2.1, ``tuh-nedc/csv_bi``). ``root`` holds ``edf/``. ``official_split`` is the split folder.

Every EEG channel in the vocabulary is kept (no fixed list), as for ``tueg``; LE-montage files are kept.
Events: binary seizure terms (bckg 0, any seizure type 1) from the first partner found among ``.csv_bi``,
``.tse_bi``, ``.csv``, ``.tse``, ``.lbl`` (``annotations=false`` skips them). A malformed annotation file fails
the recording with its reason; recordings without any partner get no events.

Notch: 60 Hz (TUH mains; reference §1.1: 60 Hz for all TUH data).

TUSZ recordings are part of TUEG; its eval subjects are also in the TUH family namespace, so
``neurolm-data audit`` matches them against TUAB/TUEV/TUSL/TUEG by subject id and by signal.

Citation: Shah V, von Weltin E, Lopez S, McHugh JR, Veloso L, Golmohammadi M, Obeid I, Picone J. "The Temple
University Hospital Seizure Detection Corpus." Frontiers in Neuroinformatics 12:83 (2018),
doi:10.3389/fninf.2018.00083.
License: TUH EEG Corpus data-use agreement (registration with Temple NEDC; no redistribution).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from neurolm_data.annotations import TUSZ_CLASSES
from neurolm_data.readers import read_edf
from neurolm_data.sources._readers import check_options, duration_s, edf_files, notch_option, tuh_ids
from neurolm_data.sources.base import RawSignal, RecordingRef, Source, register_source
from neurolm_data.sources.tuab import TUH_LICENSE, TUH_MAINS_HZ
from neurolm_data.sources.tusl import read_tuh_term_events

#: Partner lookup order (binary term files first).
TUSZ_ANNOTATIONS: tuple[str, ...] = (".csv_bi", ".tse_bi", ".csv", ".tse", ".lbl")
#: Official split folders of TUSZ v2 (v1.5 has no eval folder).
TUSZ_SPLITS: tuple[str, ...] = ("train", "dev", "eval")
#: Aggregation priority: any seizure type outranks background.
TUSZ_PRIORITY: tuple[str, ...] = tuple(sorted(k for k in TUSZ_CLASSES if k != "bckg")) + ("bckg",)


@register_source
class TuszSource(Source):
    """TUSZ v2/v1.5 layouts; every vocabulary EEG channel; optional seizure events (bckg 0 / seiz 1).

    Options:
        annotations: read the partner annotation files (default true).
        notch_hz: notch frequency (default 60, TUH mains).
    """

    name = "tusz"
    mains_hz = TUH_MAINS_HZ
    channels = None
    subject_namespace: ClassVar[str] = "tuh"
    citation = (
        "Shah V et al. The Temple University Hospital Seizure Detection Corpus. Front. Neuroinform. "
        "12:83 (2018), doi:10.3389/fninf.2018.00083"
    )
    license = TUH_LICENSE

    def __init__(self, **options):
        check_options(self.name, options, {"annotations", "notch_hz"})
        super().__init__(**options)
        self.mains_hz = notch_option(options, TUH_MAINS_HZ)
        v = options.get("annotations", True)
        if isinstance(v, str):
            if v.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"annotations must be true or false, got {v!r}")
            v = v.lower() in ("true", "1", "yes")
        self.with_annotations = bool(v)

    def discover(self, root: Path) -> list[RecordingRef]:
        """Every ``*.edf`` under ``root``; ``official_split`` from a ``train``/``dev``/``eval`` folder.

        Raises:
            FileNotFoundError: ``root`` is missing or holds no EDF file.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder")
        refs = []
        for p in edf_files(root):
            parts = [x.lower() for x in p.relative_to(root).parts[:-1]]
            split = next((x for x in parts if x in TUSZ_SPLITS), None)
            subject, session, run = tuh_ids(p)
            ann = next((p.with_suffix(e) for e in TUSZ_ANNOTATIONS if p.with_suffix(e).is_file()), None)
            montage = next((x for x in parts if x[:2].isdigit() and "_tcp_" in x), "")
            refs.append(
                RecordingRef(
                    source=self.name,
                    subject=subject,
                    session=session,
                    run=run,
                    path=p,
                    official_split=split,
                    annotation_path=ann,
                    extra={"montage_folder": montage},
                )
            )
        if not refs:
            raise FileNotFoundError(f"{root}: no EDF file")
        return refs

    def read(self, ref: RecordingRef) -> RawSignal:
        """All decodable channels in µV (ingest keeps the EEG ones) and, if annotated, seizure events.

        Raises:
            RecordingError: unreadable EDF or a malformed annotation file.
        """
        sig = read_edf(ref.path)
        if self.with_annotations and ref.annotation_path is not None:
            sig.events = read_tuh_term_events(
                ref.annotation_path, duration_s(sig), TUSZ_CLASSES, TUSZ_PRIORITY
            )
        return sig
