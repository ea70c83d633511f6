"""Annotation parsers (``neurolm_data.annotations``) on the real TUH ``.lbl``/``csv_bi``, HMC scoring and Sleep-EDF
hypnogram files, and on malformed files that must fail with a reason naming the file and the problem."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from neurolm_data import annotations as A
from neurolm_data.sources.base import RecordingError


def test_real_lbl_parses_to_22_channels_and_one_term(samples_dir: Path) -> None:
    segs = A.read_lbl(samples_dir / "tuh-nedc" / "test.lbl", duration_s=1286.0)
    assert len(segs) == 22  # the file repeats 5 lines; identical lines are kept once
    assert {s.channel for s in segs} == set(A.TCP_MONTAGE)
    assert {(s.start_s, s.stop_s, s.label) for s in segs} == {(0.0, 1286.0, "bckg")}
    assert A.term_segments(segs, ("seiz", "slow", "bckg")) == [A.Segment(0.0, 1286.0, "bckg", "TERM")]
    with pytest.raises(RecordingError, match="event past the end of the signal"):
        A.read_lbl(samples_dir / "tuh-nedc" / "test.lbl", duration_s=1000.0)


def test_real_csv_bi_ref_and_hyp(samples_dir: Path) -> None:
    ref, head = A.read_tuh_csv(
        samples_dir / "tuh-nedc/csv_bi/ref/aaaaaasf_s001_t000.csv_bi",
        duration_s=1289.0,
        labels=A.TUSZ_CLASSES,
    )
    assert head["bname"] == "aaaaaasf_s001_t000" and head["duration"].startswith("1289")
    assert len(ref) == 17 and {s.label for s in ref} == {"seiz"} and {s.channel for s in ref} == {"TERM"}
    hyp, _ = A.read_tuh_csv(
        samples_dir / "tuh-nedc/csv_bi/hyp/aaaaaasf_s001_t000.csv_bi", labels=A.TUSZ_CLASSES
    )
    ev = A.segments_to_events(Path("x"), A.term_segments(hyp, ("seiz", "bckg")), A.TUSZ_CLASSES)
    assert [e.label for e in ev] == [0, 1, 0, 1, 0, 1, 0] and ev[-1].onset_s + ev[-1].duration_s == 1289.0
    with pytest.raises(RecordingError, match="disagrees with the signal"):
        A.read_tuh_csv(samples_dir / "tuh-nedc/csv_bi/ref/aaaaaasf_s001_t000.csv_bi", duration_s=600.0)


def test_real_hmc_scoring(samples_dir: Path) -> None:
    rows = A.read_hmc_scoring_edf(samples_dir / "hmc" / "SN001_sleepscoring.edf")
    ev = A.hmc_epochs(Path("SN001"), rows, duration_s=25620.0)
    # eeg-samples/hmc/README.md: 854 epochs, N2 430, W 151, R 141, N1 109, N3 23; the 2 light markers skipped
    assert len(ev) == 854
    assert Counter(e.label for e in ev) == {2: 430, 0: 151, 4: 141, 1: 109, 3: 23}
    assert all(e.duration_s == 30.0 for e in ev)
    with pytest.raises(RecordingError, match="event past the end of the signal"):
        A.hmc_epochs(Path("SN001"), rows, duration_s=25000.0)


def test_real_sleep_edf_hypnogram_is_clipped_and_merged(samples_dir: Path) -> None:
    hyp = samples_dir / "sleep-edf" / "SC4001EC-Hypnogram.edf"
    ev = A.read_sleep_edf_hypnogram(hyp, duration_s=300.0)  # the PSG here lasts 300 s, all W
    assert [(e.onset_s, e.label) for e in ev] == [(30.0 * k, 0) for k in range(10)]
    full = A.read_sleep_edf_hypnogram(hyp)
    assert set(Counter(e.label for e in full)) == {0, 1, 2, 3, 4}
    assert not any(e.description == "Sleep stage ?" for e in full)
    assert {e.description for e in full if e.label == 3} == {"Sleep stage 3", "Sleep stage 4"}


def test_tuev_rows_collapse_to_one_event_per_time(tmp_path: Path) -> None:
    rec = tmp_path / "a_00000001.rec"
    rec.write_text("14,12.0,13.0,6\n0,12.0,13.0,1\n1,12.0,13.0,1\n3,2.0,3.0,4\n")
    rows = A.read_tuev_rec(rec, duration_s=20.0)
    ev = A.tuev_events(rec, rows)
    assert [(e.onset_s, e.label) for e in ev] == [(2.0, 3), (12.0, 0)]  # spsw wins over bckg at 12 s
    assert ev[1].description == "spsw@FP1-F7,spsw@F7-T3,bckg@FP1-F3"


def test_term_aggregation_priority() -> None:
    segs = [
        A.Segment(0, 10, "bckg", "FP1-F7"),
        A.Segment(10, 20, "slow", "FP1-F7"),
        A.Segment(0, 5, "bckg", "F7-T3"),
        A.Segment(5, 15, "seiz", "F7-T3"),
        A.Segment(15, 20, "bckg", "F7-T3"),
    ]
    got = [(s.start_s, s.stop_s, s.label) for s in A.term_segments(segs, ("seiz", "slow", "bckg"))]
    assert got == [(0, 5, "bckg"), (5, 15, "seiz"), (15, 20, "slow")]


@pytest.mark.parametrize(
    ("name", "text", "kwargs", "reason"),
    [
        ("a.rec", "0,1.0,2.0,9\n", {}, "unknown label id 9"),
        ("a.rec", "0,18.0,21.0,6\n", {"duration_s": 20.0}, "event past the end of the signal"),
        ("a.rec", "5,1.0,3.0,6\n5,2.0,4.0,4\n", {}, "overlapping events on channel F8-T4"),
        ("a.rec", "0,1.0,2.0\n", {}, "expected 4 comma-separated fields"),
        ("a.rec", "30,1.0,2.0,6\n", {}, "channel index 30 outside"),
        (
            "a.tse",
            "version = tse_v1.0.0\n\n0.0 10.0 bckg 1.0\n10.0 20.0 spike 1.0\n",
            {},
            "unknown label 'spike'",
        ),
        ("a.tse", "version = tse_v1.0.0\n\n0.0 10.0 bckg 1.0\n8.0 20.0 slow 1.0\n", {}, "overlapping events"),
        (
            "a.tse",
            "version = tse_v1.0.0\n\n0.0 40.0 bckg 1.0\n",
            {"duration_s": 30.0},
            "past the end of the signal",
        ),
        ("a.tse", "0.0 10.0 bckg 1.0\n", {}, "first line must be 'version = tse_v1.0.0'"),
        ("a.tse", "version = tse_v1.0.0\n\n5.0 3.0 bckg 1.0\n", {}, "is not after start"),
    ],
)
def test_malformed_rec_and_tse_name_file_and_reason(tmp_path: Path, name, text, kwargs, reason) -> None:
    p = tmp_path / name
    p.write_text(text)
    parse = (
        A.read_tuev_rec
        if name.endswith(".rec")
        else (lambda q, **k: A.read_tse(q, labels=A.TUSL_CLASSES, **k))
    )
    with pytest.raises(RecordingError, match=reason) as e:
        parse(p, **kwargs)
    assert e.value.path == str(p) and str(p) in str(e.value)


def test_malformed_csv_lbl_hmc_and_trials(tmp_path: Path, samples_dir: Path) -> None:
    head = (
        "# version = csv_v1.0.0\n# duration = 30.0000 secs\nchannel,start_time,stop_time,label,confidence\n"
    )
    bad = {
        "unknown label 'spsz2'": head + "FP1-F7,0.0,10.0,spsz2,1.0\n",
        "event past the end of the signal": head + "TERM,0.0,31.0,seiz,1.0\n",
        "overlapping events on channel FP1-F7": head + "FP1-F7,0.0,10.0,seiz,1.0\nFP1-F7,5.0,12.0,bckg,1.0\n",
        "no 'channel,start_time": "# version = csv_v1.0.0\nTERM,0.0,1.0,seiz,1.0\n",
    }
    for reason, text in bad.items():
        p = tmp_path / "x.csv_bi"
        p.write_text(text)
        with pytest.raises(RecordingError, match=reason):
            A.read_tuh_csv(p, labels=A.TUSZ_CLASSES)
    lbl = (samples_dir / "tuh-nedc" / "test.lbl").read_text()
    p = tmp_path / "x.lbl"
    p.write_text(lbl.replace("0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0,", "0.0, 0.0, 0.0, 0.0, 0.0, 1.0,", 1))
    with pytest.raises(RecordingError, match="27 probabilities for 28 symbols"):
        A.read_lbl(p)
    rows = [A.Segment(0, 30, "Sleep stage W"), A.Segment(30, 60, "Sleep stage X")]
    with pytest.raises(RecordingError, match="unknown label 'Sleep stage X'"):
        A.hmc_epochs(Path("s.txt"), rows)
    with pytest.raises(RecordingError, match="overlapping events"):
        A.hmc_epochs(Path("s.txt"), [A.Segment(0, 30, "Sleep stage W"), A.Segment(15, 45, "Sleep stage N1")])
    with pytest.raises(RecordingError, match="lasts 20.0000 s, expected 30 s"):
        A.hmc_epochs(Path("s.txt"), [A.Segment(0, 20, "Sleep stage W")])
    with pytest.raises(RecordingError, match="annotation file is missing"):
        A.read_hmc_scoring_txt(tmp_path / "SN999_sleepscoring.txt")
    with pytest.raises(RecordingError, match="scoring file is missing"):
        A.read_hmc_scoring_edf(tmp_path / "SN999_sleepscoring.edf")
    t = tmp_path / "trials.csv"
    t.write_text("start_s,end_s,emotion\n0,10,H\n5,20,N\n")
    with pytest.raises(RecordingError, match="overlapping events"):
        A.read_trial_table(t)
    t.write_text("start_s,end_s,emotion\n0,10,happy\n")
    with pytest.raises(RecordingError, match="unknown emotion 'happy'"):
        A.read_trial_table(t)
    with pytest.raises(RecordingError, match="event past the end of the signal"):
        A.seed_trial_events(Path("s.cnt"), A.seed_trials(), duration_s=3000.0)


def test_seed_trial_table_matches_spec() -> None:
    trials = A.seed_trials()
    assert len(trials) == 15 and trials[0].start_s == 24 and trials[-1].end_s == 3807  # end second inclusive
    # 4-s windows per session: 855, and 22,815 / 7,965 / 7,695 over 45 sessions (spec §2.7)
    per = [int((t.end_s - t.start_s) // 4) for t in trials]
    assert sum(per) == 855
    assert (45 * sum(per[:9]), 45 * sum(per[9:12]), 45 * sum(per[12:])) == (22815, 7965, 7695)
    assert [t.label for t in trials] == [
        A.SEED_LABEL_MAT[v] for v in (1, 0, -1, -1, 0, 1, -1, 0, 1, 1, 0, -1, 0, 1, -1)
    ]
