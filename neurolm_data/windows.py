"""Window planning: which windows a task cuts from the split recordings, and the window-level leakage audit.

``plan_windows`` walks ``recordings.parquet`` in ``recording_id`` order, keeps the recordings whose subject
has a split, asks the task (``neurolm_data.tasks``) for channels and windows, checks every window, and returns
the plan (metadata only; no signal is copied). ``audit_windows`` then proves the plan subject-disjoint:
no subject or recording in two splits, and no two windows that overlap in time in different splits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from neurolm_data.split import GROUP_SPLIT, LeakageError
from neurolm_data.tasks.base import PATCH, SFREQ, Recording, TaskError, TaskSpec

#: Digits of the window index in a sample key (``<recording_id>_w00000``, docs/architecture.md).
KEY_DIGITS = 5


@dataclass(frozen=True)
class PlannedWindow:
    """One window to write.

    Attributes:
        key: WebDataset key ``<recording_id>_w<5-digit index>`` (no dots).
        split: ``train``/``val``/``test``. source, subject, recording: ids from the manifests.
        store_path: the recording's array, relative to OUT.
        rows: rows of the stored array, in the task's channel order.
        channels, channel_indices: canonical names and ``standard_1020`` indices of those rows.
        start, length: first sample and number of samples at 200 Hz.
        label: class index or None.
        group: the window's group under a ``group`` (within-subject) protocol (``TaskSpec.window_group``, e.g.
            ``trial3``), else None.
        fold: the subject's test fold under a ``kfold`` protocol (split ``cv``), else None.
    """

    key: str
    split: str
    source: str
    subject: str
    recording: str
    store_path: str
    rows: tuple[int, ...]
    channels: tuple[str, ...]
    channel_indices: tuple[int, ...]
    start: int
    length: int
    label: int | None
    group: str | None = None
    fold: int | None = None

    @property
    def start_s(self) -> float:
        """Window start in seconds from the recording start."""
        return self.start / SFREQ


@dataclass
class WindowPlan:
    """All windows of one task over the split recordings.

    Attributes:
        windows: sorted by ``(split, key)``.
        skipped: ``(recording_id, reason)`` for recordings the task cannot use (missing channels, too short,
            no label), sorted.
        unassigned: recordings whose ``(source, subject)`` has no split (e.g. another source), sorted.
        recordings: split -> number of recordings with at least one window.
    """

    windows: list[PlannedWindow] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unassigned: list[str] = field(default_factory=list)
    recordings: dict[str, int] = field(default_factory=dict)


def plan_windows(
    out: Path,
    recordings: pl.DataFrame,
    splits: pl.DataFrame,
    task: TaskSpec,
    groups: dict[str, str] | None = None,
) -> WindowPlan:
    """Plan the task's windows over every recording that has a split.

    Args:
        out: the ingest output folder (arrays are memory-mapped from ``OUT/<store_path>``).
        recordings: ``recordings.parquet``. splits: ``splits.parquet`` (one row per source/subject).
        task: the task.
        groups: group -> split, for subjects whose split is ``GROUP_SPLIT`` (a ``group`` protocol): each window
            goes to the split of ``task.window_group(rec, window)``; windows of unlisted groups are left out.

    Returns:
        A ``WindowPlan``.

    Raises:
        ValueError: a stored array disagrees with its manifest row (shape, dtype), or the task returned a
            window outside the recording or not a whole number of seconds (a task bug).
        FileNotFoundError: a stored array is missing.
    """
    split_of = {(a, b): c for a, b, c in splits.select("source", "subject", "split").rows()}
    fold_of = (
        {(a, b): int(f) for a, b, f in splits.select("source", "subject", "fold").rows()}
        if "fold" in splits.columns
        else {}
    )
    plan = WindowPlan()
    per_split: dict[str, int] = defaultdict(int)
    for row in recordings.sort("recording_id").iter_rows(named=True):
        split = split_of.get((row["source"], row["subject"]))
        if split is None:
            plan.unassigned.append(row["recording_id"])
            continue
        rec = Recording.from_row(row)
        if rec.sfreq != SFREQ:
            raise ValueError(f"{rec.recording_id}: sfreq {rec.sfreq} in recordings.parquet, expected {SFREQ}")
        try:
            rows = task.select_channels(rec)
            need = task.min_duration_s(rec, len(rows))
            if rec.n_samples < need * SFREQ:
                raise TaskError(
                    f"{rec.recording_id}: {rec.n_samples / SFREQ:g} s is shorter than the "
                    f"{need:g} s task {task.name!r} needs"
                )
            data = np.load(out / rec.store_path, mmap_mode="r", allow_pickle=False)
            if data.shape != (len(rec.channels), rec.n_samples) or data.dtype != np.float32:
                raise ValueError(
                    f"{out / rec.store_path}: array {data.shape} {data.dtype} does not match "
                    f"recordings.parquet ({len(rec.channels)}, {rec.n_samples}) float32"
                )
            wins = task.windows(rec, data)
            wgroups: list[str | None] = [None] * len(wins)
            if split == GROUP_SPLIT:
                wgroups = [task.window_group(rec, w) for w in wins]
                if not any(g in (groups or {}) for g in wgroups):
                    raise TaskError(
                        f"{rec.recording_id}: no window in a group of the protocol "
                        f"(groups {sorted(set(wgroups))})"
                    )
        except TaskError as e:
            plan.skipped.append((rec.recording_id, str(e)))
            continue
        if not wins:
            plan.skipped.append((rec.recording_id, f"task {task.name!r} found no window"))
            continue
        if len(wins) >= 10**KEY_DIGITS:
            raise ValueError(
                f"{rec.recording_id}: {len(wins)} windows exceed the {KEY_DIGITS}-digit key index"
            )
        chans = tuple(rec.channels[r] for r in rows)
        idx = tuple(rec.channel_indices[r] for r in rows)
        used: set[str] = set()
        for k, (w, g) in enumerate(zip(wins, wgroups, strict=True)):
            wsplit = split if g is None else (groups or {}).get(g)
            if wsplit is None:
                continue
            used.add(wsplit)
            if w.length <= 0 or w.length % PATCH or w.start < 0 or w.start + w.length > rec.n_samples:
                raise ValueError(
                    f"task {task.name!r} bug: window {w} of {rec.recording_id} "
                    f"(n_samples={rec.n_samples}) is outside the recording or not whole seconds"
                )
            if task.labelled and w.label is None:
                raise ValueError(f"task {task.name!r} bug: unlabeled window {w} of {rec.recording_id}")
            plan.windows.append(
                PlannedWindow(
                    key=f"{rec.recording_id}_w{k:0{KEY_DIGITS}d}",
                    split=wsplit,
                    source=rec.source,
                    subject=rec.subject,
                    recording=rec.recording_id,
                    store_path=rec.store_path,
                    rows=tuple(rows),
                    channels=chans,
                    channel_indices=idx,
                    start=int(w.start),
                    length=int(w.length),
                    label=None if w.label is None else int(w.label),
                    group=g,
                    fold=fold_of.get((rec.source, rec.subject)),
                )
            )
        for u in used:
            per_split[u] += 1
    plan.windows.sort(key=lambda w: (w.split, w.key))
    plan.skipped.sort()
    plan.recordings = dict(sorted(per_split.items()))
    return plan


def audit_windows(windows: list[PlannedWindow]) -> None:
    """Window-level leakage audit.

    Checks that keys are unique, that every ``(source, subject)`` (hence every recording) has one split
    (for windows of a ``group`` protocol: every ``(recording, group)``), and, directly, that no two windows overlapping in time (same recording, intersecting sample ranges) are
    in different splits: implied by the subject check, asserted anyway as the last guard before writing.

    Raises:
        LeakageError: naming the offending subjects (or recordings). ValueError: duplicate keys.
    """
    subj: dict[tuple[str, str], set[str]] = defaultdict(set)
    by_rec: dict[str, list[PlannedWindow]] = defaultdict(list)
    keys: set[str] = set()
    for w in windows:
        if w.key in keys:
            raise ValueError(f"duplicate window key {w.key!r}")
        keys.add(w.key)
        if w.group is None:
            subj[(w.source, w.subject)].add(w.split)
        else:
            subj[(w.source, f"{w.subject} (recording {w.recording}, group {w.group})")].add(w.split)
        by_rec[w.recording].append(w)
    leaks = [(a, b, sorted(s)) for (a, b), s in subj.items() if len(s) > 1]
    if leaks:
        raise LeakageError(leaks, "windows")
    straddle: list[tuple[str, str, list[str]]] = []
    for rid, ws in by_rec.items():
        ws = sorted(ws, key=lambda w: w.start)
        reach = ws[0]
        for w in ws[1:]:
            if w.start < reach.start + reach.length and w.split != reach.split:
                straddle.append(
                    (w.source, f"{w.subject} (recording {rid}, {w.start_s:g} s)", [reach.split, w.split])
                )
            if w.start + w.length > reach.start + reach.length:
                reach = w
    if straddle:
        raise LeakageError(straddle, "overlapping windows straddle splits")
