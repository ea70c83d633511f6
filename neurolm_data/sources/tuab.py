"""TUAB: the TUH Abnormal EEG Corpus (normal vs abnormal clinical EEG), the NeuroLM "TUAB" task.

Layouts (as distributed by Temple NEDC; docs/neurolm-reference.md §2.2, FIXTURES.md §2.1):

- v3.0.x: ``edf/{train,eval}/{normal,abnormal}/01_tcp_ar/<subject>_<session>_<token>.edf``
- v2.0.x (older): ``edf/{train,eval}/{normal,abnormal}/01_tcp_ar/<group>/<subject>/<session>_<date>/<file>.edf``

``root`` is the folder holding ``edf/`` (or ``edf/`` itself). Every ``*.edf`` below a ``train``/``eval`` and a
``normal``/``abnormal`` folder is a recording; other files are ignored. The label is the class folder
(normal 0, abnormal 1) and ``official_split`` the split folder. The subject is the TUH id of the file name.

Channels: the 23 monopolar referential channels of the official maker, in its order (reference §2.2):
``FP1 FP2 F3 F4 C3 C4 P3 P4 O1 O2 F7 F8 T3 T4 T5 T6 A1 A2 FZ CZ PZ T1 T2``. A file lacking any of them fails
with a reason naming the missing channels (the official maker logs it to ``tuab-process-error-files.txt``).

Notch: TUH data is recorded on US 60-Hz mains, so the default is 60 Hz. The official TUAB maker (inherited
from BIOT/LaBraM) uses 50 Hz (reference §1.1, §9.17); ``notch_hz=50`` reproduces the paper's setting
(``neurolm-data ingest tuab ROOT --option notch_hz=50``), and the choice enters the ingest config hash.

Citation: Obeid I, Picone J. "The Temple University Hospital EEG Data Corpus." Frontiers in Neuroscience
10:196 (2016), doi:10.3389/fnins.2016.00196; TUAB: Lopez de Diego S. "Automated Interpretation of Abnormal
Adult Electroencephalograms", MS thesis, Temple University (2017).
License: TUH EEG Corpus data-use agreement (free registration with NEDC, no redistribution).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from neurolm_data.readers import read_edf
from neurolm_data.sources._readers import (
    check_options,
    edf_files,
    notch_option,
    require_channels,
    tuh_ids,
)
from neurolm_data.sources.base import RawSignal, RecordingRef, Source, register_source

#: The 23 channels of ``prepare_TUAB.py`` (docs/neurolm-reference.md §2.2), canonical ``standard_1020`` names, in order.
TUAB_CHANNELS: tuple[str, ...] = (
    "FP1",
    "FP2",
    "F3",
    "F4",
    "C3",
    "C4",
    "P3",
    "P4",
    "O1",
    "O2",
    "F7",
    "F8",
    "T3",
    "T4",
    "T5",
    "T6",
    "A1",
    "A2",
    "FZ",
    "CZ",
    "PZ",
    "T1",
    "T2",
)
#: Class folders -> label (reference §2.2: abnormal = 1, normal = 0).
TUAB_LABELS: dict[str, int] = {"normal": 0, "abnormal": 1}
#: Official split folders of TUAB.
TUAB_SPLITS: tuple[str, ...] = ("train", "eval")
#: Mains frequency of the TUH recordings (Temple University Hospital, Philadelphia, USA: 60 Hz).
TUH_MAINS_HZ: float = 60.0
#: The paper's / official maker's notch for TUAB and TUEV (reference §1.1).
PAPER_NOTCH_HZ: float = 50.0

TUH_CITATION = (
    "Obeid I, Picone J. The Temple University Hospital EEG Data Corpus. Front. Neurosci. 10:196 "
    "(2016), doi:10.3389/fnins.2016.00196"
)
TUH_LICENSE = "TUH EEG Corpus data-use agreement (registration with Temple NEDC; no redistribution)"


@register_source
class TuabSource(Source):
    """TUAB v3 / v2 layouts; 23 channels; recording label normal 0 / abnormal 1; official split train/eval.

    Options:
        notch_hz: notch frequency (default 60, the TUH mains; 50 = the paper's TUAB maker, reference §1.1).
    """

    name = "tuab"
    mains_hz = TUH_MAINS_HZ
    channels = TUAB_CHANNELS
    min_duration_s = 10.0  # one 10-s TUAB window (reference §2.2)
    subject_namespace: ClassVar[str] = "tuh"
    citation = (
        TUH_CITATION
        + "; Lopez de Diego S, Automated Interpretation of Abnormal Adult EEGs, MS thesis, Temple University (2017)"
    )
    license = TUH_LICENSE

    def __init__(self, **options):
        check_options(self.name, options, {"notch_hz"})
        super().__init__(**options)
        self.mains_hz = notch_option(options, TUH_MAINS_HZ)

    def discover(self, root: Path) -> list[RecordingRef]:
        """Recordings under ``root``: ``edf/{train,eval}/{normal,abnormal}/.../*.edf`` (v3 or v2).

        Raises:
            FileNotFoundError: ``root`` is missing or holds no TUAB-layout EDF file.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder")
        refs = []
        for p in edf_files(root):
            parts = [x.lower() for x in p.relative_to(root).parts[:-1]]
            if not self._in_layout(parts):
                continue
            split = next(x for x in parts if x in TUAB_SPLITS)
            cls = next(x for x in parts if x in TUAB_LABELS)
            subject, session, run = tuh_ids(p)
            after = parts[parts.index(cls) + 1 :]
            layout = "v3" if len(after) <= 1 else "v2"
            refs.append(
                RecordingRef(
                    source=self.name,
                    subject=subject,
                    session=session,
                    run=run,
                    path=p,
                    label=TUAB_LABELS[cls],
                    official_split=split,
                    extra={"layout": layout, "montage_folder": after[0] if after else "", "class": cls},
                )
            )
        if not refs:
            raise FileNotFoundError(
                f"{root}: no TUAB file (expected edf/{{train,eval}}/{{normal,abnormal}}/01_tcp_ar/*.edf)"
            )
        return sorted(refs, key=lambda r: str(r.path))

    @staticmethod
    def _in_layout(parts: list[str]) -> bool:
        """Whether folder names (lower case) place a file below ``{train,eval}/{normal,abnormal}``."""
        split = next((x for x in parts if x in TUAB_SPLITS), None)
        cls = next((x for x in parts if x in TUAB_LABELS), None)
        return split is not None and cls is not None and parts.index(cls) > parts.index(split)

    def skipped(self, root: Path) -> list[tuple[Path, str]]:
        """EDF files under ``root`` outside ``{train,eval}/{normal,abnormal}`` (no label or split to give)."""
        root = Path(root)
        return [
            (p, "path is outside the TUAB layout edf/{train,eval}/{normal,abnormal}/...")
            for p in edf_files(root)
            if not self._in_layout([x.lower() for x in p.relative_to(root).parts[:-1]])
        ]

    def read(self, ref: RecordingRef) -> RawSignal:
        """The 23 TUAB channels in µV at the file's EEG rate (1-Hz channels and extras dropped, listed).

        Raises:
            RecordingError: unreadable EDF, or a missing TUAB channel.
        """
        return require_channels(ref.path, read_edf(ref.path, channels=TUAB_CHANNELS), TUAB_CHANNELS, "TUAB")
