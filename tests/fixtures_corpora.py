"""Build the downstream and pre-training corpus layouts from real signals: real signal, synthetic container.

Recipes: ``../shared/eeg-samples/FIXTURES.md`` §2.1 (TUH family), §2.2 (HMC), §2.3 (Sleep-EDF), §2.4 (SEED),
§2.6 (EEGMMIDB). Every builder writes into the caller's folder (pytest ``tmp_path``); nothing generated here is
ever committed. The signals are real:

- TUAB / TUEV / TUSL / TUSZ: EEGMAT segments written as TUH plain EDF by ``fixtures_tuh.write_tuh_edf``
  (23 TUAB electrodes, A1/A2/T1/T2 derived from real neighbours). Each recording takes a different EEGMAT
  file or offset, so no two fixture recordings share a signal unless a test plants it.
- HMC: the real OpenBCI sleep-lab BDF (F4/C4/O2/C3 re-referenced to A1/A2 for M1/M2, real EOG/EMG/ECG) at
  256 Hz, with windows of the real ``SN001_sleepscoring.edf`` shifted to 0 s.
- SEED: ``Preprocessed_EEG/*.mat`` from the EEGLAB test recording (32 real channels resampled to 200 Hz and
  stacked to 62 rows), sliced into 15 variable-length trials; raw ``.cnt`` = the real Neuroscan
  ``scan41_short.cnt`` copied with its electrode labels patched to the SEED names (CNT is never written).
- Sleep-EDF: the real ``SC4001E0-PSG.edf`` + ``SC4001EC-Hypnogram.edf`` pair, and a second PSG from EEGMAT at
  100 Hz with 30-s data records and a hypnogram taken from a later window of ``SC4001EC``.
- EEGMMIDB: the real BCI2000 EDF+ resampled to 160 Hz with its T0/T1/T2 annotations.
- Siena: EEGMAT signals at 512 Hz with Siena's ``EEG Fp1`` labels.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
from fixtures_tuh import TUAB_ELECTRODES, TUH_19_ELECTRODES, write_tuh_edf
from scipy.signal import resample_poly

_SHARED = Path(os.environ.get("NEUROLM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SAMPLES = _SHARED / "eeg-samples"


def _resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    frac = Fraction(fs_out).limit_denominator(1000) / Fraction(fs_in).limit_denominator(1000)
    return resample_poly(x, frac.numerator, frac.denominator, axis=-1)


@dataclass(frozen=True)
class FixtureFile:
    """One written recording: its signal file, partner annotation file (or None), subject, the corpus's
    official split (or None) and recording label (or None)."""

    path: Path
    annotation: Path | None
    subject: str
    official_split: str | None = None
    label: int | None = None


# ============================================================================================ TUAB


@dataclass(frozen=True)
class TuabSpec:
    """One TUAB file: official split (``train``/``eval``), class folder (``normal``/``abnormal``), TUH ids,
    and the EEGMAT segment it is built from."""

    split: str
    cls: str
    subject: str
    session: str
    token: str
    source: str
    start_s: float = 0.0
    sfreq: int = 250
    seconds: int = 20
    electrodes: tuple[str, ...] = TUAB_ELECTRODES


#: 6 train subjects (one with two sessions), 2 eval subjects, 250 and 256 Hz. ``aaaaaaaz`` lacks T1/T2 and
#: A1/A2 (19 electrodes), so TUAB ingest must reject it with a "missing channels" reason.
DEFAULT_TUAB: tuple[TuabSpec, ...] = (
    TuabSpec("train", "normal", "aaaaaaaa", "s001", "t000", "Subject00_1.edf", 0),
    TuabSpec("train", "normal", "aaaaaaab", "s002", "t000", "Subject01_1.edf", 20, 256),
    TuabSpec("train", "normal", "aaaaaaac", "s001", "t001", "Subject02_1.edf", 40),
    TuabSpec("train", "abnormal", "aaaaaaad", "s001", "t000", "Subject03_1.edf", 0),
    TuabSpec("train", "abnormal", "aaaaaaad", "s002", "t000", "Subject03_2.edf", 10),
    TuabSpec("train", "abnormal", "aaaaaaae", "s003", "t000", "Subject04_1.edf", 60, 256),
    TuabSpec("train", "abnormal", "aaaaaaaf", "s001", "t000", "Subject05_1.edf", 30),
    TuabSpec("eval", "normal", "aaaaaaag", "s001", "t000", "Subject06_1.edf", 0),
    TuabSpec("eval", "abnormal", "aaaaaaah", "s002", "t001", "Subject07_1.edf", 50),
    TuabSpec(
        "train", "normal", "aaaaaaaz", "s001", "t000", "Subject08_1.edf", 0, electrodes=TUH_19_ELECTRODES
    ),
)

#: TUAB class folders -> label (spec §2.2: abnormal 1, normal 0).
TUAB_LABELS = {"normal": 0, "abnormal": 1}


def tuab_path(root: Path, s: TuabSpec, layout: str = "v3") -> Path:
    """v3: ``edf/{train,eval}/{normal,abnormal}/01_tcp_ar/<subj>_<s>_<t>.edf``; v2 (older release):
    ``edf/<split>/<cls>/01_tcp_ar/<group>/<subj>/<s>_<date>/<subj>_<s>_<t>.edf`` (FIXTURES.md §2.1)."""
    name = f"{s.subject}_{s.session}_{s.token}.edf"
    base = Path(root) / "edf" / s.split / s.cls / "01_tcp_ar"
    if layout == "v3":
        return base / name
    if layout == "v2":
        return base / s.subject[:3] / s.subject / f"{s.session}_2013_12_04" / name
    raise ValueError(f"layout must be v2 or v3, got {layout!r}")


def build_tuab(root: Path, eegmat_dir: Path, specs=DEFAULT_TUAB, layout: str = "v3") -> list[FixtureFile]:
    """Write a TUAB tree (``layout`` ``v3`` or ``v2``) under ``root``. Returns the files sorted by path."""
    out = []
    for s in specs:
        p = tuab_path(root, s, layout)
        write_tuh_edf(
            p,
            montage="REF",
            sfreq=s.sfreq,
            seconds=s.seconds,
            source_edf=Path(eegmat_dir) / s.source,
            start_s=s.start_s,
            electrodes=s.electrodes,
            subject=s.subject,
            session=s.session,
            token=s.token,
        )
        out.append(FixtureFile(p, None, s.subject, s.split, TUAB_LABELS[s.cls]))
    return sorted(out, key=lambda f: str(f.path))


# ============================================================================================ TUEV


#: TUEV fixture: subject -> (official split, EEGMAT source, offset, .rec rows ``(channel, start, stop, id)``).
#: Several channels share one event time (the near-duplicates of spec §2.3), events sit at both edges (no
#: circular wrap allowed), and all six label ids occur. ``aaaaaaas`` has a conflicting label at one time.
#: The train subject ``aaaaaaan`` falls in the ``tuev`` protocol's val bucket (hash < 0.2).
DEFAULT_TUEV: dict[str, tuple[str, str, float, tuple[tuple[int, float, float, int], ...]]] = {
    "aaaaaaar": (
        "train",
        "Subject10_1.edf",
        0.0,
        (
            (0, 0.2, 1.2, 4),
            (4, 0.2, 1.2, 4),  # eyem at the start edge, 2 channels
            (14, 6.0, 7.0, 1),
            (15, 6.0, 7.0, 1),
            (16, 6.0, 7.0, 1),  # spsw on 3 channels = 1 sample
            (5, 11.0, 12.0, 6),  # bckg
            (9, 18.6, 19.6, 5),
            (10, 18.6, 19.6, 5),  # artf at the end edge
        ),
    ),
    "aaaaaaas": (
        "train",
        "Subject11_1.edf",
        10.0,
        (
            (2, 3.0, 4.0, 2),
            (3, 3.0, 4.0, 2),  # gped
            (7, 9.0, 10.0, 3),
            (8, 9.0, 10.0, 6),  # pled + bckg at one time -> pled
            (20, 14.0, 15.0, 6),  # bckg
        ),
    ),
    "aaaaaaat": (
        "train",
        "Subject12_1.edf",
        20.0,
        (
            (1, 2.0, 3.0, 3),
            (12, 8.0, 9.0, 5),
            (13, 8.0, 9.0, 5),
            (17, 15.0, 16.0, 6),
        ),
    ),
    "aaaaaaan": (
        "train",
        "Subject13_1.edf",
        30.0,
        (
            (6, 4.0, 5.0, 1),
            (11, 12.0, 13.0, 4),
            (18, 16.0, 17.0, 2),
        ),
    ),
    "aaaaaaav": (
        "eval",
        "Subject14_1.edf",
        0.0,
        (
            (0, 5.0, 6.0, 1),
            (1, 5.0, 6.0, 1),
            (2, 10.0, 11.0, 2),
            (3, 13.0, 14.0, 3),
            (4, 16.0, 17.0, 4),
            (21, 17.0, 18.0, 5),
            (19, 7.0, 8.0, 6),
        ),
    ),
}
TUEV_SECONDS = 20


def write_rec(path: Path, rows) -> Path:
    """Write a TUEV ``.rec``: ``channel,start,stop,label_id`` per line (FIXTURES.md §2.1)."""
    path.write_text("".join(f"{c},{a:.1f},{b:.1f},{k}\n" for c, a, b, k in rows))
    return path


def build_tuev(root: Path, eegmat_dir: Path, spec=None) -> list[FixtureFile]:
    """Write a TUEV v2 tree: ``edf/{train,eval}/<subj>/<subj>_00000001.{edf,rec}``."""
    spec = DEFAULT_TUEV if spec is None else spec
    out = []
    for subj, (split, src, start, rows) in spec.items():
        p = Path(root) / "edf" / split / subj / f"{subj}_00000001.edf"
        write_tuh_edf(
            p,
            montage="REF",
            sfreq=250,
            seconds=TUEV_SECONDS,
            source_edf=Path(eegmat_dir) / src,
            start_s=start,
            electrodes=TUAB_ELECTRODES,
            subject=subj,
        )
        out.append(FixtureFile(p, write_rec(p.with_suffix(".rec"), rows), subj, split))
    return sorted(out, key=lambda f: str(f.path))


# ============================================================================================ TUSL


def write_tse(path: Path, rows) -> Path:
    """Write a TUH ``.tse``/``.tse_agg``: ``version = tse_v1.0.0``, blank line, ``start stop label conf``."""
    body = "".join(f"{a:.4f} {b:.4f} {lab} 1.0000\n" for a, b, lab in rows)
    path.write_text(f"version = tse_v1.0.0\n\n{body}")
    return path


def write_tuh_csv(path: Path, rows, *, duration_s: float, channels: tuple[str, ...] = ("TERM",)) -> Path:
    """Write a TUSZ/TUSL v2 ``.csv`` (rows repeated per TCP channel) or ``.csv_bi`` (``TERM``), with the header
    copied from the real ``tuh-nedc/csv_bi/ref`` files and ``bname``/``duration`` set (FIXTURES.md §2.1)."""
    real = (SAMPLES / "tuh-nedc" / "csv_bi" / "ref" / "aaaaaasf_s001_t000.csv_bi").read_text().splitlines()
    head = []
    for line in real:
        if line.startswith("# bname"):
            line = f"# bname = {path.stem}"
        elif line.startswith("# duration"):
            line = f"# duration = {duration_s:.4f} secs"
        head.append(line)
        if line.startswith("channel,"):
            break
    body = [f"{ch},{a:.4f},{b:.4f},{lab},1.0000" for ch in channels for a, b, lab in rows]
    path.write_text("\n".join(head + body) + "\n")
    return path


#: TUSL fixture: subject -> (annotation kind, EEGMAT source, offset, term rows). 30-s recordings tiled by
#: 10-s segments (the official maker requires 10-s segments, spec §2.4) plus one 15-s segment that gives one
#: window and a 5-s remainder. Under the ``tusl`` protocol's hash rule ``aaaaaakg`` falls in test, ``aaaaaakk`` in
#: val, the others in train.
DEFAULT_TUSL: dict[str, tuple[str, str, float, tuple[tuple[float, float, str], ...]]] = {
    "aaaaaaka": ("tse_agg", "Subject20_1.edf", 0.0, ((0, 10, "bckg"), (10, 20, "slow"), (20, 30, "seiz"))),
    "aaaaaakb": ("tse_agg", "Subject21_1.edf", 10.0, ((0, 10, "slow"), (10, 20, "bckg"), (20, 30, "slow"))),
    "aaaaaakc": ("csv", "Subject22_1.edf", 20.0, ((0, 15, "seiz"), (15, 20, "bckg"), (20, 30, "slow"))),
    "aaaaaakg": ("tse", "Subject23_1.edf", 30.0, ((0, 10, "bckg"), (10, 20, "seiz"), (20, 30, "bckg"))),
    "aaaaaakk": ("csv", "Subject24_1.edf", 40.0, ((0, 10, "slow"), (10, 30, "bckg"))),
}
TUSL_SECONDS = 30
TCP_CHANNELS = ("FP1-F7", "F7-T3", "T3-T5", "T5-O1")


def build_tusl(root: Path, eegmat_dir: Path, spec=None) -> list[FixtureFile]:
    """Write a TUSL tree: ``edf/<subj>/s001_2012/01_tcp_ar/<subj>_s001_t000.{edf,tse_agg|tse|csv}``."""
    spec = DEFAULT_TUSL if spec is None else spec
    out = []
    for subj, (kind, src, start, rows) in spec.items():
        p = Path(root) / "edf" / subj / "s001_2012" / "01_tcp_ar" / f"{subj}_s001_t000.edf"
        write_tuh_edf(
            p,
            montage="REF",
            sfreq=256,
            seconds=TUSL_SECONDS,
            source_edf=Path(eegmat_dir) / src,
            start_s=start,
            electrodes=TUAB_ELECTRODES,
            subject=subj,
        )
        ann = p.with_suffix(f".{kind}")
        if kind == "csv":
            write_tuh_csv(ann, rows, duration_s=TUSL_SECONDS, channels=TCP_CHANNELS)
        else:
            write_tse(ann, rows)
        out.append(FixtureFile(p, ann, subj))
    return sorted(out, key=lambda f: str(f.path))


# ============================================================================================ TUSZ


def build_tusz(root: Path, eegmat_dir: Path) -> list[FixtureFile]:
    """Write a TUSZ v2 tree: ``edf/{train,dev,eval}/<subj>/s001_2002/02_tcp_le/<subj>_s001_t000.{edf,csv,csv_bi}``
    (LE montage, 256 Hz), with term (``csv_bi``) and per-channel (``csv``) seizure annotations."""
    items = [
        ("train", "aaaaaaac", "Subject25_1.edf", ((0, 6, "bckg"), (6, 34, "seiz"), (34, 60, "bckg"))),
        ("eval", "aaaaaaag", "Subject26_1.edf", ((0, 60, "bckg"),)),
    ]
    out = []
    for split, subj, src, rows in items:
        p = Path(root) / "edf" / split / subj / "s001_2002" / "02_tcp_le" / f"{subj}_s001_t000.edf"
        write_tuh_edf(p, montage="LE", sfreq=256, seconds=60, source_edf=Path(eegmat_dir) / src, subject=subj)
        write_tuh_csv(
            p.with_suffix(".csv"),
            [(a, b, "fnsz" if lab == "seiz" else lab) for a, b, lab in rows],
            duration_s=60,
            channels=TCP_CHANNELS,
        )
        out.append(FixtureFile(p, write_tuh_csv(p.with_suffix(".csv_bi"), rows, duration_s=60), subj, split))
    return sorted(out, key=lambda f: str(f.path))


# ============================================================================================ HMC


@lru_cache(maxsize=1)
def _openbci_psg() -> tuple[dict[str, np.ndarray], float]:
    import mne

    b = mne.io.read_raw_bdf(SAMPLES / "bdf" / "multiple_annotation_chans.bdf", preload=True, verbose="error")
    x = {c: b.get_data(picks=[c])[0] * 1e6 for c in ["F4", "C4", "O2", "C3", "A1", "A2", "EOG", "EMG", "ECG"]}
    return x, float(b.info["sfreq"])


#: HMC fixture: subject -> (offset into the real BDF (s), offset into the real SN001 scoring (s), format).
#: The four scoring windows give all five stages (690 s: N2 N1 N1 W; 3210 s: N2 N3 N3 N2; 4590 s: N1 N2 R R;
#: 9390 s: R N2 R N1).
DEFAULT_HMC: dict[str, tuple[float, float, str]] = {
    "SN901": (0.0, 690.0, "edf"),
    "SN902": (40.0, 3210.0, "edf"),
    "SN903": (80.0, 4590.0, "edf"),
    "SN904": (120.0, 9390.0, "txt"),
}
HMC_EPOCHS = 4  # 30-s epochs per fixture PSG (120 s)


def write_hmc_psg(path: Path, offset_s: float, seconds: float) -> Path:
    """8-channel 256-Hz PSG in the HMC layout (FIXTURES.md §2.2), ``seconds`` long from ``offset_s``."""
    import edfio

    x, fs = _openbci_psg()
    a, n = int(round(offset_s * fs)), int(round(seconds * fs))

    def rs(v):
        return _resample(v[a : a + n], fs, 256)

    sig = [
        ("EEG F4-M1", x["F4"] - x["A1"]),
        ("EEG C4-M1", x["C4"] - x["A1"]),
        ("EEG O2-M1", x["O2"] - x["A1"]),
        ("EEG C3-M2", x["C3"] - x["A2"]),
        ("EMG chin", x["EMG"]),
        ("EOG E1-M2", x["EOG"] - x["A2"]),
        ("EOG E2-M2", -(x["EOG"] - x["A1"])),
        ("ECG", x["ECG"]),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    edfio.Edf(
        [edfio.EdfSignal(rs(v), sampling_frequency=256, label=lab, physical_dimension="uV") for lab, v in sig]
    ).write(path)
    return path


def hmc_scoring_window(offset_s: float, seconds: float) -> list[tuple[float, float, str]]:
    """Rows ``(onset, duration, text)`` of the real SN001 scoring in ``[offset_s, offset_s + seconds)``,
    shifted to 0 s, with the real ``Lights off@@EEG F4-A1`` marker kept at its real 33.43 s position."""
    import mne

    h = mne.read_annotations(SAMPLES / "hmc" / "SN001_sleepscoring.edf")
    rows = [
        (float(o) - offset_s, float(d), str(t))
        for o, d, t in zip(h.onset, h.duration, h.description, strict=True)
        if offset_s <= o < offset_s + seconds and d > 0
    ]
    marker = [
        (float(o), 0.0, str(t))
        for o, d, t in zip(h.onset, h.duration, h.description, strict=True)
        if str(t).startswith("Lights off")
    ]
    return sorted(rows + marker)


def write_hmc_scoring_edf(path: Path, rows) -> Path:
    import edfio

    edfio.Edf([], annotations=[edfio.EdfAnnotation(o, d or None, t) for o, d, t in rows]).write(path)
    return path


def write_hmc_scoring_txt(path: Path, rows) -> Path:
    """The ``.txt`` twin: ``Date, Time, Recording onset, Duration, Annotation, Linked channel`` (FIXTURES §2.2)."""
    lines = ["Date, Time, Recording onset, Duration, Annotation, Linked channel"]
    for o, d, t in rows:
        label, _, chan = t.partition("@@")
        clock = 23 * 3600 + 59 * 60 + 30 + o
        hh, mm, ss = int(clock // 3600) % 24, int(clock % 3600 // 60), clock % 60
        lines.append(f"01.01.01, {hh:02d}.{mm:02d}.{ss:05.2f}, {o:g}, {d:g}, {label}, {chan}")
    path.write_text("\n".join(lines) + "\n")
    return path


def build_hmc(root: Path, spec=None) -> list[FixtureFile]:
    """Write an HMC tree: ``recordings/SNxxx.edf`` + ``SNxxx_sleepscoring.edf`` (or ``.txt``)."""
    spec = DEFAULT_HMC if spec is None else spec
    out = []
    for subj, (psg_off, score_off, fmt) in spec.items():
        d = Path(root) / "recordings"
        p = write_hmc_psg(d / f"{subj}.edf", psg_off, HMC_EPOCHS * 30)
        rows = hmc_scoring_window(score_off, HMC_EPOCHS * 30)
        ann = d / f"{subj}_sleepscoring.{fmt}"
        (write_hmc_scoring_edf if fmt == "edf" else write_hmc_scoring_txt)(ann, rows)
        out.append(FixtureFile(p, ann, subj))
    return out


# ============================================================================================ SEED

#: SEED 62-channel order (SEED ``channel_62_pos.locs``; FIXTURES.md §2.4).
SEED_CHANNELS: tuple[str, ...] = tuple(
    "FP1 FPZ FP2 AF3 AF4 F7 F5 F3 F1 FZ F2 F4 F6 F8 FT7 FC5 FC3 FC1 FCZ FC2 FC4 FC6 FT8 T7 C5 C3 C1 CZ C2 C4 "
    "C6 T8 TP7 CP5 CP3 CP1 CPZ CP2 CP4 CP6 TP8 P7 P5 P3 P1 PZ P2 P4 P6 P8 PO7 PO5 PO3 POZ PO4 PO6 PO8 CB1 O1 "
    "OZ O2 CB2".split()
)
#: SEED ``label.mat`` (FIXTURES.md §2.4; equals spec §2.7's H N S S N H S N H H N S N H S).
SEED_LABEL_MAT = np.array([[1, 0, -1, -1, 0, 1, -1, 0, 1, 1, 0, -1, 0, 1, -1]])


@lru_cache(maxsize=1)
def _eeglab_200hz() -> np.ndarray:
    """The 32 real EEGLAB channels (µV) resampled to 200 Hz and stacked to 62 rows: (62, n) float64."""
    import mne

    r = mne.io.read_raw_eeglab(SAMPLES / "eeglab" / "test_raw.set", preload=True, verbose="error")
    x = _resample(r.get_data() * 1e6, r.info["sfreq"], 200)
    return np.concatenate([x, x[::-1]], axis=0)[:62]


def seed_trial_lengths(seed: int) -> list[float]:
    """15 trial lengths in s (4.2-6.4 s, varying as real clips do), deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    return [float(round(v, 2)) for v in rng.uniform(4.2, 6.4, size=15)]


def write_seed_mat(path: Path, initials: str, offset_s: float, lengths, *, hdf5: bool = False) -> Path:
    """A SEED ``Preprocessed_EEG/<subj>_<date>.mat``: ``<initials>_eeg1..15`` float64 (62, n) at 200 Hz.

    ``hdf5=True`` writes a MATLAB v7.3 file (HDF5 with the 512-byte MATLAB user block; arrays stored
    transposed, as MATLAB does) with h5py.
    """
    x = _eeglab_200hz()
    a = int(offset_s * 200)
    trials = {}
    for k, sec in enumerate(lengths, 1):
        n = int(round(sec * 200))
        trials[f"{initials}_eeg{k}"] = x[:, a : a + n].copy()
        a += n + 200
    if a > x.shape[1]:
        raise ValueError(f"EEGLAB recording too short for offset {offset_s} s and these trials")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not hdf5:
        import scipy.io

        scipy.io.savemat(path, trials)
        return path
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        for k, v in trials.items():
            ds = f.create_dataset(k, data=v.T)
            ds.attrs["MATLAB_class"] = np.bytes_("double")
    head = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(head.ljust(116) + b"\x00" * 8 + b"\x00\x02" + b"IM" + b"\x00" * (512 - 128))
    return path


#: SEED .mat fixture: (subject, date, initials, offset s, hdf5). Subjects 1/10/13 fall in the train/val/test
#: lists of the cross-subject protocol; subject 1 has a second session written as MATLAB v7.3.
DEFAULT_SEED_MAT = (
    ("1", "20131027", "djc", 0.0, False),
    ("1", "20131030", "djc", 12.0, True),
    ("10", "20131130", "wsf", 30.0, False),
    ("13", "20140603", "ys", 50.0, False),
)


def build_seed_mat(root: Path, spec=DEFAULT_SEED_MAT) -> list[FixtureFile]:
    """Write ``Preprocessed_EEG/<subj>_<date>.mat`` files plus ``Preprocessed_EEG/label.mat``."""
    import scipy.io

    d = Path(root) / "Preprocessed_EEG"
    out = []
    for k, (subj, date, ini, off, hdf5) in enumerate(spec):
        p = write_seed_mat(d / f"{subj}_{date}.mat", ini, off, seed_trial_lengths(k), hdf5=hdf5)
        out.append(FixtureFile(p, None, subj))
    scipy.io.savemat(d / "label.mat", {"label": SEED_LABEL_MAT})
    return out


def patch_cnt_labels(src: Path, dst: Path, labels: dict[int, str]) -> Path:
    """Copy a real Neuroscan CNT and overwrite electrode labels (10-byte field at 900 + 75*k, the SCAN 4.x
    ELECTLOC table that MNE reads). The samples, header and event table are untouched."""
    b = bytearray(Path(src).read_bytes())
    n = struct.unpack("<H", b[370:372])[0]
    for k, name in labels.items():
        if not 0 <= k < n:
            raise ValueError(f"electrode {k} outside 0..{n - 1}")
        b[900 + 75 * k : 910 + 75 * k] = name.encode("ascii")[:9].ljust(10, b"\x00")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(b))
    return dst


def seed_cnt_labels() -> dict[int, str]:
    """Electrodes 0..61 -> the SEED names, 62..65 -> ``M1 M2 VEO HEO`` (SEED's extra channels, spec §2.7)."""
    return {**dict(enumerate(SEED_CHANNELS)), 62: "M1", 63: "M2", 64: "VEO", 65: "HEO"}


def build_seed_cnt(root: Path, sessions=(("1", "20131027"), ("2", "20131105"))) -> list[FixtureFile]:
    """Raw SEED ``<subj>_<date>.cnt`` files: the real 16-bit ``scan41_short.cnt`` (128 ch, 400 Hz, 7.67 s)
    with SEED labels. Read with ``data_format="int16"``. Also writes ``trials.csv``, a trial table that fits
    the 7.67-s files (spec §2.7's table needs 3,806 s)."""
    out = []
    for subj, date in sessions:
        p = patch_cnt_labels(
            SAMPLES / "neuroscan-cnt" / "scan41_short.cnt",
            Path(root) / f"{subj}_{date}.cnt",
            seed_cnt_labels(),
        )
        out.append(FixtureFile(p, None, subj))
    (Path(root) / "trials.csv").write_text("start_s,end_s,emotion\n0.5,4.6,H\n4.6,7.6,N\n")
    return out


# ============================================================================================ Sleep-EDF


def build_sleep_edf(root: Path, eegmat_dir: Path) -> list[FixtureFile]:
    """``sleep-cassette/``: the real SC4001E0 PSG + SC4001EC hypnogram, and SC4002E0 built from EEGMAT at
    100 Hz (``EEG Fpz-Cz``/``EEG Pz-Oz`` + 1-Hz channels, 30-s records) with hypnogram rows from a later
    window of SC4001EC (FIXTURES.md §2.3)."""
    import edfio
    import mne
    import pyedflib

    d = Path(root) / "sleep-cassette"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLES / "sleep-edf" / "SC4001E0-PSG.edf", d / "SC4001E0-PSG.edf")
    shutil.copy(SAMPLES / "sleep-edf" / "SC4001EC-Hypnogram.edf", d / "SC4001EC-Hypnogram.edf")
    r = pyedflib.EdfReader(str(Path(eegmat_dir) / "Subject09_1.edf"))
    try:
        lab = r.getSignalLabels()
        fp1, cz, pz, o1 = (r.readSignal(lab.index(f"EEG {c}")) for c in ("Fp1", "Cz", "Pz", "O1"))
    finally:
        r.close()
    sec = 180
    n = sec * 100

    def rs(v):
        return _resample(v, 500, 100)[:n]

    sig = [
        edfio.EdfSignal(rs(fp1 - cz), 100, label="EEG Fpz-Cz", physical_dimension="uV"),
        edfio.EdfSignal(rs(pz - o1), 100, label="EEG Pz-Oz", physical_dimension="uV"),
        edfio.EdfSignal(rs(fp1 - o1), 100, label="EOG horizontal", physical_dimension="uV"),
        edfio.EdfSignal(np.zeros(sec), 1, label="Resp oro-nasal", physical_range=(-1, 1)),
        edfio.EdfSignal(np.zeros(sec), 1, label="Event marker", physical_range=(-1, 1)),
    ]
    edfio.Edf(sig, data_record_duration=30).write(d / "SC4002E0-PSG.edf")
    h = mne.read_annotations(SAMPLES / "sleep-edf" / "SC4001EC-Hypnogram.edf")
    t0 = 31800.0  # a window of the real hypnogram with stages W, 3 and 2 in its first 180 s
    rows = [
        (max(o, t0) - t0, min(o + dd, t0 + 3600) - max(o, t0), t)
        for o, dd, t in zip(h.onset, h.duration, h.description, strict=True)
        if o < t0 + 3600 and o + dd > t0
    ]
    edfio.Edf([], annotations=[edfio.EdfAnnotation(o, dd, t) for o, dd, t in rows]).write(
        d / "SC4002EJ-Hypnogram.edf"
    )
    return [
        FixtureFile(d / "SC4001E0-PSG.edf", d / "SC4001EC-Hypnogram.edf", "SC400"),
        FixtureFile(d / "SC4002E0-PSG.edf", d / "SC4002EJ-Hypnogram.edf", "SC400"),
    ]


# ============================================================================================ EEGMMIDB / Siena


def build_eegmmidb(root: Path) -> list[FixtureFile]:
    """``files/S001/S001R04.edf``: the real BCI2000 EDF+ (64 ch, dotted labels, T0/T1/T2) resampled to 160 Hz
    (FIXTURES.md §2.6), and ``S002R01.edf`` from its second half."""
    import edfio
    import mne

    r = mne.io.read_raw_edf(
        SAMPLES / "eegmmidb" / "test_edf_overlapping_annotations.edf", preload=True, verbose="error"
    )
    x = _resample(r.get_data() * 1e6, r.info["sfreq"], 160)
    out = []
    for subj, run, a, b in (("S001", "R04", 0, 60), ("S002", "R01", 60, 120)):
        sig = [
            edfio.EdfSignal(x[k, a * 160 : b * 160], 160, label=c, physical_dimension="uV")
            for k, c in enumerate(r.ch_names)
        ]
        ann = [
            edfio.EdfAnnotation(float(o) - a, float(d), str(t))
            for o, d, t in zip(
                r.annotations.onset, r.annotations.duration, r.annotations.description, strict=True
            )
            if a <= o and o + d <= b
        ]
        p = Path(root) / "files" / subj / f"{subj}{run}.edf"
        p.parent.mkdir(parents=True, exist_ok=True)
        edfio.Edf(sig, annotations=ann).write(p)
        out.append(FixtureFile(p, None, subj))
    return out


def build_siena(root: Path, eegmat_dir: Path) -> list[FixtureFile]:
    """``PN00/PN00-1.edf`` and ``PN01/PN01-1.edf``: 60 s of EEGMAT signals at 512 Hz with Siena labels
    (``EEG Fp1``, ``EKG EKG``), plus each patient's ``Seizures-list-PNxx.txt``."""
    import edfio
    import pyedflib

    out = []
    for subj, src in (("PN00", "Subject15_1.edf"), ("PN01", "Subject16_1.edf")):
        r = pyedflib.EdfReader(str(Path(eegmat_dir) / src))
        try:
            lab = r.getSignalLabels()
            sig = [
                edfio.EdfSignal(
                    _resample(r.readSignal(k)[:30000], 500, 512),
                    512,
                    label=("EKG EKG" if lab[k] == "ECG ECG" else lab[k]),
                    physical_dimension="uV",
                )
                for k in range(len(lab))
                if lab[k] != "EEG A2-A1"
            ]
        finally:
            r.close()
        p = Path(root) / subj / f"{subj}-1.edf"
        p.parent.mkdir(parents=True, exist_ok=True)
        edfio.Edf(sig).write(p)
        (p.parent / f"Seizures-list-{subj}.txt").write_text(
            f"Seizures list of patient {subj}\n\nSeizure n 1\nFile name: {subj}-1.edf\n"
        )
        out.append(FixtureFile(p, None, subj))
    return out


def build_seed_family(root: Path) -> list[FixtureFile]:
    """SEED-IV style ``eeg_raw_data/<session>/<subj>_<date>.mat`` (``cz_eeg1..3``, 20-s trials of the EEGLAB
    signal at 200 Hz) for subjects 1 and 2, and a SEED-V style ``EEG_raw/3_1_20180804.cnt`` (the real 16-bit
    CNT with SEED labels)."""
    out = []
    for subj, sess, date, off in (("1", "1", "20160518", 0.0), ("2", "2", "20161125", 70.0)):
        p = write_seed_mat(
            Path(root) / "eeg_raw_data" / sess / f"{subj}_{date}.mat", "cz", off, [20.0, 20.0, 20.0]
        )
        out.append(FixtureFile(p, None, subj))
    p = patch_cnt_labels(
        SAMPLES / "neuroscan-cnt" / "scan41_short.cnt",
        Path(root) / "EEG_raw" / "3_1_20180804.cnt",
        seed_cnt_labels(),
    )
    out.append(FixtureFile(p, None, "3"))
    return out


# ============================================================================================ pipeline helpers


def ingest_split_shard(
    source: str,
    root: Path,
    out: Path,
    task: str,
    protocol: str | Path | None = None,
    options: dict | None = None,
):
    """``run_ingest`` (1 worker) + ``run_split`` + ``run_shard``; returns ``(ledger, recordings, windows)`` as
    polars DataFrames. ``protocol`` None = the task's default protocol."""
    import polars as pl

    from neurolm_data.ingest import run_ingest
    from neurolm_data.shard import run_shard
    from neurolm_data.split import run_split
    from neurolm_data.tasks import get_task

    run_ingest(source, root, out, workers=1, source_options=options or {})
    run_split(out, protocol or get_task(task).default_protocol)
    run_shard(out, task)
    return (
        pl.read_parquet(out / "ledger.parquet"),
        pl.read_parquet(out / "recordings.parquet"),
        pl.read_parquet(out / "shards" / task / "windows.parquet"),
    )


def read_samples(out: Path, task: str) -> dict[str, tuple[np.ndarray, dict]]:
    """Every sample of ``OUT/shards/TASK/*/*.tar``: key -> (eeg array, meta dict), read with ``tarfile`` and
    ``np.load(..., allow_pickle=False)``."""
    import io
    import json
    import tarfile

    samples: dict[str, dict] = {}
    for tar in sorted((Path(out) / "shards" / task).glob("*/*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                key, _, ext = m.name.partition(".")
                data = t.extractfile(m).read()
                d = samples.setdefault(key, {})
                d[ext] = (
                    np.load(io.BytesIO(data), allow_pickle=False) if ext.endswith("npy") else json.loads(data)
                )
    return {k: (v["eeg.npy"], v["meta.json"]) for k, v in samples.items()}
