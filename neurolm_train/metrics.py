"""Scores from class probabilities (scikit-learn), per reference §5.3 with its flaws fixed (reference §9.10-11).

Binary tasks (TUAB, Workload): balanced accuracy, AUROC and AUC-PR (average precision, as PyHealth's
``pr_auc``), plus accuracy. Multiclass tasks (TUEV, SEED, HMC, TUSL): balanced accuracy, Cohen's kappa,
weighted F1, plus accuracy. Predictions are ``argmax`` of the probabilities.

``hard_label_metrics`` reproduces the paper's scoring for comparison with its tables: the prediction is a
hard label, -1 when the generated text cannot be parsed; binary AUROC/AUC-PR are computed from that hard
label (so AUROC ~ balanced accuracy, and -1 ranks below 0), -1 counts as 0 for accuracy and BAcc; in
multiclass tasks -1 silently becomes the last class (``np.eye(K)[pred]``). These numbers are not
comparable with baselines that score probabilities.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    f1_score,
    roc_auc_score,
)


def _ranking(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUROC and AUC-PR; NaN when ``y`` holds a single class (undefined)."""
    if len(np.unique(y)) < 2:
        return {"auroc": float("nan"), "auc_pr": float("nan")}
    return {"auroc": float(roc_auc_score(y, score)), "auc_pr": float(average_precision_score(y, score))}


def binary_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """``y`` (N,) in {0, 1}; ``probs`` (N, 2) rows summing to 1. Returns bacc, auroc, auc_pr, accuracy."""
    y, probs = np.asarray(y), np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(1)
    return {
        "bacc": float(balanced_accuracy_score(y, pred)),
        **_ranking(y, probs[:, 1]),
        "accuracy": float(accuracy_score(y, pred)),
    }


def multiclass_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """``y`` (N,) in 0..K-1; ``probs`` (N, K). Returns bacc, kappa, f1_weighted, accuracy."""
    y, probs = np.asarray(y), np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(1)
    return {
        "bacc": float(balanced_accuracy_score(y, pred)),
        "kappa": float(cohen_kappa_score(y, pred)),
        "f1_weighted": float(f1_score(y, pred, average="weighted")),
        "accuracy": float(accuracy_score(y, pred)),
    }


def metrics(kind: str, y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Dispatch on the task kind (``binary`` or ``multiclass``). Raises ValueError otherwise."""
    if kind == "binary":
        return binary_metrics(y, probs)
    if kind == "multiclass":
        return multiclass_metrics(y, probs)
    raise ValueError(f"no metrics for task kind {kind!r}")


def hard_label_metrics(kind: str, y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """The paper's scores from hard predictions with -1 = parse failure (reference §5.3; see module docstring).
    Also returns ``parse_failure_rate``."""
    y, pred = np.asarray(y), np.asarray(pred)
    out = {"parse_failure_rate": float((pred < 0).mean()) if len(pred) else float("nan")}
    if kind == "binary":
        hard = np.where(pred < 0, 0, pred)
        out |= {
            "bacc": float(balanced_accuracy_score(y, hard)),
            **_ranking(y, pred.astype(np.float64)),
            "accuracy": float(accuracy_score(y, hard)),
        }
        return out
    if kind == "multiclass":
        hard = np.where(pred < 0, n_classes - 1, pred)
        return out | multiclass_metrics(y, np.eye(n_classes)[hard])
    raise ValueError(f"no metrics for task kind {kind!r}")
