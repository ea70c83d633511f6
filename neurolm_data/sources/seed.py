"""SEED: the SJTU Emotion EEG Dataset (positive / neutral / negative film clips), the NeuroLM "SEED" task.

Two inputs (option ``input``; ``auto`` picks ``cnt`` when ``root`` holds ``.cnt`` files, else ``mat``):

- ``cnt``, the raw release the official ``prepare_SEED.py`` reads (reference §2.7): ``<subject>_<yyyymmdd>.cnt``,
  Neuroscan CNT, 62 EEG channels + ``M1 M2 VEO HEO`` at 1000 Hz, 15 subjects x 3 sessions. One recording per
  session; its 15 trials are events (the boundaries and labels of reference §2.7, the same for every session, or
  a ``trial_table`` CSV ``start_s,end_s,emotion``). Read with ``mne.io.read_raw_cnt(data_format=...)``:
  ``data_format="auto"`` fails on real CNT files whose header sample count is 0 (FIXTURES.md §1), so the
  format is an option: ``int32`` (default; the official maker's, SEED's SynAmps2 export) or ``int16``.
- ``mat``, the ``Preprocessed_EEG/<subject>_<yyyymmdd>.mat`` release: variables ``<initials>_eeg1 ..
  _eeg15``, float64 (62, n) at 200 Hz (already down-sampled and 0-75 Hz filtered by the SEED authors; values
  treated as µV), labels from ``Preprocessed_EEG/label.mat`` (1 positive, 0 neutral, -1 negative) or, when
  it is absent, reference §2.7's sequence. One recording per trial (``run = trialNN``) with one event covering it,
  so no filter runs across the gaps between clips. MATLAB v7.3 (HDF5) files are read with h5py.

Channels: the 62 SEED channels in the SEED ``channel_62_pos.locs`` order (FIXTURES.md §2.4), which is the
``.cnt`` order once ``M1 M2 VEO HEO`` are dropped (reference §2.7). Classes: H (positive) 0, N (neutral) 1,
S (negative) 2 (reference §2.7). Notch: 50 Hz (Chinese mains; the official maker's).

Protocols: ``seed`` (the paper's within-subject trial split: trials 0-8 train, 9-11 val, 12-14 test, all
sessions pooled) and ``seed_xsub`` (cross-subject, by sorted subject id); see ``manifests/protocols``.

Citation: Zheng W-L, Lu B-L. "Investigating Critical Frequency Bands and Channels for EEG-based Emotion
Recognition with Deep Neural Networks." IEEE Trans. Autonomous Mental Development 7(3):162-175 (2015),
doi:10.1109/TAMD.2015.2431497; Duan R-N, Zhu J-Y, Lu B-L, "Differential entropy feature for EEG-based emotion
classification", IEEE/EMBS NER 2013.
License: SEED license agreement of the BCMI laboratory, Shanghai Jiao Tong University (academic use on
application; no redistribution).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from neurolm_data.annotations import (
    SEED_CLASSES,
    SEED_LABEL_MAT,
    SEED_TRIAL_EMOTIONS,
    read_trial_table,
    seed_trial_events,
    seed_trials,
)
from neurolm_data.sources._readers import check_options, duration_s, notch_option, select_channels
from neurolm_data.sources.base import Event, RawSignal, RecordingError, RecordingRef, Source, register_source

#: SEED 62-channel order (SEED ``channel_62_pos.locs``; FIXTURES.md §2.4; reference §2.7).
SEED_CHANNELS: tuple[str, ...] = tuple(
    "FP1 FPZ FP2 AF3 AF4 F7 F5 F3 F1 FZ F2 F4 F6 F8 FT7 FC5 FC3 FC1 FCZ FC2 FC4 FC6 FT8 T7 C5 C3 C1 CZ C2 C4 "
    "C6 T8 TP7 CP5 CP3 CP1 CPZ CP2 CP4 CP6 TP8 P7 P5 P3 P1 PZ P2 P4 P6 P8 PO7 PO5 PO3 POZ PO4 PO6 PO8 CB1 O1 "
    "OZ O2 CB2".split()
)
#: Channels the official maker drops from the CNT (reference §2.7).
SEED_DROPPED: tuple[str, ...] = ("M1", "M2", "VEO", "HEO", "ECG")
#: Sampling rate of the ``Preprocessed_EEG`` arrays (SEED release notes; FIXTURES.md §2.4).
SEED_MAT_SFREQ: float = 200.0
#: Mains frequency in China (50 Hz); the official maker's notch too (reference §1.1).
SEED_MAINS_HZ: float = 50.0
#: CNT sample formats accepted by ``mne.io.read_raw_cnt``.
CNT_FORMATS: tuple[str, ...] = ("int32", "int16", "auto")
#: SEED session file stem: ``<subject>_<yyyymmdd>``.
SESSION_NAME = re.compile(r"^(?P<subject>\d+)_(?P<date>\d{8})$")
#: Trial variables of the ``.mat`` releases: ``<initials>_eeg<k>`` (SEED, SEED-IV ``eeg_raw_data``).
TRIAL_VAR = re.compile(r"^(?P<prefix>[A-Za-z0-9]+)_eeg(?P<k>\d+)$")

SEED_CITATION = (
    "Zheng W-L, Lu B-L. Investigating Critical Frequency Bands and Channels for EEG-based Emotion "
    "Recognition with Deep Neural Networks. IEEE Trans. Auton. Ment. Dev. 7(3):162-175 (2015), "
    "doi:10.1109/TAMD.2015.2431497"
)
SEED_LICENSE = "BCMI/SJTU SEED license agreement (academic use on application; no redistribution)"


def read_cnt(path: Path, data_format: str) -> RawSignal:
    """Decode a Neuroscan CNT with MNE into µV: every channel, float64 (n_channels, n_samples), file rate.

    Raises:
        RecordingError: MNE cannot read the file with this ``data_format`` (the message says to try the
            other format: ``auto`` fails on files whose header sample count is 0).
    """
    import mne

    if not Path(path).is_file():
        raise RecordingError(path, "signal file is missing")
    try:
        raw = mne.io.read_raw_cnt(str(path), data_format=data_format, preload=True, verbose="error")
    except Exception as e:  # noqa: BLE001 - MNE raises many types on a bad header
        raise RecordingError(
            path,
            f"cannot read CNT with data_format={data_format!r}: {type(e).__name__}: {e} "
            "(SEED raw files are int32; 'auto' fails when the header sample count is 0)",
        ) from None
    data = raw.get_data() * 1e6
    if not np.all(np.isfinite(data)):
        raise RecordingError(path, "CNT decodes to non-finite samples")
    return RawSignal(
        data,
        list(raw.ch_names),
        float(raw.info["sfreq"]),
        meta={"reader": "mne", "file_type": "CNT", "data_format": data_format},
    )


def mat_variables(path: Path) -> list[str]:
    """Variable names of a ``.mat`` file (MATLAB v5 via ``scipy.io.whosmat``, v7.3 via h5py), no data read.

    Raises:
        RecordingError: the file is neither.
    """
    import scipy.io

    if _is_mat73(path):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                return sorted(k for k in f.keys() if not k.startswith("#"))
        except OSError as e:
            raise RecordingError(path, f"cannot read MAT v7.3 file: {e}") from None
    try:
        return [name for name, _, _ in scipy.io.whosmat(str(path))]
    except Exception as e:  # noqa: BLE001
        raise RecordingError(path, f"cannot read MAT file: {type(e).__name__}: {e}") from None


def _is_mat73(path: Path) -> bool:
    """True for a MATLAB v7.3 file, which is HDF5 (scipy.io reads only v4-v7; h5py reads v7.3)."""
    import h5py

    return bool(h5py.is_hdf5(str(path)))


def read_mat_variable(path: Path, name: str) -> np.ndarray:
    """One numeric variable of a ``.mat`` file as float64, in MATLAB orientation (v7.3 arrays transposed back).

    Raises:
        RecordingError: unreadable file or missing/non-numeric variable.
    """
    import scipy.io

    try:
        if _is_mat73(path):
            import h5py

            with h5py.File(path, "r") as f:
                if name not in f:
                    raise RecordingError(path, f"variable {name!r} not found")
                x = np.asarray(f[name]).T
        else:
            d = scipy.io.loadmat(str(path), variable_names=[name])
            if name not in d:
                raise RecordingError(path, f"variable {name!r} not found")
            x = d[name]
    except RecordingError:
        raise
    except Exception as e:  # noqa: BLE001
        raise RecordingError(path, f"cannot read variable {name!r}: {type(e).__name__}: {e}") from None
    if not np.issubdtype(np.asarray(x).dtype, np.number):
        raise RecordingError(path, f"variable {name!r} is not numeric")
    return np.asarray(x, dtype=np.float64)


def trial_variables(path: Path) -> list[tuple[int, str]]:
    """``(trial index from 0, variable name)`` of the ``<prefix>_eeg<k>`` variables, sorted by k."""
    out = []
    for v in mat_variables(path):
        m = TRIAL_VAR.match(v)
        if m:
            out.append((int(m["k"]) - 1, v))
    return sorted(out)


def _bool_or_str(v: Any) -> str:
    return str(v).strip().lower()


@register_source
class SeedSource(Source):
    """SEED raw ``.cnt`` sessions (15 trial events each) or ``Preprocessed_EEG`` trials; 62 channels;
    classes H 0 / N 1 / S 2.

    Options:
        input: ``auto`` (default), ``cnt`` or ``mat``.
        data_format: CNT sample format, ``int32`` (default), ``int16`` or ``auto``.
        trial_table: CSV ``start_s,end_s,emotion`` replacing reference §2.7's table (CNT input).
        notch_hz: notch frequency (default 50).
    """

    name = "seed"
    mains_hz = SEED_MAINS_HZ
    channels = SEED_CHANNELS
    min_duration_s = 4.0  # one 4-s SEED window (reference §2.7)
    citation = SEED_CITATION
    license = SEED_LICENSE

    def __init__(self, **options):
        check_options(self.name, options, {"input", "data_format", "trial_table", "notch_hz"})
        super().__init__(**options)
        self.mains_hz = notch_option(options, SEED_MAINS_HZ)
        self.input = _bool_or_str(options.get("input", "auto"))
        if self.input not in ("auto", "cnt", "mat"):
            raise ValueError(f"input must be auto, cnt or mat, got {self.input!r}")
        self.data_format = _bool_or_str(options.get("data_format", "int32"))
        if self.data_format not in CNT_FORMATS:
            raise ValueError(f"data_format must be one of {CNT_FORMATS}, got {self.data_format!r}")
        tt = options.get("trial_table")
        self.trial_table = Path(tt) if tt else None

    def _input(self, root: Path) -> str:
        if self.input != "auto":
            return self.input
        return "cnt" if any(p.suffix.lower() == ".cnt" for p in root.rglob("*")) else "mat"

    def discover(self, root: Path) -> list[RecordingRef]:
        """CNT: one ref per ``<subject>_<date>.cnt``. MAT: one ref per trial variable of each
        ``<subject>_<date>.mat`` (variable names are read from the file header, not the data).

        Raises:
            FileNotFoundError: ``root`` is missing or holds no SEED file of the chosen input.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder")
        kind = self._input(root)
        refs: list[RecordingRef] = []
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() == f".{kind}" and SESSION_NAME.match(p.stem)
        )
        for p in files:
            m = SESSION_NAME.match(p.stem)
            if kind == "cnt":
                refs.append(
                    RecordingRef(
                        source=self.name,
                        subject=m["subject"],
                        session=m["date"],
                        run="",
                        path=p,
                        annotation_path=self.trial_table,
                        extra={"input": "cnt"},
                    )
                )
                continue
            labels = self._mat_labels(p.parent / "label.mat")
            try:
                trials = trial_variables(p)
            except RecordingError:
                trials = []
            if not trials:  # unreadable or no trial variable: one ref that read() reports as failed
                refs.append(
                    RecordingRef(
                        source=self.name,
                        subject=m["subject"],
                        session=m["date"],
                        run="",
                        path=p,
                        extra={"input": "mat", "trial": -1, "variable": ""},
                    )
                )
            for k, var in trials:
                lab = labels[k] if 0 <= k < len(labels) else None
                refs.append(
                    RecordingRef(
                        source=self.name,
                        subject=m["subject"],
                        session=m["date"],
                        run=f"trial{k:02d}",
                        path=p,
                        label=lab,
                        extra={
                            "input": "mat",
                            "trial": k,
                            "variable": var,
                            "label_source": "label.mat" if (p.parent / "label.mat").is_file() else "spec",
                        },
                    )
                )
        if not refs:
            raise FileNotFoundError(f"{root}: no SEED {kind} file named <subject>_<yyyymmdd>.{kind}")
        return refs

    @staticmethod
    def _mat_labels(path: Path) -> list[int]:
        """Classes of the 15 trials: ``label.mat`` mapped through ``SEED_LABEL_MAT``, or reference §2.7's order."""
        if path.is_file():
            try:
                v = read_mat_variable(path, "label").ravel()
                return [SEED_LABEL_MAT[int(x)] for x in v]
            except (RecordingError, KeyError, ValueError):
                return []  # read() reports the bad label file per recording
        return [SEED_CLASSES[e] for e in SEED_TRIAL_EMOTIONS]

    def read(self, ref: RecordingRef) -> RawSignal:
        """CNT: the 62 channels in µV at 1000 Hz and the 15 trial events (classes 0/1/2, ``trial<k>``).
        MAT: one trial (62, n) at 200 Hz with one event covering it.

        Raises:
            RecordingError: unreadable file (CNT format hint included), missing channels, a trial table longer
                than the session, a bad ``label.mat``, or a trial array that is not 62 rows.
        """
        if ref.extra.get("input") == "mat":
            return self._read_mat(ref)
        sig = select_channels(ref.path, read_cnt(ref.path, self.data_format), SEED_CHANNELS, "SEED")
        trials = read_trial_table(ref.annotation_path) if ref.annotation_path else seed_trials()
        sig.events = seed_trial_events(ref.annotation_path or ref.path, trials, duration_s=duration_s(sig))
        return sig

    def _read_mat(self, ref: RecordingRef) -> RawSignal:
        k, var = int(ref.extra.get("trial", -1)), str(ref.extra.get("variable", ""))
        if not var:
            trial_variables(ref.path)  # raises the reader's reason if unreadable
            raise RecordingError(ref.path, "no '<initials>_eeg<k>' trial variable in the file")
        label_file = ref.path.parent / "label.mat"
        if ref.label is None:
            raise RecordingError(
                label_file, f"no label for trial {k + 1}: label.mat must hold 15 values in {{1, 0, -1}}"
            )
        x = read_mat_variable(ref.path, var)
        if x.ndim != 2 or x.shape[0] != len(SEED_CHANNELS):
            raise RecordingError(ref.path, f"variable {var!r} has shape {x.shape}, expected (62, n_samples)")
        if not np.all(np.isfinite(x)):
            raise RecordingError(ref.path, f"variable {var!r} holds non-finite samples")
        dur = x.shape[1] / SEED_MAT_SFREQ
        return RawSignal(
            data=x,
            ch_names=list(SEED_CHANNELS),
            sfreq=SEED_MAT_SFREQ,
            events=[Event(0.0, dur, int(ref.label), f"trial{k}")],
        )
