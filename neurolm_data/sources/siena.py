"""Siena Scalp EEG Database (PhysioNet ``siena-scalp-eeg``), as a pre-training source ("Siena Scalp", 30.47 h of
the NeuroLM pre-training corpus, reference §7).

Layout (PhysioNet v1.0.0): ``PNxx/PNxx-k.edf`` (14 patients, 10-20 EEG at 512 Hz with labels ``EEG Fp1`` ...
plus ``EKG EKG`` and, in some files, ``SPO2``/``HR``/``MK`` and unnamed channels) and ``PNxx/Seizures-list-PNxx.txt``.
Subject = ``PNxx``, run = ``k``. Every vocabulary EEG channel is kept; the rest are dropped and listed. The
seizure lists are not read: this source feeds unlabeled pre-training.

Notch: 50 Hz (recorded at the University of Siena, Italy).

Citation: Detti P, Vatti G, Zabalo Manrique de Lara G. "EEG Synchronization Analysis for Seizure Prediction: A
Study on Data of Noninvasive Recordings." Processes 8(7):846 (2020), doi:10.3390/pr8070846; PhysioNet Siena
Scalp EEG Database v1.0.0, doi:10.13026/5d4a-j060.
License: Creative Commons Attribution 4.0 International (CC BY 4.0).
"""

from __future__ import annotations

import re
from pathlib import Path

from neurolm_data.readers import read_edf
from neurolm_data.sources._readers import check_options, edf_files, notch_option
from neurolm_data.sources.base import RawSignal, RecordingRef, Source, register_source

#: Siena file name ``PN00-1`` (also ``PN01-2``, ``PN06-5``).
SIENA_NAME = re.compile(r"^(?P<subject>PN\d{2})-(?P<run>\d+)$", re.IGNORECASE)
#: Mains frequency in Italy (50 Hz).
SIENA_MAINS_HZ: float = 50.0


@register_source
class SienaSource(Source):
    """Siena Scalp EEG ``PNxx-k.edf``; every vocabulary EEG channel; unlabeled.

    Options:
        notch_hz: notch frequency (default 50).
    """

    name = "siena"
    mains_hz = SIENA_MAINS_HZ
    channels = None
    citation = (
        "Detti P, Vatti G, Zabalo Manrique de Lara G. EEG Synchronization Analysis for Seizure "
        "Prediction: A Study on Data of Noninvasive Recordings. Processes 8(7):846 (2020); PhysioNet "
        "Siena Scalp EEG, doi:10.13026/5d4a-j060"
    )
    license = "Creative Commons Attribution 4.0 International (CC BY 4.0)"

    def __init__(self, **options):
        check_options(self.name, options, {"notch_hz"})
        super().__init__(**options)
        self.mains_hz = notch_option(options, SIENA_MAINS_HZ)

    def discover(self, root: Path) -> list[RecordingRef]:
        """Every ``PNxx-k.edf`` under ``root``.

        Raises:
            FileNotFoundError: ``root`` is missing or holds no Siena file.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder")
        refs = []
        for p in edf_files(root):
            m = SIENA_NAME.match(p.stem)
            if m:
                refs.append(
                    RecordingRef(
                        source=self.name, subject=m["subject"].upper(), session="", run=m["run"], path=p
                    )
                )
        if not refs:
            raise FileNotFoundError(f"{root}: no Siena file (PNxx-k.edf)")
        return refs

    def read(self, ref: RecordingRef) -> RawSignal:
        """Every vocabulary EEG channel in µV at 512 Hz (``EKG``, ``SPO2``, ``HR``, ``MK`` dropped and listed).

        Raises:
            RecordingError: unreadable EDF.
        """
        return read_edf(ref.path)
