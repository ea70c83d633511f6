"""The NeuroLM "TUAB" task: abnormal vs normal EEG (docs/neurolm-reference.md §2.2, ``prepare_TUAB.py``).

Each recording is cut into non-overlapping 10-s windows (2,000 samples at 200 Hz) covering the whole recording
(the remainder is dropped), all with the recording's label: normal 0, abnormal 1 (set by the ``tuab`` source
from the class folder). Channels: the 23 monopolar channels of the official maker, in its order (23 x 10 =
230 tokens per window).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurolm_data.sources.tuab import TUAB_CHANNELS
from neurolm_data.tasks.base import SFREQ, Recording, TaskConfig, TaskError, TaskSpec, Window, register_task


@dataclass(frozen=True)
class TuabConfig(TaskConfig):
    """TUAB windowing (reference §2.2).

    Attributes:
        window_s: window length and stride in seconds (10: non-overlapping, 2,000 samples).
        min_duration_s: recordings shorter than one window are skipped (10).
    """

    window_s: int = 10
    min_duration_s: float = 10.0


@register_task
class TuabTask(TaskSpec):
    """23 x 2000 windows, label normal 0 / abnormal 1."""

    name = "tuab"
    version = 1
    default_protocol = "tuab"
    labelled = True
    classes = ("normal", "abnormal")
    channels = TUAB_CHANNELS
    config_class = TuabConfig

    def windows(self, rec: Recording, data: np.ndarray) -> list[Window]:
        """``n_samples // (window_s * 200)`` windows from sample 0.

        Raises:
            TaskError: the recording label is not 0 or 1.
        """
        if rec.label not in (0, 1):
            raise TaskError(
                f"{rec.recording_id}: TUAB needs label 0 (normal) or 1 (abnormal), got {rec.label}"
            )
        step = self.config.window_s * SFREQ
        return [Window(s, step, rec.label) for s in range(0, rec.n_samples - step + 1, step)]
