"""Task metrics from class probabilities, overall and per subject: a thin layer over the trainer's
``neurolm_train.metrics`` (scikit-learn), so that every row of the leaderboard and the trainer's own
evaluation score windows with the same code.

Metric sets follow docs/neurolm-reference.md §5.3 (the NeuroLM task -> metric map):

- binary (K = 2): ``bacc`` (balanced accuracy of the argmax), ``auroc`` (ROC AUC of P(class 1)),
  ``auc_pr`` (average precision of P(class 1), PyHealth's ``pr_auc``);
- multiclass (K > 2): ``bacc``, ``kappa`` (Cohen's kappa of the argmax), ``f1_weighted``.

AUROC and AUC-PR are computed from **probabilities**, not from hard predictions as in the official NeuroLM
scoring (reference §5.3), so they are comparable with LaBraM-style baselines.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning

from neurolm_train.metrics import metrics as _task_metrics

BINARY_METRICS = ("bacc", "auroc", "auc_pr")
MULTICLASS_METRICS = ("bacc", "kappa", "f1_weighted")
#: Display names.
METRIC_LABELS = {
    "bacc": "BAcc",
    "auroc": "AUROC",
    "auc_pr": "AUC-PR",
    "kappa": "Cohen κ",
    "f1_weighted": "W-F1",
}


def task_kind(n_classes: int) -> str:
    """``"binary"`` (K = 2) or ``"multiclass"`` (K > 2); the trainer's task kinds. ValueError for K < 2."""
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {n_classes}")
    return "binary" if n_classes == 2 else "multiclass"


def metric_names(n_classes: int) -> tuple[str, ...]:
    """The metric set of a task with ``n_classes`` classes (K >= 2)."""
    return BINARY_METRICS if task_kind(n_classes) == "binary" else MULTICLASS_METRICS


def score_all(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """Every metric of the task's set for probabilities ``prob`` (N, K) and labels ``y`` (N,) int.

    K is ``prob.shape[1]``. Undefined values are ``nan`` (AUROC/AUC-PR when ``y`` has one class).
    Raises ``ValueError`` when the shapes disagree.
    """
    y = np.asarray(y)
    prob = np.asarray(prob, dtype=np.float64)
    if prob.ndim != 2 or prob.shape[0] != y.shape[0]:
        raise ValueError(f"prob must be (N, K) with N = len(y) = {y.shape[0]}, got {prob.shape}")
    with warnings.catch_warnings():  # per-subject subsets often miss a class: the value is still defined
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")  # per-subject: one class
        scores = _task_metrics(task_kind(prob.shape[1]), y, prob)
    return {m: float(scores[m]) for m in metric_names(prob.shape[1])}


def score(metric: str, y: np.ndarray, prob: np.ndarray) -> float:
    """One metric of :func:`score_all`. Raises ``KeyError`` for a metric outside the task's set."""
    return score_all(y, prob)[metric]


def per_subject(y: np.ndarray, prob: np.ndarray, subjects: np.ndarray) -> dict[str, dict[str, float]]:
    """``{subject: score_all over that subject's windows}``; ``nan`` where a metric is undefined."""
    subjects = np.asarray(subjects)
    return {str(s): score_all(y[subjects == s], prob[subjects == s]) for s in np.unique(subjects)}
