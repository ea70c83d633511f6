"""A small supervised network trained from scratch on the windows (ShallowConvNet-style, CPU-friendly).

Reference: Schirrmeister et al. 2017, "Deep learning with convolutional neural networks for EEG decoding
and visualization" (ShallowConvNet: temporal conv -> spatial conv -> square -> mean pool -> log ->
linear, a learned filter-bank CSP). Here the spatial filtering comes first (1x1 conv over channels) and
the temporal filters are depthwise per spatial filter, which cuts the cost to about
``C*S + S*F*kernel`` multiply-adds per sample (~1.5 M per 4-s 19-channel window with the defaults), so
an epoch of Workload trains in about a second on one CPU thread.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from neurolm_train.leaderboard.baselines import Fit
from neurolm_train.leaderboard.config import SmallNetConfig
from neurolm_train.leaderboard.scoring import score
from neurolm_train.leaderboard.windows import WindowSplit

#: µV per input unit: the trainer's scaling (docs/architecture.md: "units of 100 µV").
INPUT_SCALE_UV = 100.0


class ShallowNet(nn.Module):
    """``(B, C, T)`` float32 in units of 100 µV -> ``(B, K)`` logits. See :class:`SmallNetConfig`."""

    def __init__(self, n_chans: int, n_times: int, n_classes: int, config: SmallNetConfig) -> None:
        super().__init__()
        if n_times < config.pool:
            raise ValueError(f"window of {n_times} samples is shorter than the pooling window {config.pool}")
        n_feat = config.n_spatial * config.n_temporal
        self.spatial = nn.Conv1d(n_chans, config.n_spatial, 1, bias=False)
        self.temporal = nn.Conv1d(
            config.n_spatial,
            n_feat,
            config.kernel,
            padding=config.kernel // 2,
            groups=config.n_spatial,
            bias=False,
        )
        self.norm = nn.BatchNorm1d(n_feat)
        self.pool = nn.AvgPool1d(config.pool, config.pool_stride)
        self.drop = nn.Dropout(config.dropout)
        n_pooled = (
            n_times + 2 * (config.kernel // 2) - config.kernel + 1 - config.pool
        ) // config.pool_stride + 1
        self.head = nn.Linear(n_feat * n_pooled, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.temporal(self.spatial(x)))
        h = torch.log(torch.clamp(self.pool(h * h), min=1e-6))
        return self.head(self.drop(h).flatten(1))


@torch.no_grad()
def _predict(model: nn.Module, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Softmax probabilities, float64 ``(N, K)``, in eval mode."""
    model.eval()
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb = torch.from_numpy(x[i : i + batch_size] / INPUT_SCALE_UV)
        out.append(torch.softmax(model(xb), dim=1).double().numpy())
    return np.concatenate(out)


def fit_smallnet(
    train: WindowSplit, val: WindowSplit, test: WindowSplit, n_classes: int, seed: int, config: SmallNetConfig
) -> Fit:
    """Train :class:`ShallowNet` for up to ``config.epochs``; keep the epoch with the best val ``select_metric``.

    Stops early after ``config.patience`` epochs without a val improvement.
    Class-balanced cross-entropy (weights ``N / (K * n_k)`` from train), AdamW, shuffled mini-batches from
    a ``numpy`` generator seeded with ``seed`` (``torch.manual_seed(seed)`` for the initial weights and
    dropout). Ties on val keep the earlier epoch. The caller sets the thread count (``run_leaderboard``).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ShallowNet(train.x.shape[1], train.x.shape[2], n_classes, config)
    counts = np.bincount(train.y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    x_train = train.x / INPUT_SCALE_UV
    y_train = torch.from_numpy(train.y)
    history = []
    best_score, best_epoch, best_state = -np.inf, -1, None
    for epoch in range(config.epochs):
        model.train()
        order = rng.permutation(train.y.size)
        total = 0.0
        for i in range(0, order.size, config.batch_size):
            idx = order[i : i + config.batch_size]
            if idx.size < 2:  # BatchNorm needs two samples
                continue
            loss = loss_fn(model(torch.from_numpy(x_train[idx])), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.size
        val_score = score(config.select_metric, val.y, _predict(model, val.x, 256))
        history.append({"epoch": epoch, "train_loss": total / order.size, config.select_metric: val_score})
        if val_score > best_score:
            best_score, best_epoch, best_state = val_score, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    if best_state is None:
        raise ValueError("SmallNetConfig.epochs must be >= 1")
    model.load_state_dict(best_state)
    n_params = sum(p.numel() for p in model.parameters())
    return Fit(
        _predict(model, test.x, 256),
        {config.select_metric: float(best_score)},
        {"best_epoch": best_epoch, "history": history, "n_params": int(n_params)},
    )
