"""LaBraM acceptance 1 and 2: Base parameter count, symmetric masks, layer-decay scales, token-order
invariance, the channel-table guard; official layout export/load round trips and key refusal by name.

Inputs are real Workload windows (the session's EEGMAT shards) where the model sees EEG; the weights are
random (no published file is available offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neurolm_train.models.labram import (
    LaBraMMEM,
    LaBraMVQNSP,
    NeuralTransformer,
    labram_config,
    layer_scales,
    param_groups,
    symmetric_masks,
)
from neurolm_train.models.labram import official as lo
from neurolm_train.official import OfficialCheckpointError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def windows(workload_out: Path) -> dict:
    """Two real 4-s, 19-channel Workload test windows as a token batch (time-major, units of 100 µV)."""
    from neurolm_train.data import discover, eval_batches

    b = next(eval_batches(discover(workload_out / "shards", ["workload"], "test"), 2))
    return {k: b[k] for k in ("x", "chans", "times", "mask")}


def test_base_has_the_official_parameter_count():
    cfg = labram_config("base")
    model = NeuralTransformer(cfg, n_classes=1)
    assert sum(p.numel() for p in model.parameters()) == 5_820_137  # LaBraM-Base, one logit (paper: 5.8M)
    # MEM model: backbone + mask_token + norm + lm_head (the official 9,153,520 less the two unused heads)
    mem = LaBraMMEM(cfg)
    assert sum(p.numel() for p in mem.parameters()) == 9_153_520 - (200 * 8192 + 8192) - (200 * 200 + 200)
    tiny = NeuralTransformer(labram_config("tiny"), n_classes=1)
    assert 4e5 < sum(p.numel() for p in tiny.parameters()) < 6e5


@pytest.mark.parametrize("n_valid", [76, 75, 1, 2])
def test_symmetric_masks_are_complementary_halves(n_valid: int):
    mask = torch.zeros(3, 80, dtype=torch.bool)
    mask[:, :n_valid] = True
    mask[2, :] = True  # a longer sample beside padded ones
    torch.manual_seed(0)
    m, sym = symmetric_masks(mask)
    for b in range(3):
        L = int(mask[b].sum())
        assert int(m[b].sum()) == L // 2 and int(sym[b].sum()) == L - L // 2
    assert not (m & sym).any() and torch.equal(m | sym, mask)
    m2, _ = symmetric_masks(mask)
    assert n_valid < 4 or not torch.equal(m, m2)  # random per call


def test_layer_decay_scales_match_the_official_formula():
    cfg = labram_config("base")
    scales = layer_scales(12, 0.65)
    assert scales == pytest.approx([0.65 ** (13 - g) for g in range(14)])
    assert scales[0] == pytest.approx(0.0037, abs=5e-5) and scales[1] == pytest.approx(0.0057, abs=5e-5)
    assert scales[12] == pytest.approx(0.65) and scales[13] == 1.0
    groups = param_groups(NeuralTransformer(cfg, n_classes=1), 0.05, 0.65)
    scale_of = {n: g["lr_scale"] for g in groups for n in g["names"]}
    decay_of = {n: g["weight_decay"] for g in groups for n in g["names"]}
    assert scale_of["pos_embed"] == scale_of["cls_token"] == scale_of["patch_embed.conv1.weight"] == scales[0]
    assert (
        scale_of["blocks.0.attn.qkv.weight"] == scales[1]
        and scale_of["blocks.11.mlp.fc2.weight"] == scales[12]
    )
    assert scale_of["time_embed"] == scale_of["head.weight"] == scale_of["fc_norm.weight"] == 1.0  # official
    assert decay_of["pos_embed"] == decay_of["time_embed"] == decay_of["cls_token"] == 0.0
    assert decay_of["blocks.3.norm1.weight"] == decay_of["head.bias"] == 0.0
    assert decay_of["blocks.3.attn.qkv.weight"] == decay_of["head.weight"] == 0.05
    fixed = {
        n: g["lr_scale"]
        for g in param_groups(NeuralTransformer(cfg, n_classes=1), 0.05, 0.65, "embed")
        for n in g["names"]
    }
    assert fixed["time_embed"] == scales[0]


def test_output_does_not_depend_on_token_order(windows: dict):
    torch.manual_seed(0)
    cfg = labram_config("tiny")
    model = NeuralTransformer(cfg, n_classes=2).eval()
    vq = LaBraMVQNSP(cfg).eval()
    with torch.no_grad():
        vq.quantize.codebook.copy_(
            torch.nn.functional.normalize(torch.randn_like(vq.quantize.codebook), dim=-1)
        )
        vq.quantize.initted.fill_(1.0)
    b = windows
    perm = torch.randperm(b["x"].shape[1])  # e.g. channel-major (official) instead of time-major
    pb = {k: v[:, perm] for k, v in b.items()}
    with torch.no_grad():
        out, pout = model(b["x"], b["chans"], b["times"], b["mask"]), model(*pb.values())
        tok = model.patch_tokens(b["x"], b["chans"], b["times"], b["mask"])
        ptok = model.patch_tokens(*pb.values())
        codes, pcodes = vq.get_codes(*b.values()), vq.get_codes(*pb.values())
    torch.testing.assert_close(out, pout, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(tok[:, perm], ptok, rtol=1e-4, atol=1e-5)
    assert torch.equal(codes[:, perm], pcodes)
    assert not torch.allclose(out[0], out[1])  # the two windows differ


def test_padding_does_not_change_the_outputs(windows: dict):
    torch.manual_seed(0)
    model = NeuralTransformer(labram_config("tiny"), n_classes=1).eval()
    b = windows
    pad = {k: torch.cat((v, torch.zeros_like(v[:, :20])), 1) for k, v in b.items()}
    pad["chans"][:, -20:] = 136
    with torch.no_grad():
        torch.testing.assert_close(model(*b.values()), model(*pad.values()), rtol=1e-4, atol=1e-6)


def test_channels_past_the_official_table_are_refused_by_name(windows: dict):
    model = NeuralTransformer(labram_config("base"), n_classes=1).eval()
    b = {k: v.clone() for k, v in windows.items()}
    b["chans"][0, 0] = 130  # a bipolar name at index >= 128: beyond the official 129-row table
    from neurolm_data.channels import STANDARD_1020

    with pytest.raises(ValueError, match=STANDARD_1020[130]):
        model(*b.values())
    tiny = NeuralTransformer(labram_config("tiny"), n_classes=1).eval()
    assert torch.isfinite(tiny(*b.values())).all()  # the tiny table holds every name
    b["times"][0, 0] = 16
    with pytest.raises(ValueError, match="16-s time table"):
        tiny(*b.values())


# ------------------------------------------------------------------------------------------- acceptance 2
def _expected_mem_layout() -> dict[str, tuple[int, ...]]:
    """labram-base.pth's ``model`` keys and shapes, written out from the official class description
    (NeuralTransformerForMEM: student = TemporalConv k=8, 12 pre-LN blocks of width 200 with 10 heads, fused qkv
    without bias, per-head QK-LayerNorm of width 20, LayerScale, MLP 800, final norm, student lm_head; the
    wrapper's lm_head and projection_head)."""
    d, k, K = 200, 8, 8192
    keys: dict[str, tuple[int, ...]] = {
        "student.cls_token": (1, 1, d),
        "student.mask_token": (1, 1, d),
        "student.pos_embed": (1, 129, d),
        "student.time_embed": (1, 16, d),
        "student.patch_embed.conv1.weight": (k, 1, 1, 15),
        "student.patch_embed.conv1.bias": (k,),
    }
    for i in (1, 2, 3):
        if i > 1:
            keys[f"student.patch_embed.conv{i}.weight"] = (k, k, 1, 3)
            keys[f"student.patch_embed.conv{i}.bias"] = (k,)
        keys[f"student.patch_embed.norm{i}.weight"] = (k,)
        keys[f"student.patch_embed.norm{i}.bias"] = (k,)
    for b in range(12):
        p = f"student.blocks.{b}."
        keys.update(
            {
                p + "gamma_1": (d,),
                p + "gamma_2": (d,),
                p + "norm1.weight": (d,),
                p + "norm1.bias": (d,),
                p + "attn.qkv.weight": (3 * d, d),
                p + "attn.q_norm.weight": (20,),
                p + "attn.q_norm.bias": (20,),
                p + "attn.k_norm.weight": (20,),
                p + "attn.k_norm.bias": (20,),
                p + "attn.proj.weight": (d, d),
                p + "attn.proj.bias": (d,),
                p + "norm2.weight": (d,),
                p + "norm2.bias": (d,),
                p + "mlp.fc1.weight": (4 * d, d),
                p + "mlp.fc1.bias": (4 * d,),
                p + "mlp.fc2.weight": (d, 4 * d),
                p + "mlp.fc2.bias": (d,),
            }
        )
    keys.update(
        {
            "student.norm.weight": (d,),
            "student.norm.bias": (d,),
            "student.lm_head.weight": (K, d),
            "student.lm_head.bias": (K,),
            "lm_head.weight": (K, d),
            "lm_head.bias": (K,),
            "projection_head.0.weight": (d, d),
            "projection_head.0.bias": (d,),
        }
    )
    return keys


def test_random_base_exports_to_the_official_layout_and_loads_back_identically(windows: dict, tmp_path: Path):
    torch.manual_seed(0)
    cfg = labram_config("base")
    mem = LaBraMMEM(cfg).eval()
    sd = lo.to_official(mem)
    assert {k: tuple(v.shape) for k, v in sd.items()} == _expected_mem_layout()
    assert sum(v.numel() for v in sd.values()) == 9_153_520  # the official MEM model count
    lo.save_official(mem, tmp_path / "labram-base.pth")
    kind, back, info = lo.load_official(tmp_path / "labram-base.pth")
    assert kind == "mem" and info["config"].depth == 12 and info["config"].n_head == 10
    b = windows
    codes = torch.randint(0, 8192, b["mask"].shape)
    masks = symmetric_masks(b["mask"])
    with torch.no_grad():
        a, c = mem(*b.values(), codes, masks), back(*b.values(), codes, masks)
    assert torch.equal(a["loss"], c["loss"])
    # the exported file of the loaded model is the same file, unused heads included
    assert all(torch.equal(v, lo.to_official(back, info["unused"])[k]) for k, v in sd.items())
    # fine-tuning start: the student's backbone, with fc_norm/head new and the unused parts listed
    ft, finfo = lo.backbone_from_official(tmp_path / "labram-base.pth", cfg, n_classes=1)
    assert finfo["new"] == ["fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"]
    assert "student.mask_token" in finfo["unused"] and "projection_head.0.weight" in finfo["unused"]
    assert torch.equal(ft.blocks[5].attn.qkv.weight, mem.student.blocks[5].attn.qkv.weight)
    # a fine-tuned classifier round trip (official run_class_finetuning layout: no prefix)
    ft.eval()
    lo.save_official(ft, tmp_path / "ft.pth")
    kind, ft2, _ = lo.load_official(tmp_path / "ft.pth")
    with torch.no_grad():
        assert kind == "finetune" and torch.equal(ft(*b.values()), ft2(*b.values()))


def test_vqnsp_round_trip(windows: dict, tmp_path: Path):
    torch.manual_seed(0)
    cfg = labram_config("base", code_dim=64)  # the README command's code dimension
    vq = LaBraMVQNSP(cfg)
    vq.train()
    with torch.no_grad():
        vq(*windows.values())  # k-means init + one EMA update of the codebook
    vq.eval()
    sd = lo.to_official(vq)
    assert tuple(sd["decoder.patch_embed.proj.weight"].shape) == (200, 64, 1, 1)
    assert tuple(sd["quantize.embedding.weight"].shape) == (8192, 64) and "quantize.embedding.embed_avg" in sd
    assert "encoder.blocks.0.attn.q_bias" in sd and "encoder.blocks.0.attn.q_norm.weight" not in sd
    assert "encoder.blocks.0.gamma_1" not in sd and "encoder.fc_norm.weight" in sd and len(sd) == 236
    lo.save_official(vq, tmp_path / "vqnsp.pth")
    kind, back, info = lo.load_official(tmp_path / "vqnsp.pth")
    assert kind == "vqnsp" and info["config"].code_dim == 64 and info["config"].vq_decoder_depth == 3
    with torch.no_grad():
        assert torch.equal(vq.get_codes(*windows.values()), back.get_codes(*windows.values()))
        torch.testing.assert_close(
            vq(*windows.values())["loss"], back(*windows.values())["loss"], rtol=0, atol=0
        )


@pytest.mark.parametrize(
    "edit,name",
    [
        ("drop", "student.blocks.3.attn.q_norm.weight"),
        ("extra", "student.blocks.3.attn.q_bias"),
        ("shape", "student.blocks.3.mlp.fc1.weight"),
    ],
)
def test_a_missing_extra_or_misshaped_key_fails_with_its_name(tmp_path: Path, edit: str, name: str):
    torch.manual_seed(0)
    sd = lo.to_official(LaBraMMEM(labram_config("base")))
    if edit == "drop":
        del sd[name]
    elif edit == "extra":
        sd[name] = torch.zeros(200)
    else:
        sd[name] = torch.zeros(700, 200)
    torch.save({"model": sd}, tmp_path / "bad.pth")
    kind_word = {"drop": "missing", "extra": "unexpected", "shape": "mis-shaped"}[edit]
    with pytest.raises(OfficialCheckpointError, match=rf"{kind_word} key\(s\): {name}"):
        lo.load_official(tmp_path / "bad.pth")
    with pytest.raises(OfficialCheckpointError):
        lo.backbone_from_official(tmp_path / "bad.pth", labram_config("base"), 1)


def test_loading_is_weights_only_and_refuses_other_files(tmp_path: Path):
    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"model": {"cls_token": torch.zeros(1)}, "x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="(?i)weights only|weights_only|unsupported global"):
        lo.load_official(tmp_path / "evil.pth")
    torch.save({"state": {}}, tmp_path / "other.pth")
    with pytest.raises(OfficialCheckpointError, match="no 'model' state dict"):
        lo.load_official(tmp_path / "other.pth")
    with pytest.raises(FileNotFoundError, match="curl -L"):
        lo.load_official(tmp_path / "labram-base-missing.pth")
