"""The NeuroLM "Workload" task on PhysioNet EEGMAT (docs/neurolm-reference.md §2.6, ``prepare_workload.py``).

Each recording contributes its **last 60 s**, cut into 4-s windows (800 samples) with a 2-s stride: 29
windows per file, 72 x 29 = 2,088 in all. Label 0 = rest/background (``SubjectNN_1``), 1 = mental arithmetic
(``SubjectNN_2``), taken from the recording-level ``label`` that the ``workload`` source sets. 19 channels in
the official order (upper-cased EEGMAT names; old 10-20 names T3/T4/T5/T6 kept as in the official code).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurolm_data.tasks.base import SFREQ, Recording, TaskConfig, TaskError, TaskSpec, Window, register_task

#: The 19 channels of ``prepare_workload.py``, in its order (docs/neurolm-reference.md §2.6).
WORKLOAD_CHANNELS: tuple[str, ...] = (
    "FP1",
    "FP2",
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
    "FZ",
    "CZ",
    "PZ",
)


@dataclass(frozen=True)
class WorkloadConfig(TaskConfig):
    """Workload windowing (docs/neurolm-reference.md §2.6).

    Attributes:
        last_s: only the last ``last_s`` seconds of each recording are used (60).
        window_s: window length in seconds (4 = 800 samples, 76 tokens with 19 channels).
        stride_s: window stride in seconds (2, i.e. 50 % overlap).
        min_duration_s: recordings shorter than ``last_s`` are skipped (60).
    """

    last_s: int = 60
    window_s: int = 4
    stride_s: int = 2
    min_duration_s: float = 60.0


@register_task
class WorkloadTask(TaskSpec):
    """EEGMAT rest (0) vs mental arithmetic (1); 29 windows of 19 x 800 per recording."""

    name = "workload"
    version = 1
    default_protocol = "workload"
    labelled = True
    classes = ("rest", "arithmetic")
    channels = WORKLOAD_CHANNELS
    config_class = WorkloadConfig

    def windows(self, rec: Recording, data: np.ndarray) -> list[Window]:
        """Windows of the last ``last_s`` s: ``(last_s - window_s) // stride_s + 1`` of them (29 by default).

        Raises:
            TaskError: the recording has no label or a label other than 0/1.
        """
        cfg = self.config
        if rec.label not in (0, 1):
            raise TaskError(
                f"{rec.recording_id}: workload needs label 0 (_1, rest) or 1 (_2, task), got {rec.label}"
            )
        first = rec.n_samples - cfg.last_s * SFREQ
        n = (cfg.last_s - cfg.window_s) // cfg.stride_s + 1
        return [Window(first + k * cfg.stride_s * SFREQ, cfg.window_s * SFREQ, rec.label) for k in range(n)]
