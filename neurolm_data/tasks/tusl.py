"""The NeuroLM "TUSL" task: background / seizure / slowing (docs/neurolm-reference.md §2.4, ``prepare_TUSL.py``).

Each annotated term segment is cut into non-overlapping 10-s windows (2,000 samples) from its start; the
remainder of a segment shorter than a window is dropped. The official maker requires every segment to be
exactly 10 s (the array assignment fails otherwise); for such segments the result is the same, one window
each. Classes: 0 bckg, 1 seiz, 2 slow. Channels: the 23 TUAB channels (230 tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurolm_data.sources.tuab import TUAB_CHANNELS
from neurolm_data.tasks.base import SFREQ, Recording, TaskConfig, TaskError, TaskSpec, Window, register_task

#: TUSL class names in label order (reference §2.4).
TUSL_CLASSES: tuple[str, ...] = ("bckg", "seiz", "slow")


def segment_windows(rec: Recording, window_s: int, n_classes: int, what: str) -> list[Window]:
    """Non-overlapping ``window_s`` windows inside each event of ``rec`` (label = the event's), sorted.

    Event boundaries are rounded to the nearest sample at 200 Hz; windows never cross an event boundary or
    the end of the recording.

    Raises:
        TaskError: no events, or an event label outside ``0..n_classes-1``.
    """
    if not rec.events:
        raise TaskError(f"{rec.recording_id}: no {what} events")
    length = window_s * SFREQ
    out = []
    for e in rec.events:
        if not 0 <= e.label < n_classes:
            raise TaskError(
                f"{rec.recording_id}: event label {e.label} outside 0..{n_classes - 1} at {e.onset_s} s"
            )
        a = int(round(e.onset_s * SFREQ))
        b = min(int(round((e.onset_s + e.duration_s) * SFREQ)), rec.n_samples)
        out += [Window(s, length, e.label) for s in range(a, b - length + 1, length)]
    return sorted(out, key=lambda w: w.start)


@dataclass(frozen=True)
class TuslConfig(TaskConfig):
    """TUSL windowing (reference §2.4).

    Attributes:
        window_s: window length in seconds (10 = 2,000 samples).
        min_duration_s: recordings shorter than one window are skipped (10).
    """

    window_s: int = 10
    min_duration_s: float = 10.0


@register_task
class TuslTask(TaskSpec):
    """23 x 2000 windows inside the term segments, classes bckg 0 / seiz 1 / slow 2."""

    name = "tusl"
    version = 1
    default_protocol = "tusl"
    labelled = True
    classes = TUSL_CLASSES
    channels = TUAB_CHANNELS
    config_class = TuslConfig

    def windows(self, rec: Recording, data: np.ndarray) -> list[Window]:
        """Windows of every term segment (see ``segment_windows``).

        Raises:
            TaskError: no events or a label outside 0..2.
        """
        return segment_windows(rec, self.config.window_s, len(TUSL_CLASSES), "TUSL")
