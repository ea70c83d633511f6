"""The NeuroLM "SEED" task: three-class emotion recognition (docs/neurolm-reference.md §2.7, ``prepare_SEED.py`` and
``SEEDDataset``).

Each trial (film clip) is cut into non-overlapping 4-s windows (800 samples, stride 800) from the trial start;
windows never cross a trial boundary, and the remainder of a trial is dropped. With the official trial table (docs/neurolm-reference.md §2.7)
this gives 855 windows per session (38,475 for 45 sessions, matching the paper). Trials are the ``seed``
source's events (description ``trial<k>``, k = 0..14): one session recording with 15 events for the raw
``.cnt`` input, one recording per trial for the ``Preprocessed_EEG`` input. Classes: 0 positive (H),
1 neutral (N), 2 negative (S). Channels: the 62 SEED channels (62 x 4 = 248 tokens).

Splits: two protocols.
- ``seed`` (default, the paper's): a within-subject ``group`` protocol that assigns whole TRIALS, all 45
  sessions pooled (reference §2.7): trials 0-8 train, 9-11 val, 12-14 test (``SEED_TRIAL_SPLIT``; 22,815 / 7,965 /
  7,695 windows). ``window_group`` names each window's trial (``trial3``); the window audit checks that no
  trial and no two overlapping windows straddle splits.
- ``seed_xsub`` (cross-subject): subject-level, like every other task; the subject-independent setting that
  the within-subject split inflates against (reference §9.15).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from neurolm_data.sources.seed import SEED_CHANNELS
from neurolm_data.tasks.base import Recording, TaskConfig, TaskError, TaskSpec, Window, register_task
from neurolm_data.tasks.tusl import segment_windows

#: SEED class names in label order (reference §2.7: H positive 0, N neutral 1, S negative 2).
SEED_CLASSES: tuple[str, ...] = ("positive", "neutral", "negative")
#: The paper's within-subject trial split (``trial_end_percentage = 0.6``; reference §2.7).
SEED_TRIAL_SPLIT: dict[str, tuple[int, ...]] = {
    "train": tuple(range(0, 9)),
    "val": (9, 10, 11),
    "test": (12, 13, 14),
}
_TRIAL = re.compile(r"^trial(\d+)$")


def trial_of(rec: Recording, window: Window) -> int:
    """Index (0..14) of the trial that contains ``window``, from the event descriptions ``trial<k>``.

    Raises:
        TaskError: no ``trial<k>`` event contains the window.
    """
    a, b = window.start / 200.0, (window.start + window.length) / 200.0
    for e in rec.events:
        m = _TRIAL.match(e.description)
        if m and e.onset_s - 1e-6 <= a and b <= e.onset_s + e.duration_s + 1e-6:
            return int(m.group(1))
    raise TaskError(f"{rec.recording_id}: window at {a:g} s lies in no 'trial<k>' event")


def trial_split(trial: int, table: dict[str, tuple[int, ...]] = SEED_TRIAL_SPLIT) -> str:
    """The split of a trial index under the within-subject protocol.

    Raises:
        KeyError: the trial is in no split list.
    """
    for split, trials in table.items():
        if trial in trials:
            return split
    raise KeyError(f"trial {trial} is in no split of {table}")


@dataclass(frozen=True)
class SeedConfig(TaskConfig):
    """SEED windowing (reference §2.7).

    Attributes:
        window_s: window length and stride in seconds (4 = 800 samples).
        min_duration_s: recordings shorter than one window are skipped (4).
    """

    window_s: int = 4
    min_duration_s: float = 4.0


@register_task
class SeedTask(TaskSpec):
    """62 x 800 windows inside each trial, classes positive 0 / neutral 1 / negative 2."""

    name = "seed"
    version = 1
    default_protocol = "seed"
    labelled = True
    classes = SEED_CLASSES
    channels = SEED_CHANNELS
    config_class = SeedConfig

    def windows(self, rec: Recording, data: np.ndarray) -> list[Window]:
        """Non-overlapping windows inside each trial event.

        Raises:
            TaskError: no trial events, or a label outside 0..2.
        """
        return segment_windows(rec, self.config.window_s, len(SEED_CLASSES), "SEED trial")

    def window_group(self, rec: Recording, window: Window) -> str:
        """``trial<k>``: the trial holding the window (for the within-subject ``seed`` protocol).

        Raises:
            TaskError: the window lies in no trial event.
        """
        return f"trial{trial_of(rec, window)}"
