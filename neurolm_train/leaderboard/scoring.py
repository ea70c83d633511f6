"""Task metrics from class probabilities (scikit-learn), overall and per subject.

Metric sets follow neurolm-spec.md §5.3 (the NeuroLM task -> metric map):

- binary (K = 2): ``bacc`` (balanced accuracy of the argmax), ``auroc`` (ROC AUC of P(class 1)),
  ``auc_pr`` (average precision of P(class 1), PyHealth's ``pr_auc``);
- multiclass (K > 2): ``bacc``, ``kappa`` (Cohen's kappa of the argmax), ``f1_weighted``.

Unlike the official NeuroLM scoring, AUROC and AUC-PR are computed from **probabilities**, not from hard
predictions (spec §5.3), so they are comparable with LaBraM-style baselines.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    roc_auc_score,
)

BINARY_METRICS = ("bacc", "auroc", "auc_pr")
MULTICLASS_METRICS = ("bacc", "kappa", "f1_weighted")
#: Display names.
METRIC_LABELS = {"bacc": "BAcc", "auroc": "AUROC", "auc_pr": "AUC-PR", "kappa": "Cohen κ", "f1_weighted": "W-F1"}


def metric_names(n_classes: int) -> tuple[str, ...]:
    """The metric set of a task with ``n_classes`` classes (K >= 2)."""
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {n_classes}")
    return BINARY_METRICS if n_classes == 2 else MULTICLASS_METRICS


def chance_level(metric: str, y: np.ndarray, n_classes: int) -> float:
    """Score of an uninformative predictor: BAcc 1/K, AUROC 0.5, AUC-PR the positive rate, kappa 0.

    ``f1_weighted`` has no single chance value; the majority-class score is returned (all predictions =
    most frequent class of ``y``).
    """
    y = np.asarray(y)
    if metric == "bacc":
        return 1.0 / n_classes
    if metric == "auroc":
        return 0.5
    if metric == "auc_pr":
        return float(np.mean(y == 1))
    if metric == "kappa":
        return 0.0
    if metric == "f1_weighted":
        major = np.bincount(y, minlength=n_classes).argmax()
        return float(f1_score(y, np.full_like(y, major), average="weighted", zero_division=0))
    raise KeyError(metric)


def score(metric: str, y: np.ndarray, prob: np.ndarray) -> float:
    """One metric of probabilities ``prob`` (N, K) against labels ``y`` (N,) int.

    Returns ``nan`` where the metric is undefined (AUROC/AUC-PR with one class present in ``y``).
    """
    y = np.asarray(y)
    prob = np.asarray(prob, dtype=np.float64)
    if prob.ndim != 2 or prob.shape[0] != y.shape[0]:
        raise ValueError(f"prob must be (N, K) with N = len(y) = {y.shape[0]}, got {prob.shape}")
    pred = prob.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        if metric == "bacc":
            return float(balanced_accuracy_score(y, pred))
        if metric in ("auroc", "auc_pr"):
            if prob.shape[1] != 2:
                raise ValueError(f"{metric} is defined here for binary tasks only")
            if np.unique(y).size < 2:
                return float("nan")
            fn = roc_auc_score if metric == "auroc" else average_precision_score
            return float(fn(y, prob[:, 1]))
        if metric == "kappa":
            return float(cohen_kappa_score(y, pred))
        if metric == "f1_weighted":
            return float(f1_score(y, pred, average="weighted", zero_division=0))
    raise KeyError(f"unknown metric {metric!r}")


def score_all(y: np.ndarray, prob: np.ndarray, n_classes: int) -> dict[str, float]:
    """Every metric of the task's set (:func:`metric_names`) as ``{name: value}``."""
    return {m: score(m, y, prob) for m in metric_names(n_classes)}


def per_subject(metric: str, y: np.ndarray, prob: np.ndarray, subjects: np.ndarray) -> dict[str, float]:
    """``{subject: metric over that subject's windows}``; ``nan`` where undefined for a subject."""
    subjects = np.asarray(subjects)
    return {str(s): score(metric, y[subjects == s], prob[subjects == s]) for s in np.unique(subjects)}
