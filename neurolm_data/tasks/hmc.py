"""The NeuroLM "HMC" task: five AASM sleep stages (docs/neurolm-reference.md §2.5, ``prepare_HMC.py``).

One 30-s window (6,000 samples) per scored epoch, starting at the epoch onset. Only real scoring rows give
windows: the official maker pre-allocates ``numEvents - 2`` rows and keeps unfilled zero arrays labelled Wake
(reference §2.5, §9.16); here nothing is pre-allocated, so no zero-filled sample exists. An epoch whose end falls
past the stored signal by at most ``EDGE_TOLERANCE`` samples (rounding of the 256 -> 200 Hz resampling) is
shifted back onto the signal; an epoch further out is dropped (the ``hmc`` source already rejects scoring that
runs past the signal). Classes: 0 W, 1 N1, 2 N2, 3 N3, 4 R. Channels: F4, C4, O2, C3 (4 x 30 = 120 tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurolm_data.sources.hmc import HMC_CHANNELS
from neurolm_data.tasks.base import SFREQ, Recording, TaskConfig, TaskError, TaskSpec, Window, register_task

#: HMC class names in label order (reference §2.5).
HMC_CLASSES: tuple[str, ...] = ("W", "N1", "N2", "N3", "R")
#: Samples an epoch may overrun the stored signal and still be kept (2 samples = 10 ms at 200 Hz, the
#: annotation parsers' ``TIME_TOL_S``).
EDGE_TOLERANCE: int = 2


@dataclass(frozen=True)
class HmcConfig(TaskConfig):
    """HMC windowing (reference §2.5).

    Attributes:
        epoch_s: scoring epoch = window length in seconds (30 = 6,000 samples).
        min_duration_s: recordings shorter than one epoch are skipped (30).
    """

    epoch_s: int = 30
    min_duration_s: float = 30.0


@register_task
class HmcTask(TaskSpec):
    """4 x 6000 windows, one per scored 30-s epoch, classes W/N1/N2/N3/R = 0..4."""

    name = "hmc"
    version = 1
    default_protocol = "hmc"
    labelled = True
    classes = HMC_CLASSES
    channels = HMC_CHANNELS
    config_class = HmcConfig

    def windows(self, rec: Recording, data: np.ndarray) -> list[Window]:
        """One window per epoch event, sorted by start.

        Raises:
            TaskError: no epochs, an epoch that is not ``epoch_s`` long, or a label outside 0..4.
        """
        if not rec.events:
            raise TaskError(f"{rec.recording_id}: no scored epochs")
        length = self.config.epoch_s * SFREQ
        out = []
        for e in rec.events:
            if not 0 <= e.label < len(HMC_CLASSES):
                raise TaskError(f"{rec.recording_id}: stage label {e.label} outside 0..4 at {e.onset_s} s")
            if abs(e.duration_s - self.config.epoch_s) > 1.0 / SFREQ:
                raise TaskError(
                    f"{rec.recording_id}: epoch at {e.onset_s} s lasts {e.duration_s} s, "
                    f"expected {self.config.epoch_s} s"
                )
            start = int(round(e.onset_s * SFREQ))
            over = start + length - rec.n_samples
            if over > EDGE_TOLERANCE:
                continue
            out.append(Window(start - max(over, 0), length, e.label))
        return sorted(out, key=lambda w: w.start)
