"""Classical spatial-filter baselines from the field's own libraries: Riemannian tangent space + logistic
regression (pyriemann) and common spatial patterns + LDA (MNE-Python's ``mne.decoding.CSP``).

Both have the fitter signature of ``baselines.py``: ``fit_x(train, val, test, n_classes, seed, config) -> Fit``
with ``WindowSplit`` windows float32 ``(N, C, T)`` µV at 200 Hz. Hyper-parameters are chosen on val only.

- Tangent space: Barachant A, Bonnet S, Congedo M, Jutten C. "Multiclass Brain-Computer Interface
  Classification by Riemannian Geometry." IEEE Trans. Biomed. Eng. 59(4):920-928 (2012); Barachant et al.
  "Classification of covariance matrices using a Riemannian-based kernel for BCI applications."
  Neurocomputing 112:172-178 (2013). Library: pyriemann (BSD-3-Clause), https://pyriemann.readthedocs.io.
  Covariance shrinkage: Chen Y, Wiesel A, Eldar YC, Hero AO. "Shrinkage Algorithms for MMSE Covariance
  Estimation." IEEE Trans. Signal Process. 58(10):5016-5029 (2010) (OAS).
- CSP: Ramoser H, Müller-Gerking J, Pfurtscheller G. "Optimal spatial filtering of single trial EEG during
  imagined hand movement." IEEE Trans. Rehabil. Eng. 8(4):441-446 (2000); Blankertz B et al. "Optimizing
  Spatial filters for Robust EEG Single-Trial Analysis." IEEE Signal Process. Mag. 25(1):41-56 (2008).
  Library: MNE-Python (BSD-3-Clause), Gramfort A et al., Front. Neurosci. 7:267 (2013). LDA with Ledoit-Wolf
  shrinkage: scikit-learn (BSD-3-Clause). The 8-30 Hz band and 6 filters follow MOABB's CSP+LDA pipeline
  (Jayaram V, Barachant A. "MOABB: trustworthy algorithm benchmarking for BCIs." J. Neural Eng. 15:066011, 2018).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neurolm_train.leaderboard.baselines import SFREQ, Fit, _full_proba
from neurolm_train.leaderboard.config import CSPConfig, RiemannConfig
from neurolm_train.leaderboard.scoring import score
from neurolm_train.leaderboard.windows import WindowSplit


def bandpass(x: np.ndarray, band: tuple[float, float] | None) -> np.ndarray:
    """Zero-phase 4th-order Butterworth band-pass (``scipy.signal.sosfiltfilt``) of ``x`` (N, C, T) µV at
    200 Hz along time; float64. ``band`` None returns ``x`` as float64 unchanged."""
    x = np.asarray(x, dtype=np.float64)
    if band is None:
        return x
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, band, btype="bandpass", fs=SFREQ, output="sos")
    return sosfiltfilt(sos, x, axis=-1)


def covariances(x: np.ndarray, estimator: str) -> np.ndarray:
    """Spatial covariance per window: ``pyriemann.estimation.Covariances(estimator)`` of (N, C, T) -> (N, C, C)."""
    from pyriemann.estimation import Covariances

    return Covariances(estimator=estimator).fit_transform(x)


def fit_riemann(
    train: WindowSplit, val: WindowSplit, test: WindowSplit, n_classes: int, seed: int, config: RiemannConfig
) -> Fit:
    """Tangent-space features at the Riemannian mean of the train covariances + logistic regression, C on val.

    lbfgs is deterministic: seeds give identical results (``seed`` is passed as ``random_state``).
    """
    from pyriemann.tangentspace import TangentSpace

    if not config.c_grid:
        raise ValueError("RiemannConfig.c_grid is empty")
    covs = [covariances(bandpass(s.x, config.band), config.estimator) for s in (train, val, test)]
    ts = TangentSpace(metric="riemann").fit(covs[0])
    f_train, f_val, f_test = (ts.transform(c) for c in covs)
    history: list[dict[str, float]] = []
    best: tuple[float, float, Any] | None = None
    for c in config.c_grid:
        clf = make_pipeline(
            StandardScaler(),
            LogisticRegression(
                C=c, class_weight=config.class_weight, max_iter=config.max_iter, random_state=seed
            ),
        )
        clf.fit(f_train, train.y)
        v = score(config.select_metric, val.y, _full_proba(clf, f_val, n_classes))
        history.append({"C": c, config.select_metric: v})
        if best is None or v > best[0]:
            best = (v, c, clf)
    v, c, clf = best  # type: ignore[misc]
    return Fit(
        _full_proba(clf, f_test, n_classes),
        {config.select_metric: v},
        {"chosen_C": c, "val_history": history, "n_features": int(f_train.shape[1])},
    )


def fit_csp(
    train: WindowSplit, val: WindowSplit, test: WindowSplit, n_classes: int, seed: int, config: CSPConfig
) -> Fit:
    """``mne.decoding.CSP`` (log-variance of ``n_components`` filters) + shrinkage LDA, on band-passed windows.

    Deterministic (no random state): seeds give identical results.
    """
    from mne.decoding import CSP
    from mne.utils import use_log_level

    x_train, x_val, x_test = (bandpass(s.x, config.band) for s in (train, val, test))
    n_comp = min(config.n_components, x_train.shape[1])
    clf = make_pipeline(
        CSP(n_components=n_comp, reg=config.reg, log=True, norm_trace=False),
        LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"),
    )
    with use_log_level("error"):
        clf.fit(x_train, train.y)
        val_prob, test_prob = (_full_proba(clf, x, n_classes) for x in (x_val, x_test))
    v = score(config.select_metric, val.y, val_prob)
    return Fit(test_prob, {config.select_metric: v}, {"n_components": n_comp})
