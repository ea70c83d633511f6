"""Classical baselines on the windows: chance (scikit-learn dummy) and band power + logistic regression.

Every baseline has the signature ``fit_predict(train, val, test, n_classes, seed, config) -> Fit``
(``train``/``val``/``test`` are :class:`~neurolm_train.leaderboard.windows.WindowSplit`). Hyper-parameters
are chosen on ``val`` only; ``test`` is predicted once, by the chosen model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.signal import welch
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neurolm_train.leaderboard.config import BandPowerConfig, ChanceConfig
from neurolm_train.leaderboard.scoring import score
from neurolm_train.leaderboard.windows import WindowSplit

#: Sampling rate of every stored window (docs/architecture.md).
SFREQ = 200.0


@dataclass
class Fit:
    """Result of one (model, task, seed) fit.

    ``test_prob``: float64 ``(N_test, K)`` class probabilities in test key order; ``val_scores``: the
    selection metric on val of the chosen model; ``details``: JSON-able facts about the fit (chosen C,
    best epoch, per-epoch history, parse failures ...), stored in the record.
    """

    test_prob: np.ndarray
    val_scores: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def _full_proba(clf: Any, x: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` expanded to all K columns (classes absent from train get probability 0)."""
    prob = np.zeros((x.shape[0], n_classes))
    prob[:, clf.classes_.astype(int)] = clf.predict_proba(x)
    return prob


def fit_chance(
    train: WindowSplit, val: WindowSplit, test: WindowSplit, n_classes: int, seed: int, config: ChanceConfig
) -> Fit:
    """``DummyClassifier(strategy=config.strategy, random_state=seed)`` fitted on the train labels."""
    clf = DummyClassifier(strategy=config.strategy, random_state=seed)
    clf.fit(np.zeros((train.y.size, 1)), train.y)
    val_prob = _full_proba(clf, np.zeros((val.y.size, 1)), n_classes)
    test_prob = _full_proba(clf, np.zeros((test.y.size, 1)), n_classes)
    prior = np.bincount(train.y, minlength=n_classes) / train.y.size
    return Fit(test_prob, {"bacc": score("bacc", val.y, val_prob)}, {"train_prior": prior.tolist()})


def band_power_features(x: np.ndarray, config: BandPowerConfig) -> np.ndarray:
    """log10 band power per channel and band.

    ``x``: float32 ``(N, C, T)`` µV at 200 Hz. Welch PSD (Hann, ``nperseg``/``noverlap`` samples) in
    µV²/Hz, integrated over each band ``[low, high)`` (sum of bins x bin width) -> µV². Returns float64
    ``(N, C * n_bands)``, channel-major (all bands of channel 0 first). Raises ``ValueError`` when a band
    contains no frequency bin.
    """
    freqs, psd = welch(x, fs=SFREQ, nperseg=config.nperseg, noverlap=config.noverlap, axis=-1)
    df = freqs[1] - freqs[0]
    feats = []
    for name, low, high in config.bands:
        sel = (freqs >= low) & (freqs < high)
        if not sel.any():
            raise ValueError(f"band {name} [{low}, {high}) Hz has no Welch bin at {df} Hz resolution")
        feats.append(psd[..., sel].sum(axis=-1) * df)
    power = np.stack(feats, axis=-1)  # (N, C, n_bands)
    return np.log10(power + 1e-12).reshape(x.shape[0], -1)


def fit_bandpower(
    train: WindowSplit,
    val: WindowSplit,
    test: WindowSplit,
    n_classes: int,
    seed: int,
    config: BandPowerConfig,
) -> Fit:
    """Standardised logistic regression on :func:`band_power_features`, ``C`` chosen on val.

    Ties on the val metric go to the smaller ``C`` (stronger regularisation). lbfgs is deterministic, so
    ``seed`` only sets ``random_state`` for completeness: seeds give identical results.
    """
    if not config.c_grid:
        raise ValueError("BandPowerConfig.c_grid is empty")
    f_train, f_val, f_test = (band_power_features(s.x, config) for s in (train, val, test))
    history = []
    best: tuple[float, float, Any] | None = None
    for c in config.c_grid:
        clf = make_pipeline(
            StandardScaler(),
            LogisticRegression(
                C=c, class_weight=config.class_weight, max_iter=config.max_iter, random_state=seed
            ),
        )
        clf.fit(f_train, train.y)
        val_score = score(config.select_metric, val.y, _full_proba(clf, f_val, n_classes))
        history.append({"C": c, config.select_metric: val_score})
        if best is None or val_score > best[0]:
            best = (val_score, c, clf)
    val_score, c, clf = best  # type: ignore[misc]
    return Fit(
        _full_proba(clf, f_test, n_classes),
        {config.select_metric: val_score},
        {"chosen_C": c, "val_history": history, "n_features": int(f_train.shape[1])},
    )
