"""The tidy results table: one row per (task, fold, subject, model, seed), every metric, as Parquet and CSV.

Built from the records that enter the leaderboard (the computed rows of a
:class:`~neurolm_train.leaderboard.table.Leaderboard`: current manifest, latest config, complete folds), so the
table and the leaderboard never disagree. Columns:

- ``task``, ``fold`` (the CV fold whose test split held the subject; null under a fixed split), ``subject``,
  ``model``, ``seed``, ``n_windows`` (the subject's test windows);
- every metric of the task's set (``bacc``, ``auroc``, ``auc_pr`` for binary tasks; ``bacc``, ``kappa``,
  ``f1_weighted`` for multiclass ones), over that subject's windows, from probabilities (``scoring.py``);
  null where the task's set lacks it, NaN where undefined (AUROC of a subject whose windows share one label);
- ``subject_label`` and ``subject_prob`` (the subject's mean probability of its label, i.e. the per-subject
  prediction of a subject-level task such as ADHD) when all the subject's windows share one label, else null.

Long (tidy) format, as MOABB's results tables, so that pandas/polars/seaborn group and plot it directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from neurolm_train.leaderboard.scoring import per_subject
from neurolm_train.leaderboard.store import load_record
from neurolm_train.leaderboard.table import Leaderboard

#: Metric columns, in order (the union of the binary and multiclass sets).
METRIC_COLUMNS = ("bacc", "auroc", "auc_pr", "kappa", "f1_weighted")
SCHEMA = {
    "task": pl.String,
    "fold": pl.Int64,
    "subject": pl.String,
    "model": pl.String,
    "seed": pl.Int64,
    "n_windows": pl.Int64,
    **{m: pl.Float64 for m in METRIC_COLUMNS},
    "subject_label": pl.Int64,
    "subject_prob": pl.Float64,
}


def tidy_table(board: Leaderboard) -> pl.DataFrame:
    """The tidy table of every computed row of ``board`` (see the module docstring), sorted by
    ``(task, model, seed, fold, subject)``."""
    rows = []
    for row in (r for r in board.rows if r.computed):
        for path in row.evidence["records"]:
            rec = load_record(Path(path))
            if rec is None:  # removed since the board was built
                continue
            y, prob, subjects = rec.probabilities()
            scores = per_subject(y, prob, subjects)
            for subject, sc in scores.items():
                sel = subjects == subject
                labels = np.unique(y[sel])
                single = labels.size == 1
                rows.append(
                    {
                        "task": row.task,
                        "fold": rec.meta.get("fold"),
                        "subject": subject,
                        "model": row.model,
                        "seed": int(rec.meta["seed"]),
                        "n_windows": int(sel.sum()),
                        **{m: sc.get(m) for m in METRIC_COLUMNS},
                        "subject_label": int(labels[0]) if single else None,
                        "subject_prob": float(prob[sel, int(labels[0])].mean()) if single else None,
                    }
                )
    df = pl.DataFrame(rows, schema=SCHEMA, orient="row")
    return df.sort("task", "model", "seed", "fold", "subject", nulls_last=False)


def write_tidy(board: Leaderboard, results: Path) -> tuple[Path, Path]:
    """Write ``RESULTS/results.parquet`` and ``RESULTS/results.csv`` (each to a temporary file, then renamed).
    Returns both paths."""
    df = tidy_table(board)
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    out = []
    for name, write in (("results.parquet", df.write_parquet), ("results.csv", df.write_csv)):
        final = results / name
        tmp = final.with_name(f".{name}.tmp")
        write(tmp)
        tmp.replace(final)
        out.append(final)
    return out[0], out[1]
