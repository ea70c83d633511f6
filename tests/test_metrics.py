"""Metrics from probabilities vs the paper's hard-label scoring, the exact prompts/answers of spec §5.2, the
paper's generation parser, answer-only supervision, and the text corpus."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from neurolm_train.metrics import binary_metrics, hard_label_metrics, metrics, multiclass_metrics
from neurolm_train.prompts import (
    EOT,
    SEP,
    TASKS,
    answer_ids,
    gpt2_encoding,
    instruction_arrays,
    parse_generation,
    prompt_ids,
    task_id,
)
from neurolm_train.text import TextCrops, prepare_text

Y = np.array([0, 0, 1, 1, 1, 0])
P1 = np.array([0.1, 0.6, 0.4, 0.8, 0.9, 0.2])  # P(class 1)


def test_binary_metrics_from_probabilities():
    m = binary_metrics(Y, np.stack([1 - P1, P1], 1))
    # argmax predictions: 0 1 0 1 1 0 -> recall(0) = 2/3, recall(1) = 2/3
    assert m["bacc"] == pytest.approx(2 / 3)
    assert m["auroc"] == pytest.approx(8 / 9)  # 8 of 9 (pos, neg) pairs ranked right
    assert m["auc_pr"] == pytest.approx((1 + 1 + 0.75) / 3)  # average precision at the three positives
    assert m["accuracy"] == pytest.approx(4 / 6)


def test_single_class_ranking_metrics_are_nan_not_an_error():
    m = binary_metrics(np.array([1, 1]), np.array([[0.2, 0.8], [0.6, 0.4]]))
    assert np.isnan(m["auroc"]) and np.isnan(m["auc_pr"]) and m["bacc"] == pytest.approx(0.5)


def test_multiclass_metrics():
    y = np.array([0, 1, 2, 2, 1, 0])
    probs = np.eye(3)[[0, 1, 2, 1, 1, 2]] * 0.7 + 0.1
    m = multiclass_metrics(y, probs)
    assert m["bacc"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert 0 < m["kappa"] < 1 and 0 < m["f1_weighted"] < 1
    with pytest.raises(ValueError):
        metrics("unlabeled", y, probs)


def test_paper_hard_label_scoring_reproduces_its_flaws():
    pred = np.array([0, -1, 1, 1, -1, 0])  # -1 = unparseable generation
    m = hard_label_metrics("binary", Y, pred, 2)
    assert m["parse_failure_rate"] == pytest.approx(2 / 6)
    assert m["auroc"] == pytest.approx(roc_auc_score(Y, pred))  # AUROC of hard labels, -1 ranks below 0
    assert m["bacc"] == pytest.approx((1 + 2 / 3) / 2)  # -1 counted as 0
    multi = hard_label_metrics("multiclass", np.array([0, 2, 1]), np.array([0, -1, 1]), 3)
    assert multi["accuracy"] == pytest.approx(1.0)  # -1 silently became the last class (2), spec §5.3


def test_prompts_and_answers_are_the_spec_strings():
    assert [t.name for t in TASKS[:6]] == ["tuab", "tuev", "seed", "hmc", "workload", "tusl"]
    wl = TASKS[task_id("workload")]
    assert wl.prompt == "Question: Is this EEG segment of high workload? Answer:"
    assert wl.answers == (" No", " Yes") and wl.result_idx == 9
    assert TASKS[task_id("tuev")].prompt.endswith("(E) artifact. (F) background. Answer: (")
    assert TASKS[task_id("hmc")].answers == ("A)", "B)", "C)", "D)", "E)")
    assert TASKS[task_id("seed")].answers == (" Positive", " Neutral", " Negative")
    enc = gpt2_encoding()
    assert enc.n_vocab == 50257 and enc.encode("<|endoftext|>", allowed_special="all") == [EOT]
    for tid, task in enumerate(TASKS[:6]):
        p = prompt_ids(tid)
        assert p[0] == SEP and enc.decode(list(p[1:])) == task.prompt
        for label, ans in enumerate(answer_ids(tid)):
            assert enc.decode(list(ans)) == task.answers[label] + " <|endoftext|>"
            # the paper's parser reads back the label from prompt + answer at result_idx (spec §5.3)
            assert parse_generation(tid, list(p), list(ans)) == label
        assert parse_generation(tid, list(p), enc.encode(" maybe")) == -1


def test_instruction_targets_cover_the_answer_only():
    tids = np.array([task_id("workload"), task_id("tuev")])
    ids, tgt = instruction_arrays(tids, np.array([1, 3]))
    assert ids.shape == tgt.shape == (2, 80)
    for i, (tid, y) in enumerate(zip(tids, (1, 3), strict=True)):
        p, a = prompt_ids(int(tid)), answer_ids(int(tid))[y]
        n = len(p) + len(a)
        assert list(ids[i, :n]) == list(p) + list(a) and (ids[i, n:] == EOT).all()
        sup = np.flatnonzero(tgt[i] >= 0)
        assert list(sup) == list(range(len(p) - 1, n - 1))  # positions predicting the answer tokens
        assert list(tgt[i, sup]) == list(a)
    with pytest.raises(ValueError, match="out of range"):
        instruction_arrays(np.array([task_id("workload")]), np.array([2]))
    with pytest.raises(ValueError, match="text_max_len"):
        instruction_arrays(np.array([task_id("tuev")]), np.array([0]), text_max_len=40)


def test_text_corpus_round_trip_and_crops(tmp_path):
    txt = tmp_path / "corpus.txt"
    txt.write_text("The first document about EEG.\n\nA second one, about GPT-2 tokens.\n")
    n = prepare_text(txt, tmp_path / "text.bin")
    data = np.fromfile(tmp_path / "text.bin", dtype=np.uint16)
    assert n == len(data) and (data == EOT).sum() == 2
    assert (
        gpt2_encoding().decode(data.tolist()).startswith("The first document about EEG.<|endoftext|>A second")
    )
    crops = TextCrops(tmp_path / "text.bin", block=8)
    x, y = crops.batch(4, seed=0, step=3)
    assert x.shape == y.shape == (4, 8)
    assert (x[:, 1:] == y[:, :-1]).all()
    x2, _ = crops.batch(4, seed=0, step=3)
    assert (x == x2).all()  # stateless: the same (seed, step) gives the same crops
    with pytest.raises(ValueError, match="block"):
        TextCrops(tmp_path / "text.bin", block=len(data))
