"""``workload``: PhysioNet EEGMAT 1.0.0, the NeuroLM "Workload" task (docs/neurolm-reference.md §2.6).

Layout (PhysioNet release, flat): ``SubjectNN_1.edf`` (rest / background, label 0, 182 s) and
``SubjectNN_2.edf`` (mental arithmetic, label 1, 62 s), NN = 00..35, 500 Hz EDF+C, labels ``EEG Fp1`` ...
(``eeg-samples/eegmat/README.md``). The official maker takes the label from the file name and keeps 19
channels in a fixed order, dropping ``EEG A2-A1`` and ``ECG ECG`` (reference §2.6); mains is 50 Hz (Ukraine; the
official maker's notch, reference §1.1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from neurolm_data.channels import normalize_channel
from neurolm_data.readers import read_edf
from neurolm_data.sources.base import RawSignal, RecordingError, RecordingRef, Source, register_source

_NAME = re.compile(r"^(?P<subject>Subject\d+)_(?P<run>[12])\.edf$", re.IGNORECASE)

#: The 19 channels of the official Workload maker, in its order (reference §2.6), as ``standard_1020`` names.
WORKLOAD_CHANNELS: tuple[str, ...] = (
    "FP1",
    "FP2",
    "F3",
    "F4",
    "F7",
    "F8",
    "T3",
    "T4",
    "C3",
    "C4",
    "T5",
    "T6",
    "P3",
    "P4",
    "O1",
    "O2",
    "FZ",
    "CZ",
    "PZ",
)

#: Run -> (label, condition): ``_1`` rest = 0, ``_2`` task = 1 (reference §2.6; the maker reads ``fname[-5]``).
RUN_LABELS: dict[str, tuple[int, str]] = {"1": (0, "rest"), "2": (1, "task")}


@register_source
class WorkloadSource(Source):
    """EEGMAT / Workload. Options: ``notch_hz`` (default 50, the official maker's notch)."""

    name: ClassVar[str] = "workload"
    mains_hz: ClassVar[float] = 50.0
    channels: ClassVar[tuple[str, ...]] = WORKLOAD_CHANNELS
    #: One Workload window: 4 s (reference §2.6).
    min_duration_s: ClassVar[float] = 4.0
    citation: ClassVar[str] = (
        "Zyma et al., Electroencephalograms during Mental Arithmetic Task Performance, "
        "Data 4(1):14, 2019; PhysioNet EEGMAT 1.0.0, doi:10.13026/C2JQ1P"
    )
    license: ClassVar[str] = "ODC-By 1.0"

    def __init__(self, **options):
        unknown = sorted(set(options) - {"notch_hz"})
        if unknown:
            raise ValueError(f"source 'workload': unknown option(s) {unknown} (allowed: ['notch_hz'])")
        super().__init__(**options)
        if "notch_hz" in options:
            self.mains_hz = float(options["notch_hz"])

    def discover(self, root: Path) -> list[RecordingRef]:
        """``SubjectNN_{1,2}.edf`` directly under ``root``, sorted by path; subject and run from the name."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"EEGMAT folder {root} does not exist")
        refs = []
        for p in sorted(root.iterdir()):
            m = _NAME.match(p.name)
            if not m or not p.is_file():
                continue
            run = m["run"]
            label, condition = RUN_LABELS[run]
            subject = "Subject" + m["subject"][len("Subject") :]
            refs.append(
                RecordingRef(
                    source=self.name,
                    subject=subject,
                    session="",
                    run=run,
                    path=p,
                    label=label,
                    extra={"condition": condition},
                )
            )
        if not refs:
            raise FileNotFoundError(f"no EEGMAT files (SubjectNN_1.edf / SubjectNN_2.edf) in {root}")
        return refs

    def skipped(self, root: Path) -> list[tuple[Path, str]]:
        """EDF files in ``root`` whose name is not ``SubjectNN_1.edf`` / ``SubjectNN_2.edf``."""
        return [
            (p, "file name is not SubjectNN_1.edf / SubjectNN_2.edf (EEGMAT layout)")
            for p in sorted(Path(root).iterdir())
            if p.is_file() and p.suffix.lower() == ".edf" and not _NAME.match(p.name)
        ]

    def read(self, ref: RecordingRef) -> RawSignal:
        """The 19 Workload channels in the maker's order, µV at 500 Hz.

        Raises:
            RecordingError: unreadable file, or one of the 19 channels missing.
        """
        sig = read_edf(ref.path, channels=self.channels)
        have = {normalize_channel(c).name for c in sig.ch_names}
        missing = [c for c in self.channels if c not in have]
        if missing:
            raise RecordingError(ref.path, f"missing Workload channel(s) {missing}; has {sig.ch_names}")
        return sig
