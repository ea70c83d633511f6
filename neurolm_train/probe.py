"""Linear probes on frozen stage-1 tokenizer features: does the tokenizer carry a task's label?

NeuroLM feeds the GPT the tokenizer encoder's continuous ``fc_norm`` features (reference §4.1), so what the
instruction stage can learn is bounded by what those features hold. A probe fits a logistic regression on
them, on a labelled task's train windows, and scores val and test (subject-disjoint splits of the shards):

- ``pooled``: the mean feature over a window's valid tokens, ``(n_embd,)`` per window;
- ``per_channel``: the mean over seconds for each channel, laid out by ``standard_1020`` index over the
  union of the task's channels (zeros for a channel a window lacks), ``(n_channels * n_embd,)``;
- ``bandpower`` (the reference, no tokenizer): log Welch band power per channel on the raw window, the
  same five bands as the leaderboard's band-power baseline (delta 0.5-4, theta 4-8, alpha 8-13,
  beta 13-30, gamma 30-75 Hz; 1-s segments, half overlap).

Each probe standardises the features and fits ``sklearn.linear_model.LogisticRegression`` (balanced class
weights) for each inverse regularisation strength in ``C_GRID``; the one with the best val AUROC is kept
(test never takes part in the choice), so val AUROC is the selection score and test AUROC the held-out one.
Binary tasks use the AUROC of class 1; multiclass the macro one-vs-rest AUROC. BAcc is the argmax's.

``write_probe`` runs the probes for a tokenizer checkpoint and writes ``probe.json`` beside it (atomic);
``neurolm-train vq --probe TASK`` and the leaderboard's NeuroLM row call it after stage 1.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.signal import welch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .data import PATCH, discover, eval_batches
from .models import VQTokenizer

log = logging.getLogger(__name__)

#: Inverse regularisation strengths tried per probe (chosen on val AUROC).
C_GRID: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)
#: Band edges in Hz of the band-power reference (the leaderboard's ``BandPowerConfig`` bands; the top edge
#: 75 Hz is the preprocessing low-pass, reference §1.1).
BANDS: tuple[tuple[float, float], ...] = ((0.5, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0), (30.0, 75.0))
KINDS: tuple[str, ...] = ("pooled", "per_channel", "bandpower")


@torch.no_grad()
def tokenizer_features(
    tok: VQTokenizer | None,
    shards: str | Path,
    task: str,
    split: str,
    batch_size: int = 96,
    max_tokens: int = 1024,
) -> dict[str, Any]:
    """Window features of one task split.

    Args:
        tok: a stage-1 tokenizer (run in eval mode, bidirectional encoder), or None for band power only.
        shards: the ``OUT/shards`` root; task: task folder; split: ``train``/``val``/``test``.
    Returns:
        ``{"label": (n,) int64, "key": list[str], "pooled": (n, d), "per_channel": (n, n_ch, d),
        "channels": (n_ch,) standard_1020 indices, "bandpower": (n, n_ch, 5)}`` (float32; the tokenizer
        entries are absent when ``tok`` is None). Windows are in the loader's evaluation order.
    Raises:
        FileNotFoundError when the task split has no shards; ValueError when a window is unlabelled.
    """
    tasks = discover(shards, [task], split)
    was = tok.training if tok is not None else False
    if tok is not None:
        tok.eval()
    rows: dict[str, list] = {"label": [], "key": [], "pooled": [], "per_chan": [], "bp": [], "chans": []}
    dev = next(tok.parameters()).device if tok is not None else torch.device("cpu")
    for b in eval_batches(tasks, batch_size, max_tokens=max_tokens):
        if (b["label"] < 0).any():
            raise ValueError(
                f"task {task!r} split {split!r}: unlabelled window {b['key'][int((b['label'] < 0).nonzero()[0])]}"
            )
        mask, chans = b["mask"], b["chans"]
        if tok is not None:
            h = (
                tok.encode(b["x"].to(dev), chans.to(dev), b["times"].to(dev), mask.to(dev)).float().cpu()
            )  # (B,N,d)
            m = mask.unsqueeze(-1).float()
            rows["pooled"].append(((h * m).sum(1) / m.sum(1).clamp(min=1)).numpy())
        for i in range(len(b["key"])):
            n, c = int(mask[i].sum()), int(b["n_chans"][i])
            idx = chans[i, :c].numpy()
            rows["chans"].append(idx)
            if tok is not None:
                rows["per_chan"].append(h[i, :n].view(n // c, c, -1).mean(0).numpy())  # (C, d)
            sig = b["x"][i, :n].view(n // c, c, PATCH).permute(1, 0, 2).reshape(c, -1).numpy()  # (C, S*200)
            f, p = welch(sig, fs=200.0, nperseg=200, noverlap=100, axis=-1)
            bp = np.stack([p[:, (f >= lo) & (f < hi)].mean(-1) for lo, hi in BANDS], -1)  # (C, 5)
            rows["bp"].append(np.log(bp + 1e-12).astype(np.float32))
        rows["label"].append(b["label"].numpy())
        rows["key"].extend(b["key"])
    if tok is not None:
        tok.train(was)
    union = np.unique(np.concatenate(rows["chans"]))
    pos = {int(c): j for j, c in enumerate(union)}

    def lay(per: list[np.ndarray]) -> np.ndarray:  # windows' (C, F) blocks onto the channel union
        out = np.zeros((len(per), len(union), per[0].shape[-1]), dtype=np.float32)
        for i, (blk, idx) in enumerate(zip(per, rows["chans"], strict=True)):
            out[i, [pos[int(c)] for c in idx]] = blk
        return out

    res: dict[str, Any] = {
        "label": np.concatenate(rows["label"]),
        "key": rows["key"],
        "channels": union,
        "bandpower": lay(rows["bp"]),
    }
    if tok is not None:
        res["pooled"] = np.concatenate(rows["pooled"]).astype(np.float32)
        res["per_channel"] = lay(rows["per_chan"])
    return res


def _auroc(y: np.ndarray, prob: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    if prob.shape[1] == 2:
        return float(roc_auc_score(y, prob[:, 1]))
    return float(roc_auc_score(y, prob, multi_class="ovr", average="macro", labels=np.arange(prob.shape[1])))


def fit_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray] | None,
    c_grid: tuple[float, ...] = C_GRID,
    seed: int = 0,
) -> dict[str, Any]:
    """Standardised logistic regression on ``(features (n, F), labels (n,))`` per split, the C with the best
    val AUROC kept. Returns ``{"C", "val_auroc", "val_bacc", "test_auroc", "test_bacc", "n_features"}``
    (test entries None without ``test``)."""
    (xt, yt), (xv, yv) = train, val
    best: dict[str, Any] | None = None
    for c in c_grid:
        clf = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed),
        )
        clf.fit(xt, yt)
        pv = clf.predict_proba(xv)
        auc = _auroc(yv, pv)
        if best is None or auc > best["val_auroc"]:
            best = {
                "C": c,
                "val_auroc": auc,
                "val_bacc": float(balanced_accuracy_score(yv, pv.argmax(1))),
                "clf": clf,
            }
    clf = best.pop("clf")
    best["n_features"] = int(xt.shape[1])
    if test is not None:
        pt = clf.predict_proba(test[0])
        best["test_auroc"], best["test_bacc"] = (
            _auroc(test[1], pt),
            float(balanced_accuracy_score(test[1], pt.argmax(1))),
        )
    else:
        best["test_auroc"] = best["test_bacc"] = None
    return best


def probe_tokenizer(
    tok: VQTokenizer | None, shards: str | Path, task: str, kinds: tuple[str, ...] = KINDS, seed: int = 0
) -> dict[str, Any]:
    """Probe scores of ``tok`` on ``task`` (module docstring): ``{kind: fit_probe(...)}`` for each of
    ``kinds`` plus ``n`` (windows per split). The test split is scored when the task has one."""
    feats = {s: tokenizer_features(tok, shards, task, s) for s in ("train", "val")}
    try:
        feats["test"] = tokenizer_features(tok, shards, task, "test")
    except FileNotFoundError:
        feats["test"] = None
    # every split on the channel union of train (a channel train lacks carries no learnable weight)
    union = feats["train"]["channels"]
    out: dict[str, Any] = {"n": {s: (None if f is None else len(f["label"])) for s, f in feats.items()}}
    for kind in kinds:
        if kind != "bandpower" and tok is None:
            continue

        def xy(f: dict | None, kind: str = kind) -> tuple[np.ndarray, np.ndarray] | None:
            if f is None:
                return None
            x = f[kind]
            if x.ndim == 3:  # (n, n_ch, F) on this split's union -> train's union, flattened
                full = np.zeros((len(x), len(union), x.shape[-1]), dtype=np.float32)
                keep = np.isin(f["channels"], union)
                full[:, np.searchsorted(union, f["channels"][keep])] = x[:, keep]
                x = full.reshape(len(x), -1)
            return x, f["label"]

        out[kind] = fit_probe(xy(feats["train"]), xy(feats["val"]), xy(feats["test"]), seed=seed)
    return out


def _atomic_json(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, allow_nan=True)
    os.replace(tmp, path)


def write_probe(
    ckpt: str | Path, shards: str | Path, tasks: list[str], dst: str | Path | None = None, seed: int = 0
) -> Path:
    """Probe the tokenizer of a ``vq`` checkpoint on each labelled task and write ``probe.json`` beside it.

    The file holds, per task, the pooled / per-channel / band-power probe scores (``probe_tokenizer``),
    plus the checkpoint's step and config hash, its sha256 and the wall time. Returns the JSON path.
    Raises ValueError when ``ckpt`` is not a ``vq`` checkpoint, FileNotFoundError for missing shards.
    """
    from . import checkpoint
    from .evaluate import sha256_file
    from .models import NeuroLMConfig

    ckpt = Path(ckpt)
    ck = checkpoint.load(ckpt)
    if ck.get("stage") != "vq":
        raise ValueError(f"{ckpt} is not a vq checkpoint (stage={ck.get('stage')!r}): nothing to probe")
    mc = NeuroLMConfig.from_dict(ck["model_config"])
    tok = VQTokenizer(mc.vq)
    tok.load_state_dict(ck["model"])
    t0 = time.perf_counter()
    res = {
        "checkpoint": ckpt.name,
        "sha256": sha256_file(ckpt),
        "step": ck["step"],
        "config_hash": ck["config_hash"],
        "seed": seed,
        "c_grid": list(C_GRID),
        "tasks": {t: probe_tokenizer(tok, shards, t, seed=seed) for t in tasks},
    }
    res["wall_s"] = round(time.perf_counter() - t0, 2)
    dst = Path(dst) if dst else ckpt.with_name("probe.json")
    _atomic_json(res, dst)
    return dst


def probe_line(probe: dict[str, Any]) -> str:
    """One line per task, e.g. ``workload: per_channel val 0.78 / test 0.80, pooled ..., bandpower ...``."""
    parts = []
    for task, r in probe["tasks"].items():
        cells = [
            f"{k} {r[k]['val_auroc']:.3f} / {r[k]['test_auroc'] if r[k]['test_auroc'] is None else format(r[k]['test_auroc'], '.3f')}"
            for k in KINDS
            if k in r
        ]
        parts.append(f"{task}: probe AUROC val / test: " + ", ".join(cells))
    return "; ".join(parts)
