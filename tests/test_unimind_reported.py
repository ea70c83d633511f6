"""UniMind's published table as reported rows (manifests/reported/unimind.toml): provenance and caveats."""

from __future__ import annotations

from neurolm_train.leaderboard.reported import DEFAULT_DIR, load_file


def test_unimind_table_rows_carry_their_source_tag_and_caveats():
    rows = load_file(DEFAULT_DIR / "unimind.toml")
    assert len(rows) == 9 * 10  # nine columns x ten datasets
    um = {r.task: r for r in rows if r.model == "UniMind"}
    assert set(um) == {
        "seed",
        "hmc",
        "tuab",
        "tuev",
        "workload",
        "tusl",
        "seed_iv",
        "sleep_edf",
        "shhs",
        "shu_mi",
    }
    assert (
        um["workload"].metrics["bacc"].value == 0.7867
        and um["workload"].metrics["f1_weighted"].value == 0.7865
    )
    assert um["tuev"].metrics["bacc"].value == 0.6319 and um["shu_mi"].metrics["bacc"].value == 0.6577
    assert all(
        set(r.metrics) == {"bacc", "f1_weighted"} for r in rows
    )  # no AUROC: decoded text, no probabilities
    assert {r.metrics[m].tag for r in rows for m in r.metrics} == {"fig"}
    assert all(r.metrics[m].std is None for r in rows for m in r.metrics)  # no ± or seeds in the table
    assert "2506.18962" in um["workload"].citation and "protocol unknown" in um["workload"].note
    labram = next(r for r in rows if r.model == "LaBraM" and r.task == "tuev")
    assert labram.metrics["bacc"].value == 0.6409 and "UniMind's own compilation" in labram.note
    # the 10-dataset B-Acc average of the UniMind column is the table's 70.67
    assert abs(sum(r.metrics["bacc"].value for r in um.values()) / 10 - 0.7067) < 5e-5
