"""``adhd``: children with ADHD vs typically developing controls (source ``adhd``, IEEE DataPort 2020).

Each child's recording is cut into non-overlapping 4-s windows (800 samples at 200 Hz) from its first sample:
``floor(duration / 4 s)`` windows, the remainder dropped. Every window carries the child's diagnosis:
control 0, ADHD 1 (the recording-level ``label`` the ``adhd`` source sets from the release folder). 19
channels in the release's column order (10-10 names). Scores are reported per window and per child (the
child's mean class probability over its windows; ``neurolm_train.leaderboard``).

Citation: Motie Nasrabadi A, Allahverdy A, Samavati M, Mohammadi MR. "EEG data for ADHD / Control children",
IEEE DataPort (2020), doi:10.21227/rzfh-zn36. License: open access (IEEE DataPort); cite the DOI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurolm_data.tasks.base import SFREQ, Recording, TaskConfig, TaskError, TaskSpec, Window, register_task

#: The 19 channels of the release, in its column order (``Channel_Labels.docx``), canonical names.
ADHD_CHANNELS: tuple[str, ...] = (
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
    "T7",
    "T8",
    "P7",
    "P8",
    "FZ",
    "CZ",
    "PZ",
)


@dataclass(frozen=True)
class AdhdConfig(TaskConfig):
    """``adhd`` windowing.

    Attributes:
        window_s: window length and stride, s (4: non-overlapping).
        min_duration_s: recordings shorter than one window are skipped (4).
    """

    window_s: int = 4
    min_duration_s: float = 4.0


@register_task
class AdhdTask(TaskSpec):
    """ADHD (1) vs control (0) children; ``floor(duration / 4 s)`` windows of 19 x 800 per child."""

    name = "adhd"
    version = 1
    default_protocol = "adhd"
    labelled = True
    classes = ("control", "adhd")
    channels = ADHD_CHANNELS
    config_class = AdhdConfig

    def windows(self, rec: Recording, data: np.ndarray) -> list[Window]:
        """``n_samples // 800`` consecutive windows from sample 0.

        Raises:
            TaskError: no label, or a label other than 0/1.
        """
        if rec.label not in (0, 1):
            raise TaskError(f"{rec.recording_id}: adhd needs label 0 (control) or 1 (ADHD), got {rec.label}")
        length = self.config.window_s * SFREQ
        return [Window(k * length, length, rec.label) for k in range(rec.n_samples // length)]
