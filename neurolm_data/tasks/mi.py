"""``mi``: left vs right fist motor imagery on PhysioNet EEGMMIDB (source ``eegmmidb``).

Only the imagery runs of the left/right-fist kind are windowed: R04, R08 and R12 (EEGMMIDB documentation,
"Experimental Protocol": runs 4, 8, 12 = "imagine opening and closing left or right fist"). In those runs the
BCI2000 annotation ``T1`` cues the **left** fist (label 0) and ``T2`` the **right** fist (label 1); ``T0`` is
rest and is not used. In the other runs T1/T2 mean other things (R03/R07/R11: real left/right fist movement;
R05/R09/R13 and R06/R10/R14: both fists vs both feet, real and imagined; R01/R02: baselines), so those
recordings are skipped with the reason "not a left/right fist imagery run" and listed in ``shards.json``.

One 4-s window (800 samples at 200 Hz) starts at each T1/T2 cue onset (the cue lasts about 4.1 s, Schalk et
al. 2004; the usual epoch, e.g. MNE's EEGBCI example and MOABB's ``PhysionetMI`` ``interval = [0, 4]``). A cue
whose 4 s would run past the recording end gives no window. Channels: every stored channel (all 64 EEGMMIDB
electrodes map to the ``standard_1020`` vocabulary; any that do not are dropped at ingest and listed in
``recordings.parquet``'s ``dropped_channels``), in stored order.

Citation: Schalk G, McFarland DJ, Hinterberger T, Birbaumer N, Wolpaw JR. "BCI2000: A General-Purpose
Brain-Computer Interface (BCI) System." IEEE Trans. Biomed. Eng. 51(6):1034-1043 (2004); PhysioNet EEGMMIDB
1.0.0, doi:10.13026/C28G6P. License: ODC-By 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurolm_data.tasks.base import SFREQ, Recording, TaskConfig, TaskError, TaskSpec, Window, register_task

#: The left/right fist imagery runs of EEGMMIDB (PhysioNet EEGMMIDB description, "Experimental Protocol").
MI_RUNS: tuple[str, ...] = ("R04", "R08", "R12")
#: BCI2000 annotation -> class in the imagery runs: T1 left fist 0, T2 right fist 1.
MI_EVENTS: dict[str, int] = {"T1": 0, "T2": 1}


@dataclass(frozen=True)
class MiConfig(TaskConfig):
    """``mi`` windowing.

    Attributes:
        window_s: window length from the cue onset, s (4: the cue lasts ~4.1 s).
        runs: the runs that are windowed (R04, R08, R12).
        min_duration_s: recordings shorter than one window are skipped (4).
    """

    window_s: int = 4
    runs: tuple[str, ...] = MI_RUNS
    min_duration_s: float = 4.0


@register_task
class MiTask(TaskSpec):
    """EEGMMIDB left (0) vs right (1) fist imagery; one (C, 800) window per T1/T2 cue of R04/R08/R12."""

    name = "mi"
    version = 1
    default_protocol = "mi"
    labelled = True
    classes = ("left_fist", "right_fist")
    channels = None
    config_class = MiConfig

    def windows(self, rec: Recording, data: np.ndarray) -> list[Window]:
        """One window per T1/T2 annotation, from its onset, sorted by start.

        Raises:
            TaskError: a run other than ``config.runs``, or a run without any T1/T2 cue.
        """
        run = rec.run.upper()
        if run not in self.config.runs:
            raise TaskError(
                f"{rec.recording_id}: run {rec.run or '?'} is not a left/right fist imagery run "
                f"({', '.join(self.config.runs)}); its T1/T2 mean other movements"
            )
        length = self.config.window_s * SFREQ
        out = {}
        for e in rec.events:
            label = MI_EVENTS.get(e.description.strip().upper())
            if label is None:
                continue
            start = int(round(e.onset_s * SFREQ))
            if 0 <= start and start + length <= rec.n_samples:
                out.setdefault(start, label)
        if not out:
            raise TaskError(
                f"{rec.recording_id}: no T1/T2 cue with {self.config.window_s} s of signal after it"
            )
        return [Window(s, length, lab) for s, lab in sorted(out.items())]
