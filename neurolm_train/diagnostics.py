"""Instruction-tuning diagnostics: does the answer follow the EEG, or a bias shared by every window?

Two symptoms of a model that answers every window alike (README, "NeuroLM tiny on Workload"):

- the **answer log-odds** ``d = log p(class 1) - log p(class 0)`` (candidate scoring, binary tasks) has a
  cross-window spread (``logodds_std``: the EEG-dependent part) far below its mean (``logodds_mean``: the
  shared bias), so the argmax picks one class for all windows (BAcc exactly 0.5) even when the ranking
  carries signal (AUROC > 0.5);
- the **answer-position hidden state** (the last prompt token, where the answer is read out) barely varies
  across windows: ``answer_spread`` = RMS over windows of ``||h_i - mean h||`` divided by the RMS of
  ``||h_i||`` (1 = as much spread as size, 0 = every window identical).

``threshold_bacc`` is the remedy's measure: the balanced accuracy of the best single threshold on ``d``
(val-calibrated: choose it on val, apply it to test; ``calibrated_threshold``).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

from .models import NeuroLM
from .prompts import prompt_ids
from .stages import eeg_args


def log_odds(probs: np.ndarray) -> np.ndarray:
    """(n, 2) option probabilities -> (n,) ``log p1 - log p0`` (clipped at 1e-12)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return np.log(p[:, 1]) - np.log(p[:, 0])


def calibrated_threshold(d: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The threshold t on log-odds ``d`` (predict 1 when d > t) with the best balanced accuracy on ``y``,
    and that BAcc. Candidates: midpoints between sorted distinct values, plus +-inf. Ties: the t closest to 0."""
    v = np.unique(d)
    cands = np.concatenate(([-np.inf], (v[1:] + v[:-1]) / 2 if len(v) > 1 else [], [0.0]))
    best = (-1.0, 0.0)
    for t in cands:
        b = float(balanced_accuracy_score(y, (d > t).astype(int)))
        if b > best[0] + 1e-12 or (abs(b - best[0]) <= 1e-12 and abs(t) < abs(best[1])):
            best = (b, float(t))
    return best[1], best[0]


def logit_stats(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per binary task of prediction rows (``evaluate.predict``): ``logodds_mean``, ``logodds_std``, their
    ratio ``spread_to_bias`` (std / |mean|), the class-conditional means ``logodds_mean_y0/_y1`` and the
    best-threshold BAcc ``threshold_bacc`` with its ``threshold`` (optimistic on the split it is chosen on)."""
    out: dict[str, dict[str, float]] = {}
    for task in sorted({r["task"] for r in rows}):
        rs = [r for r in rows if r["task"] == task]
        if len(rs[0]["probs"]) != 2:
            continue
        d = log_odds(np.array([r["probs"] for r in rs]))
        y = np.array([r["label"] for r in rs])
        t, b = calibrated_threshold(d, y)
        m, s = float(d.mean()), float(d.std())
        out[task] = {
            "logodds_mean": m,
            "logodds_std": s,
            "spread_to_bias": s / max(abs(m), 1e-12),
            "logodds_mean_y0": float(d[y == 0].mean()) if (y == 0).any() else float("nan"),
            "logodds_mean_y1": float(d[y == 1].mean()) if (y == 1).any() else float("nan"),
            "threshold": t,
            "threshold_bacc": b,
        }
    return out


@torch.no_grad()
def answer_spread(model: NeuroLM, batch: dict, tokenizer: str | None = None) -> float:
    """``answer_spread`` (module docstring) of one single-task batch: the hidden state after
    ``[SEP]`` + prompt, at the position whose output is the first answer token."""
    tid = int(batch["task"][0])
    ids = torch.tensor(prompt_ids(tid, tokenizer), device=batch["x"].device).expand(len(batch["key"]), -1)
    was = model.training
    model.eval()
    h = model.hidden_states(*eeg_args(batch), ids)[:, -1].float()  # (B, d)
    model.train(was)
    dev = (h - h.mean(0)).norm(dim=1).pow(2).mean().sqrt()
    return float(dev / h.norm(dim=1).pow(2).mean().sqrt().clamp(min=1e-12))
