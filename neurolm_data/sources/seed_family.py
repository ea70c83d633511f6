"""SEED family (SEED-IV, SEED-V style releases), as a pre-training source ("SEED series", 170.54 h of the NeuroLM
pre-training corpus, reference §7). Unlabeled: emotion labels are not attached (the downstream ``seed`` source and
task handle SEED's labelled protocol).

Inputs found under ``root`` (both may be present):

- raw Neuroscan ``.cnt`` sessions: SEED-V ``EEG_raw/<subject>_<session>_<yyyymmdd>.cnt``, SEED/SEED-IV style
  ``<subject>_<yyyymmdd>.cnt`` (62 EEG channels + ``M1 M2 VEO HEO``, 1000 Hz). One recording per file. Read
  with ``mne.io.read_raw_cnt`` and the ``data_format`` option (``int32`` default, ``int16``, ``auto``; ``auto``
  fails on real files whose header sample count is 0, FIXTURES.md §1).
- MATLAB trial files with ``<prefix>_eeg<k>`` variables of shape (62, n) at 200 Hz: SEED-IV
  ``eeg_raw_data/<session>/<subject>_<yyyymmdd>.mat`` (24 trials per session) and SEED ``Preprocessed_EEG``.
  One recording per trial variable (``run = trialNN``); session = the numeric parent folder (SEED-IV) or the
  date. MATLAB v7.3 files are read with h5py.

Not covered: SEED-VIG's ``Raw_Data`` MATLAB structs (their field layout could not be verified offline).

Channels: every vocabulary channel (``M1``/``M2`` are in the vocabulary and are kept; ``VEO``/``HEO`` are not).
Notch: 50 Hz (recorded at SJTU, Shanghai, China).

Citation: Zheng W-L, Liu W, Lu Y, Lu B-L, Cichocki A. "EmotionMeter: A Multimodal Framework for Recognizing
Human Emotions." IEEE Trans. Cybernetics 49(3):1110-1122 (2019) (SEED-IV); Liu W, Qiu J-L, Zheng W-L, Lu B-L.
"Comparing Recognition Performance and Robustness of Multimodal Deep Learning Models for Multimodal Emotion
Recognition." IEEE Trans. Cognitive and Developmental Systems 14(2):715-729 (2022) (SEED-V).
License: BCMI/SJTU SEED license agreement (academic use on application; no redistribution).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from neurolm_data.sources._readers import check_options, notch_option
from neurolm_data.sources.base import RawSignal, RecordingError, RecordingRef, Source, register_source
from neurolm_data.sources.seed import (
    CNT_FORMATS,
    SEED_CHANNELS,
    SEED_LICENSE,
    SEED_MAINS_HZ,
    SEED_MAT_SFREQ,
    read_cnt,
    read_mat_variable,
    trial_variables,
)

#: File stems of the SEED releases: ``<subject>_<yyyymmdd>`` or ``<subject>_<session>_<yyyymmdd>``.
FAMILY_NAME = re.compile(r"^(?P<subject>\d+)_(?:(?P<session>\d+)_)?(?P<date>\d{8})$")


@register_source
class SeedFamilySource(Source):
    """SEED-IV / SEED-V style ``.cnt`` sessions and ``<prefix>_eeg<k>`` ``.mat`` trials; unlabeled.

    Options:
        data_format: CNT sample format, ``int32`` (default), ``int16`` or ``auto``.
        notch_hz: notch frequency (default 50).
    """

    name = "seed_family"
    mains_hz = SEED_MAINS_HZ
    channels = None
    citation = (
        "Zheng W-L et al. EmotionMeter. IEEE Trans. Cybern. 49(3):1110-1122 (2019) (SEED-IV); Liu W et al. "
        "IEEE Trans. Cogn. Dev. Syst. 14(2):715-729 (2022) (SEED-V)"
    )
    license = SEED_LICENSE

    def __init__(self, **options):
        check_options(self.name, options, {"data_format", "notch_hz"})
        super().__init__(**options)
        self.mains_hz = notch_option(options, SEED_MAINS_HZ)
        self.data_format = str(options.get("data_format", "int32")).lower()
        if self.data_format not in CNT_FORMATS:
            raise ValueError(f"data_format must be one of {CNT_FORMATS}, got {self.data_format!r}")

    def discover(self, root: Path) -> list[RecordingRef]:
        """Every SEED-named ``.cnt`` (one ref) and ``.mat`` (one ref per trial variable) under ``root``.

        Raises:
            FileNotFoundError: ``root`` is missing or holds no SEED-family file.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder")
        refs = []
        for p in sorted(root.rglob("*")):
            m = FAMILY_NAME.match(p.stem)
            if not (p.is_file() and m and p.suffix.lower() in (".cnt", ".mat")):
                continue
            session = m["session"] or (p.parent.name if p.parent.name.isdigit() else m["date"])
            if p.suffix.lower() == ".cnt":
                refs.append(
                    RecordingRef(
                        source=self.name,
                        subject=m["subject"],
                        session=session,
                        run="" if session == m["date"] else m["date"],
                        path=p,
                        extra={"input": "cnt"},
                    )
                )
                continue
            try:
                trials = trial_variables(p)
            except RecordingError:
                trials = []
            if not trials:
                refs.append(
                    RecordingRef(
                        source=self.name,
                        subject=m["subject"],
                        session=session,
                        run="",
                        path=p,
                        extra={"input": "mat", "variable": ""},
                    )
                )
            for k, var in trials:
                refs.append(
                    RecordingRef(
                        source=self.name,
                        subject=m["subject"],
                        session=session,
                        run=f"trial{k:02d}" if session == m["date"] else f"{m['date']}_trial{k:02d}",
                        path=p,
                        extra={"input": "mat", "variable": var, "trial": k},
                    )
                )
        if not refs:
            raise FileNotFoundError(
                f"{root}: no SEED-family file (<subject>_[<session>_]<yyyymmdd>.cnt/.mat)"
            )
        return refs

    def read(self, ref: RecordingRef) -> RawSignal:
        """CNT: every channel in µV at the file rate. MAT: one trial (62, n) at 200 Hz with SEED channel names.

        Raises:
            RecordingError: unreadable file (CNT format hint included), no trial variable, or a trial array
                that is not 62 rows.
        """
        if ref.extra.get("input") == "cnt":
            return read_cnt(ref.path, self.data_format)
        var = str(ref.extra.get("variable", ""))
        if not var:
            trial_variables(ref.path)
            raise RecordingError(ref.path, "no '<prefix>_eeg<k>' trial variable in the file")
        x = read_mat_variable(ref.path, var)
        if x.ndim != 2 or x.shape[0] != len(SEED_CHANNELS):
            raise RecordingError(ref.path, f"variable {var!r} has shape {x.shape}, expected (62, n_samples)")
        if not np.all(np.isfinite(x)):
            raise RecordingError(ref.path, f"variable {var!r} holds non-finite samples")
        return RawSignal(x, list(SEED_CHANNELS), SEED_MAT_SFREQ)
