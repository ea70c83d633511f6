"""Preprocessing to the NeuroLM convention: band-pass 0.1-75 Hz, notch at mains, resample to 200 Hz, float32 µV.

The convention and its order (band-pass, then notch, then resample) are those of every official NeuroLM dataset
maker (``neurolm-spec.md`` §1.1). Two engines implement it:

* ``mne``: the official makers' calls, verbatim: ``raw.filter(l_freq, h_freq)`` (MNE default FIR: firwin design,
  Hamming window, zero phase, automatic transition bands and length), ``raw.notch_filter(mains)``,
  ``raw.resample(sfreq)`` (FFT method).
* ``fast``: the same MNE FIR kernels (designed with ``mne.filter.create_filter`` using exactly the parameters the
  two calls above use), applied as **one** zero-phase frequency-domain product of the band-pass and notch
  responses on an edge-padded signal (MNE's ``reflect_limited`` padding), instead of two long overlap-add
  passes; then FFT resampling on MNE's own output grid. MNE pads to a power of two and resamples that padded
  length to ``round(ratio * padded)`` samples, which shifts its output grid by a growing sub-sample amount (up
  to ~0.2 samples over a minute at 500 -> 200 Hz); any exact resampler therefore differs from the official
  output by ~10 % in-band, so the plan is reproduced here. All FFTs run in float32 after removing each channel's
  mean in float64 (recordings longer than the filter padding) (the band-pass gain at 0 Hz is ~0, so the mean never reaches the output; TUH signals carry
  DC offsets of ~4.5 mV, ``FIXTURES.md`` §1). Filtering and resampling share one spectrum: one forward and
  one inverse real FFT per channel (see ``_preprocess_fast``).

``tests/test_preprocess.py`` checks on real EEGMAT recordings that ``fast`` matches ``mne`` within the issue's
bound (per channel correlation >= 0.999 and RMS error <= 1 % of the reference RMS, 2 s ignored at each edge),
which is what allows ``fast`` to be the default.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import fft as sfft

from neurolm_data.sources.base import RecordingError

#: Engines accepted by ``PreprocessConfig.engine``.
ENGINES: tuple[str, ...] = ("fast", "mne")

#: Samples per FFT batch in the fast engine (channels x FFT length): ~32 MiB of float32 per batch, so the
#: memory per worker does not grow with the channel count.
_CHUNK_SAMPLES = 1 << 23

#: MNE ``notch_filter`` defaults (``mne.filter.notch_filter``): notch width = freq / 200, transition 1 Hz.
_NOTCH_WIDTH_DIVISOR = 200.0
_NOTCH_TRANS_BANDWIDTH = 1.0


@dataclass(frozen=True)
class PreprocessConfig:
    """Typed preprocessing configuration (saved with every ingest output, hashed into ``config_hash``).

    Attributes:
        l_freq: high-pass edge in Hz (0.1, neurolm-spec.md §1.1).
        h_freq: low-pass edge in Hz (75, neurolm-spec.md §1.1).
        notch_hz: notch frequency in Hz; None means "the source's mains frequency" and is resolved by
            ``resolved(mains_hz)`` before hashing (50 Hz EEGMAT, 60 Hz TUH; neurolm-spec.md §1.1 table).
            0 disables the notch.
        sfreq: output sampling rate in Hz (200, neurolm-spec.md §1.1: 1-s patches of 200 samples).
        engine: ``fast`` (default, numpy/scipy) or ``mne`` (the official makers' MNE calls).
        dtype: stored sample type; always ``float32`` µV (architecture.md, ``OUT/recordings/``).
    """

    l_freq: float = 0.1
    h_freq: float = 75.0
    notch_hz: float | None = None
    sfreq: float = 200.0
    engine: str = "fast"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.dtype != "float32":
            raise ValueError(f"dtype must be 'float32' (the store contract), got {self.dtype!r}")
        if not (0 < self.l_freq < self.h_freq):
            raise ValueError(f"need 0 < l_freq < h_freq, got {self.l_freq}, {self.h_freq}")
        if self.h_freq >= self.sfreq / 2:
            raise ValueError(f"h_freq {self.h_freq} Hz must be below the output Nyquist {self.sfreq / 2} Hz")
        if self.notch_hz is not None and self.notch_hz < 0:
            raise ValueError(f"notch_hz must be >= 0 or None, got {self.notch_hz}")

    def resolved(self, mains_hz: float) -> PreprocessConfig:
        """This config with ``notch_hz`` set to ``mains_hz`` if it was None (the source's mains frequency)."""
        return self if self.notch_hz is not None else replace(self, notch_hz=float(mains_hz))

    def to_dict(self) -> dict:
        """JSON-ready dict of the fields."""
        return asdict(self)

    @property
    def hash(self) -> str:
        """Stable 16-hex-digit sha256 of the canonical JSON of the fields (sorted keys, floats as written)."""
        return config_hash(self.to_dict())


def config_hash(obj: dict) -> str:
    """16 hex digits of sha256 over ``json.dumps(obj, sort_keys=True, separators=(",", ":"))``."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def check_min_duration(n_samples: int, sfreq: float, min_duration_s: float, path: str | Path) -> None:
    """Raise ``RecordingError`` naming ``path`` if ``n_samples / sfreq < min_duration_s`` (one task window)."""
    duration = n_samples / sfreq
    if duration + 1e-9 < min_duration_s:
        raise RecordingError(
            path, f"recording is {duration:.3f} s long, shorter than one window ({min_duration_s:g} s)"
        )


def output_length(n_samples: int, sfreq_in: float, sfreq_out: float) -> int:
    """Samples after resampling, as MNE computes it: ``round(n_samples * sfreq_out / sfreq_in)``."""
    return max(int(round(n_samples * float(sfreq_out) / float(sfreq_in))), 1)


def preprocess(data: np.ndarray, sfreq: float, config: PreprocessConfig) -> np.ndarray:
    """Band-pass, notch and resample one recording.

    Args:
        data: (n_channels, n_samples) array in µV at ``sfreq`` (float64 or float32).
        sfreq: input sampling rate in Hz (any rate above ``2 * h_freq``: 200, 250, 256, 500, 512 ...).
        config: a ``PreprocessConfig`` with ``notch_hz`` resolved (not None).

    Returns:
        float32 array (n_channels, ``output_length(n_samples, sfreq, config.sfreq)``) in µV at ``config.sfreq``.

    Raises:
        ValueError: ``notch_hz`` unresolved, ``sfreq`` too low for the low-pass or the notch, or ``data`` not 2-D.
    """
    if config.notch_hz is None:
        raise ValueError("config.notch_hz is None: call config.resolved(source.mains_hz) first")
    data = np.asarray(data)
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(f"data must be (n_channels, n_samples >= 2), got shape {data.shape}")
    sfreq = float(sfreq)
    if config.h_freq >= sfreq / 2:
        raise ValueError(f"sampling rate {sfreq:g} Hz is too low for a {config.h_freq:g} Hz low-pass")
    if config.notch_hz and config.notch_hz + config.notch_hz / _NOTCH_WIDTH_DIVISOR + 1 >= sfreq / 2:
        raise ValueError(f"sampling rate {sfreq:g} Hz is too low for a {config.notch_hz:g} Hz notch")
    if config.engine == "mne":
        return _preprocess_mne(data, sfreq, config)
    return _preprocess_fast(data, sfreq, config)


# ------------------------------------------------------------------------------------------------ engine: mne


def _preprocess_mne(data: np.ndarray, sfreq: float, config: PreprocessConfig) -> np.ndarray:
    """The official makers' calls (neurolm-spec.md §1.1) on an MNE RawArray (data in V inside MNE)."""
    import mne

    info = mne.create_info([f"ch{i:03d}" for i in range(data.shape[0])], sfreq, "eeg", verbose="error")
    raw = mne.io.RawArray(np.asarray(data, dtype=np.float64) * 1e-6, info, verbose="error")
    raw.filter(l_freq=config.l_freq, h_freq=config.h_freq, verbose="error")
    if config.notch_hz:
        raw.notch_filter(config.notch_hz, verbose="error")
    raw.resample(config.sfreq, verbose="error")
    return raw.get_data(units="uV").astype(np.float32)


# ----------------------------------------------------------------------------------------------- engine: fast


@lru_cache(maxsize=32)
def fir_kernels(sfreq: float, l_freq: float, h_freq: float, notch_hz: float) -> tuple[np.ndarray, ...]:
    """MNE's FIR kernels for ``raw.filter(l_freq, h_freq)`` and ``raw.notch_filter(notch_hz)`` at ``sfreq``.

    Designed with ``mne.filter.create_filter`` and the parameters those two calls pass (firwin, Hamming,
    zero phase, ``"auto"`` transition bands and length; the notch is MNE's band-stop from
    ``freq -/+ width/2 -/+ trans/2`` with width = freq/200 and trans = 1 Hz). Returns one or two odd-length
    symmetric float64 kernels (band-pass first; no notch kernel when ``notch_hz`` is 0).
    """
    from mne.filter import create_filter

    kernels = [create_filter(None, sfreq, l_freq, h_freq, fir_design="firwin", verbose="error")]
    if notch_hz:
        width, tb_2 = notch_hz / _NOTCH_WIDTH_DIVISOR, _NOTCH_TRANS_BANDWIDTH / 2.0
        lows, highs = notch_hz - width / 2.0 - tb_2, notch_hz + width / 2.0 + tb_2
        # mne.filter.notch_filter calls filter_data(x, Fs, highs, lows, ..., tb_2, tb_2): l_freq > h_freq is
        # MNE's band-stop.
        kernels.append(create_filter(
            None, sfreq, l_freq=highs, h_freq=lows, l_trans_bandwidth=tb_2, h_trans_bandwidth=tb_2,
            fir_design="firwin", verbose="error",
        ))
    for k in kernels:
        k.setflags(write=False)
    return tuple(kernels)


@lru_cache(maxsize=16)
def _combined_response(sfreq: float, l_freq: float, h_freq: float, notch_hz: float, n_fft: int) -> np.ndarray:
    """Real zero-phase frequency response (length ``n_fft // 2 + 1``) of band-pass x notch, float32."""
    resp = np.ones(n_fft // 2 + 1)
    for h in fir_kernels(sfreq, l_freq, h_freq, notch_hz):
        half = (len(h) - 1) // 2
        buf = np.zeros(n_fft)
        buf[: half + 1] = h[half:]           # causal half at t >= 0
        buf[n_fft - half:] = h[:half]        # anti-causal half wraps to the end: zero phase
        resp *= sfft.rfft(buf).real          # symmetric kernel: imaginary part is round-off
    out = resp.astype(np.float32)
    out.setflags(write=False)
    return out


def _mne_resample_plan(n: int, sfreq_in: float, sfreq_out: float) -> tuple[int, int, int, int, int, int]:
    """MNE's FFT-resampling plan (``mne.filter._resample_fft`` with ``npad="auto"``, boxcar window).

    MNE pads to a power of two and resamples that padded length to ``round(ratio * padded_len)`` samples, so
    the output grid is spaced ``padded_len / new_len`` input samples, not exactly ``sfreq_in / sfreq_out``
    (a sub-sample time warp that grows along the recording). Reproducing the plan is what makes ``fast``
    match the official makers' output in-band. Returns ``(pad_left, pad_right, padded_len, new_len,
    remove_left, final_len)``.
    """
    ratio = float(sfreq_out) / float(sfreq_in)
    final_len = output_length(n, sfreq_in, sfreq_out)
    min_add = min(n // 8, 100) * 2
    npad = 2 ** int(np.ceil(np.log2(n + min_add))) - n
    left, extra = divmod(npad, 2)
    right = left + extra
    padded = n + left + right
    new_len = max(int(round(ratio * padded)), 1)
    remove_left = int(round(ratio * left))
    return left, right, padded, new_len, remove_left, final_len


def _reflect_into(buf: np.ndarray, left: int, n: int) -> None:
    """Pad in place around the data ``buf[:, left:left + n]`` with MNE's ``reflect_limited`` rule
    (``mne.cuda._smart_pad``): odd reflection ``2 x[0] - x[k]`` up to ``n - 1`` samples, zeros beyond."""
    right = buf.shape[1] - left - n
    lr, rr = min(left, n - 1), min(right, n - 1)
    buf[:, : left - lr] = 0
    if lr:
        buf[:, left - lr:left] = 2 * buf[:, left:left + 1] - buf[:, left + lr:left:-1]
    end = left + n
    if rr:
        buf[:, end:end + rr] = 2 * buf[:, end - 1:end] - buf[:, end - 2:end - rr - 2 if end - rr - 2 >= 0 else None:-1]
    buf[:, end + rr:] = 0


def _preprocess_fast(data: np.ndarray, sfreq: float, config: PreprocessConfig) -> np.ndarray:
    """Band-pass x notch and resampling in one spectrum per channel (one forward, one inverse real FFT).

    With resampling, the FFT length is ``m P`` where ``P`` is MNE's padded length and ``m`` the fewest periods
    that leave room for the filter's reach of ``reflect_limited`` padding on both sides of the data; the data
    sits at MNE's offset modulo ``P`` and the padding wraps around the circular buffer. Truncating that
    spectrum to ``m new_len`` bins then samples the filtered signal on exactly MNE's grid (spacing
    ``P / new_len`` input samples, same origin).
    """
    n_ch, n = data.shape
    notch = float(config.notch_hz or 0.0)
    kernels = fir_kernels(sfreq, float(config.l_freq), float(config.h_freq), notch)
    reach = sum((len(h) - 1) // 2 for h in kernels)  # support of the combined zero-phase kernel, each side
    if np.isclose(sfreq, config.sfreq, rtol=1e-6, atol=0):  # MNE's resample no-op test
        n_fft = sfft.next_fast_len(n + 2 * reach, real=True)
        offset, n_out_fft, start, n_out, nyq_gain = reach, n_fft, reach, n, 1.0
    else:
        left, _, padded, new_len, remove_left, n_out = _mne_resample_plan(n, sfreq, config.sfreq)
        periods = -(-(n + 2 * reach) // padded)
        n_fft = periods * padded
        shift = max((n_fft - n) // 2 - left, 0) // padded  # whole periods before the data: balanced padding
        offset = left + shift * padded
        n_out_fft = periods * new_len
        start = remove_left + shift * new_len
        shorter = new_len < padded
        nyq_gain = (2.0 if shorter else 0.5) if (n_out_fft if shorter else n_fft) % 2 == 0 else 1.0
    resp = _combined_response(sfreq, float(config.l_freq), float(config.h_freq), notch, n_fft)
    keep = min(n_fft, n_out_fft) // 2 + 1
    weights = resp[:keep] * np.float32(n_out_fft / n_fft)
    if nyq_gain != 1.0:
        weights = weights.copy()
        weights[-1] *= nyq_gain  # MNE's Nyquist-bin rule (mne.cuda._fft_resample); ~0 after the low-pass
    out = np.empty((n_ch, n_out), dtype=np.float32)
    lpad = (n_fft - n) // 2
    rpad = n_fft - n - lpad
    # Removing the mean is exact only while the padding is pure odd reflection (affine-equivariant); a
    # recording shorter than the padding gets MNE's zeros beyond n - 1 samples, so its mean must stay.
    center = max(lpad, rpad) <= n - 1
    out = np.empty((n_ch, n_out), dtype=np.float32)
    step = max(1, _CHUNK_SAMPLES // n_fft)  # channels per batch: bounded memory, few Python round trips
    for c0 in range(0, n_ch, step):
        x = data[c0:c0 + step]
        xp = np.empty((x.shape[0], n_fft), dtype=np.float32)
        body = xp[:, lpad:lpad + n]
        body[...] = x  # one pass: cast to float32 into the padded buffer
        if center:  # the mean in float64, subtracted in float32 (error << 1e-3 µV even at 5 mV offsets)
            body -= np.mean(x, axis=1, dtype=np.float64, keepdims=True).astype(np.float32)
        _reflect_into(xp, lpad, n)
        if lpad != offset:
            xp = np.roll(xp, offset - lpad, axis=1)  # data to MNE's offset; the padding wraps around
        spec = sfft.rfft(xp, axis=1)[:, :keep]
        del xp
        spec *= weights
        out[c0:c0 + step] = sfft.irfft(spec, n=n_out_fft, axis=1)[:, start:start + n_out]
    return out
