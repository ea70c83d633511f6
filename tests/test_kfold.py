"""Subject-level k-fold cross-validation (rule ``kfold``) and the splitter objects (issue 10, acceptance 3)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from neurolm_data.ingest import run_ingest
from neurolm_data.protocols import ProtocolError, load_protocol
from neurolm_data.shard import run_shard
from neurolm_data.split import (
    CV_SPLIT,
    SPLITTERS,
    KFoldSplitter,
    Splitter,
    compute_splits,
    fold_split,
    get_splitter,
    read_splits,
    run_split,
    with_fold_splits,
)


def _recordings(source: str, subjects: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "recording_id": [f"{source}_{s}" for s in subjects],
            "source": [source] * len(subjects),
            "subject": subjects,
            "official_split": [None] * len(subjects),
        },
        schema_overrides={"official_split": pl.String},
    )


def _check_folds(splits: pl.DataFrame, n_folds: int) -> None:
    """Every subject is tested in exactly one fold; val comes from that fold's non-test subjects."""
    subjects = set(splits["subject"].to_list())
    tested: list[str] = []
    for f in range(n_folds):
        view = with_fold_splits(splits, f, n_folds)
        test = set(view.filter(pl.col("split") == "test")["subject"].to_list())
        val = set(view.filter(pl.col("split") == "val")["subject"].to_list())
        train = set(view.filter(pl.col("split") == "train")["subject"].to_list())
        assert (
            test | val | train == subjects and not (test & val) and not (test & train) and not (val & train)
        )
        tested += sorted(test)
    assert sorted(tested) == sorted(subjects)  # each exactly once


@pytest.mark.parametrize(
    "name,source,subjects",
    [
        ("workload_cv", "workload", [f"Subject{i:02d}" for i in range(36)]),
        ("mi_cv", "eegmmidb", [f"S{i:03d}" for i in range(1, 110)]),
        ("mi_cv", "eegmmidb", [f"S{i:03d}" for i in range(1, 13)]),
    ],
)
def test_every_subject_in_exactly_one_test_fold(name: str, source: str, subjects: list[str]) -> None:
    proto = load_protocol(name)
    splits = compute_splits(_recordings(source, subjects), proto)
    assert splits.height == len(subjects) and set(splits["split"].to_list()) == {CV_SPLIT}
    assert splits["fold"].min() >= 0 and splits["fold"].max() < proto.n_folds
    assert splits["fold"].n_unique() == proto.n_folds  # no empty fold on the shipped corpora
    _check_folds(splits, proto.n_folds)


def test_adding_subjects_moves_no_existing_subject() -> None:
    proto = load_protocol("adhd_cv")
    few = compute_splits(_recordings("adhd", [f"v{i}p" for i in range(40)]), proto)
    many = compute_splits(_recordings("adhd", [f"v{i}p" for i in range(400)]), proto)
    joined = few.join(many, on=["source", "subject"], suffix="_many")
    assert joined.height == 40 and (joined["fold"] == joined["fold_many"]).all()


def test_fold_split_rule() -> None:
    assert [fold_split(s, 2, 5) for s in range(5)] == ["train", "train", "test", "val", "train"]
    assert fold_split(0, 4, 5) == "val"  # the validation fold wraps around


def test_kfold_protocol_validation(tmp_path: Path) -> None:
    p = tmp_path / "bad_cv.toml"
    p.write_text(
        'version = 1\nname = "bad_cv"\nsource = "x"\ntask = "mi"\n[split]\nrule = "kfold"\nn_folds = 2\n'
    )
    with pytest.raises(ProtocolError, match="n_folds must be >= 3"):
        load_protocol(p)
    p.write_text('version = 1\nname = "bad_cv"\nsource = "x"\ntask = "mi"\n[split]\nrule = "kfold"\n')
    with pytest.raises(ProtocolError, match="missing key split.'n_folds'"):
        load_protocol(p)


def test_every_rule_is_a_splitter_object() -> None:
    """Each protocol rule is a small object with one ``split`` method (MOABB-style)."""
    for name in ("workload", "tuab", "tusl", "hmc", "seed", "mi_cv"):
        proto = load_protocol(name)
        splitter = get_splitter(proto)
        assert isinstance(splitter, Splitter) and type(splitter) is SPLITTERS[proto.rule]
    assert isinstance(get_splitter(load_protocol("mi_cv")), KFoldSplitter)


def _tree(out: Path) -> dict[str, bytes]:
    files = [out / "recordings.parquet", out / "splits.parquet", *sorted((out / "shards").rglob("*"))]
    return {str(p.relative_to(out)): p.read_bytes() for p in files if p.is_file()}


def test_kfold_shards_written_once_and_identical_with_1_and_2_workers(
    samples_dir: Path, tmp_path: Path
) -> None:
    """Acceptance 3: manifests and shards byte-identical with 1 and 2 ingest workers; each window is written
    once (split ``cv``) with its subject's fold in ``windows.parquet``; no per-fold copies."""
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        assert run_ingest("eegmmidb", samples_dir / "eegmmidb-mi", out, workers=workers).n_failed == 0
        res = run_split(out, "mi_cv")
        assert res.subjects == {CV_SPLIT: 12} and sum(res.folds.values()) == 12
        run_shard(out, "mi")
        outs.append(out)
    a, b = (_tree(o) for o in outs)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    task_dir = outs[0] / "shards" / "mi"
    assert sorted(p.parent.name for p in task_dir.glob("*/*.tar")) == [CV_SPLIT]
    win = pl.read_parquet(task_dir / "windows.parquet")
    splits, meta = read_splits(outs[0])
    assert meta["protocol"]["n_folds"] == 4
    assert win["key"].n_unique() == win.height == 360 and set(win["split"].to_list()) == {CV_SPLIT}
    fold_of = dict(splits.select("subject", "fold").rows())
    assert all(fold_of[s] == f for s, f in win.select("subject", "fold").rows())
    _check_folds(win.unique("subject"), 4)
