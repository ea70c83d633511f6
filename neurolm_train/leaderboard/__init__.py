"""Leaderboard: benchmark runs that carry their evidence, beside the published numbers.

Modules, one job each:

- ``config``     typed row configs (dataclasses), the built-in rows, the config hash;
- ``windows``    read a task's windows from the WebDataset shards, verified against ``windows.parquet``;
- ``scoring``    task metrics from probabilities (scikit-learn), overall and per subject;
- ``baselines``  chance (dummy) and band power + logistic regression; ``smallnet``: a small CNN;
- ``riemann``    pyriemann tangent space + LR, MNE CSP + LDA; ``braindecode_nets``: EEGNetv4, ShallowFBCSPNet;
- ``store``      the results store (one record per model, task, seed, with predictions);
- ``runner``     ``run``: fit what has no current record, skip the rest;
- ``stats``      subject-bootstrap CIs and paired Wilcoxon tests;
- ``reported``   published results from ``manifests/reported/*.toml``;
- ``table``      assemble the leaderboard (CV folds pooled per seed); ``render``: rich, Markdown and PNG output;
- ``tidy``       the tidy results table (Parquet + CSV): task, fold, subject, model, seed, n_windows, metrics.

Python API::

    from neurolm_train.leaderboard import DEFAULT_MODELS, run_leaderboard, build_leaderboard
    run_leaderboard("out", DEFAULT_MODELS.values(), seeds=(0, 1, 2), tasks=["workload"])
    board = build_leaderboard("out", tasks=["workload"])
"""

from neurolm_train.leaderboard import labram as _labram  # noqa: F401 - registers the LaBraM rows
from neurolm_train.leaderboard import unimind as _unimind  # noqa: F401  registers the unimind rows
from neurolm_train.leaderboard.config import DEFAULT_MODELS, DataConfig, ModelSpec, with_overrides
from neurolm_train.leaderboard.render import print_rich, to_markdown, to_png
from neurolm_train.leaderboard.runner import run_leaderboard
from neurolm_train.leaderboard.table import build_leaderboard

__all__ = [
    "DEFAULT_MODELS",
    "DataConfig",
    "ModelSpec",
    "build_leaderboard",
    "print_rich",
    "run_leaderboard",
    "to_markdown",
    "to_png",
    "with_overrides",
]
