"""HMC: the Haaglanden Medisch Centrum sleep staging database (PhysioNet), the NeuroLM "HMC" task.

Layout (PhysioNet ``hmc-sleep-staging/1.1/recordings/``; docs/neurolm-reference.md §2.5): ``SNxxx.edf`` (8 signals at
256 Hz: ``EEG F4-M1, EEG C4-M1, EEG O2-M1, EEG C3-M2, EMG chin, EOG E1-M2, EOG E2-M2, ECG``) with the scoring
``SNxxx_sleepscoring.edf`` (EDF+ annotations) and/or ``SNxxx_sleepscoring.txt`` (CSV). ``root`` is any folder
above them. One subject per recording (``SN001`` ...).

Channels: the 4 EEG derivations ``F4-M1, C4-M1, O2-M1, C3-M2``, stored as F4, C4, O2, C3 (as the official
maker does; the mastoid reference is recorded as the montage ``mastoid``).

Labels: one event per 30-s scoring row, W 0, N1 1, N2 2, N3 3, R 4 (reference §2.5). Unlike the official maker, no
array is pre-allocated, so there are no zero-filled samples labelled Wake (reference §2.5 bug, §9.16); ``Lights
off/on`` markers are skipped; an unknown annotation, a stage row that is not 30 s, overlapping epochs or an
epoch past the end of the signal cost only those epochs (listed in the ledger's ``warnings`` column); a
missing or unreadable scoring file, or one without a valid epoch, fails the recording.

Option ``scoring``: ``edf`` (default: the EDF+ scoring, falling back to ``.txt`` when only it exists) or
``txt`` (the CSV that ``prepare_HMC.py`` reads). Notch: 50 Hz (Dutch mains; also the official maker's).

Citation: Alvarez-Estevez D, Rijsman RM. "Inter-database validation of a deep learning approach for automatic
sleep scoring." PLoS ONE 16(8):e0256111 (2021), doi:10.1371/journal.pone.0256111; PhysioNet HMC database v1.1,
doi:10.13026/t79q-fr32; Goldberger AL et al., PhysioBank, PhysioToolkit, and PhysioNet, Circulation
101(23):e215-e220 (2000).
License: PhysioNet open access with attribution (ODC-By 1.0 or CC BY 4.0: not confirmed offline, check the v1.1
page before redistribution; ``eeg-samples/hmc/README.md``).
"""

from __future__ import annotations

import re
from pathlib import Path

from neurolm_data.annotations import hmc_epochs, read_hmc_scoring_edf, read_hmc_scoring_txt
from neurolm_data.readers import read_edf
from neurolm_data.sources._readers import check_options, duration_s, notch_option, require_channels
from neurolm_data.sources.base import RawSignal, RecordingRef, Source, register_source

#: The 4 EEG channels of ``prepare_HMC.py`` (reference §2.5), canonical names in its order.
HMC_CHANNELS: tuple[str, ...] = ("F4", "C4", "O2", "C3")
#: HMC recording file name (``prepare_HMC.py`` keeps names of length 9: ``SNxxx.edf``).
HMC_NAME = re.compile(r"^SN\d{3}\.edf$", re.IGNORECASE)
#: Mains frequency in the Netherlands (50 Hz); the official maker's notch too (reference §1.1).
HMC_MAINS_HZ: float = 50.0


@register_source
class HmcSource(Source):
    """HMC PSG + scoring; 4 EEG channels; 30-s stage events W/N1/N2/N3/R = 0..4.

    Options:
        scoring: ``edf`` (default) or ``txt``: which scoring file to read.
        notch_hz: notch frequency (default 50).
    """

    name = "hmc"
    mains_hz = HMC_MAINS_HZ
    channels = HMC_CHANNELS
    min_duration_s = 30.0  # one 30-s epoch (reference §2.5)
    citation = (
        "Alvarez-Estevez D, Rijsman RM. Inter-database validation of a deep learning approach for "
        "automatic sleep scoring. PLoS ONE 16(8):e0256111 (2021); PhysioNet HMC v1.1, "
        "doi:10.13026/t79q-fr32"
    )
    license = (
        "PhysioNet open access, attribution required (ODC-By 1.0 or CC BY 4.0; confirm on the v1.1 page)"
    )

    def __init__(self, **options):
        check_options(self.name, options, {"scoring", "notch_hz"})
        super().__init__(**options)
        self.mains_hz = notch_option(options, HMC_MAINS_HZ)
        self.scoring = str(options.get("scoring", "edf"))
        if self.scoring not in ("edf", "txt"):
            raise ValueError(f"scoring must be 'edf' or 'txt', got {self.scoring!r}")

    def _scoring_path(self, psg: Path) -> Path:
        first, second = ("edf", "txt") if self.scoring == "edf" else ("txt", "edf")
        a = psg.with_name(f"{psg.stem}_sleepscoring.{first}")
        b = psg.with_name(f"{psg.stem}_sleepscoring.{second}")
        return a if a.is_file() or not b.is_file() or self.scoring == "txt" else b

    def discover(self, root: Path) -> list[RecordingRef]:
        """Every ``SNxxx.edf`` under ``root`` with its scoring file path.

        Raises:
            FileNotFoundError: ``root`` is missing or holds no ``SNxxx.edf``.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder")
        refs = [
            RecordingRef(
                source=self.name,
                subject=p.stem.upper(),
                session="",
                run="",
                path=p,
                annotation_path=self._scoring_path(p),
            )
            for p in sorted(root.rglob("*"))
            if p.is_file() and HMC_NAME.match(p.name)
        ]
        if not refs:
            raise FileNotFoundError(f"{root}: no HMC recording (SNxxx.edf)")
        return refs

    def read(self, ref: RecordingRef) -> RawSignal:
        """The 4 EEG channels in µV at 256 Hz plus the 30-s stage events.

        Raises:
            RecordingError: unreadable PSG, a missing channel, or a missing/malformed scoring file.
        """
        sig = require_channels(ref.path, read_edf(ref.path, channels=HMC_CHANNELS), HMC_CHANNELS, "HMC")
        score = ref.annotation_path or self._scoring_path(ref.path)
        rows = read_hmc_scoring_txt(score) if score.suffix.lower() == ".txt" else read_hmc_scoring_edf(score)
        sig.events = hmc_epochs(score, rows, duration_s=duration_s(sig), problems=sig.warnings)
        return sig
