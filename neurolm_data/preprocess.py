"""Preprocessing to the NeuroLM convention: band-pass 0.1-75 Hz, notch at mains, resample to 200 Hz, float32 µV.

The convention and its order (band-pass, then notch, then resample) are those of every official NeuroLM dataset
maker (``docs/neurolm-reference.md`` §1.1). Three engines implement it:

* ``mne``: the official makers' calls, verbatim: ``raw.filter(l_freq, h_freq)`` (MNE default FIR: firwin design,
  Hamming window, zero phase, automatic transition bands and length), ``raw.notch_filter(mains)``,
  ``raw.resample(sfreq)`` (FFT method).
* ``fast``: the same MNE FIR kernels (those ``mne.filter.create_filter`` designs with exactly the parameters the
  two calls above use, computed in numpy by ``fir_kernels`` and tested equal to MNE's), applied as **one**
  zero-phase frequency-domain product of the band-pass and notch responses on an edge-padded signal (MNE's
  ``reflect_limited`` padding), instead of two long overlap-add passes; then FFT resampling on MNE's own output
  grid. MNE pads to a power of two and resamples that padded length to ``round(ratio * padded)`` samples, which
  shifts its output grid by a growing sub-sample amount (up to ~0.2 samples over a minute at 500 -> 200 Hz);
  any exact resampler therefore differs from the official output by ~10 % in-band, so the plan is reproduced
  here. All FFTs run in float32 after removing a constant near each channel's mean (recordings longer than the
  filter padding; the band-pass gain at 0 Hz is ~0, so the constant never reaches the output; TUH signals carry
  DC offsets of ~4.5 mV, ``FIXTURES.md`` §1). Filtering and resampling share one spectrum: one forward real FFT
  per channel, then either one inverse on exactly MNE's grid or, when that inverse length is slow for pocketfft
  (MNE's ``round(ratio * 2**k)`` usually has large prime factors), a few inverses of a fast length combined by a
  Taylor expansion onto MNE's grid with a bounded error (``_fast_plan``). Integer EDF samples
  (``DigitalSamples``) go straight into the float32 FFT buffer, and neither MNE nor ``scipy.signal`` is imported.

* ``exact``: the ``fast`` engine's filtering, resampled onto the exact output grid (output sample k at
  ``k / sfreq`` s after the first input sample) instead of MNE's drifting one: one inverse FFT per recording
  (``_fast_plan`` with ``exact_grid``), ~20 % less ingest CPU than ``fast`` on EEGMAT. It is the better time
  axis, not the official one: MNE's samples sit ~2.5 ms (half an output sample) off the exact grid, with a sign
  that depends on the recording length (its padding is removed in whole output samples), and drift by ~0.5 ms
  over 3 minutes (pure tones, ``tests/test_preprocess.py``); ``exact`` therefore fails the equivalence bound
  against ``mne`` and is an option, not the default (README, "Faithful where it is right").

``tests/test_preprocess.py`` checks on real EEGMAT recordings that ``fast`` matches ``mne`` within the issue's
bound (per channel correlation >= 0.999 and RMS error <= 1 % of the reference RMS, 2 s ignored at each edge),
which is what allows ``fast`` to be the default.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import fft as sfft

from neurolm_data.sources.base import DigitalSamples, RecordingError

#: Engines accepted by ``PreprocessConfig.engine``.
ENGINES: tuple[str, ...] = ("fast", "mne", "exact")

#: Samples per FFT batch in the fast engine (channels x FFT length): ~32 MiB of float32 per batch, so the
#: memory per worker does not grow with the channel count.
_CHUNK_SAMPLES = 1 << 23

#: Rows per FFT call are padded to a multiple of this: pocketfft (scipy.fft) transforms float32 rows in SIMD
#: groups of 4 and leftover rows one by one, ~2.5x slower per row (measured: 19 rows of 2**17 take as long as 24).
_FFT_ROWS = 4

#: Worst-case relative error allowed for the ``warp`` plan's Taylor expansion onto MNE's grid (``_fast_plan``):
#: half the issue's 1 % equivalence bound, whatever the signal's spectrum (real EEG, its power at low
#: frequencies, sees far less: ``tests/test_preprocess.py``).
_WARP_TOL = 5e-3
#: Highest Taylor order the ``warp`` plan may use before the exact plan is taken instead.
_WARP_MAX_ORDER = 4
#: Cost-model factor for a real FFT whose length has a prime factor above 7 (pocketfft; measured 3.5-4x per
#: sample for MNE's lengths 52429 and 26214 against 45000 and 20480, 20 float32 rows).
_SLOW_FFT_FACTOR = 3.5

#: Stride of the samples whose mean centers a channel of integer samples before the float32 FFT (a DC
#: estimate for round-off only: the band-pass removes any constant).
_CENTER_STRIDE = 64

#: MNE ``notch_filter`` defaults (``mne.filter.notch_filter``): notch width = freq / 200, transition 1 Hz.
_NOTCH_WIDTH_DIVISOR = 200.0
_NOTCH_TRANS_BANDWIDTH = 1.0


@dataclass(frozen=True)
class PreprocessConfig:
    """Typed preprocessing configuration (saved with every ingest output, hashed into ``config_hash``).

    Attributes:
        l_freq: high-pass edge in Hz (0.1, docs/neurolm-reference.md §1.1).
        h_freq: low-pass edge in Hz (75, docs/neurolm-reference.md §1.1).
        notch_hz: notch frequency in Hz; None means "the source's mains frequency" and is resolved by
            ``resolved(mains_hz)`` before hashing (50 Hz EEGMAT, 60 Hz TUH; docs/neurolm-reference.md §1.1 table).
            0 disables the notch.
        sfreq: output sampling rate in Hz (200, docs/neurolm-reference.md §1.1: 1-s patches of 200 samples).
        engine: ``fast`` (default, numpy/scipy, matches ``mne``), ``mne`` (the official makers' MNE calls) or
            ``exact`` (``fast`` filtering onto the exact output grid, without MNE's resampler drift).
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


def preprocess(data: np.ndarray | DigitalSamples, sfreq: float, config: PreprocessConfig) -> np.ndarray:
    """Band-pass, notch and resample one recording.

    Args:
        data: (n_channels, n_samples) array in µV at ``sfreq`` (float64 or float32), or the recording's
            integer samples with their calibration (``DigitalSamples``, what ``readers.read_edf`` reads; the
            ``fast`` engine converts them straight to float32, the ``mne`` engine decodes them to float64).
        sfreq: input sampling rate in Hz (any rate above ``2 * h_freq``: 200, 250, 256, 500, 512 ...).
        config: a ``PreprocessConfig`` with ``notch_hz`` resolved (not None).

    Returns:
        float32 array (n_channels, ``output_length(n_samples, sfreq, config.sfreq)``) in µV at ``config.sfreq``.

    Raises:
        ValueError: ``notch_hz`` unresolved, ``sfreq`` too low for the low-pass or the notch, or ``data`` not 2-D.
    """
    if config.notch_hz is None:
        raise ValueError("config.notch_hz is None: call config.resolved(source.mains_hz) first")
    if not isinstance(data, DigitalSamples):
        data = np.asarray(data)
    shape = data.samples.shape if isinstance(data, DigitalSamples) else data.shape
    if len(shape) != 2 or shape[1] < 2:
        raise ValueError(f"data must be (n_channels, n_samples >= 2), got shape {shape}")
    sfreq = float(sfreq)
    if config.h_freq >= sfreq / 2:
        raise ValueError(f"sampling rate {sfreq:g} Hz is too low for a {config.h_freq:g} Hz low-pass")
    if config.notch_hz and config.notch_hz + config.notch_hz / _NOTCH_WIDTH_DIVISOR + 1 >= sfreq / 2:
        raise ValueError(f"sampling rate {sfreq:g} Hz is too low for a {config.notch_hz:g} Hz notch")
    if config.engine == "mne":
        return _preprocess_mne(data.decode() if isinstance(data, DigitalSamples) else data, sfreq, config)
    return _preprocess_fast(data, sfreq, config)


# ------------------------------------------------------------------------------------------------ engine: mne


def _preprocess_mne(data: np.ndarray, sfreq: float, config: PreprocessConfig) -> np.ndarray:
    """The official makers' calls (docs/neurolm-reference.md §1.1) on an MNE RawArray (data in V inside MNE)."""
    import mne

    info = mne.create_info([f"ch{i:03d}" for i in range(data.shape[0])], sfreq, "eeg", verbose="error")
    raw = mne.io.RawArray(np.asarray(data, dtype=np.float64) * 1e-6, info, verbose="error")
    raw.filter(l_freq=config.l_freq, h_freq=config.h_freq, verbose="error")
    if config.notch_hz:
        raw.notch_filter(config.notch_hz, verbose="error")
    raw.resample(config.sfreq, verbose="error")
    return raw.get_data(units="uV").astype(np.float32)


# ----------------------------------------------------------------------------------------------- engine: fast


#: MNE's filter-length factor for the Hamming window (``mne.filter._length_factors["hamming"]``): taps =
#: factor / transition bandwidth (in units of the sampling rate).
_HAMMING_LENGTH_FACTOR = 3.3


def _firwin_lowpass(numtaps: int, cutoff: float) -> np.ndarray:
    """``scipy.signal.firwin(numtaps, cutoff, window="hamming", pass_zero=True, fs=2)``: windowed-sinc low-pass
    with ``cutoff`` in units of Nyquist, scaled to unit gain at 0 Hz (same operations, same order)."""
    m = np.arange(0, numtaps, dtype=np.float64) - 0.5 * (numtaps - 1)
    h = cutoff * np.sinc(cutoff * m)
    # scipy.signal.windows.general_hamming(numtaps, 0.54, sym=True): 0.54 + (1 - 0.54) cos(linspace(-pi, pi))
    win = np.zeros(numtaps)
    win += 0.54
    win += (1.0 - 0.54) * np.cos(np.linspace(-np.pi, np.pi, numtaps))
    h *= win
    h /= np.sum(h)
    return h


def _mne_firwin_design(n_taps: int, freq: list[float], gain: list[float], sfreq: float) -> np.ndarray:
    """``mne.filter._firwin_design``: a sum of firwin low-passes, one per gain change, each as long as its own
    transition band needs (``freq`` in Hz from 0 to Nyquist, ``gain`` 0/1 at those points)."""
    nyq = sfreq / 2.0
    f = np.array(freq) / nyq
    h = np.zeros(n_taps)
    prev_freq, prev_gain = f[-1], gain[-1]
    if prev_gain == 1:
        h[n_taps // 2] = 1  # start with "all up"
    for this_freq, this_gain in zip(f[::-1][1:], gain[::-1][1:], strict=True):
        if this_gain != prev_gain:
            transition = (prev_freq - this_freq) / 2.0
            this_n = int(round(_HAMMING_LENGTH_FACTOR / transition))
            this_n += 1 - this_n % 2  # odd
            if this_n > n_taps:
                raise ValueError(
                    f"filter length {n_taps} is too short for a {transition * sfreq:0.2f} Hz "
                    f"transition band ({this_n} samples needed)"
                )
            this_h = _firwin_lowpass(this_n, (prev_freq + this_freq) / 2.0)
            off = (n_taps - this_n) // 2
            if this_gain == 0:
                h[off : n_taps - off] -= this_h
            else:
                h[off : n_taps - off] += this_h
        prev_gain, prev_freq = this_gain, this_freq
    return h


def _auto_length(sfreq: float, min_trans: float) -> int:
    """MNE's ``filter_length="auto"`` for firwin/Hamming: ``ceil(3.3 / min_trans * sfreq)`` samples, made odd
    (``mne.filter._triage_filter_params`` and ``_to_samples``)."""
    n = max(int(np.ceil(_HAMMING_LENGTH_FACTOR / float(min_trans) * sfreq)), 1)
    return n + (n - 1) % 2


@lru_cache(maxsize=32)
def fir_kernels(sfreq: float, l_freq: float, h_freq: float, notch_hz: float) -> tuple[np.ndarray, ...]:
    """MNE's FIR kernels for ``raw.filter(l_freq, h_freq)`` and ``raw.notch_filter(notch_hz)`` at ``sfreq``.

    The kernels ``mne.filter.create_filter`` designs for those two calls (firwin, Hamming, zero phase,
    ``"auto"`` transition bands and length), computed here with numpy so that a worker never imports MNE or
    ``scipy.signal``; ``tests/test_preprocess.py`` checks them against ``create_filter`` itself. Band-pass:
    transitions ``min(max(0.25 l_freq, 2), l_freq)`` and ``min(max(0.25 h_freq, 2), sfreq/2 - h_freq)`` Hz.
    Notch: MNE's band-stop from ``freq -/+ width/2 -/+ trans/2`` with width = freq/200 and trans = 1 Hz
    (``mne.filter.notch_filter`` calls ``filter_data(x, Fs, highs, lows, ..., trans/2, trans/2)``, l_freq >
    h_freq being MNE's band-stop). Returns one or two odd-length symmetric float64 kernels (band-pass first; no
    notch kernel when ``notch_hz`` is 0).
    """
    sfreq, nyq = float(sfreq), float(sfreq) / 2.0
    if not 0 < l_freq < h_freq < nyq:
        raise ValueError(f"need 0 < l_freq < h_freq < Nyquist ({nyq:g} Hz), got {l_freq}, {h_freq}")
    l_trans = min(max(0.25 * l_freq, 2.0), l_freq)
    h_trans = min(max(0.25 * h_freq, 2.0), nyq - h_freq)
    f_s1, f_s2 = l_freq - l_trans, h_freq + h_trans
    freq, gain = [f_s1, l_freq, h_freq, f_s2], [0, 1, 1, 0]
    if f_s2 != nyq:
        freq, gain = freq + [nyq], gain + [0]
    if f_s1 != 0:
        freq, gain = [0.0] + freq, [0] + gain
    kernels = [_mne_firwin_design(_auto_length(sfreq, min(h_trans, l_trans)), freq, gain, sfreq)]
    if notch_hz:
        width, tb_2 = notch_hz / _NOTCH_WIDTH_DIVISOR, _NOTCH_TRANS_BANDWIDTH / 2.0
        lows, highs = notch_hz - width / 2.0 - tb_2, notch_hz + width / 2.0 + tb_2
        if lows < 0 or highs > nyq:  # MNE's checks on the band-stop's outer edges
            raise ValueError(f"a {notch_hz:g} Hz notch does not fit below Nyquist ({nyq:g} Hz)")
        # band-stop (mne _triage_filter_params with reverse=True): pass at lows / highs, stop at lows + tb_2
        # and highs - tb_2
        pts = sorted([(lows, 1), (lows + tb_2, 0), (highs - tb_2, 0), (highs, 1)], key=lambda t: t[0])
        freq, gain = [f for f, _ in pts], [g for _, g in pts]
        if freq[0] != 0:
            freq, gain = [0.0] + freq, [1] + gain
        if freq[-1] != nyq:
            freq, gain = freq + [nyq], gain + [1]
        kernels.append(_mne_firwin_design(_auto_length(sfreq, tb_2), freq, gain, sfreq))
    for k in kernels:
        k.setflags(write=False)
    return tuple(kernels)


@lru_cache(maxsize=8)
def _combined_kernel(sfreq: float, l_freq: float, h_freq: float, notch_hz: float) -> np.ndarray:
    """The band-pass kernel convolved with the notch kernel (float64, odd length, symmetric): one kernel whose
    response is the product of the two."""
    kernels = fir_kernels(sfreq, l_freq, h_freq, notch_hz)
    if len(kernels) == 1:
        return kernels[0]
    size = sum(len(h) for h in kernels) - 1
    n = sfft.next_fast_len(size, real=True)
    out = sfft.irfft(sfft.rfft(kernels[0], n) * sfft.rfft(kernels[1], n), n)[:size]
    out.setflags(write=False)
    return out


@lru_cache(maxsize=8)
def _combined_response(sfreq: float, l_freq: float, h_freq: float, notch_hz: float, n_fft: int) -> np.ndarray:
    """Real zero-phase frequency response (length ``n_fft // 2 + 1``) of band-pass x notch, float32."""
    h = _combined_kernel(sfreq, l_freq, h_freq, notch_hz)
    half = (len(h) - 1) // 2
    buf = np.zeros(n_fft)
    buf[: half + 1] = h[half:]  # causal half at t >= 0
    buf[n_fft - half :] = h[:half]  # anti-causal half wraps to the end: zero phase
    out = sfft.rfft(buf).real.astype(np.float32)  # symmetric kernel: the imaginary part is round-off
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


def _reflect_into(buf: np.ndarray, left: int, n: int, at: int | None = None) -> None:
    """Pad in place around the data with MNE's ``reflect_limited`` rule (``mne.cuda._smart_pad``): odd
    reflection ``2 x[0] - x[k]`` up to ``n - 1`` samples, zeros beyond; ``left`` pad samples before the data and
    the rest of the row after it.

    The data is ``buf[:, at:at + n]`` (``at`` defaults to ``left``: ``_smart_pad``'s layout). With ``at < left``
    the buffer is circular: the pad samples farther than ``at`` before the data wrap to the end of the row, as
    if ``_smart_pad``'s output were rolled by ``at - left`` (the FFT sees a periodic signal either way).
    """
    size = buf.shape[1]
    at = left if at is None else at
    right = size - n - left
    if not 0 <= at <= left or right < 0:
        raise ValueError(f"need 0 <= at <= left and left + n <= {size}, got at={at}, left={left}, n={n}")
    lr, rr = min(left, n - 1), min(right, n - 1)
    end = at + n
    if rr:
        buf[:, end : end + rr] = (
            2 * buf[:, end - 1 : end] - buf[:, end - 2 : end - rr - 2 if end - rr - 2 >= 0 else None : -1]
        )
    buf[:, end + rr : end + right] = 0
    near = min(at, left)  # pad distances 1..near sit just before the data
    k = min(near, lr)
    if k:
        buf[:, at - k : at] = 2 * buf[:, at : at + 1] - buf[:, at + k : at : -1]
    buf[:, at - near : at - k] = 0
    if left > near:  # distances near+1..left wrap around to the end of the row
        k2 = max(lr - near, 0)
        if k2:
            buf[:, size - k2 :] = 2 * buf[:, at : at + 1] - buf[:, at + near + k2 : at + near : -1]
        buf[:, size - (left - near) : size - k2] = 0


@dataclass(frozen=True)
class _FastPlan:
    """How ``_preprocess_fast`` computes one recording length (a pure function of the length and the config).

    Attributes:
        n_fft: forward real-FFT length; the data sits at ``at``, with ``lpad`` pad samples before it (circularly).
        n_inv: inverse real-FFT length; ``start`` is the inverse-output index of the first output sample.
        n_out: output samples.
        weights: complex64 or float32 (``keep``,): spectrum weights (filter response, FFT scaling, and for the
            ``warp`` kind a phase that shifts the inverse grid by a fraction of a sample).
        deriv: complex64 (``keep``,) ``2 pi i f / n_fft`` (d/dt per input sample), or None.
        coeffs: float32 (order, n_out): ``delta**m / m!`` for m = 1..order (order may be 0), or None (exact
            plan).
        kind: ``mne`` (MNE's grid reproduced exactly) or ``warp`` (Taylor expansion onto it, see ``_fast_plan``).
    """

    n_fft: int
    at: int
    lpad: int
    n_inv: int
    start: int
    n_out: int
    weights: np.ndarray
    deriv: np.ndarray | None
    coeffs: np.ndarray | None
    kind: str


def _smooth_part(n: int) -> int:
    """``n`` with its factors 2, 3, 5 and 7 divided out (1: ``n`` is 7-smooth, a fast pocketfft length)."""
    for q in (2, 3, 5, 7):
        while n % q == 0:
            n //= q
    return n


def _fft_cost(n: int) -> float:
    """Relative CPU of a real FFT of length ``n`` (pocketfft): ``n log2 n``, x _SLOW_FFT_FACTOR unless ``n`` is
    7-smooth (a deterministic model; it only picks between two plans of equal accuracy class)."""
    return n * np.log2(max(n, 2)) * (1.0 if _smooth_part(n) == 1 else _SLOW_FFT_FACTOR)


@lru_cache(maxsize=8)
def _fast_plan(
    n: int,
    sfreq: float,
    l_freq: float,
    h_freq: float,
    notch: float,
    sfreq_out: float,
    exact_grid: bool = False,
) -> _FastPlan:
    """The FFT plan for ``n`` samples: MNE's grid reproduced exactly (``mne``) or by a Taylor expansion
    (``warp``), whichever the cost model says is cheaper; with ``exact_grid`` (engine ``exact``), a ``warp`` plan
    of order 0 onto the exact grid (output sample k at ``k sfreq / sfreq_out`` input samples).

    ``mne``: the FFT length is ``m P`` where ``P`` is MNE's padded length and ``m`` the fewest periods that leave
    room for the filter's reach of ``reflect_limited`` padding on both sides of the data; the data sits at MNE's
    offset modulo ``P`` and the padding wraps around the circular buffer. Truncating that spectrum to
    ``m new_len`` bins samples the filtered signal on exactly MNE's grid (spacing ``P / new_len`` input samples,
    same origin). ``new_len = round(ratio P)`` usually has large prime factors, which makes that inverse FFT
    several times slower than one of a 7-smooth length.

    ``warp``: forward FFT of a fast length ``L`` (a multiple of ``q`` for the rate ratio ``p / q``), inverse of
    ``N = p L / q`` samples: a uniform grid of spacing exactly ``q / p``, shifted by a spectral phase so that it
    is centred on MNE's grid. MNE's samples lie ``delta_k`` (linear in k, ``|delta| <= |P/new_len - q/p| n_out/2``
    input samples) off it, and are reached by ``sum_m delta_k^m / m! s^(m)``, m = 0..order, the derivatives
    being inverse FFTs of the same spectrum times ``(2 pi i f / L)^m``. The truncation error is at most
    ``(w delta_max)^(order+1) / (order+1)!`` relative, for any signal, with ``w`` the angular frequency (rad per
    input sample) of the low-pass stop edge (``h_freq`` + MNE's transition band; beyond it the filter removes
    everything); ``order`` is the smallest that keeps this bound <= ``_WARP_TOL``.
    """
    kernels = fir_kernels(sfreq, l_freq, h_freq, notch)
    reach = sum((len(h) - 1) // 2 for h in kernels)  # support of the combined zero-phase kernel, each side
    if np.isclose(sfreq, sfreq_out, rtol=1e-6, atol=0):  # MNE's resample no-op test
        n_fft = sfft.next_fast_len(n + 2 * reach, real=True)
        weights = _combined_response(sfreq, l_freq, h_freq, notch, n_fft)
        return _FastPlan(n_fft, reach, (n_fft - n) // 2, n_fft, reach, n, weights, None, None, "mne")
    left, _, padded, new_len, remove_left, n_out = _mne_resample_plan(n, sfreq, sfreq_out)
    periods = -(-(n + 2 * reach) // padded)
    n_fft = periods * padded
    n_inv = periods * new_len
    exact_cost = _fft_cost(n_fft) + _fft_cost(n_inv)

    # warp plan: exact rational rate ratio p/q with 7-smooth p and q, so that both FFT lengths are fast
    ratio = Fraction(sfreq_out / sfreq).limit_denominator(1 << 16)
    p_, q_ = ratio.numerator, ratio.denominator
    warp = None
    if exact_grid:
        if float(ratio) != sfreq_out / sfreq:
            raise ValueError(
                f"engine 'exact' needs a rational rate ratio; {sfreq_out:g} / {sfreq:g} Hz is not one"
            )
        length = q_ * sfft.next_fast_len(-(-(n + 2 * reach) // q_), real=True)
        warp = (length, p_ * length // q_, 0, q_ / p_, q_ / p_)  # MNE's spacing replaced by the exact one
    elif float(ratio) == sfreq_out / sfreq and _smooth_part(p_) == 1 and _smooth_part(q_) == 1:
        length = q_ * sfft.next_fast_len(-(-(n + 2 * reach) // q_), real=True)
        n_w = p_ * length // q_
        r_mne, grid = padded / new_len, q_ / p_  # output spacing in input samples: MNE's, and ours
        drift = abs(r_mne - grid) * (n_out - 1) / 2  # max |delta| once centred
        nyq = sfreq / 2.0
        f_stop = min(
            h_freq + min(max(0.25 * h_freq, 2.0), nyq - h_freq), nyq
        )  # fir_kernels' low-pass stop edge
        wd = 2 * np.pi * f_stop / sfreq * drift
        # order 0 (no derivative inverse) when MNE's grid is ours up to the tolerance, e.g. 256 -> 200 Hz where
        # round(ratio P) is exact for P a power of two
        order = next(
            (
                m
                for m in range(0, _WARP_MAX_ORDER + 1)
                if wd ** (m + 1) / np.prod(np.arange(1, m + 2, dtype=np.float64)) <= _WARP_TOL
            ),
            None,
        )
        if order is not None and _fft_cost(length) + (order + 1) * _fft_cost(n_w) < exact_cost:
            warp = (length, n_w, order, r_mne, grid)
    if warp is None:
        shift = max((n_fft - n) // 2 - left, 0) // padded  # whole periods before the data: balanced padding
        shorter = new_len < padded
        nyq_gain = (2.0 if shorter else 0.5) if (n_inv if shorter else n_fft) % 2 == 0 else 1.0
        keep = min(n_fft, n_inv) // 2 + 1
        weights = _combined_response(sfreq, l_freq, h_freq, notch, n_fft)[:keep] * np.float32(n_inv / n_fft)
        if nyq_gain != 1.0:
            weights[-1] *= nyq_gain  # MNE's Nyquist-bin rule (mne.cuda._fft_resample); ~0 after the low-pass
        return _FastPlan(
            n_fft,
            left + shift * padded,
            (n_fft - n) // 2,
            n_inv,
            remove_left + shift * new_len,
            n_out,
            weights,
            None,
            None,
            "mne",
        )

    length, n_w, order, r_mne, grid = warp
    lpad = (length - n) // 2  # the data at lpad (no wrap)
    k = np.arange(n_out, dtype=np.float64)
    # MNE's output k sits at (k + remove_left) r_mne - left input samples from the data start; our inverse
    # sample j at j grid + phase - lpad. Centre the residual: delta_k = a + b k - c, |delta| <= |b| (n_out-1)/2.
    a, b = (0.0 if exact_grid else remove_left * r_mne - left), r_mne - grid
    c = a + b * (n_out - 1) / 2
    j0 = int(np.floor((c + lpad) / grid))
    phase = c + lpad - j0 * grid  # in [0, grid): fraction of the grid, applied as a spectral phase
    delta = a + b * k - c
    keep = min(length, n_w) // 2 + 1
    omega = np.arange(keep, dtype=np.float64) * (2 * np.pi / length)  # rad per input sample, per bin
    theta = (omega * phase).astype(np.float32)  # |theta| < 2 pi q/p: float32 keeps it to ~1e-6 rad
    gain = _combined_response(sfreq, l_freq, h_freq, notch, length)[:keep] * np.float32(n_w / length)
    weights = np.empty(keep, dtype=np.complex64)  # gain * exp(i theta): the grid shifted by ``phase`` samples
    weights.real = gain * np.cos(theta)
    weights.imag = gain * np.sin(theta)
    if (keep - 1) * 2 in (length, n_w):
        weights[-1] = 0  # a Nyquist bin cannot carry the phase; the low-pass has removed it (< -50 dB) anyway
    deriv = np.zeros(keep, dtype=np.complex64)
    deriv.imag = omega  # d/dt, t in input samples
    coeffs = np.empty((order, n_out), dtype=np.float32)
    term = np.ones(n_out)
    for m in range(1, order + 1):  # delta^m / m!
        term *= delta / m
        coeffs[m - 1] = term
    for arr in (weights, deriv, coeffs):
        arr.setflags(write=False)
    return _FastPlan(length, lpad, lpad, n_w, j0, n_out, weights, deriv, coeffs, "warp")


def _preprocess_fast(data: np.ndarray | DigitalSamples, sfreq: float, config: PreprocessConfig) -> np.ndarray:
    """Band-pass x notch and resampling in one spectrum per channel: one forward real FFT, then one inverse
    (plan ``mne``) or ``order + 1`` inverses of a fast length (plan ``warp``), see ``_fast_plan``.

    ``data`` is float µV, or ``DigitalSamples`` that are converted straight into the float32 FFT buffer:
    ``samples - c`` with ``c`` an integer near each channel's mean (no float64 copy of the recording), the
    per-channel gain being applied to the output.
    """
    digital = data if isinstance(data, DigitalSamples) else None
    src = digital.samples if digital is not None else data
    n_ch, n = src.shape
    plan = _fast_plan(
        n,
        float(sfreq),
        float(config.l_freq),
        float(config.h_freq),
        float(config.notch_hz or 0.0),
        float(config.sfreq),
        config.engine == "exact",
    )
    n_fft, at, lpad = plan.n_fft, plan.at, plan.lpad
    keep = plan.weights.shape[0]
    # Removing a constant is exact only while the padding is pure odd reflection (affine-equivariant); a
    # recording shorter than the padding gets MNE's zeros beyond n - 1 samples, so its offset must stay.
    center = max(lpad, n_fft - n - lpad) <= n - 1
    out = np.empty((n_ch, plan.n_out), dtype=np.float32)
    sl = slice(plan.start, plan.start + plan.n_out)
    # channels per batch: bounded memory, few Python round trips, a multiple of _FFT_ROWS
    step = max(_FFT_ROWS, _CHUNK_SAMPLES // n_fft // _FFT_ROWS * _FFT_ROWS)
    for c0 in range(0, n_ch, step):
        x = src[c0 : c0 + step]
        rows = x.shape[0]
        xp = np.empty((-(-rows // _FFT_ROWS) * _FFT_ROWS, n_fft), dtype=np.float32)
        xp[rows:] = 0  # rows that only fill pocketfft's last SIMD group
        body = xp[:rows, at : at + n]
        body[...] = x  # one pass: cast to float32 into the padded buffer
        if digital is not None:
            if center:
                # an integer near the mean (of every _CENTER_STRIDE-th sample), so that samples - c is exact
                # in float32; the band-pass removes any constant (0 gain at 0 Hz): c only keeps the float32
                # FFT's round-off relative to the EEG instead of to the DC offset.
                body -= np.rint(x[:, ::_CENTER_STRIDE].mean(axis=1, keepdims=True)).astype(np.float32)
            else:  # keep the DC: (samples + offset) * gain, as decoded
                body += digital.offset[c0 : c0 + step, None].astype(np.float32)
            # the gain is applied to the output (filtering and resampling are linear): a pass over n_out
            # samples per channel instead of the longer input
        elif center:  # the mean in float64, subtracted in float32 (error << 1e-3 µV even at 5 mV offsets)
            body -= np.mean(x, axis=1, dtype=np.float64, keepdims=True).astype(np.float32)
        _reflect_into(xp[:rows], lpad, n, at=at)
        spec = sfft.rfft(xp, axis=1, overwrite_x=True)
        del xp
        spec = spec[:, :keep]
        spec *= plan.weights
        y = out[c0 : c0 + step]
        y[...] = sfft.irfft(spec, n=plan.n_inv, axis=1)[:rows, sl]
        for coef in plan.coeffs if plan.coeffs is not None else ():  # + delta^m / m! * m-th derivative
            spec *= plan.deriv
            term = sfft.irfft(spec, n=plan.n_inv, axis=1)[:rows, sl]
            term *= coef
            y += term
        if digital is not None:
            y *= digital.gain[c0 : c0 + step, None].astype(np.float32)
    return out
