"""Uncertainty over test subjects: a subject-level bootstrap CI and a paired Wilcoxon signed-rank test.

Windows of one subject are not independent (overlapping windows, one recording session), so both tools
resample or pair **subjects**, never windows (as EEG benchmark users ask: per-subject scores, bootstrap
CIs, MOABB-style paired tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap, wilcoxon

from neurolm_train.leaderboard.scoring import per_subject, score_all

#: One run's test predictions: ``(y (N,) int, prob (N, K) float, subjects (N,) str)``.
Run = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Interval:
    """Percentile bootstrap interval of a mean-over-seeds metric (``low``, ``high``; nan if undefined)."""

    low: float
    high: float
    confidence: float
    n_resamples: int
    n_subjects: int


def bootstrap_cis(
    runs: Sequence[Run], n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, Interval]:
    """95% (``confidence``) percentile bootstrap CIs over test subjects of every seed-averaged metric.

    Each resample draws the test subjects with replacement (``scipy.stats.bootstrap``, percentile method,
    generator seeded with ``seed``: deterministic), takes every window of each drawn subject (a subject
    drawn twice counts twice), scores each run (seed) with :func:`scoring.score_all` and averages over
    runs. The same subject draw is used for every run and every metric, so each interval is for the number
    shown as the row's mean. Runs must cover the same subjects. An interval is nan when its metric is
    undefined on some resample (e.g. AUROC when every drawn subject has one class) or with one subject.
    Returns ``{metric: Interval}`` in the task's metric order.
    """
    if not runs:
        raise ValueError("no runs")
    subjects = np.unique(runs[0][2])
    for _, _, subj in runs[1:]:
        if not np.array_equal(np.unique(subj), subjects):
            raise ValueError("runs cover different test subjects")
    names = tuple(score_all(runs[0][0], runs[0][1]))
    if subjects.size < 2:
        nan = float("nan")
        return {m: Interval(nan, nan, confidence, n_resamples, int(subjects.size)) for m in names}
    rows = [[np.flatnonzero(subj == s) for s in subjects] for _, _, subj in runs]

    def statistic(draw: np.ndarray) -> np.ndarray:
        values = []
        for (y, prob, _), by_subject in zip(runs, rows, strict=True):
            idx = np.concatenate([by_subject[int(i)] for i in draw])
            values.append(list(score_all(y[idx], prob[idx]).values()))
        return np.mean(values, axis=0)

    res = bootstrap(
        (np.arange(subjects.size),),
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=False,
        rng=np.random.default_rng(seed),
    )
    low, high = np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)
    return {
        m: Interval(float(lo), float(hi), confidence, n_resamples, int(subjects.size))
        for m, lo, hi in zip(names, low, high, strict=True)
    }


def subject_scores(runs: Sequence[Run], metric: str) -> dict[str, float]:
    """Per-subject ``metric`` averaged over runs (seeds); subjects where it is undefined in every run are left out."""
    per_run = [per_subject(y, prob, subj) for y, prob, subj in runs]
    out = {}
    for s in sorted(per_run[0]):
        vals = np.array([p[s][metric] if s in p else np.nan for p in per_run], dtype=float)
        if np.isfinite(vals).any():
            out[s] = float(np.nanmean(vals))
    return out


@dataclass(frozen=True)
class Paired:
    """Result of :func:`paired_wilcoxon` (two-sided). ``diff`` = a - b per subject; ``p`` may be 1.0 with
    ``note`` when every difference is zero; ``min_p`` is the smallest two-sided p-value that the non-zero
    pairs can reach (``2 / 2**n`` for the exact test), so a p above 0.05 with ``min_p > 0.05`` says
    nothing."""

    metric: str
    subjects: tuple[str, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    statistic: float
    p: float
    median_diff: float
    min_p: float
    note: str


def paired_wilcoxon(a: dict[str, float], b: dict[str, float], metric: str) -> Paired:
    """Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, two-sided) on per-subject scores ``a`` vs ``b``.

    Only subjects scored in both are paired. Raises ``ValueError`` with fewer than 2 common subjects.
    """
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        raise ValueError(f"need at least 2 subjects scored by both models, got {len(common)}")
    va = np.array([a[s] for s in common])
    vb = np.array([b[s] for s in common])
    d = va - vb
    n = int(np.count_nonzero(d))  # zero differences are dropped (zero_method="wilcox")
    min_p = min(1.0, 2.0 / 2**n)
    if np.all(d == 0):
        stat, p, note = 0.0, 1.0, "identical per-subject scores"
    else:
        res = wilcoxon(va, vb, zero_method="wilcox", alternative="two-sided")
        stat, p, note = float(res.statistic), float(res.pvalue), ""
    if min_p > 0.05 and n > 0:
        note = (note + "; " if note else "") + f"{n} non-zero pairs cannot reach p<0.05 (min p={min_p:.3f})"
    return Paired(
        metric,
        tuple(common),
        tuple(va.tolist()),
        tuple(vb.tolist()),
        stat,
        p,
        float(np.median(d)),
        min_p,
        note,
    )
