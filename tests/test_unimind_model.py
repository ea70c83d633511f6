"""UniMind model parts (issue 13, acceptance 1-3) on real EEGMAT windows.

Windows come from an ingest of two real EEGMAT files (Subject00 rest and arithmetic) into ``tmp_path``: 19
channels at 200 Hz in µV, cut into 4-s windows and batched by the project's loader (``data.collate``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from neurolm_data.ingest import run_ingest
from neurolm_train.data import collate
from neurolm_train.models.unimind import UniMind, unimind_config
from neurolm_train.models.unimind.lm import LMWeightsMissing
from neurolm_train.models.unimind.text import instruction_batch, prefix
from neurolm_train.prompts import answer_ids, task_id

torch.set_num_threads(1)
WL = task_id("workload")
#: A small random GPT-2 for the LoRA mechanics (no weights exist on the machine; LoRA must be forced).
RANDOM_GPT2 = dict(
    model_type="gpt2",
    n_layer=2,
    n_head=2,
    n_embd=32,
    n_positions=256,
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
)


@pytest.fixture(scope="module")
def windows(eegmat_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Twelve real 4-s windows (19 x 800 µV): six of Subject00 at rest (label 0), six during arithmetic (1)."""
    root = tmp_path_factory.mktemp("unimind_edf")
    for name in ("Subject00_1.edf", "Subject00_2.edf"):
        shutil.copy(eegmat_dir / name, root / name)
    out = root / "out"
    assert run_ingest("workload", root, out, workers=1).n_failed == 0
    recs = pl.read_parquet(out / "recordings.parquet").sort("recording_id")
    wins = []
    for r in recs.iter_rows(named=True):
        arr = np.load(out / r["store_path"])
        for w in range(6):
            eeg = np.ascontiguousarray(arr[:, w * 800 : (w + 1) * 800], dtype=np.float32)
            wins.append(
                dict(
                    eeg=eeg,
                    shape=eeg.shape,
                    idx=list(r["channel_indices"]),
                    key=f"{r['recording_id']}_{w}",
                    label=int(r["recording_id"].endswith("_2")),
                    task=WL,
                )
            )
    return wins


def _batch(windows: list[dict], idx: list[int], seconds: int = 4, chans: slice = slice(None)) -> dict:
    ws = []
    for i in idx:
        w = windows[i]
        eeg = np.ascontiguousarray(w["eeg"][chans, : seconds * 200])
        ws.append({**w, "eeg": eeg, "shape": eeg.shape, "idx": w["idx"][chans]})
    return collate(ws)


def _eeg(b: dict) -> tuple:
    return (
        b["x"],
        b["chans"],
        b["times"],
        b["mask"],
        b["n_chans"],
        torch.zeros(len(b["key"]), dtype=torch.long),
    )


def _step(model: UniMind, b: dict, lr: float = 1e-2) -> float:
    """One AdamW step of the answer loss on batch ``b``; returns the loss."""
    C, T = int(b["n_chans"][0]), int(b["mask"][0].sum()) // int(b["n_chans"][0])
    ids, pos, tgt = (
        torch.from_numpy(a) for a in instruction_batch(WL, b["label"].numpy(), model.cfg.n_eeg_tokens(C, T))
    )
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    out = model(*_eeg(b), ids, pos, tgt)
    out["loss"].backward()
    opt.step()
    return float(out["loss"].detach())


# ------------------------------------------------------------------------------------------ acceptance 1
@pytest.mark.parametrize("selection", ["st", "gumbel", "soft"])
def test_every_router_weight_has_a_gradient_after_one_step(windows, selection):
    torch.manual_seed(0)
    model = UniMind(unimind_config("tiny", tasks=["workload"], selection=selection))
    b = _batch(windows, [0, 7, 3, 10])
    _step(model, b)
    routers = [(n, p) for n, p in model.named_parameters() if ".router_" in n]
    assert len(routers) == 8  # two routers x (fc1, fc2) x (weight, bias)
    for name, p in routers:
        assert p.grad is not None, name
        assert bool((p.grad != 0).all()), f"{name}: {int((p.grad == 0).sum())} zero entries of {p.numel()}"


def test_official_hard_selection_leaves_routers_without_gradient(windows):
    """The released selection (defect): only the topk indices are used, so no router weight gets a gradient."""
    torch.manual_seed(0)
    model = UniMind(unimind_config("tiny", tasks=["workload"], selection="hard"))
    _step(model, _batch(windows, [0, 7]))
    grads = [p.grad for n, p in model.named_parameters() if ".router_" in n]
    assert all(g is None or not bool(g.any()) for g in grads)
    assert model.selector.pool_c.grad is not None and bool(model.selector.pool_c.grad.any())  # pools do learn


def test_permuting_the_batch_permutes_the_connector_outputs(windows):
    torch.manual_seed(0)
    model = UniMind(unimind_config("tiny", tasks=["workload"])).eval()
    b = _batch(windows, [0, 7, 3, 10, 5])
    perm = [3, 0, 4, 1, 2]
    bp = _batch(windows, [[0, 7, 3, 10, 5][i] for i in perm])
    with torch.no_grad():
        out, info = model.connector_tokens(*_eeg(b))
        outp, infop = model.connector_tokens(*_eeg(bp))
        alone = torch.cat([model.connector_tokens(*_eeg(_batch(windows, [i])))[0] for i in [0, 7, 3, 10, 5]])
    assert len(set(info["pick_c"].flatten().tolist()) | set(info["pick_t"].flatten().tolist())) >= 1
    torch.testing.assert_close(outp, out[perm], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone, out, rtol=1e-4, atol=1e-5)  # each query attends within its own sample


def test_official_query_pairing_mixes_samples(windows):
    """The released tiling (defect): with B > 1 a sample's output depends on the other samples' queries."""
    torch.manual_seed(0)
    model = UniMind(unimind_config("tiny", tasks=["workload"], query_pairing="official")).eval()
    ids = [0, 7, 3, 10]
    with torch.no_grad():
        out = model.connector_tokens(*_eeg(_batch(windows, ids)))[0]
        alone = torch.cat([model.connector_tokens(*_eeg(_batch(windows, [i])))[0] for i in ids])
    assert not torch.allclose(out, alone, atol=1e-4)


@pytest.mark.parametrize(
    ("seconds", "chans"), [(4, slice(None)), (2, slice(None)), (3, slice(0, 7)), (1, slice(0, 1))]
)
def test_connector_emits_1_plus_2T_plus_2C_tokens(windows, seconds, chans):
    torch.manual_seed(0)
    model = UniMind(unimind_config("tiny", tasks=["workload"]))
    b = _batch(windows, [0, 7], seconds, chans)
    C = int(b["n_chans"][0])
    out, _ = model.connector_tokens(*_eeg(b))
    assert out.shape == (2, 1 + 2 * seconds + 2 * C, model.cfg.d_c)
    assert model.cfg.n_eeg_tokens(C, seconds) == 1 + 2 * seconds + 2 * C
    assert model.eeg_tokens(*_eeg(b)).shape == (2, 1 + 2 * seconds + 2 * C, model.lm.d_model)


def test_mixed_window_shapes_in_one_batch_are_refused(windows):
    model = UniMind(unimind_config("tiny", tasks=["workload"]))
    ws = [windows[0], {**windows[1], "eeg": windows[1]["eeg"][:, :400], "shape": (19, 400)}]
    with pytest.raises(ValueError, match="one window shape"):
        model.connector_tokens(*_eeg(collate(ws)))


# ------------------------------------------------------------------------------------------ acceptance 2
def _lora_model(**kw) -> UniMind:
    torch.manual_seed(0)
    return UniMind(
        unimind_config(
            "tiny",
            tasks=["workload"],
            lm="hf",
            lm_random=RANDOM_GPT2,
            lora=True,
            lora_r=4,
            lora_alpha=8,
            force_random_lora=True,
            **kw,
        )
    )


@pytest.mark.parametrize("freeze_encoder", [False, True])
def test_lora_trains_only_adapters_and_unimind_parts_and_leaves_the_lm_bit_identical(windows, freeze_encoder):
    model = _lora_model(freeze_encoder=freeze_encoder)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    allowed = ("selector.", "connector.", "projector.") + (() if freeze_encoder else ("encoder.",))
    for n in trainable:
        assert n.startswith(allowed) or (n.startswith("lm.") and ".lora_" in n), n
    assert any(".lora_" in n for n in trainable)
    assert any(n.startswith("encoder.") for n in trainable) != freeze_encoder
    for n, p in model.named_parameters():  # everything of those parts is trainable
        if n.startswith(allowed) or ".lora_" in n:
            assert p.requires_grad, n
    base = model.lm.base_state()
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if ".lora_B" in n}
    enc_before = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
    model.train()
    for i in range(3):
        _step(model, _batch(windows, [i, 6 + i, 3 + i]), lr=1e-2)
    after = model.lm.base_state()
    assert base.keys() == after.keys() and all(torch.equal(base[k], after[k]) for k in base)
    assert any(not torch.equal(lora_before[n], p) for n, p in model.named_parameters() if n in lora_before)
    enc_same = all(torch.equal(enc_before[n], p) for n, p in model.encoder.named_parameters())
    assert enc_same == freeze_encoder


def test_lora_on_a_random_lm_is_refused_unless_forced():
    with pytest.raises(ValueError, match="force_random_lora"):
        UniMind(unimind_config("tiny", tasks=["workload"], lm="hf", lm_random=RANDOM_GPT2, lora=True))


def test_missing_lm_weights_are_named(tmp_path):
    with pytest.raises(LMWeightsMissing, match="no weights for the language model"):
        UniMind(unimind_config("small", tasks=["workload"], lm_path=str(tmp_path / "gpt2-nowhere")))


# ------------------------------------------------------------------------------------------ acceptance 3
@pytest.mark.parametrize("lm", ["tiny", "hf"])
def test_candidate_scores_equal_hand_summed_token_loglikelihoods(windows, lm):
    model = _lora_model() if lm == "hf" else UniMind(unimind_config("tiny", tasks=["workload"]))
    model.eval()
    b = _batch(windows, [0, 7, 2])
    C = int(b["n_chans"][0])
    n_eeg = model.cfg.n_eeg_tokens(C, 4)
    p, pos = prefix(WL, n_eeg)
    P = torch.tensor(p).expand(3, -1)
    pos_t = torch.tensor(pos).expand(3, -1)
    cands = [list(a) for a in answer_ids(WL)]
    lp = model.answer_logprobs(*_eeg(b), P, pos_t, cands)
    assert lp.shape == (3, len(cands))
    with torch.no_grad():
        eeg = model.eeg_tokens(*_eeg(b))
        for i in range(3):
            for k, cand in enumerate(cands):
                ids = torch.tensor([list(p) + cand])
                emb = model.splice(ids, torch.tensor([list(pos) + [False] * len(cand)]), eeg[i : i + 1])
                logp = torch.log_softmax(model.lm(emb)[0].double(), dim=-1)
                hand = sum(float(logp[len(p) - 1 + j, t]) for j, t in enumerate(cand))
                assert abs(float(lp[i, k]) - hand) < 1e-3 * max(1.0, abs(hand)), (i, k, float(lp[i, k]), hand)
    probs = torch.softmax(lp, dim=1)
    torch.testing.assert_close(probs.sum(1), torch.ones(3))


def test_instruction_text_supervises_the_answer_only():
    n_eeg = 47
    ids, pos, tgt = instruction_batch(WL, np.array([0, 1]), n_eeg)
    p, _ = prefix(WL, n_eeg)
    for i, y in enumerate([0, 1]):
        ans = answer_ids(WL)[y]
        sup = np.flatnonzero(tgt[i] >= 0)
        assert sup.tolist() == list(range(len(p) - 1, len(p) - 1 + len(ans)))
        assert tgt[i, sup].tolist() == list(ans)
        assert int(pos[i].sum()) == n_eeg and not pos[i, len(p) :].any()
