"""Issue 10, acceptance 4: fold-aware leaderboard runs with the field's baselines on the three real tasks.

A run over a ``kfold`` protocol fits every (model, seed) once per fold; ``show`` pools each seed's fold test
predictions, so the bootstrap CIs and the paired Wilcoxon tests run over every subject of the corpus, and
writes the tidy table (Parquet + CSV). Reduced data (``--max-windows``) and 1-epoch networks keep it short;
the README's numbers come from ``benchmarks/leaderboard_cv.py`` on all windows.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from cli import train_app
from neurolm_data.ingest import run_ingest
from neurolm_data.shard import run_shard
from neurolm_data.split import read_splits
from neurolm_train.leaderboard.braindecode_nets import fit_braindecode
from neurolm_train.leaderboard.config import BraindecodeConfig, DataConfig, resolve_models
from neurolm_train.leaderboard.runner import run_leaderboard
from neurolm_train.leaderboard.store import iter_records
from neurolm_train.leaderboard.table import build_leaderboard
from neurolm_train.leaderboard.windows import WindowSplit, load_manifest, read_split

BASELINES = (
    "chance-majority",
    "chance-stratified",
    "bandpower-lr",
    "riemann-ts-lr",
    "csp-lda",
    "eegnet",
    "shallow-fbcsp",
    "smallnet",
)
TIDY_COLUMNS = [
    "task",
    "fold",
    "subject",
    "model",
    "seed",
    "n_windows",
    "bacc",
    "auroc",
    "auc_pr",
    "kappa",
    "f1_weighted",
    "subject_label",
    "subject_prob",
]


@pytest.fixture(scope="module")
def mi_cv_out(samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mi_cv") / "out"
    assert run_ingest("eegmmidb", samples_dir / "eegmmidb-mi", out, workers=2).n_failed == 0
    run_shard(out, "mi", protocol="mi_cv")
    return out


def test_mi_cv_every_baseline_three_seeds_tidy_table(mi_cv_out: Path, tmp_path: Path) -> None:
    results = tmp_path / "lb"
    args = [
        "leaderboard",
        "run",
        str(mi_cv_out),
        "--task",
        "mi",
        "--results",
        str(results),
        "--seeds",
        "0,1,2",
        "--max-windows",
        "24",
        "--set",
        "eegnet.epochs=1",
        "--set",
        "shallow-fbcsp.epochs=1",
        "--set",
        "smallnet.epochs=1",
        "--set",
        "eegnet.batch_size=16",
        "--set",
        "shallow-fbcsp.batch_size=16",
    ]
    for m in BASELINES:
        args += ["--model", m]
    run = CliRunner().invoke(train_app, args)
    assert run.exit_code == 0, run.output
    assert f"{len(BASELINES) * 3 * 4} record(s) written" in run.output and "fold 3" in run.output
    records = iter_records(results)
    assert {(r.meta["model"], r.meta["seed"], r.meta["fold"]) for r in records} == {
        (m, s, f) for m in BASELINES for s in (0, 1, 2) for f in range(4)
    }
    assert all(r.meta["n_folds"] == 4 for r in records)

    md, png = tmp_path / "board.md", tmp_path / "board.png"
    show = CliRunner().invoke(
        train_app,
        [
            "leaderboard",
            "show",
            str(mi_cv_out),
            "--results",
            str(results),
            "--markdown",
            str(md),
            "--png",
            str(png),
            "--n-boot",
            "50",
        ],
    )
    assert show.exit_code == 0, show.output
    tidy = pl.read_parquet(results / "results.parquet")
    assert tidy.columns == TIDY_COLUMNS
    assert pl.read_csv(results / "results.csv").height == tidy.height == len(BASELINES) * 3 * 12
    splits, _ = read_splits(mi_cv_out)
    fold_of = dict(splits.select("subject", "fold").rows())
    assert all(
        fold_of[s] == f for s, f in tidy.select("subject", "fold").rows()
    )  # tested in its own fold only
    assert tidy.group_by("model", "seed").agg(pl.col("subject").n_unique())["subject"].to_list() == [12] * 24
    assert tidy["n_windows"].min() >= 1 and tidy["bacc"].is_between(0, 1).all()

    board = build_leaderboard(mi_cv_out, results, n_resamples=50)
    computed = [r for r in board.task_rows("mi") if r.computed]
    assert {r.model for r in computed} == set(BASELINES)
    for row in computed:
        assert row.n_seeds == 3 and row.evidence["n_folds"] == 4 and row.evidence["n_test_subjects"] == 12
        assert all(c.ci.n_subjects == 12 for c in row.metrics.values())
    assert board.comparisons and all(len(c.result.subjects) == 12 for c in board.comparisons)  # all subjects
    text = md.read_text()
    assert "4-fold CV, pooled" in text and "| riemann-ts-lr | computed here | 3 |" in text
    image = mpimg.imread(png)
    assert image.ndim == 3 and image.shape[1] > 1000

    # a seed missing a fold never enters the row: its pooled predictions would miss subjects
    victim = next(
        r for r in records if r.meta["model"] == "csp-lda" and r.meta["seed"] == 2 and r.meta["fold"] == 1
    )
    shutil.rmtree(victim.path)
    board = build_leaderboard(mi_cv_out, results, n_resamples=20)
    row = next(r for r in board.task_rows("mi") if r.model == "csp-lda")
    assert row.n_seeds == 2 and any(
        "csp-lda/seed-2: folds [0, 2, 3] of [0, 1, 2, 3]" in e for e in board.excluded
    )


def test_adhd_cv_scores_per_window_and_per_child(samples_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_ingest("adhd", samples_dir / "adhd", out, workers=2).n_failed == 0
    run_shard(out, "adhd", protocol="adhd_cv")
    results = tmp_path / "lb"
    run_leaderboard(
        out,
        resolve_models(["chance-majority", "riemann-ts-lr"]),
        (0, 1, 2),
        ["adhd"],
        results,
        DataConfig(max_windows_per_split=300),
    )
    board = build_leaderboard(out, results, n_resamples=50)
    rows = {r.model: r for r in board.task_rows("adhd") if r.computed}
    for row in rows.values():
        assert row.evidence["n_test_subjects"] == 121 and row.evidence["n_folds"] == 5
        assert row.subject_metrics is not None  # per child: mean class probability over its windows
        assert all(c.ci.n_subjects == 121 for c in row.subject_metrics.values())
    # the prior differs by fold, so pooled over folds the majority row is near, not exactly at, 0.5
    assert 0.4 < rows["chance-majority"].subject_metrics["bacc"].mean < 0.6
    (comp,) = board.comparisons
    assert len(comp.result.subjects) == 121
    from neurolm_train.leaderboard.render import to_markdown
    from neurolm_train.leaderboard.tidy import tidy_table

    assert "Per subject on adhd" in to_markdown(board)
    tidy = tidy_table(board)
    assert tidy.height == 2 * 3 * 121 and tidy["subject_label"].null_count() == 0
    labels = dict(tidy.select("subject", "subject_label").unique().rows())
    assert sum(labels.values()) == 61 and len(labels) == 121


def test_workload_cv_field_baselines_learn(workload_out: Path, tmp_path: Path) -> None:
    """Every one of the 36 Workload subjects is tested once; the Riemannian and band-power baselines find
    the rest/arithmetic difference on held-out subjects (AUROC pooled over all subjects)."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("recordings.parquet", "ingest_config.json", "ledger.parquet"):
        shutil.copy(workload_out / name, out / name)
    (out / "recordings").symlink_to(workload_out / "recordings")
    run_shard(out, "workload", protocol="workload_cv")
    results = tmp_path / "lb"
    run_leaderboard(
        out,
        resolve_models(["bandpower-lr", "riemann-ts-lr", "csp-lda"]),
        (0,),
        ["workload"],
        results,
        DataConfig(max_windows_per_split=150),
    )
    board = build_leaderboard(out, results, n_resamples=50)
    rows = {r.model: r for r in board.task_rows("workload") if r.computed}
    assert all(r.evidence["n_test_subjects"] == 36 for r in rows.values())
    assert rows["bandpower-lr"].metrics["auroc"].mean > 0.6
    assert rows["riemann-ts-lr"].metrics["auroc"].mean > 0.6


@pytest.mark.parametrize("model,hz", [("EEGNetv4", 128), ("ShallowFBCSPNet", 200)])
def test_braindecode_nets_overfit_a_few_windows(workload_out: Path, model: str, hz: int) -> None:
    """Diagnosis before tuning: each braindecode network fits 32 real Workload windows (val = the same windows)."""
    manifest = load_manifest(workload_out, "workload")
    keys = manifest.windows.filter(pl.col("split") == "train").group_by("label", maintain_order=True).head(16)
    few = read_split(manifest, "train", keys["key"].to_list())
    assert np.bincount(few.y).tolist() == [16, 16]
    cfg = BraindecodeConfig(model, resample_hz=hz, epochs=40, patience=40, batch_size=16, lr=3e-3)
    fit = fit_braindecode(
        few, few, WindowSplit("test", few.x, few.y, few.subjects, few.keys, few.channel_indices), 2, 0, cfg
    )
    assert fit.val_scores["bacc"] >= 0.9, fit.details["history"][-3:]
    assert fit.test_prob.shape == (32, 2) and np.allclose(fit.test_prob.sum(1), 1.0)
