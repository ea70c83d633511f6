"""Read EDF/EDF+/BDF files into a ``RawSignal`` (µV, one common sampling rate, channels mapped to the vocabulary).

pyedflib (EDFlib, C) is the reader: it decodes only the channels asked for and checks the header against the
file size, so a truncated or garbled file fails at open with a clear message. MNE is used only where pyedflib
cannot read a valid file: **EDF+D** (discontinuous; e.g. ``nihon-kohden/MB0400FU.EDF``, FIXTURES.md §1), which
pyedflib refuses. MNE concatenates the data records of an EDF+D file; the manifest says so
(``extra.reader.discontinuous``).

Channel policy (architecture.md, issue 2): keep every channel that ``map_channels`` maps to ``standard_1020``
(optionally only a source's fixed list); drop and list the rest: non-EEG channels, names outside the
vocabulary, channels whose sampling rate differs from the EEG majority rate (TUH's 1-Hz ``IBI``/``BURSTS``/
``SUPPR``, ``tuh-nedc/example.edf``) and channels whose physical unit is not a voltage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from neurolm_data.channels import ChannelMap, map_channels

if TYPE_CHECKING:
    from neurolm_data.sources.base import DigitalSamples, RawSignal

# ``neurolm_data.sources`` imports every source module and the sources import this module, so the
# ``sources.base`` names are imported inside the functions: either package can then be imported first.

#: EDF physical dimension (lower-case) -> factor to µV (EDF spec: the dimension field, e.g. ``uV``; EEGMAT's
#: ECG writes ``mV``). An empty field is read as µV, the unit every EEG EDF in ``eeg-samples`` uses.
UNIT_TO_UV: dict[str, float] = {
    "uv": 1.0,
    "µv": 1.0,
    "μv": 1.0,
    "microv": 1.0,
    "mv": 1e3,
    "v": 1e6,
    "nv": 1e-3,
    "": 1.0,
}

#: pyedflib ``filetype`` codes (EDFlib: EDFLIB_FILETYPE_EDF, _EDFPLUS, _BDF, _BDFPLUS).
_FILETYPES = {0: "EDF", 1: "EDF+", 2: "BDF", 3: "BDF+"}


def _majority_rate(rates: Sequence[float]) -> float:
    """Most common rate; ties go to the highest rate."""
    pool = Counter(rates)
    top = max(pool.values())
    return max(f for f, c in pool.items() if c == top)


def _select(
    path: Path, labels: list[str], rates: list[float], units: list[str], channels, merge_synonyms
) -> tuple[ChannelMap, list[int], list[float], float, list[tuple[str, str]]]:
    """Map labels, then keep mapped channels at the EEG majority rate with a voltage unit."""
    from neurolm_data.sources.base import RecordingError

    cmap = map_channels(
        labels, keep=list(channels) if channels is not None else None, merge_synonyms=merge_synonyms
    )
    if not cmap.picks:
        raise RecordingError(
            path,
            f"no usable EEG channel: none of {labels} maps to the standard_1020 "
            f"vocabulary{' list of this source' if channels is not None else ''}",
        )
    sfreq = _majority_rate([rates[p] for p in cmap.picks])
    rate_of = dict(zip(labels, rates, strict=True))
    # non-EEG channels at another rate (TUH's 1-Hz IBI/BURSTS/SUPPR): give both reasons
    dropped = [
        (
            lab,
            why
            if rate_of.get(lab, sfreq) == sfreq
            else f"{why}; sampling rate {rate_of[lab]:g} Hz differs from the EEG rate {sfreq:g} Hz",
        )
        for lab, why in cmap.dropped
    ]
    picks, scales = [], []
    for p in cmap.picks:
        unit = units[p].strip().lower()
        if rates[p] != sfreq:
            dropped.append(
                (labels[p], f"sampling rate {rates[p]:g} Hz differs from the EEG rate {sfreq:g} Hz")
            )
        elif unit not in UNIT_TO_UV:
            dropped.append((labels[p], f"physical unit {units[p]!r} is not a voltage"))
        else:
            picks.append(p)
            scales.append(UNIT_TO_UV[unit])
    if not picks:
        raise RecordingError(
            path,
            f"no usable EEG channel at the EEG rate {sfreq:g} Hz with a voltage unit (dropped: {dropped})",
        )
    return cmap, picks, scales, sfreq, dropped


def header_problem(path: Path) -> str | None:
    """What makes an EDF/BDF header non-compliant, said per signal, or None when none of these is found: a
    label with non-ASCII bytes (EDF allows printable US-ASCII only; latin-1 labels are common), a digital or
    physical minimum equal to its maximum (the samples cannot be scaled). Used to name the problem when EDFlib
    only says "not EDF(+) or BDF(+) compliant"."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
            ns = int(head[252:256].decode("ascii").strip())
            sig = f.read(ns * 256)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if ns <= 0 or len(sig) < ns * 256:
        return None

    def field(offset: int, width: int) -> list[bytes]:
        return [sig[offset * ns + i * width : offset * ns + (i + 1) * width] for i in range(ns)]

    labels = field(0, 16)
    for i, raw in enumerate(labels):
        if any(b < 32 or b > 126 for b in raw):
            return (
                f"signal {i + 1} label {raw.decode('latin-1').strip()!r} has non-ASCII bytes (EDF labels are "
                f"printable US-ASCII; this one reads as latin-1); rename the label in the header"
            )
    names = [lab.decode("latin-1").strip() for lab in labels]
    for what, off in (("physical", 104), ("digital", 120)):
        lo, hi = field(off, 8), field(off + 8, 8)
        for i in range(ns):
            try:
                a, b = float(lo[i].decode("ascii")), float(hi[i].decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                return (
                    f"signal {i + 1} {names[i]!r}: {what} minimum/maximum {lo[i]!r}/{hi[i]!r} is not a number"
                )
            if a == b and names[i] not in ("EDF Annotations", "BDF Annotations"):
                return (
                    f"signal {i + 1} {names[i]!r}: {what} minimum == maximum ({a:g}), so its samples cannot "
                    "be scaled to µV; fix the header or leave the file out"
                )
    return None


def _decode_records(path: Path, r, picks: list[int], scales: list[float], n: int) -> DigitalSamples | None:
    """Read the picked signals' integer samples straight from the data records with numpy (EDF int16 / BDF
    int24), with the calibration that decodes them to µV.

    EDFlib's ``readSignal`` walks the file once per channel and returns float64; this reads the data records
    in one call and keeps the integers (2 bytes per EDF sample instead of 8). The file was already validated by
    ``pyedflib.EdfReader`` (header, size). The physical value is EDFlib's ``bitvalue * (offset + digital)``
    with ``bitvalue = (pmax - pmin) / (dmax - dmin)`` and ``offset = pmax / bitvalue - dmax`` (EDF spec,
    EDFlib ``edflib.c``); ``gain = bitvalue * scale`` adds the unit's factor to µV. Returns None if the header
    does not list the same non-annotation signals as pyedflib (then the caller uses EDFlib), or if a
    calibration is not finite.
    """
    from neurolm_data.sources.base import DigitalSamples

    with open(path, "rb") as f:
        head = f.read(256)
        ns = int(head[252:256].decode("ascii").strip())
        sig = f.read(ns * 256)
        bdf = head[:1] == b"\xff"
        bps = 3 if bdf else 2

        def field(offset: int, width: int) -> list[str]:
            base = offset * ns
            return [
                sig[base + i * width : base + (i + 1) * width].decode("latin-1").strip() for i in range(ns)
            ]

        labels = field(0, 16)
        # label 16, transducer 80, dimension 8, physical min/max 8+8, digital min/max 8+8, prefilter 80 -> 216
        nsamp = [int(v) for v in field(216, 8)]
        signal_idx = [i for i, lab in enumerate(labels) if lab not in ("EDF Annotations", "BDF Annotations")]
        if len(signal_idx) != r.signals_in_file or ns == 0:
            return None
        gain = np.empty(len(picks))
        offset = np.empty(len(picks))
        for row, (p, scale) in enumerate(zip(picks, scales, strict=True)):
            pmin, pmax = r.getPhysicalMinimum(p), r.getPhysicalMaximum(p)
            dmin, dmax = r.getDigitalMinimum(p), r.getDigitalMaximum(p)
            if dmax == dmin or pmax == pmin:
                from neurolm_data.sources.base import RecordingError

                what = "digital" if dmax == dmin else "physical"
                raise RecordingError(
                    path,
                    f"signal {p + 1} {r.getLabel(p).strip()!r}: {what} minimum == maximum "
                    f"({dmin if what == 'digital' else pmin:g}), so its samples cannot be "
                    "scaled to µV; fix the header or leave the file out",
                )
            bitvalue = (pmax - pmin) / (dmax - dmin)
            offset[row] = pmax / bitvalue - dmax
            gain[row] = bitvalue * scale
        if not (np.isfinite(gain).all() and np.isfinite(offset).all()):
            return None
        n_rec = int(r.datarecords_in_file)
        # all data records in one read (the file position is at the end of the header), then a gather per channel
        raw = np.empty((n_rec, sum(nsamp) * bps), dtype=np.uint8)
        if f.readinto(memoryview(raw).cast("B")) != raw.nbytes:
            return None
    starts = np.concatenate([[0], np.cumsum(nsamp)])[:-1] * bps
    samples = np.empty((len(picks), n), dtype=np.int32 if bdf else np.int16)
    for row, p in enumerate(picks):
        h = signal_idx[p]
        block = raw[:, starts[h] : starts[h] + nsamp[h] * bps]
        if bdf:
            b = block.reshape(-1, 3)[:n].astype(np.int32)
            dig = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            samples[row] = np.where(dig >= 1 << 23, dig - (1 << 24), dig)
        elif n == n_rec * nsamp[h]:  # one copy, record by record, into the channel's row
            samples[row].reshape(n_rec, nsamp[h])[...] = block.view("<i2")
        else:
            samples[row] = block.view("<i2").reshape(-1)[:n]
    del raw
    return DigitalSamples(samples, gain, offset)


def read_edf(
    path: str | Path,
    *,
    channels: Sequence[str] | None = None,
    annotations: bool = False,
    merge_synonyms: bool = False,
) -> RawSignal:
    """Decode the EEG channels of an EDF/EDF+/BDF/BDF+ file to µV.

    Args:
        path: the file.
        channels: canonical ``standard_1020`` names to keep, in this order (e.g. the 19 Workload channels), or
            None to keep every channel that maps to the vocabulary (file order).
        annotations: also read EDF+/BDF+ annotations into ``events`` (``label`` -1: unlabelled text).
        merge_synonyms: map T3/T4/T5/T6 to T7/T8/P7/P8 (off: the official code keeps them apart, reference §9.25).

    Returns:
        ``RawSignal`` with ``data`` float64 (n_kept, n_samples) in µV, ``ch_names`` the raw labels of the kept
        channels, ``sfreq`` the EEG rate, ``dropped`` every other channel with its reason, ``meta`` with the
        reader and file type. When the data records were read as integers (the usual case), the signal holds
        them as ``digital`` (int16/int32 samples, per-channel gain and offset) and ``data`` is decoded from
        them on first access, with the same arithmetic as EDFlib.

    Raises:
        RecordingError: missing, empty, truncated or corrupt file; unreadable annotations (when asked for);
            no usable EEG channel; non-finite samples. The message names the file.
    """
    import pyedflib

    from neurolm_data.sources.base import Event, RawSignal, RecordingError

    path = Path(path)
    if not path.is_file():
        raise RecordingError(path, "signal file is missing")
    if path.stat().st_size < 256:
        raise RecordingError(
            path, f"not an EDF/BDF file: {path.stat().st_size} bytes, shorter than the 256-byte EDF header"
        )
    mode = pyedflib.READ_ALL_ANNOTATIONS if annotations else pyedflib.DO_NOT_READ_ANNOTATIONS
    try:
        r = pyedflib.EdfReader(str(path), mode)
    except OSError as e:
        msg = str(e).removeprefix(f"{path}: ")
        if "discontinuous" in msg:
            return _read_edf_mne(
                path, channels=channels, annotations=annotations, merge_synonyms=merge_synonyms
            )
        if annotations:
            try:
                pyedflib.EdfReader(str(path), pyedflib.DO_NOT_READ_ANNOTATIONS).close()
            except OSError:
                pass
            else:
                raise RecordingError(
                    path,
                    f"unreadable EDF+ annotations ({msg}); the signals are readable, "
                    "the annotation channel is not",
                ) from None
        if "Filesize" in msg:
            raise RecordingError(
                path, f"truncated EDF/BDF: the file size does not match its header ({msg})"
            ) from None
        problem = header_problem(path) if "compliant" in msg else None
        if problem:
            raise RecordingError(path, f"invalid EDF/BDF header: {problem}") from None
        raise RecordingError(path, f"corrupt EDF/BDF: {msg}") from None
    try:
        n_sig = r.signals_in_file
        labels = [lab.strip() for lab in r.getSignalLabels()]
        rates = [float(r.getSampleFrequency(i)) for i in range(n_sig)]
        units = [r.getPhysicalDimension(i) for i in range(n_sig)]
        _, picks, scales, sfreq, dropped = _select(path, labels, rates, units, channels, merge_synonyms)
        n_samples = r.getNSamples()
        n = min(int(n_samples[p]) for p in picks)
        data, digital = None, _decode_records(path, r, picks, scales, n)
        if digital is None:  # header layout not understood by the fast path: EDFlib per channel
            data = np.empty((len(picks), n), dtype=np.float64)
            for row, (p, scale) in enumerate(zip(picks, scales, strict=True)):
                data[row] = r.readSignal(p, 0, n)
                if scale != 1.0:
                    data[row] *= scale
        events = []
        if annotations:
            on, du, tx = r.readAnnotations()
            events = [
                Event(float(o), float(d) if d > 0 else 0.0, -1, str(t))
                for o, d, t in zip(on, du, tx, strict=True)
            ]
        meta = {"reader": "pyedflib", "file_type": _FILETYPES.get(r.filetype, str(r.filetype))}
    except RecordingError:
        raise
    except Exception as e:  # noqa: BLE001 - EDFlib reports corrupt data records as plain exceptions
        raise RecordingError(path, f"cannot decode EDF signals: {type(e).__name__}: {e}") from None
    finally:
        r.close()
    if data is not None and not np.isfinite(data).all():  # integer samples with a finite calibration are
        raise RecordingError(path, "EDF decodes to non-finite samples")  # finite by construction
    return RawSignal(
        data=data,
        digital=digital,
        ch_names=[labels[p] for p in picks],
        sfreq=sfreq,
        events=events,
        dropped=dropped,
        meta=meta,
    )


def _read_edf_mne(path: Path, *, channels, annotations: bool, merge_synonyms: bool) -> RawSignal:
    """EDF+D / BDF+D through MNE (pyedflib refuses discontinuous files). MNE concatenates the data records."""
    import mne

    from neurolm_data.sources.base import Event, RawSignal, RecordingError

    try:
        raw = mne.io.read_raw_edf(path, preload=False, verbose="error")
    except Exception as e:  # noqa: BLE001 - MNE raises ValueError/RuntimeError/... for bad headers
        raise RecordingError(path, f"corrupt EDF+D: {type(e).__name__}: {e}") from None
    labels = list(raw.ch_names)
    # MNE resamples mixed-rate files to the highest rate on read; the per-channel rate is in its header
    # extras, which are private, so an EDF+D is treated as single-rate at raw.info["sfreq"].
    rates = [float(raw.info["sfreq"])] * len(labels)
    units = ["uV"] * len(labels)  # get_data(units="uV") below converts from the header's dimension
    _, picks, _, sfreq, dropped = _select(path, labels, rates, units, channels, merge_synonyms)
    try:
        data = raw.get_data(picks=picks, units="uV")
    except Exception as e:  # noqa: BLE001
        raise RecordingError(path, f"cannot decode EDF+D signals: {type(e).__name__}: {e}") from None
    events = []
    if annotations:
        events = [
            Event(float(a["onset"]), float(a["duration"]), -1, str(a["description"])) for a in raw.annotations
        ]
    if not np.isfinite(data).all():
        raise RecordingError(path, "EDF decodes to non-finite samples")
    meta = {
        "reader": "mne",
        "file_type": "EDF+D",
        "discontinuous": True,
        "note": "data records concatenated (MNE read_raw_edf)",
    }
    return RawSignal(
        data=np.ascontiguousarray(data, dtype=np.float64),
        ch_names=[labels[p] for p in picks],
        sfreq=sfreq,
        events=events,
        dropped=dropped,
        meta=meta,
    )
