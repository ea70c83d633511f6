"""Split protocols, subject-level splits and the leakage audit, on the real EEGMAT ``recordings.parquet``.

Every test copies ``recordings.parquet`` from the session fixture ``workload_out`` (a real ingest of the
complete EEGMAT release) into ``tmp_path`` and never touches the fixture itself.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cli import data_app
from neurolm_data.protocols import ProtocolError, hash_bucket, load_protocol
from neurolm_data.split import LeakageError, SplitError, compute_splits, read_splits, run_split
from neurolm_data.tasks import get_task
from neurolm_data.windows import audit_windows, plan_windows

SUBJECTS = [f"Subject{i:02d}" for i in range(36)]


def _out_with_recordings(src: Path, dst: Path, recordings: pl.DataFrame | None = None) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    if recordings is None:
        shutil.copy(src / "recordings.parquet", dst / "recordings.parquet")
    else:
        recordings.write_parquet(dst / "recordings.parquet")
    return dst


def _protocol(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def test_workload_protocol_explicit_lists(workload_out: Path, tmp_path: Path) -> None:
    out = _out_with_recordings(workload_out, tmp_path / "out")
    res = run_split(out, "workload")
    assert res.subjects == {"train": 26, "val": 5, "test": 5}
    assert res.recordings == {"train": 52, "val": 10, "test": 10}
    table, meta = read_splits(out)
    assert table.columns == ["source", "subject", "split", "rule", "protocol", "protocol_version", "salt"]
    assert table["subject"].to_list() == SUBJECTS  # one row per subject, sorted
    expect = ["train"] * 26 + ["val"] * 5 + ["test"] * 5  # neurolm-spec.md §2.6
    assert table["split"].to_list() == expect
    assert set(table["rule"]) == {"explicit"} and set(table["protocol"]) == {"workload"}
    assert table["protocol_version"].dtype == pl.Int64 and set(table["protocol_version"]) == {1}
    assert meta["protocol"]["name"] == "workload"
    assert meta["protocol_hash"] == load_protocol("workload").protocol_hash
    first = (out / "splits.parquet").read_bytes()
    run_split(out, load_protocol("workload").path)  # by path this time: same bytes
    assert (out / "splits.parquet").read_bytes() == first


def test_hash_rule_adding_subjects_moves_no_one(workload_out: Path, tmp_path: Path) -> None:
    proto = load_protocol(
        _protocol(
            tmp_path / "h.toml",
            """
version = 1
name = "h"
source = "workload"
task = "workload"
[split]
rule = "hash"
salt = "test-salt"
[split.fractions]
train = 0.6
val = 0.2
test = 0.2
""",
        )
    )
    rec = pl.read_parquet(workload_out / "recordings.parquet")
    base = compute_splits(rec, proto)
    assert set(base["split"]) == {"train", "val", "test"}
    for row in base.iter_rows(named=True):  # the rule is exactly the documented bucket boundaries
        u = hash_bucket("test-salt", row["source"], row["subject"])
        assert row["split"] == ("train" if u < 0.6 else "val" if u < 0.8 else "test")
    # Add two new subjects (copies of real rows) and drop a third: nobody else moves.
    new = rec.filter(pl.col("subject").is_in(["Subject00", "Subject01"])).with_columns(
        subject=pl.col("subject").str.replace("Subject", "NewSubject"),
        recording_id=pl.col("recording_id").str.replace("Subject", "NewSubject"),
    )
    grown = pl.concat([rec.filter(pl.col("subject") != "Subject05"), new]).sort("recording_id")
    after = compute_splits(grown, proto)
    assert after.height == base.height + 1
    kept = base.filter(pl.col("subject") != "Subject05")
    both = after.join(kept, on=["source", "subject"], how="inner")
    assert both.height == kept.height
    assert (both["split"] == both["split_right"]).all()
    # The salt matters: another salt re-deals the subjects.
    other = compute_splits(rec, replace(proto, salt="another-salt"))
    assert other["split"].to_list() != base["split"].to_list()


def test_leakage_audit_fails_split_command(workload_out: Path, tmp_path: Path) -> None:
    out = _out_with_recordings(workload_out, tmp_path / "out")
    body = Path(load_protocol("workload").path).read_text()
    leaky = body.replace('name = "workload"', 'name = "leaky"').replace(
        "test = [\n", 'test = [\n    "Subject05",\n'
    )
    path = _protocol(tmp_path / "leaky.toml", leaky)
    with pytest.raises(LeakageError, match="Subject05") as err:
        run_split(out, path)
    assert err.value.leaks == [("workload", "Subject05", ["train", "test"])]
    assert not (out / "splits.parquet").exists()
    result = CliRunner().invoke(data_app, ["split", str(out), "--protocol", str(path)])
    assert result.exit_code == 1
    assert "Subject05" in result.output and not (out / "splits.parquet").exists()


def test_official_rule_val_carving_and_leak(workload_out: Path, tmp_path: Path) -> None:
    rec = pl.read_parquet(workload_out / "recordings.parquet")
    # Give the real recordings an official split: Subject00-27 "train", 28-35 "eval" (a TUAB-like layout).
    official = rec.with_columns(
        official_split=pl.when(pl.col("subject") < "Subject28")
        .then(pl.lit("train"))
        .otherwise(pl.lit("eval"))
    )
    path = _protocol(
        tmp_path / "off.toml",
        """
version = 3
name = "off"
source = "workload"
task = "workload"
[split]
rule = "official"
salt = "tuab-like"
val_fraction = 0.25
[split.official]
train = "train"
eval = "test"
""",
    )
    out = _out_with_recordings(workload_out, tmp_path / "out", official)
    run_split(out, path)
    table, _ = read_splits(out)
    for subj, split in table.select("subject", "split").rows():
        if subj >= "Subject28":
            assert split == "test"
        else:
            assert split == ("val" if hash_bucket("tuab-like", "workload", subj) < 0.25 else "train")
    assert set(table["protocol_version"]) == {3} and set(table["salt"]) == {"tuab-like"}
    assert 0 < (table["split"] == "val").sum() < 28
    # One recording of Subject03 in the official eval set: the subject would sit in train/val and test.
    leaky = official.with_columns(
        official_split=pl.when(pl.col("recording_id").str.contains("Subject03_2"))
        .then(pl.lit("eval"))
        .otherwise(pl.col("official_split"))
    )
    out2 = _out_with_recordings(workload_out, tmp_path / "out2", leaky)
    with pytest.raises(LeakageError, match="Subject03"):
        run_split(out2, path)
    # Unmapped official values are refused, naming the recording.
    odd = official.with_columns(
        official_split=pl.when(pl.col("subject") == "Subject04")
        .then(pl.lit("dev"))
        .otherwise(pl.col("official_split"))
    )
    with pytest.raises(SplitError, match="Subject04"):
        run_split(_out_with_recordings(workload_out, tmp_path / "out3", odd), path)


def test_unlisted_subjects(workload_out: Path, tmp_path: Path) -> None:
    out = _out_with_recordings(workload_out, tmp_path / "out")
    body = Path(load_protocol("workload").path).read_text().replace('"Subject35",', "")
    with pytest.raises(SplitError, match="Subject35"):
        run_split(
            out, _protocol(tmp_path / "short.toml", body.replace('name = "workload"', 'name = "short"'))
        )
    dropping = body.replace('name = "workload"', 'name = "drop"').replace(
        'unlisted = "error"', 'unlisted = "drop"'
    )
    res = run_split(out, _protocol(tmp_path / "drop.toml", dropping))
    assert res.dropped == ["workload/Subject35"] and res.subjects["test"] == 4


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda b: b.replace('rule = "hash"', 'rule = "random"'), "split.rule must be one of"),
        (lambda b: b.replace("val = 0.05", "val = 0.5"), "must sum to 1"),
        (lambda b: b.replace('name = "pretrain"', 'name = "other"'), "must equal the file name"),
        (lambda b: b.replace("[split.fractions]", "[split.fractions]\ndev = 0.0"), "unknown split names"),
        (lambda b: b.replace("version = 1", 'version = "1"'), "'version' must be int"),
        (lambda b: "seed = 3\n" + b, "unknown keys"),
        (lambda b: b.replace("[split]", "[split"), "cannot read protocol"),
    ],
)
def test_protocol_validation_names_the_file(tmp_path: Path, edit, message: str) -> None:
    path = tmp_path / "pretrain.toml"
    path.write_text(edit(Path(load_protocol("pretrain").path).read_text()), encoding="utf-8")
    with pytest.raises(ProtocolError, match=message) as err:
        load_protocol(path)
    assert str(err.value).startswith(str(path))


def test_unknown_protocol_name_lists_known() -> None:
    with pytest.raises(ProtocolError, match="known: .*workload"):
        load_protocol("no-such-protocol")


def test_window_audit_catches_straddling_windows(workload_out: Path) -> None:
    rec = pl.read_parquet(workload_out / "recordings.parquet")
    splits, _ = read_splits(workload_out)
    plan = plan_windows(
        workload_out, rec.filter(pl.col("subject") == "Subject00"), splits, get_task("workload")
    )
    audit_windows(plan.windows)  # clean
    assert len(plan.windows) == 58
    moved = list(plan.windows)
    moved[10] = replace(moved[10], split="test")  # one window of a 50 %-overlap run lands in test
    with pytest.raises(LeakageError, match="Subject00"):
        audit_windows(moved)
