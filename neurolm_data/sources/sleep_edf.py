"""Sleep-EDF Expanded (PhysioNet ``sleep-edfx``), as a pre-training source (sleep stages kept as events).

Layout: ``sleep-cassette/SC4ssNE0-PSG.edf`` + ``SC4ssNEx-Hypnogram.edf`` and ``sleep-telemetry/ST7ssNJ0-PSG.edf``
+ ``ST7ssNJx-Hypnogram.edf`` (ss = subject, N = night, x = scorer letter). A PSG pairs with the hypnogram that
shares its first 7 characters. Subject = ``SC4ss``/``ST7ss``, session = the night digit.

Signals: plain EDF with 30-s data records; ``EEG Fpz-Cz`` and ``EEG Pz-Oz`` at 100 Hz, the other channels at
100 Hz (EOG) or 1 Hz (dropped, listed). The two EEG derivations are bipolar pairs that are not in the
``standard_1020`` vocabulary; they are stored under their active electrode (``FPZ``, ``PZ``) and the
derivation is recorded in ``extra["derivations"]``. 100 Hz is below the pipeline's 75-Hz low-pass Nyquist
limit, so ``read`` up-samples by 2 (``scipy.signal.resample_poly``, a band-limited interpolation that adds no
content above 50 Hz) to 200 Hz before preprocessing.

Events: the hypnogram's R&K stages cut into 30-s epochs, mapped to AASM classes W 0, N1 1, N2 2, N3 3 (R&K 3
and 4), R 4; ``?`` and ``Movement time`` skipped; epochs past the end of the PSG clipped off (the hypnogram
covers the whole day, FIXTURES.md §1). A PSG without a hypnogram gets no events. Notch: 50 Hz (Dutch mains).

Citation: Kemp B, Zwinderman AH, Tuk B, Kamphuisen HAC, Oberye JJL. "Analysis of a sleep-dependent neuronal
feedback loop: the slow-wave microcontinuity of the EEG." IEEE Trans. Biomed. Eng. 47(9):1185-1194 (2000);
PhysioNet Sleep-EDF Database Expanded v1.0.0, doi:10.13026/C2X676.
License: Open Data Commons Attribution License v1.0 (ODC-By 1.0).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from neurolm_data.annotations import read_sleep_edf_hypnogram
from neurolm_data.readers import UNIT_TO_UV
from neurolm_data.sources._readers import check_options, duration_s, edf_files, notch_option
from neurolm_data.sources.base import RawSignal, RecordingError, RecordingRef, Source, register_source

#: PSG file name: ``SC4ssNE0-PSG`` / ``ST7ssNJ0-PSG`` (Sleep-EDF Expanded documentation).
PSG_NAME = re.compile(r"^(?P<subject>S[CT]\d\d\d)(?P<night>\d)(?P<rest>[A-Z]\d)-PSG$", re.IGNORECASE)
#: Bipolar EEG derivations -> the label they are stored under (active electrode).
SLEEP_EDF_DERIVATIONS: dict[str, str] = {"EEG Fpz-Cz": "EEG Fpz", "EEG Pz-Oz": "EEG Pz"}
#: Stored channels.
SLEEP_EDF_CHANNELS: tuple[str, ...] = ("FPZ", "PZ")
#: Rate after ``read`` (the pipeline's output rate; 100-Hz files are up-sampled by 2).
MIN_SFREQ: float = 200.0
#: Mains frequency in the Netherlands (50 Hz).
SLEEP_EDF_MAINS_HZ: float = 50.0


def read_derivations(path: Path) -> RawSignal:
    """Decode the two EEG derivations of a Sleep-EDF PSG with pyedflib, relabelled ``EEG Fpz``/``EEG Pz``.

    ``neurolm_data.readers.read_edf`` keeps vocabulary channels only, and ``Fpz-Cz``/``Pz-Oz`` are bipolar pairs
    outside it, so the derivations are picked by their exact Sleep-EDF labels here. Every other channel is listed
    in ``dropped``.

    Raises:
        RecordingError: unreadable file, a missing derivation, a non-voltage unit or different rates.
    """
    import pyedflib

    try:
        r = pyedflib.EdfReader(str(path))
    except OSError as e:
        raise RecordingError(path, f"cannot read EDF: {e}") from None
    try:
        labels = [lab.strip() for lab in r.getSignalLabels()]
        missing = [d for d in SLEEP_EDF_DERIVATIONS if d not in labels]
        if missing:
            raise RecordingError(path, f"missing EEG derivation(s) {missing} (has {labels})")
        idx = [labels.index(d) for d in SLEEP_EDF_DERIVATIONS]
        rates = {float(r.getSampleFrequency(i)) for i in idx}
        units = [r.getPhysicalDimension(i).strip().lower() for i in idx]
        if len(rates) != 1 or any(u not in UNIT_TO_UV for u in units):
            raise RecordingError(path, f"derivations have rates {sorted(rates)} Hz and units {units}")
        n = min(int(r.getNSamples()[i]) for i in idx)
        data = np.stack([r.readSignal(i, 0, n) * UNIT_TO_UV[u] for i, u in zip(idx, units, strict=True)])
    except RecordingError:
        raise
    except Exception as e:  # noqa: BLE001 - EDFlib reports corrupt records as plain exceptions
        raise RecordingError(path, f"cannot decode EDF signals: {type(e).__name__}: {e}") from None
    finally:
        r.close()
    dropped = [
        (lab, "not one of the Sleep-EDF EEG derivations")
        for lab in labels
        if lab not in SLEEP_EDF_DERIVATIONS
    ]
    return RawSignal(
        data,
        list(SLEEP_EDF_DERIVATIONS.values()),
        rates.pop(),
        dropped=dropped,
        meta={"reader": "pyedflib", "derivations": dict(SLEEP_EDF_DERIVATIONS)},
    )


@register_source
class SleepEdfSource(Source):
    """Sleep-EDF Expanded PSG + hypnogram; FPZ, PZ (from Fpz-Cz, Pz-Oz); AASM stage events 0..4.

    Options:
        notch_hz: notch frequency (default 50).
    """

    name = "sleep_edf"
    mains_hz = SLEEP_EDF_MAINS_HZ
    channels = SLEEP_EDF_CHANNELS
    citation = (
        "Kemp B et al. Analysis of a sleep-dependent neuronal feedback loop: the slow-wave "
        "microcontinuity of the EEG. IEEE Trans. Biomed. Eng. 47(9):1185-1194 (2000); PhysioNet "
        "Sleep-EDF Expanded, doi:10.13026/C2X676"
    )
    license = "Open Data Commons Attribution License v1.0 (ODC-By 1.0)"

    def __init__(self, **options):
        check_options(self.name, options, {"notch_hz"})
        super().__init__(**options)
        self.mains_hz = notch_option(options, SLEEP_EDF_MAINS_HZ)

    def discover(self, root: Path) -> list[RecordingRef]:
        """Every ``*-PSG.edf`` under ``root`` with its hypnogram (same first 7 characters), if any.

        Raises:
            FileNotFoundError: ``root`` is missing or holds no PSG file.
        """
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a folder")
        refs = []
        for p in edf_files(root):
            m = PSG_NAME.match(p.stem)
            if not m:
                continue
            hyp = sorted(p.parent.glob(f"{p.stem[:7]}*-Hypnogram.edf"))
            refs.append(
                RecordingRef(
                    source=self.name,
                    subject=m["subject"].upper(),
                    session=m["night"],
                    run="",
                    path=p,
                    annotation_path=hyp[0] if hyp else None,
                    extra={"derivations": {"FPZ": "Fpz-Cz", "PZ": "Pz-Oz"}},
                )
            )
        if not refs:
            raise FileNotFoundError(f"{root}: no Sleep-EDF PSG (*-PSG.edf)")
        return refs

    def read(self, ref: RecordingRef) -> RawSignal:
        """FPZ and PZ in µV at 200 Hz (up-sampled from 100 Hz) plus 30-s stage events.

        Raises:
            RecordingError: unreadable PSG, a missing EEG derivation, or a malformed hypnogram.
        """
        sig = read_derivations(ref.path)
        dur = duration_s(sig)
        if sig.sfreq < MIN_SFREQ:
            up = int(round(MIN_SFREQ / sig.sfreq))
            from scipy.signal import resample_poly  # here: importing scipy.signal costs ~0.5 s of CPU

            sig.data = resample_poly(sig.data, up, 1, axis=1)
            sig.sfreq = sig.sfreq * up
        if ref.annotation_path is not None:
            sig.events = read_sleep_edf_hypnogram(ref.annotation_path, duration_s=dur)
        return sig
