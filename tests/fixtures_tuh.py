"""Build TUH-family EDF fixtures from real EEG: real signal, synthetic container.

Recipe: ``../shared/eeg-samples/FIXTURES.md`` §2.1. A segment of a real EEGMAT recording (500 Hz, 10-20 EEG,
µV) is resampled to a TUH rate (250, 256, 400 or 512 Hz occur in TUH), relabelled the TUH way
(``EEG FP1-REF`` for ``01_tcp_ar``/``03_tcp_ar_a``, ``EEG FP1-LE`` for ``02_tcp_le``), given DC offsets of a
few mV (TUH signals carry ~4.5 mV, see ``tuh-nedc/example.edf``), written as a **plain EDF** (reserved field
``EDF``) with pyedflib, and then the patient / recording header fields are patched in place with TUH's
free-text convention (``aaaaaaaa M 01-JAN-1952 aaaaaaaa Age:60``). Optional extras mirror real TUH files:
``EEG EKG1-REF``, ``PHOTIC-REF`` and the 1-Hz ``IBI``/``BURSTS``/``SUPPR`` channels (mixed sampling rates),
and ``EEG 26-REF``-style leftovers.

Used by the ingest tests (``tueg`` source) and by the corpus tests (TUAB/TUEV/TUSL layouts): import
``write_tuh_edf`` for one file and ``build_tueg_tree`` for a TUEG v2 tree. Everything is written under the
caller's folder (pytest ``tmp_path``); nothing generated here is ever committed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyedflib
from scipy.signal import resample_poly

#: The 19 EEGMAT electrodes (PhysioNet EEGMAT 1.0.0 headers write them ``EEG Fp1`` ... ``EEG Pz``).
EEGMAT_ELECTRODES: tuple[str, ...] = (
    "Fp1",
    "Fp2",
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
    "Fz",
    "Cz",
    "Pz",
)

#: TUH electrodes absent from EEGMAT, synthesized as the mean of two real neighbours so that the 23-channel
#: TUAB/TUEV/TUSL set (neurolm-spec.md §2.2) can be written from real signal.
DERIVED_ELECTRODES: dict[str, tuple[str, str]] = {
    "A1": ("T3", "T5"),
    "A2": ("T4", "T6"),
    "T1": ("F7", "T3"),
    "T2": ("F8", "T4"),
}

#: The 23 monopolar channels of the TUAB/TUEV/TUSL makers, in their order (neurolm-spec.md §2.2).
TUAB_ELECTRODES: tuple[str, ...] = (
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

#: The 19 real EEGMAT electrodes in TUH file order (``tuh-nedc/example.edf``): the default channel set.
TUH_19_ELECTRODES: tuple[str, ...] = tuple(e for e in TUAB_ELECTRODES if e not in DERIVED_ELECTRODES)

#: Montage folder of each TUH montage (TUEG v2 layout) and the reference suffix its labels carry.
MONTAGE_FOLDERS: dict[str, str] = {"REF": "01_tcp_ar", "LE": "02_tcp_le", "AR_A": "03_tcp_ar_a"}
_SUFFIX = {"REF": "REF", "LE": "LE", "AR_A": "REF"}

#: TUH's physical range (±4999.84 µV over ±32767, from ``tuh-nedc/example.edf``).
TUH_PHYS_MIN, TUH_PHYS_MAX = -4999.84, 4999.847

#: Default signal source; ``NEUROLM_SHARED`` overrides the ``../shared`` location as in ``conftest.py``.
_SHARED = Path(os.environ.get("NEUROLM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
_EEGMAT_DEFAULT = _SHARED / "eeg-samples" / "eegmat" / "Subject00_1.edf"


@dataclass(frozen=True)
class TuhFile:
    """What ``write_tuh_edf`` wrote.

    Attributes:
        path: the EDF file.
        labels: channel labels in file order (EEG first, then extras).
        eeg_names: canonical upper-case electrode names of the EEG channels, in file order (``FP1`` ...).
        sfreq: sampling rate of the EEG channels (Hz).
        n_samples: samples per EEG channel.
        montage: ``REF``, ``LE`` or ``AR_A``.
        odd_rate_channels: labels of the 1-Hz channels (a reader must drop these).
        subject, session, token: identifiers as written in the header / path.
    """

    path: Path
    labels: list[str]
    eeg_names: list[str]
    sfreq: int
    n_samples: int
    montage: str
    odd_rate_channels: list[str] = field(default_factory=list)
    subject: str = "aaaaaaaa"
    session: str = "s001"
    token: str = "t000"


def _read_eegmat(source_edf: Path, start_s: float, seconds: float) -> tuple[dict[str, np.ndarray], float]:
    """Real µV signals (float64) of the 19 EEGMAT electrodes, ``[start_s, start_s + seconds)``, and the rate."""
    r = pyedflib.EdfReader(str(source_edf))
    try:
        labels = r.getSignalLabels()
        fs = float(r.getSampleFrequency(labels.index("EEG Fp1")))
        start, n = int(round(start_s * fs)), int(round(seconds * fs))
        if start + n > r.getNSamples()[0]:
            raise ValueError(
                f"{source_edf}: only {r.getNSamples()[0] / fs:.1f} s, asked for {start_s + seconds} s"
            )
        out = {e.upper(): r.readSignal(labels.index(f"EEG {e}"), start, n) for e in EEGMAT_ELECTRODES}
    finally:
        r.close()
    return out, fs


def _resample(x: np.ndarray, fs_in: float, fs_out: int) -> np.ndarray:
    frac = Fraction(fs_out) / Fraction(fs_in).limit_denominator(1000)
    return resample_poly(x, frac.numerator, frac.denominator)


def write_tuh_edf(
    path: str | Path,
    *,
    montage: str = "REF",
    sfreq: int = 250,
    seconds: float = 60.0,
    source_edf: str | Path | None = None,
    start_s: float = 0.0,
    electrodes: Sequence[str] | None = None,
    extras: bool = True,
    leftovers: bool = False,
    dc_offset_uv: float = 4500.0,
    subject: str = "aaaaaaaa",
    session: str = "s001",
    token: str = "t000",
    age: int = 60,
    sex: str = "M",
) -> TuhFile:
    """Write one TUH-style plain EDF built from a real EEGMAT recording.

    Args:
        path: output file (parents are created).
        montage: ``REF`` (``EEG FP1-REF``, folder ``01_tcp_ar``), ``LE`` (``EEG FP1-LE``, ``02_tcp_le``) or
            ``AR_A`` (``-REF`` labels without A1/A2, ``03_tcp_ar_a``).
        sfreq: EEG sampling rate in Hz (TUH uses 250, 256, 400, 512).
        seconds: duration; must be a whole number of 1-s data records.
        source_edf: real EEGMAT file to take the signal from (default ``eegmat/Subject00_1.edf``).
        start_s: offset into the source recording, in s.
        electrodes: upper-case electrode names to write, in order (default: the 19 EEGMAT electrodes in TUH
            order; ``TUAB_ELECTRODES`` gives the 23-channel TUAB set, with A1/A2/T1/T2 derived from real
            neighbours, see ``DERIVED_ELECTRODES``).
        extras: add ``EEG EKG1-<suffix>`` and ``PHOTIC-REF`` at ``sfreq`` and 1-Hz ``IBI``/``BURSTS``/``SUPPR``.
        leftovers: add an ``EEG 26-<suffix>`` channel (not in the vocabulary).
        dc_offset_uv: magnitude of the per-channel DC offset in µV (alternating sign, 60-100 % of it).
        subject, session, token: written into the header (and returned); the caller chooses the path.
        age, sex: written into the patient field as TUH does (``... Age:60``).

    Returns:
        A ``TuhFile`` describing the file.

    Raises:
        ValueError: unknown montage, non-integer ``seconds``, or a source too short for the segment.
    """
    if montage not in _SUFFIX:
        raise ValueError(f"montage must be one of {sorted(_SUFFIX)}, got {montage!r}")
    if abs(seconds - round(seconds)) > 1e-9:
        raise ValueError("seconds must be whole (1-s EDF data records)")
    seconds = int(round(seconds))
    suffix = _SUFFIX[montage]
    electrodes = [e.upper() for e in (TUH_19_ELECTRODES if electrodes is None else electrodes)]
    if montage == "AR_A":
        electrodes = [e for e in electrodes if e not in {"A1", "A2"}]
    real, fs_in = _read_eegmat(Path(source_edf or _EEGMAT_DEFAULT), start_s, seconds)
    sig: dict[str, np.ndarray] = {}
    for e in electrodes:
        if e in real:
            sig[e] = real[e]
        elif e in DERIVED_ELECTRODES:
            a, b = DERIVED_ELECTRODES[e]
            sig[e] = 0.5 * (real[a] + real[b])
        else:
            raise ValueError(
                f"electrode {e!r} is neither in EEGMAT nor derivable ({sorted(DERIVED_ELECTRODES)})"
            )
    n = seconds * sfreq
    labels: list[str] = []
    data: list[np.ndarray] = []
    freqs: list[int] = []
    for k, e in enumerate(electrodes):
        x = _resample(sig[e], fs_in, sfreq)[:n]
        offset = dc_offset_uv * (1.0 if k % 2 == 0 else -1.0) * (0.6 + 0.4 * ((k * 7) % 11) / 10)
        labels.append(f"EEG {e}-{suffix}")
        data.append(np.clip(x + offset, TUH_PHYS_MIN, TUH_PHYS_MAX))
        freqs.append(sfreq)
    odd: list[str] = []
    if leftovers:
        labels.append(f"EEG 26-{suffix}")
        data.append(np.clip(_resample(real["CZ"] - real["PZ"], fs_in, sfreq)[:n], TUH_PHYS_MIN, TUH_PHYS_MAX))
        freqs.append(sfreq)
    if extras:
        ekg = _resample(real["T3"] - real["T4"], fs_in, sfreq)[:n] * 5.0
        labels += [f"EEG EKG1-{suffix}", "PHOTIC-REF"]
        data += [np.clip(ekg, TUH_PHYS_MIN, TUH_PHYS_MAX), np.zeros(n)]
        freqs += [sfreq, sfreq]
        for name in ("IBI", "BURSTS", "SUPPR"):
            labels.append(name)
            data.append(np.zeros(seconds))
            freqs.append(1)
            odd.append(name)
    headers = [
        dict(
            label=lab,
            dimension="uV",
            sample_frequency=f,
            physical_min=TUH_PHYS_MIN,
            physical_max=TUH_PHYS_MAX,
            digital_min=-32767,
            digital_max=32767,
            transducer="",
            prefilter="HP:0.000 Hz LP:0.0 Hz N:0.0",
        )
        for lab, f in zip(labels, freqs, strict=True)
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = pyedflib.EdfWriter(str(path), len(labels), file_type=pyedflib.FILETYPE_EDF)
    try:
        w.setSignalHeaders(headers)
        w.writeSamples(data)
    finally:
        w.close()
    b = bytearray(path.read_bytes())
    b[8:88] = f"{subject} {sex} 01-JAN-1952 {subject} Age:{age}".ljust(80).encode("ascii")
    b[88:168] = f"Startdate 30-APR-2012 {subject}_{session} 00 X".ljust(80).encode("ascii")
    b[192:236] = b"EDF".ljust(44)  # TUH writes the literal "EDF" in the reserved field (FIXTURES.md §1)
    path.write_bytes(bytes(b))
    return TuhFile(
        path=path,
        labels=labels,
        eeg_names=list(electrodes),
        sfreq=sfreq,
        n_samples=n,
        montage=montage,
        odd_rate_channels=odd,
        subject=subject,
        session=session,
        token=token,
    )


@dataclass(frozen=True)
class TuhSpec:
    """One file of a TUEG tree: ``edf/<group>/<subject>/<session>/<montage folder>/<subject>_<s>_<token>.edf``.

    ``session`` is the TUEG v2 session folder (``s001_2015``); the file name uses its first part (``s001``).
    ``source`` is an EEGMAT file name (``Subject00_1.edf``) inside the ``eegmat_dir`` given to the builder.
    """

    group: str
    subject: str
    session: str
    token: str
    montage: str = "REF"
    sfreq: int = 250
    seconds: float = 60.0
    source: str = "Subject00_1.edf"
    start_s: float = 0.0
    leftovers: bool = False


#: Default TUEG tree: REF and LE montages, the AR_A folder, 250 and 256 Hz, two groups, a leftover channel.
#: Every file lasts >= 60 s so that it holds at least one ``pretrain`` window (floor(1024 / 19) = 53 s,
#: neurolm-spec.md §2.1).
DEFAULT_TUEG_SPECS: tuple[TuhSpec, ...] = (
    TuhSpec("000", "aaaaaaaa", "s001_2015", "t000", "REF", 250, 60, "Subject00_1.edf", 0.0),
    TuhSpec("000", "aaaaaaaa", "s001_2015", "t001", "REF", 256, 60, "Subject00_2.edf", 1.0),
    TuhSpec("000", "aaaaaaab", "s002_2016", "t000", "LE", 250, 90, "Subject01_1.edf", 30.0),
    TuhSpec("001", "aaaaaabc", "s001_2013", "t000", "LE", 256, 60, "Subject02_2.edf", 2.0, True),
    TuhSpec("001", "aaaaaabd", "s003_2014", "t002", "AR_A", 250, 60, "Subject03_1.edf", 60.0),
)


def tueg_path(root: str | Path, spec: TuhSpec) -> Path:
    """Where ``spec`` lives in a TUEG v2 tree rooted at ``root`` (the folder that holds ``edf/``)."""
    short = spec.session.split("_")[0]
    return (
        Path(root)
        / "edf"
        / spec.group
        / spec.subject
        / spec.session
        / MONTAGE_FOLDERS[spec.montage]
        / f"{spec.subject}_{short}_{spec.token}.edf"
    )


def build_tueg_tree(
    root: str | Path,
    eegmat_dir: str | Path,
    specs: Sequence[TuhSpec] = DEFAULT_TUEG_SPECS,
) -> list[TuhFile]:
    """Write a TUEG v2 tree under ``root`` (``root/edf/000/aaaaaaaa/s001_2015/01_tcp_ar/...edf``).

    Args:
        root: corpus root; ``edf/`` is created inside it.
        eegmat_dir: folder of the real EEGMAT release (the ``eegmat_dir`` test fixture).
        specs: the files to write (default ``DEFAULT_TUEG_SPECS``).

    Returns:
        One ``TuhFile`` per spec, sorted by path.
    """
    out = []
    for s in specs:
        out.append(
            write_tuh_edf(
                tueg_path(root, s),
                montage=s.montage,
                sfreq=s.sfreq,
                seconds=s.seconds,
                source_edf=Path(eegmat_dir) / s.source,
                start_s=s.start_s,
                leftovers=s.leftovers,
                subject=s.subject,
                session=s.session.split("_")[0],
                token=s.token,
            )
        )
    return sorted(out, key=lambda f: str(f.path))
