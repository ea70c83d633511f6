"""Issue 5 (leaderboard) on the real Workload shards from ``workload_out`` (ingest -> split -> shard of EEGMAT).

Acceptance 1 (reduced run: ~120 windows per split, 3 seeds, tiny epochs/steps): ``run`` then ``show``
through the CLI give a table with chance, band power + LR, the small network and NeuroLM ``tiny`` trained
through vq -> pretrain -> instruct (computed, 3 seeds, 95% subject CIs) beside the reported NeuroLM and
LaBraM rows; Markdown and PNG are written and the PNG loads.
Acceptance 2: a re-run skips current records; a changed config or windows manifest re-runs and replaces
them; stale records are never mixed into the table.
Plus: bootstrap CI and Wilcoxon on inputs with known answers, reported-file validation, shard integrity.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import polars as pl
import pytest
from scipy.stats import binom
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from cli import train_app
from neurolm_data.shard import run_shard
from neurolm_train.leaderboard.config import DEFAULT_MODELS, DataConfig, resolve_models, with_overrides
from neurolm_train.leaderboard.reported import ReportedFormatError, load_file, load_reported
from neurolm_train.leaderboard.runner import run_leaderboard
from neurolm_train.leaderboard.stats import bootstrap_cis, paired_wilcoxon
from neurolm_train.leaderboard.store import iter_records
from neurolm_train.leaderboard.table import build_leaderboard
from neurolm_train.leaderboard.windows import ShardIntegrityError, load_manifest, read_split

REDUCED = DataConfig(max_windows_per_split=120)


def test_acceptance_1_reduced_run_then_show(workload_out: Path, tmp_path: Path) -> None:
    results = tmp_path / "lb"
    runner = CliRunner()
    run = runner.invoke(
        train_app,
        [
            "leaderboard",
            "run",
            str(workload_out),
            "--task",
            "workload",
            "--results",
            str(results),
            "--model",
            "chance-majority",
            "--model",
            "chance-stratified",
            "--model",
            "bandpower-lr",
            "--model",
            "smallnet",
            "--model",
            "neurolm-tiny",
            "--seeds",
            "0,1,2",
            "--max-windows",
            "120",
            "--set",
            "smallnet.epochs=2",
            "--set",
            "smallnet.n_spatial=8",
            *[
                x
                for k in ("vq_steps=2", "pretrain_steps=2", "instruct_steps=2", "val_limit=32")
                for x in ("--set", f"neurolm-tiny.{k}")
            ],
        ],
    )
    assert run.exit_code == 0, run.output
    assert "15 record(s) written, 0 skipped" in run.output

    manifest = load_manifest(workload_out, "workload")
    records = iter_records(results)
    assert len(records) == 15
    for rec in records:  # every record carries its evidence
        m = rec.meta
        assert m["manifest_hash"] == manifest.manifest_hash and len(m["config_hash"]) == 64
        assert m["provenance"]["shards_json"]["inputs"]["protocol"]["name"] == "workload"
        assert m["provenance"]["subjects"]["test"] == [f"Subject{i}" for i in range(31, 36)]
        assert m["code"]["commit"] and m["wall_s"] >= 0 and m["data"]["max_windows_per_split"] == 120
        preds = rec.predictions()
        assert preds.columns == ["key", "subject", "label", "pred", "prob_0", "prob_1"]
        truth = manifest.windows.filter(pl.col("key").is_in(preds["key"].to_list())).sort("key")
        assert truth["split"].unique().to_list() == ["test"]
        assert preds["label"].to_list() == truth["label"].to_list()
        assert preds["subject"].to_list() == truth["subject"].to_list()
        assert np.allclose(preds.select("prob_0", "prob_1").to_numpy().sum(1), 1.0)
    for rec in (r for r in records if r.meta["model"] == "neurolm-tiny"):  # trained through the 3 stages
        d = rec.meta["details"]
        assert [s["stage"] for s in d["stages"]] == ["vq", "pretrain", "instruct"] and d["checkpoint"][
            "stage"
        ] == "instruct"
        assert Path(d["checkpoint"]["path"]).is_file() and len(d["checkpoint"]["sha256"]) == 64
        assert 0.0 <= d["trainer_test_scores"]["generation"]["parse_failure_rate"] <= 1.0
    # band power + LR finds the rest/arithmetic difference on held-out subjects (deterministic lbfgs)
    lr = [r for r in records if r.meta["model"] == "bandpower-lr"]
    assert min(r.meta["scores"]["auroc"] for r in lr) > 0.6

    md, png = tmp_path / "board.md", tmp_path / "board.png"
    show = runner.invoke(
        train_app,
        [
            "leaderboard",
            "show",
            str(workload_out),
            "--results",
            str(results),
            "--markdown",
            str(md),
            "--png",
            str(png),
            "--n-boot",
            "100",
        ],
    )
    assert show.exit_code == 0, show.output
    board = build_leaderboard(workload_out, results, n_resamples=100)
    computed = {r.model: r for r in board.task_rows("workload") if r.computed}
    assert set(computed) == {
        "chance-majority",
        "chance-stratified",
        "bandpower-lr",
        "smallnet",
        "neurolm-tiny",
    }
    for row in computed.values():
        assert row.n_seeds == 3
        for cell in row.metrics.values():
            assert cell.ci is not None and cell.ci.n_subjects == 5
            assert 0.0 <= cell.ci.low <= cell.ci.high <= 1.0
    assert (
        computed["chance-majority"].metrics["auroc"].ci.low
        == computed["chance-majority"].metrics["auroc"].ci.high
        == 0.5
    )
    reported = [r for r in board.rows if not r.computed]
    assert any(r.task == "workload" and r.model.startswith("NeuroLM") for r in reported)
    assert any(r.model.startswith("LaBraM") and r.origin.startswith("reported") for r in reported)
    assert any(
        r.task == "workload"
        and r.model == "LaBraM-Base"
        and r.origin.startswith("not retrieved")
        and not r.metrics
        for r in reported
    )  # a known gap is shown as such, never as a number
    assert board.comparisons and all(c.task == "workload" for c in board.comparisons)

    text = md.read_text()
    assert "| bandpower-lr | computed here | 3 |" in text
    assert "reported (neurolm-summary)" in text and "LaBraM-Base" in text and "Wilcoxon" in text
    image = mpimg.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def _statuses(outcomes) -> dict[tuple[str, int], str]:
    return {(o.model, o.seed): o.status for o in outcomes}


def _reshard_with_swapped_subjects(src: Path, dst: Path) -> Path:
    """A second OUT whose Workload split differs (Subject30 <-> Subject31), built by the real split + shard."""
    dst.mkdir()
    for name in ("recordings.parquet", "ingest_config.json", "ledger.parquet"):
        shutil.copy(src / name, dst / name)
    (dst / "recordings").symlink_to(src / "recordings")
    text = (Path(__file__).resolve().parents[1] / "manifests/protocols/workload.toml").read_text()
    text = (
        text.replace('"Subject30"', '"@31"')
        .replace('"Subject31"', '"Subject30"')
        .replace('"@31"', '"Subject31"')
    )
    protocol = dst / "workload-swapped.toml"
    protocol.write_text(text.replace('name = "workload"', 'name = "workload-swapped"'))
    run_shard(dst, "workload", protocol=protocol)
    return dst


def test_acceptance_2_skip_then_rerun_on_changed_config_or_manifest(
    workload_out: Path, tmp_path: Path
) -> None:
    results = tmp_path / "lb"
    specs = resolve_models(["chance-majority", "bandpower-lr"])
    first = run_leaderboard(workload_out, specs, (0, 1), ["workload"], results, REDUCED)
    assert set(_statuses(first).values()) == {"ran"}
    before = {p: p.read_bytes() for p in results.rglob("record.json")}

    again = run_leaderboard(workload_out, specs, (0, 1), ["workload"], results, REDUCED)
    assert set(_statuses(again).values()) == {"skipped"}
    assert {p: p.read_bytes() for p in results.rglob("record.json")} == before

    # a changed config re-runs that row only, and replaces (not duplicates) its records
    changed = [specs[0], with_overrides(specs[1], {"c_grid": "[0.01, 1.0]"})]
    third = _statuses(run_leaderboard(workload_out, changed, (0, 1), ["workload"], results, REDUCED))
    assert third == {
        ("chance-majority", 0): "skipped",
        ("chance-majority", 1): "skipped",
        ("bandpower-lr", 0): "replaced",
        ("bandpower-lr", 1): "replaced",
    }
    assert len(list(results.rglob("record.json"))) == 4
    lr_hashes = {r.meta["config_hash"] for r in iter_records(results) if r.meta["model"] == "bandpower-lr"}
    old_lr = json.loads(next(b for p, b in before.items() if "bandpower-lr" in str(p)))["config_hash"]
    assert len(lr_hashes) == 1 and lr_hashes.pop() != old_lr

    # a mix of configs within one row is never averaged: the latest config wins, the other seed is listed
    run_leaderboard(workload_out, [specs[1]], (0,), ["workload"], results, REDUCED)
    board = build_leaderboard(workload_out, results, reported_dir=None, n_resamples=50)
    lr_row = next(r for r in board.rows if r.model == "bandpower-lr")
    assert lr_row.n_seeds == 1 and lr_row.evidence["seeds"] == [0]
    assert any("bandpower-lr/seed-1" in e and "config" in e for e in board.excluded)

    # a changed windows manifest (another split) re-runs every record
    other = _reshard_with_swapped_subjects(workload_out, tmp_path / "out2")
    assert (
        load_manifest(other, "workload").manifest_hash
        != load_manifest(workload_out, "workload").manifest_hash
    )
    fourth = run_leaderboard(other, specs, (0, 1), ["workload"], results, REDUCED)
    assert set(_statuses(fourth).values()) == {"replaced"}
    # ... and against the original shards those records are stale: excluded, not mixed in
    stale = build_leaderboard(workload_out, results, reported_dir=None, n_resamples=50)
    assert not [r for r in stale.rows if r.computed]
    assert sum("stale windows manifest" in e for e in stale.excluded) == 4
    fresh = build_leaderboard(other, results, reported_dir=None, n_resamples=50)
    assert {r.model for r in fresh.rows if r.computed} == {"chance-majority", "bandpower-lr"}


def test_bootstrap_ci_matches_binomial_quantiles() -> None:
    # 20 subjects, 2 windows each (labels 0 and 1); 10 subjects fully right, 10 fully wrong. A resample's
    # BAcc is then (#right subjects drawn) / 20 ~ Binomial(20, 0.5) / 20.
    n = 20
    subjects = np.repeat([f"s{i:02d}" for i in range(n)], 2)
    y = np.tile([0, 1], n)
    right = np.repeat(np.arange(n) < n // 2, 2)
    pred = np.where(right, y, 1 - y)
    prob = np.eye(2)[pred]
    with threadpool_limits(limits=1):
        ci = bootstrap_cis([(y, prob, subjects)], n_resamples=1000, seed=0)
        assert list(ci) == ["bacc", "auroc", "auc_pr"]
        assert ci["bacc"].low == pytest.approx(binom.ppf(0.025, n, 0.5) / n, abs=0.051)
        assert ci["bacc"].high == pytest.approx(binom.ppf(0.975, n, 0.5) / n, abs=0.051)
        small = bootstrap_cis([(y, prob, subjects)], n_resamples=100, seed=1)
        assert bootstrap_cis([(y, prob, subjects)], n_resamples=100, seed=1) == small  # deterministic
        # two identical seeds average to the same interval
        assert bootstrap_cis([(y, prob, subjects)] * 2, n_resamples=100, seed=1) == small
    # a perfect model has a degenerate interval at 1; one subject cannot be resampled
    perfect = bootstrap_cis([(y, np.eye(2)[y], subjects)], n_resamples=50)
    assert perfect["auroc"].low == perfect["auroc"].high == perfect["bacc"].low == 1.0
    one = bootstrap_cis([(y[:2], prob[:2], subjects[:2])], n_resamples=200)
    assert np.isnan(one["bacc"].low) and one["bacc"].n_subjects == 1


def test_paired_wilcoxon_known_values() -> None:
    a = {f"s{i}": 0.5 + 0.05 * i for i in range(8)}
    b = {f"s{i}": 0.5 + 0.05 * i - (0.01 + 0.001 * i) for i in range(8)}
    res = paired_wilcoxon(a, b, "bacc")
    assert res.statistic == 0.0 and res.p == pytest.approx(2 / 2**8)  # exact test, all 8 differences > 0
    assert res.median_diff == pytest.approx(0.0135) and res.note == ""
    same = paired_wilcoxon(a, dict(a), "bacc")
    assert same.p == 1.0 and "identical" in same.note
    small = paired_wilcoxon({k: a[k] for k in list(a)[:5]}, b, "bacc")
    assert len(small.subjects) == 5 and small.min_p == pytest.approx(0.0625) and "cannot reach" in small.note
    with pytest.raises(ValueError):
        paired_wilcoxon({"s0": 1.0}, {"s0": 0.0}, "bacc")


def test_reported_rows_carry_sources_and_tags(tmp_path: Path) -> None:
    rows = load_reported()
    xl = next(r for r in rows if r.model == "NeuroLM-XL" and r.task == "tuab")
    assert xl.metrics["bacc"].value == 0.7969 and xl.metrics["bacc"].tag == "paper"
    assert xl.metrics["auroc"].hard_labels and "2409.00101" in xl.citation
    wl = next(r for r in rows if r.task == "workload")
    assert (
        "variant unclear" in wl.model and wl.metrics["bacc"].tag == "2nd" and wl.metrics["auroc"].hard_labels
    )
    base = next(r for r in rows if r.model == "LaBraM-Base" and r.task == "tuab")
    assert base.metrics["auroc"].value == 0.9022 and base.metrics["auroc"].std == 0.0009
    assert {r.metrics[m].tag for r in rows for m in r.metrics} == {"paper", "2nd", "mem", "untagged", "fig"}
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'schema_version = 1\n[sources.x]\ncitation = "c"\n[[row]]\nmodel = "M"\ntask = "tuab"\n'
        'source = "x"\nbacc = { value = 81.4, tag = "paper" }\n'
    )
    with pytest.raises(ReportedFormatError, match="not a fraction"):
        load_file(bad)
    bad.write_text(
        'schema_version = 1\n[sources.x]\ncitation = "c"\n[[row]]\nmodel = "M"\ntask = "tuab"\nsource = "x"\n'
    )
    with pytest.raises(ReportedFormatError, match="either metrics or"):
        load_file(bad)


def test_changed_shard_bytes_are_refused(workload_out: Path, tmp_path: Path) -> None:
    src = workload_out / "shards" / "workload"
    dst = tmp_path / "shards" / "workload"
    (dst / "test").mkdir(parents=True)
    shutil.copy(src / "windows.parquet", dst / "windows.parquet")
    (tar_path,) = sorted((src / "test").glob("*.tar"))
    with tarfile.open(tar_path) as tin, tarfile.open(dst / "test" / tar_path.name, "w") as tout:
        for i, member in enumerate(tin.getmembers()):
            data = tin.extractfile(member).read()
            if i == 0:  # first eeg.npy: change one sample by 1 µV
                assert member.name.endswith(".eeg.npy")
                x = np.load(io.BytesIO(data))
                x[0, 0] += 1.0
                buf = io.BytesIO()
                np.save(buf, x)
                data = buf.getvalue()
                member.size = len(data)
            tout.addfile(member, io.BytesIO(data))
    manifest = load_manifest(tmp_path, "workload")
    with pytest.raises(ShardIntegrityError, match="window_hash"):
        read_split(manifest, "test")


def test_resolve_models_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "rows.toml"
    cfg.write_text("[smallnet]\nepochs = 5\nlr = 0.01\n")
    (net,) = resolve_models(["smallnet"], {"smallnet": {"epochs": "7"}}, cfg)
    assert net.config.epochs == 7 and net.config.lr == 0.01
    assert net.config != DEFAULT_MODELS["smallnet"].config
    with pytest.raises(KeyError):
        resolve_models(["smallnet"], {"smallnet": {"no_such_field": "1"}})
    with pytest.raises(ValueError):
        resolve_models(["chance-majority"], {"smallnet": {"epochs": "1"}})
