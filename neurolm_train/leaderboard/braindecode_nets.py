"""braindecode's EEGNet (v4) and ShallowFBCSPNet, trained from scratch on the leaderboard's windows, splits and
seeds (the same ``WindowSplit`` arrays every other row gets).

- EEGNet: Lawhern VJ, Solon AJ, Waytowich NR, Gordon SM, Hung CP, Lance BJ. "EEGNet: a compact convolutional
  neural network for EEG-based brain-computer interfaces." J. Neural Eng. 15(5):056013 (2018). Designed for
  128 Hz input (its 64-sample temporal kernel is half a second), so windows are resampled to 128 Hz.
- ShallowFBCSPNet: Schirrmeister RT, Springenberg JT, Fiederer LDJ, Glasstetter M, Eggensperger K, Tangermann M,
  Hutter F, Burgard W, Ball T. "Deep learning with convolutional neural networks for EEG decoding and
  visualization." Hum. Brain Mapp. 38(11):5391-5420 (2017).
- Library: braindecode 0.8 (BSD-3-Clause), https://braindecode.org. Pinned ``>=0.8.1,<1.0``: braindecode 1.x
  imports torchaudio, whose PyPI wheels are CUDA builds that fail to load with the CPU torch used here.

Input: µV / 100, divided by one scalar, the standard deviation of the train windows (unit variance, as
braindecode's examples standardise before training; relative amplitudes between channels and windows are
kept, and BatchNorm's initial running variance of 1 matches the data). The training loop is ours (as for
``smallnet``): AdamW, class-balanced cross-entropy, cosine decay, shuffled
mini-batches from a numpy generator seeded with ``seed`` and ``torch.manual_seed(seed)`` for the initial
weights and dropout; the epoch with the best val metric is kept, test is predicted once by that model.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from torch import nn

from neurolm_train.leaderboard.baselines import SFREQ, Fit
from neurolm_train.leaderboard.config import BraindecodeConfig
from neurolm_train.leaderboard.scoring import score
from neurolm_train.leaderboard.windows import WindowSplit

#: µV per input unit: the trainer's scaling (docs/architecture.md: "units of 100 µV").
INPUT_SCALE_UV = 100.0
#: Architectures this row can build (braindecode class names).
MODELS = ("EEGNetv4", "ShallowFBCSPNet")


def build_model(name: str, n_chans: int, n_times: int, n_classes: int) -> nn.Module:
    """A braindecode model with its default hyper-parameters, returning logits ``(B, K)`` for ``(B, C, T)``.

    Raises:
        ValueError: unknown ``name``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # braindecode 0.8 warns about its own deprecated argument names
        from braindecode.models import EEGNetv4, ShallowFBCSPNet

        if name == "EEGNetv4":
            return EEGNetv4(n_chans=n_chans, n_outputs=n_classes, n_times=n_times)
        if name == "ShallowFBCSPNet":
            return ShallowFBCSPNet(
                n_chans=n_chans,
                n_outputs=n_classes,
                n_times=n_times,
                final_conv_length="auto",
                add_log_softmax=False,
            )
    raise ValueError(f"unknown braindecode model {name!r}; known: {MODELS}")


def prepare(x: np.ndarray, resample_hz: int) -> np.ndarray:
    """Windows (N, C, T) µV at 200 Hz -> float32 in units of 100 µV at ``resample_hz``
    (``scipy.signal.resample_poly`` with the reduced ratio; 200 Hz: unchanged)."""
    x = np.asarray(x, dtype=np.float32)
    if resample_hz != int(SFREQ):
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(resample_hz), int(SFREQ))
        x = resample_poly(x, int(resample_hz) // g, int(SFREQ) // g, axis=-1).astype(np.float32)
    return np.ascontiguousarray(x / INPUT_SCALE_UV)


@torch.no_grad()
def _predict(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    model.eval()
    out = [
        torch.softmax(model(torch.from_numpy(x[i : i + batch_size])), dim=1).double().numpy()
        for i in range(0, x.shape[0], batch_size)
    ]
    return np.concatenate(out)


def fit_braindecode(
    train: WindowSplit,
    val: WindowSplit,
    test: WindowSplit,
    n_classes: int,
    seed: int,
    config: BraindecodeConfig,
) -> Fit:
    """Train ``config.model`` for up to ``config.epochs``; keep the epoch with the best val ``select_metric``
    (ties keep the earlier epoch); stop after ``config.patience`` epochs without improvement."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_train, x_val, x_test = (prepare(s.x, config.resample_hz) for s in (train, val, test))
    scale = (
        float(x_train.std()) or 1.0
    )  # one scalar from train: unit-variance input, amplitudes kept relative
    x_train, x_val, x_test = (x / np.float32(scale) for x in (x_train, x_val, x_test))
    model = build_model(config.model, x_train.shape[1], x_train.shape[2], n_classes)
    counts = np.bincount(train.y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, config.epochs))
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
        sched.step()
        v = score(config.select_metric, val.y, _predict(model, x_val))
        history.append({"epoch": epoch, "train_loss": total / order.size, config.select_metric: v})
        if v > best_score:
            best_score, best_epoch, best_state = v, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    if best_state is None:
        raise ValueError("BraindecodeConfig.epochs must be >= 1")
    model.load_state_dict(best_state)
    import braindecode

    return Fit(
        _predict(model, x_test),
        {config.select_metric: float(best_score)},
        {
            "best_epoch": best_epoch,
            "history": history,
            "braindecode": braindecode.__version__,
            "n_params": int(sum(p.numel() for p in model.parameters())),
            "input_hz": config.resample_hz,
            "input_scale_100uv": scale,
        },
    )
