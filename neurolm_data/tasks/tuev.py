"""The NeuroLM "TUEV" task: six EEG event classes (docs/neurolm-reference.md §2.3, ``prepare_TUEV.py``), with the
official maker's flaws fixed (reference §9.15).

One 5-s window (1,000 samples) per event time: the ``tuev`` source already merges the ``.rec`` rows that
share a time (the official maker writes the same 23-channel window once per annotated channel). The window
is centred on the event, which for TUEV's 1-s events is the official ``[start - 2 s, stop + 2 s]``. Near the
recording edges the official maker wraps around (it concatenates the signal three times); here the window is
shifted to lie inside the recording instead, so it still contains the event and never mixes the end of the
recording into its start. Recordings shorter than one window give none. When two events clamp to the same
window (both within 2.5 s of an edge), one window is kept with the lowest class (spsw < gped < pled < eyem <
artf < bckg, the source's precedence).

Classes (``.rec`` id - 1, the official loader's ``int(label - 1)``): 0 spsw, 1 gped, 2 pled, 3 eyem, 4 artf,
5 bckg. Channels: the 23 TUAB channels (23 x 5 = 115 tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurolm_data.sources.tuab import TUAB_CHANNELS
from neurolm_data.tasks.base import SFREQ, Recording, TaskConfig, TaskError, TaskSpec, Window, register_task

#: TUEV class names in label order (reference §2.3).
TUEV_CLASSES: tuple[str, ...] = ("spsw", "gped", "pled", "eyem", "artf", "bckg")


@dataclass(frozen=True)
class TuevConfig(TaskConfig):
    """TUEV windowing (reference §2.3).

    Attributes:
        window_s: window length in seconds (5 = 1,000 samples).
        min_duration_s: recordings shorter than one window are skipped (5).
    """

    window_s: int = 5
    min_duration_s: float = 5.0


@register_task
class TuevTask(TaskSpec):
    """23 x 1000 windows, one per event time, classes 0..5."""

    name = "tuev"
    version = 1
    default_protocol = "tuev"
    labelled = True
    classes = TUEV_CLASSES
    channels = TUAB_CHANNELS
    config_class = TuevConfig

    def windows(self, rec: Recording, data: np.ndarray) -> list[Window]:
        """One window per event, centred on it and clamped inside the recording, sorted by start.

        Raises:
            TaskError: no events, or an event label outside 0..5.
        """
        if not rec.events:
            raise TaskError(f"{rec.recording_id}: no TUEV events")
        length = self.config.window_s * SFREQ
        best: dict[int, int] = {}
        for e in rec.events:
            if not 0 <= e.label < len(TUEV_CLASSES):
                raise TaskError(f"{rec.recording_id}: event label {e.label} outside 0..5 at {e.onset_s} s")
            centre = (e.onset_s + e.duration_s / 2.0) * SFREQ
            start = int(round(centre - length / 2.0))
            start = min(max(start, 0), rec.n_samples - length)
            if start < 0:
                continue
            best[start] = min(best.get(start, e.label), e.label)
        return [Window(s, length, lab) for s, lab in sorted(best.items())]
