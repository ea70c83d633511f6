"""Official NeuroLM checkpoints (``VQ.pt``, ``NeuroLM-{B,L,XL}.pt``): load, check, export (issue 6).

The layout is ``docs/neurolm-reference.md``, "Official checkpoint files" ("ckpt §x"). Loading strips the
``_orig_mod.`` prefix (ckpt §1.2), infers the shapes from the tensors (ckpt §1.3, §5), checks every key and
shape against a model of the inferred config (a missing, unexpected or mis-shaped key raises
``OfficialCheckpointError`` naming it), and maps the keys onto the project's modules:

=====================================  =========================================================
official (after the prefix)            project
=====================================  =========================================================
``VQ.<part>.*``                        ``VQTokenizer.<part>.*`` (encoder, decoders, task layers)
``VQ.quantize.embedding.weight``       ``VQTokenizer.quantize.codebook``
``VQ.quantize.embedding.cluster_size`` ``VQTokenizer.quantize.init_counts``
``VQ.quantize.embedding.initted``      ``VQTokenizer.quantize.initted``
``VQ.quantize.cluster_size``           ``VQTokenizer.quantize.cluster_size``
``VQ.quantize.embedding.embed_avg``    none: never used nor updated officially (all zeros, ckpt §3)
none                                   ``VQTokenizer.quantize.unused_steps`` (dead-code restart counters, not exported)
``domain_classifier.*``                ``VQTokenizer.domain_classifier.*``
``wte.weight``                         returned in ``info["wte"]`` (the stage-1 text side)
``GPT2.*``                             ``NeuroLM.gpt.*``
``tokenizer.*``                        ``NeuroLM.tokenizer.encoder.*``
``pos_embed.weight``                   ``NeuroLM.pos_embed.weight``
``encode_transform_layer.0.*``         ``NeuroLM.encode_transform_layer.0.*`` (L/XL only)
=====================================  =========================================================

Linear weights are stored ``(out, in)`` in both layouts, so no tensor is transposed. Files are read with
``map_location="cpu"``, ``weights_only=True`` and ``mmap=True``; the optimizer state is not read unless asked
(``load_official(keep_optimizer=True)``, or ``seed_optimizer`` to continue a run from it).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import safe_load
from .models.config import GPTConfig, NeuroLMConfig, VQConfig
from .models.neurolm import NeuroLM
from .models.tokenizer import VQTokenizer

PREFIX = "_orig_mod."  # torch.compile wrapper prefix on every saved key (ckpt §1.2)
HF_REPO = "Weibang/NeuroLM"  # where the released files live (ckpt §0)
# GPT-2 head counts by width (reference §4.1); the official files store n_head only in model_args
_GPT2_HEADS = {768: 12, 1024: 16, 1280: 20, 1600: 25}
_VARIANTS = {(12, 768): "B", (24, 1024): "L", (48, 1600): "XL"}
# project quantizer buffer <-> official key under VQ.quantize. (ckpt §2.1, §3)
_QUANT = {
    "codebook": "embedding.weight",
    "init_counts": "embedding.cluster_size",
    "initted": "embedding.initted",
    "cluster_size": "cluster_size",
}
_QUANT_BACK = {v: k for k, v in _QUANT.items()}
_EMBED_AVG = "VQ.quantize.embedding.embed_avg"
#: File names of the released files (ckpt §0); only such a bare name is looked up in the Hugging Face cache.
_OFFICIAL_NAME = re.compile(r"^(VQ|NeuroLM-[A-Za-z0-9]+)\.pt$")


class OfficialCheckpointError(ValueError):
    """A checkpoint does not have the official layout; the message names the offending keys."""


# --------------------------------------------------------------------------------------------- reading
def strip_prefix(sd: dict[str, Tensor]) -> OrderedDict[str, Tensor]:
    """Remove a leading ``_orig_mod.`` from every key that has it; other keys are kept (ckpt §1.2)."""
    return OrderedDict((k[len(PREFIX) :] if k.startswith(PREFIX) else k, v) for k, v in sd.items())


def resolve(path: str | Path) -> Path:
    """A local file, or a file name of ``Weibang/NeuroLM`` already in the Hugging Face cache (never the
    network). Raises FileNotFoundError saying how to fetch it."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not _OFFICIAL_NAME.match(p.name):  # a run's checkpoint or another file: not on the hub
        raise FileNotFoundError(
            f"{path}: no such file (for a run's checkpoint: did the stage finish and write "
            "it? ckpt.pt is the latest, best.pt the best on validation)"
        )
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(HF_REPO, p.name, local_files_only=True))
    except Exception as err:  # noqa: BLE001 - any lookup failure means "not available offline"
        raise FileNotFoundError(
            f"{path}: no such file, nor in the Hugging Face cache; on a machine with internet run "
            f"`huggingface-cli download {HF_REPO} {Path(path).name}` and pass the local path"
        ) from err


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load`` an official file on the CPU (memory-mapped, weights only); ``model`` has the prefix
    stripped. Raises OfficialCheckpointError when there is no ``model`` state dict."""
    ck = safe_load(resolve(path), "an official NeuroLM file (VQ.pt or NeuroLM-{B,L,XL}.pt)")
    if not isinstance(ck, dict) or not isinstance(ck.get("model"), dict):
        raise OfficialCheckpointError(f"{path}: not an official checkpoint (no 'model' state dict)")
    ck["model"] = strip_prefix(ck["model"])
    return ck


def _depth(sd: dict[str, Tensor], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    idx = {int(m.group(1)) for k in sd if (m := pat.match(k))}
    if not idx:
        raise OfficialCheckpointError(f"no '{prefix}<i>.*' keys: cannot infer the depth")
    return max(idx) + 1


def _shape(sd: dict[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise OfficialCheckpointError(f"missing key '{key}'")
    return tuple(sd[key].shape)


def encoder_config(sd: dict[str, Tensor], prefix: str, n_head: int = 12, **vq: Any) -> VQConfig:
    """The tokenizer encoder's shape from official keys under ``prefix`` (``VQ.encoder.`` or ``tokenizer.``):
    depth from the block indices, width and embedding rows from ``pos_embed``/``time_embed``, conv channels
    from ``conv1``. The head count is not in the shapes (ckpt §1.3): 12 by convention, or ``encoder_args``.
    Raises OfficialCheckpointError when the width is not divisible by ``n_head``."""
    rows, d = _shape(sd, prefix + "pos_embed.weight")
    if d % n_head:
        raise OfficialCheckpointError(
            f"{prefix}pos_embed.weight: width {d} is not divisible by {n_head} heads (the head count is not "
            "in the shapes: it comes from VQ.pt's encoder_args, the model config (mc= / --config) or the "
            "convention of 12)"
        )
    kw = dict(
        n_layer=_depth(sd, prefix + "blocks."),
        n_head=n_head,
        n_embd=d,
        n_chan_emb=rows,
        n_time_emb=_shape(sd, prefix + "time_embed.weight")[0],
        conv_chans=_shape(sd, prefix + "patch_embed.conv1.weight")[0],
        bias=prefix + "blocks.0.attn.c_attn.bias" in sd,
    )
    kw.update(vq)
    return VQConfig(**kw)


def vq_config_from_state(
    sd: dict[str, Tensor],
    encoder_args: dict | None = None,
    patch_norm: str = "sample",
    n_head: int | None = None,
) -> VQConfig:
    """Full ``VQConfig`` of a (prefix-stripped) ``VQ.pt`` state dict (ckpt §2.1); ``patch_norm`` as in
    ``VQConfig`` (default the official ``"sample"``). Heads (not in the shapes): ``encoder_args["n_head"]``,
    else the caller's ``n_head`` (e.g. its model config's), else the official 12."""
    n_codes, code_dim = _shape(sd, "VQ.quantize.embedding.weight")
    return encoder_config(
        sd,
        "VQ.encoder.",
        patch_norm=patch_norm,
        n_head=int((encoder_args or {}).get("n_head") or n_head or 12),
        decoder_layers=_depth(sd, "VQ.decoder_freq.blocks."),
        n_codes=n_codes,
        code_dim=code_dim,
        n_freq=_shape(sd, "VQ.decode_task_layer_freq.2.weight")[0],
        patch=_shape(sd, "VQ.decode_task_layer_raw.2.weight")[0],
        domain_hidden=_shape(sd, "domain_classifier.0.weight")[0],
    )


def neurolm_config_from_state(
    sd: dict[str, Tensor],
    model_args: dict | None = None,
    vq: VQConfig | None = None,
    patch_norm: str = "sample",
    gpt_heads: int | None = None,
    vq_heads: int | None = None,
    **overrides: Any,
) -> NeuroLMConfig:
    """``NeuroLMConfig`` of a (prefix-stripped) ``NeuroLM-*.pt`` state dict (ckpt §2.2-§2.3, §5).

    GPT depth from ``GPT2.transformer.h.<i>``, width and input rows from ``wte``, EEG codes = lm_head rows -
    wte rows, heads from ``model_args``, else the caller's ``gpt_heads``, else the GPT-2 convention for the
    width. The tokenizer shape comes from ``tokenizer.*``; when ``vq`` (the ``VQ.pt`` config) is given it must
    agree with those shapes and is used as is (head count, quantizer, ``patch_norm``), else ``vq_heads`` heads
    (default the official 12), 128-d codes and ``patch_norm``.
    ``overrides`` set ``NeuroLMConfig`` fields (``features``, ``eeg_head``, ``text_positions``).
    Raises OfficialCheckpointError when the head count cannot be determined or ``vq`` does not match.
    """
    n_in, d = _shape(sd, "GPT2.transformer.wte.weight")
    n_layer = _depth(sd, "GPT2.transformer.h.")
    n_head = (model_args or {}).get("n_head") or gpt_heads or _GPT2_HEADS.get(d)
    if n_head is None:
        raise OfficialCheckpointError(
            f"GPT width {d} is not a GPT-2 width and neither the file (model_args) nor the model config "
            "gives n_head"
        )
    if d % int(n_head):
        raise OfficialCheckpointError(
            f"GPT2.transformer.wte.weight: width {d} is not divisible by {n_head} heads (from "
            f"{'model_args' if (model_args or {}).get('n_head') else 'the model config or the GPT-2 convention'})"
        )
    gpt = GPTConfig(
        n_layer=n_layer,
        n_head=int(n_head),
        n_embd=d,
        block_size=_shape(sd, "GPT2.transformer.wpe.weight")[0],
        bias="GPT2.transformer.h.0.attn.c_attn.bias" in sd,
        init_from=None,
    )
    n_codes = _shape(sd, "GPT2.lm_head.weight")[0] - n_in
    heads = vq.n_head if vq is not None else vq_heads or 12
    vq_cfg = encoder_config(sd, "tokenizer.", n_head=heads, n_codes=n_codes, patch_norm=patch_norm)
    if vq is not None:
        keys = ("n_layer", "n_embd", "n_chan_emb", "n_time_emb", "conv_chans", "bias", "n_codes")
        diff = [
            f"{k}: {getattr(vq, k)} vs {getattr(vq_cfg, k)}"
            for k in keys
            if getattr(vq, k) != getattr(vq_cfg, k)
        ]
        if diff:
            raise OfficialCheckpointError(f"VQ.pt does not match the NeuroLM tokenizer ({'; '.join(diff)})")
        vq_cfg = vq
    name = _VARIANTS.get((n_layer, d), "custom")
    return NeuroLMConfig(
        gpt=gpt, vq=vq_cfg, n_eeg_codes=n_codes, text_vocab_padded=n_in, name=name, **overrides
    )


# --------------------------------------------------------------------------------------------- mapping
def vq_to_official(tok: VQTokenizer, wte: Tensor, prefix: bool = True) -> OrderedDict[str, Tensor]:
    """The project tokenizer as an official ``VQ.pt`` ``model`` state dict (ckpt §2.1), 172 entries for the
    official shape. ``wte`` (50257, n_embd) is the frozen text embedding of stage 1. Raises ValueError for a
    tokenizer built without decoders."""
    if not tok.has_decoders:
        raise ValueError("an official VQ.pt needs the decoders: export a full VQTokenizer")
    out: OrderedDict[str, Tensor] = OrderedDict()
    for k, v in tok.state_dict().items():
        part, rest = k.split(".", 1)
        if part == "quantize":
            if rest == "unused_steps":  # the dead-code restart counters: not an official buffer
                continue
            out["VQ.quantize." + _QUANT[rest]] = v
            if rest == "codebook":
                out[_EMBED_AVG] = torch.zeros_like(v)
        elif part == "domain_classifier":
            out[k] = v
        else:
            out["VQ." + k] = v
    out["wte.weight"] = wte
    return _with_prefix(out, prefix)


def neurolm_to_official(model: NeuroLM, prefix: bool = True) -> OrderedDict[str, Tensor]:
    """The project NeuroLM as an official ``NeuroLM-*.pt`` ``model`` state dict (ckpt §2.2-§2.3): 240
    entries for B. The tokenizer's quantizer head is not part of that layout (it lives in ``VQ.pt``)."""
    out: OrderedDict[str, Tensor] = OrderedDict()
    for k, v in model.state_dict().items():
        if k.startswith("gpt."):
            out["GPT2." + k[4:]] = v
        elif k.startswith("tokenizer.encoder."):
            out["tokenizer." + k[len("tokenizer.encoder.") :]] = v
        elif not k.startswith("tokenizer."):
            out[k] = v
    return _with_prefix(out, prefix)


def _with_prefix(sd: OrderedDict[str, Tensor], prefix: bool) -> OrderedDict[str, Tensor]:
    return OrderedDict((PREFIX + k, v) for k, v in sd.items()) if prefix else sd


def check_layout(sd: dict[str, Tensor], expected: dict[str, Tensor], what: str) -> None:
    """Raise OfficialCheckpointError naming every missing, unexpected and mis-shaped key of ``sd``."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shaped = [
        f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in sd and sd[k].shape != v.shape
    ]
    problems = [
        f"{name} key(s): {', '.join(keys)}"
        for name, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped))
        if keys
    ]
    if problems:
        raise OfficialCheckpointError(f"{what} does not have the official layout: " + "; ".join(problems))


def vq_from_official(
    sd: dict[str, Tensor],
    encoder_args: dict | None = None,
    patch_norm: str = "sample",
    n_head: int | None = None,
) -> tuple[VQTokenizer, Tensor]:
    """Build a ``VQTokenizer`` (eval mode) and the ``wte`` (50257, d) from a prefix-stripped ``VQ.pt``
    state dict; ``n_head`` as in ``vq_config_from_state``. Raises OfficialCheckpointError on any missing,
    unexpected or mis-shaped key."""
    sd = strip_prefix(sd)
    with torch.device("meta"):
        tok = VQTokenizer(vq_config_from_state(sd, encoder_args, patch_norm, n_head))
    wte_shape = _shape(sd, "wte.weight")
    check_layout(sd, vq_to_official(tok, torch.empty(wte_shape, device="meta"), False), "VQ.pt")
    own: dict[str, Tensor] = {}
    for k, v in sd.items():
        if k.startswith("VQ.quantize."):
            if k != _EMBED_AVG:
                own["quantize." + _QUANT_BACK[k[len("VQ.quantize.") :]]] = v
        elif k != "wte.weight":
            own[k[3:] if k.startswith("VQ.") else k] = v
    tok.load_state_dict({k: v.clone() for k, v in own.items()}, strict=True, assign=True)
    return tok.eval(), sd["wte.weight"].clone()


def neurolm_from_official(
    sd: dict[str, Tensor],
    model_args: dict | None = None,
    vq: VQTokenizer | None = None,
    patch_norm: str = "sample",
    gpt_heads: int | None = None,
    vq_heads: int | None = None,
    **overrides: Any,
) -> NeuroLM:
    """Build a ``NeuroLM`` (eval mode) from a prefix-stripped ``NeuroLM-*.pt`` state dict; ``vq`` (from
    ``VQ.pt``) supplies the quantizer head and codebook, without it ``model.tokenizer`` cannot make codes
    (``get_codes`` raises). ``patch_norm`` (used without ``vq``), ``gpt_heads``/``vq_heads`` (head counts
    the file does not store) and ``overrides`` as in ``neurolm_config_from_state``.
    Raises OfficialCheckpointError on any missing, unexpected or mis-shaped key."""
    sd = strip_prefix(sd)
    cfg = neurolm_config_from_state(
        sd, model_args, None if vq is None else vq.cfg, patch_norm, gpt_heads, vq_heads, **overrides
    )
    with torch.device("meta"):
        model = NeuroLM(cfg)
    check_layout(sd, neurolm_to_official(model, prefix=False), "NeuroLM checkpoint")
    own: dict[str, Tensor] = {}
    for k, v in sd.items():
        if k.startswith("GPT2."):
            k = "gpt." + k[len("GPT2.") :]
        elif k.startswith("tokenizer."):
            k = "tokenizer.encoder." + k[len("tokenizer.") :]
        own[k] = v.clone()
    model.load_state_dict(own, strict=False, assign=True)
    # the quantizer head is not in NeuroLM-*.pt (ckpt §0): from VQ.pt, or left uninitialised (codes raise)
    head = nn.ModuleDict(
        {"encode_task_layer": model.tokenizer.encode_task_layer, "quantize": model.tokenizer.quantize}
    )
    head.to_empty(device="cpu")
    if vq is not None:
        head.load_state_dict(
            {f"{name}.{k}": v for name in head for k, v in getattr(vq, name).state_dict().items()}
        )
    else:
        model.tokenizer.encode_task_layer.apply(
            lambda m: m.reset_parameters() if isinstance(m, nn.Linear) else None
        )
        for b in model.tokenizer.quantize.buffers():
            b.zero_()
    model.tokenizer.requires_grad_(False)
    return model.eval()


# --------------------------------------------------------------------------------------------- export
def encoder_args(cfg: VQConfig) -> dict[str, Any]:
    """``encoder_args`` of an official ``VQ.pt`` for ``cfg`` (ckpt §1.1)."""
    return dict(
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_embd=cfg.n_embd,
        block_size=1024,
        bias=cfg.bias,
        dropout=cfg.dropout,
        num_classes=0,
        in_chans=1,
        out_chans=cfg.conv_chans,
    )


def decoder_args(cfg: VQConfig) -> dict[str, Any]:
    """``decoder_args`` of an official ``VQ.pt`` for ``cfg``: the encoder's, with the decoder depth, the code
    dimension as input and no ``out_chans`` (ckpt §1.1)."""
    args = encoder_args(cfg)
    del args["out_chans"]
    return {**args, "n_layer": cfg.decoder_layers, "in_chans": cfg.code_dim}


def model_args(cfg: NeuroLMConfig) -> dict[str, Any]:
    """``model_args`` of an official ``NeuroLM-*.pt`` (ckpt §1.1): ``vocab_size`` is the wte rows (50304)."""
    g = cfg.gpt
    return dict(
        n_layer=g.n_layer,
        n_head=g.n_head,
        n_embd=g.n_embd,
        block_size=g.block_size,
        bias=g.bias,
        vocab_size=cfg.text_vocab_padded,
        dropout=g.dropout,
    )


def save_official_vq(
    tok: VQTokenizer,
    path: str | Path,
    wte: Tensor,
    iter_num: int = 0,
    epoch: int = 0,
    optimizer: dict | None = None,
) -> None:
    """Write ``tok`` as an official ``VQ.pt`` (ckpt §0-§1.1, keys with ``_orig_mod.``). ``wte`` (50257, d)
    is the stage-1 text embedding table; ``optimizer`` (an AdamW state dict over
    ``official_param_groups(tok)``) is included only when given."""
    ck: dict[str, Any] = {"model": vq_to_official(tok, wte)}
    if optimizer is not None:
        ck["optimizer"] = optimizer
    ck.update(
        encoder_args=encoder_args(tok.cfg), decoder_args=decoder_args(tok.cfg), iter_num=iter_num, epoch=epoch
    )
    torch.save(ck, path)


def save_official_neurolm(
    model: NeuroLM, path: str | Path, iter_num: int = 0, epoch: int = 0, optimizer: dict | None = None
) -> None:
    """Write ``model`` as an official ``NeuroLM-*.pt`` (ckpt §0-§1.1, keys with ``_orig_mod.``), readable by
    the official ``train_instruction.py``. ``optimizer`` as in ``save_official_vq``."""
    ck: dict[str, Any] = {"model": neurolm_to_official(model)}
    if optimizer is not None:
        ck["optimizer"] = optimizer
    ck.update(model_args=model_args(model.cfg), iter_num=iter_num, epoch=epoch)
    torch.save(ck, path)


def official_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups in the official order (ckpt §1.4): trainable params with dim >= 2 (decayed),
    then dim < 2 (no decay), each in ``named_parameters`` order. An optimizer built on them accepts the
    ``optimizer`` entry of an official file (``info["optimizer"]`` of ``load_official``)."""
    ps = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in ps if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in ps if p.dim() < 2], "weight_decay": 0.0},
    ]


def seed_optimizer(opt: torch.optim.Optimizer, model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load the AdamW state of an official ``NeuroLM-*.pt`` (its ``optimizer`` entry, ckpt §1.4) into ``opt``.

    ``opt`` must be built on ``official_param_groups(model, wd)`` (the same tensors in the same order; the
    trainer's ``make_optimizer`` is). Only the state is taken, per parameter: ``exp_avg`` and ``exp_avg_sq``
    (float32, the parameter's shape) and ``step`` (0-d); a parameter without state in the file starts fresh, as
    in PyTorch. The hyper-parameters (lr, betas, eps, weight decay) stay those of ``opt`` (the run config's),
    and the file's ``iter_num`` does not move the run's schedule. Tensors are copied out of the memory-mapped
    file. Returns ``{"path", "tensors" (params with state), "step" (largest AdamW step), "iter_num"}``.

    Raises OfficialCheckpointError when ``path`` is not a ``NeuroLM-*.pt``, has no ``optimizer`` entry, or
    its groups do not match ``opt`` (group count, tensors per group, or a moment's shape: naming the group,
    the index in it and the parameter); ValueError when ``opt``'s groups are not ``official_param_groups``.
    """
    files = _read_files([path])
    if "neurolm" not in files:
        raise OfficialCheckpointError(f"{path}: the optimizer state comes from an official NeuroLM-*.pt")
    ck = files["neurolm"][1]
    sd = ck.get("optimizer")
    if not isinstance(sd, dict) or "state" not in sd or "param_groups" not in sd:
        raise OfficialCheckpointError(
            f"{path} has no optimizer entry (AdamW 'state' and 'param_groups', ckpt §1.4): start without "
            "init_optimizer (a fresh AdamW)"
        )
    names = {id(p): n for n, p in model.named_parameters()}
    ours = [[id(p) for p in g["params"]] for g in opt.param_groups]
    if ours != [[id(p) for p in g["params"]] for g in official_param_groups(model, 0.0)]:
        raise ValueError(
            "the optimizer's parameter groups are not official_param_groups(model): cannot seed it"
        )
    groups = sd["param_groups"]
    if len(groups) != len(ours):
        raise OfficialCheckpointError(
            f"{path}: {len(groups)} optimizer parameter group(s), the model's AdamW has {len(ours)}"
        )
    state: dict[int, dict[str, Tensor]] = {}
    idx, top = 0, 0.0
    for g, (fg, og) in enumerate(zip(groups, opt.param_groups, strict=True)):
        if len(fg["params"]) != len(og["params"]):
            raise OfficialCheckpointError(
                f"{path}: optimizer group {g} has {len(fg['params'])} tensors, the model's has "
                f"{len(og['params'])} trainable parameters (ckpt §1.4: group 0 dim >= 2, group 1 dim < 2)"
            )
        for i, (fid, p) in enumerate(zip(fg["params"], og["params"], strict=True)):
            st = sd["state"].get(fid)
            if st is not None:
                where = f"{path}: optimizer group {g} index {i} ({names.get(id(p), '?')})"
                for k in ("exp_avg", "exp_avg_sq", "step"):
                    if k not in st:
                        raise OfficialCheckpointError(f"{where}: no '{k}' in its state")
                for k in ("exp_avg", "exp_avg_sq"):
                    if tuple(st[k].shape) != tuple(p.shape):
                        raise OfficialCheckpointError(
                            f"{where}: {k} shape {tuple(st[k].shape)}, parameter {tuple(p.shape)}"
                        )
                step = torch.as_tensor(st["step"], dtype=torch.float32).clone()
                state[idx] = {
                    "step": step,
                    "exp_avg": st["exp_avg"].clone(),
                    "exp_avg_sq": st["exp_avg_sq"].clone(),
                }
                top = max(top, float(step))
            idx += 1
    new = opt.state_dict()  # our hyper-parameters and indices 0..n-1 in group order
    new["state"] = state
    opt.load_state_dict(new)
    return {"path": str(path), "tensors": len(state), "step": top, "iter_num": ck.get("iter_num")}


# --------------------------------------------------------------------------------------------- public
def _read_files(paths: str | Path | Sequence[str | Path]) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{"vq" | "neurolm": (path, checkpoint)}`` of official files (memory-mapped, prefix stripped), told
    apart by their keys; ``paths`` as in ``load_official``. Raises OfficialCheckpointError for a file of
    neither kind or two of one kind, FileNotFoundError for a missing file."""
    if isinstance(paths, (str, Path)):
        paths = [p for p in str(paths).split(",") if p.strip()]
    files: dict[str, tuple[str, dict[str, Any]]] = {}
    for p in paths:
        ck = read_checkpoint(str(p).strip())
        kind = (
            "vq"
            if "VQ.encoder.pos_embed.weight" in ck["model"]
            else "neurolm"
            if "GPT2.lm_head.weight" in ck["model"]
            else None
        )
        if kind is None:
            raise OfficialCheckpointError(
                f"{p}: neither a VQ.pt (VQ.encoder.*) nor a NeuroLM-*.pt (GPT2.*) checkpoint"
            )
        if kind in files:
            raise OfficialCheckpointError(f"two {kind} checkpoints given: {files[kind][0]} and {p}")
        files[kind] = (str(p).strip(), ck)
    return files


def inspect_official(paths: str | Path | Sequence[str | Path]) -> dict[str, Any]:
    """What official files hold, without building a model (tensors memory-mapped, not read).

    ``paths`` as in ``load_official``. Returns ``paths`` (``{"vq": path, "neurolm": path}``, only the kinds
    given), ``resolved`` (the same, as local files: Hugging Face cache names resolved), ``variant`` (the
    NeuroLM's "B", "L", "XL" from the GPT depth and width, "custom" otherwise, None without a NeuroLM file)
    and ``iter_num``/``epoch`` per kind. Raises as ``load_official`` does for unknown, duplicate or missing
    files, and OfficialCheckpointError when the GPT keys needed for the variant are missing (naming one).
    """
    files = _read_files(paths)
    variant = None
    if "neurolm" in files:
        sd = files["neurolm"][1]["model"]
        shape = (_depth(sd, "GPT2.transformer.h."), _shape(sd, "GPT2.transformer.wte.weight")[1])
        variant = _VARIANTS.get(shape, "custom")
    return {
        "paths": {k: p for k, (p, _) in files.items()},
        "resolved": {k: str(resolve(p)) for k, (p, _) in files.items()},
        "variant": variant,
        "iter_num": {k: ck.get("iter_num") for k, (_, ck) in files.items()},
        "epoch": {k: ck.get("epoch") for k, (_, ck) in files.items()},
    }


def load_official(
    paths: str | Path | Sequence[str | Path],
    keep_optimizer: bool = False,
    patch_norm: str = "sample",
    mc: NeuroLMConfig | None = None,
    **overrides: Any,
) -> tuple[VQTokenizer | None, NeuroLM | None, dict[str, Any]]:
    """Build the project's models from official files: the entry point of ``--checkpoint``/``--init``.

    Args:
        paths: one path, a comma-separated string (``"VQ.pt,NeuroLM-B.pt"``) or a sequence; at most one
            ``VQ.pt``-like and one ``NeuroLM-*.pt``-like file, told apart by their keys. A bare file name
            not found locally is looked up in the Hugging Face cache of ``Weibang/NeuroLM`` (offline).
        keep_optimizer: return each file's AdamW state in ``info["optimizer"]`` (to seed a resumed run
            with ``official_param_groups``); by default it is never read.
        patch_norm: tokenizer TemporalConv GroupNorm statistics (``VQConfig.patch_norm``): the official
            ``"sample"`` (over all N tokens, padding included, so to reproduce official numbers pad as the
            official loaders do: 1024 tokens in stages 1-2, 276 EEG tokens in stage 3) or ``"valid"``.
        mc: a model config supplying the head counts the files do not store (ckpt §1.3): GPT heads when
            there is no ``model_args``, tokenizer heads of a ``NeuroLM-*.pt`` (always absent) and of a
            ``VQ.pt`` without ``encoder_args``. Heads stored in a file win; without ``mc`` the conventions
            apply (12 for the tokenizer, GPT-2's count for the width). Use it for non-official shapes, e.g.
            small models exported with ``save_official_*``; shapes are still read from the tensors.
        overrides: ``NeuroLMConfig`` fields for the NeuroLM, e.g. ``features="causal"``,
            ``eeg_head="eeg_only"``; ``text_positions`` defaults to the official ``"batch"`` here.
            Defaults reproduce the official computations; generation still defaults to the correct mask
            (``generate(..., faithful_mask=True)`` for the official one).

    Returns ``(tokenizer, model, info)``: the full ``VQTokenizer`` from ``VQ.pt`` (or None), the
    ``NeuroLM`` (or None; its frozen tokenizer gets the ``VQ.pt`` quantizer when both are given), both in
    eval mode on the CPU, and ``info`` with ``variant`` ("B", "L", "XL" or "custom"), ``config``
    (``NeuroLMConfig`` or None), ``vq_config``, ``wte`` (VQ.pt text table or None), ``has_codebook``,
    ``tokenizer_matches_vq`` (NeuroLM's ``tokenizer.*`` equals VQ.pt's encoder; None unless both given),
    ``iter_num``/``epoch``/``optimizer`` per kind (``{"vq": ..., "neurolm": ...}``) and ``paths``.
    Raises OfficialCheckpointError for a file of neither kind, two of one kind, or a layout mismatch
    (naming the key), FileNotFoundError for a missing file.
    """
    files = _read_files(paths)
    overrides = {"text_positions": "batch", **overrides}
    tok = wte = model = None
    info: dict[str, Any] = {"paths": {k: v[0] for k, v in files.items()}, "tokenizer_matches_vq": None}
    for key in ("iter_num", "epoch", "optimizer"):
        info[key] = {
            k: (ck.get(key) if key != "optimizer" or keep_optimizer else None) for k, (_, ck) in files.items()
        }
    if "vq" in files:
        ck = files["vq"][1]
        tok, wte = vq_from_official(ck["model"], ck.get("encoder_args"), patch_norm, mc and mc.vq.n_head)
    if "neurolm" in files:
        ck = files["neurolm"][1]
        heads = dict(gpt_heads=mc.gpt.n_head, vq_heads=mc.vq.n_head) if mc is not None else {}
        model = neurolm_from_official(
            ck["model"], ck.get("model_args"), tok, patch_norm, **heads, **overrides
        )
        if tok is not None:
            enc = tok.encoder.state_dict()
            info["tokenizer_matches_vq"] = all(
                torch.equal(v, enc[k]) for k, v in model.tokenizer.encoder.state_dict().items()
            )
    info.update(
        variant=model.cfg.name if model is not None else None,
        config=model.cfg if model is not None else None,
        vq_config=tok.cfg if tok is not None else (model.cfg.vq if model is not None else None),
        wte=wte,
        has_codebook=any(
            t is not None and t.quantize.is_initialized for t in (tok, model and model.tokenizer)
        ),
    )
    return tok, model, info


@torch.no_grad()
def features_codes_logits(
    model: NeuroLM | None,
    x: Tensor,
    chans: Tensor,
    times: Tensor,
    mask: Tensor,
    n_chans: Tensor,
    text_ids: Tensor | None = None,
    tokenizer: VQTokenizer | None = None,
) -> dict[str, Tensor | None]:
    """Tokenizer features, codes and NeuroLM logits for a batch of windows from loaded checkpoints.

    Args:
        model: the NeuroLM of ``load_official`` (or None for tokenizer outputs only).
        x: (B, N, 200) float32 patches in units of 100 µV (µV / 100), time-major: token k is second k // C,
            channel k % C; zero-padded after the valid tokens.
        chans: (B, N) int64 ``standard_1020`` indices (136 = pad); times: (B, N) int64 seconds (0 at pad,
            < 64); mask: (B, N) bool, True = valid; n_chans: (B,) int64 channels per window.
        text_ids: optional (B, T) int64 text after the EEG, e.g. ``[50257] + tiktoken("gpt2") prompt``.
        tokenizer: a ``VQTokenizer`` (from ``VQ.pt``); default ``model.tokenizer``.

    Returns a dict:
        ``features`` (B, N, 768) bidirectional tokenizer features (fc_norm output, what the GPT consumes);
        ``codes`` (B, N) int64 VQ codes in [0, 8192), -1 at padding, or None without a codebook (no VQ.pt);
        ``logits`` (B, N + T, 58496) NeuroLM outputs at every position under the stair-step mask (text rows
        0..50303, EEG code k at 50304 + k; row i predicts position i+1, or the code of the same channel one
        second later for EEG), or None without a model.
    Raises ValueError when neither a model nor a tokenizer is given.
    """
    tok = tokenizer if tokenizer is not None else (model.tokenizer if model is not None else None)
    if tok is None:
        raise ValueError("give a NeuroLM model or a VQTokenizer")
    out: dict[str, Tensor | None] = {
        "features": tok.encode(x, chans, times, mask),
        "codes": None,
        "logits": None,
    }
    if tok.quantize.is_initialized:
        out["codes"] = tok.get_codes(x, chans, times, mask)
    if model is not None:
        out["logits"] = model.logits(model.hidden_states(x, chans, times, mask, n_chans, text_ids))
    return out


_SHAPE_FIELDS = {
    "gpt": ("n_layer", "n_head", "n_embd", "block_size", "bias"),
    "vq": ("n_layer", "n_head", "n_embd", "n_chan_emb", "n_time_emb", "conv_chans", "bias"),
    "": ("n_eeg_codes", "text_vocab_padded"),
}


def load_neurolm(init: str | Path, vq: str | Path | None, mc: NeuroLMConfig) -> NeuroLM:
    """The trainer's ``--init NeuroLM-B.pt [--vq VQ.pt]`` entry: ``load_official`` with the run config's
    options (``features``, ``eeg_head``, ``text_positions``, ``vq.patch_norm``; use ``patch_norm="sample"``
    for the official GroupNorm statistics), checked against ``mc``'s shapes, and ``model.cfg = mc`` so that a
    checkpoint saved with ``mc`` rebuilds the same model. ``mc`` also supplies the head counts the files do
    not store (``load_official``). ``vq`` adds the codebook (needed for stage-2 targets only). Raises OfficialCheckpointError when a file is not of the expected kind or its shapes differ from
    ``mc`` (naming the fields), FileNotFoundError for a missing file."""
    opts = dict(features=mc.features, eeg_head=mc.eeg_head, text_positions=mc.text_positions)
    _, model, info = load_official([init] + ([vq] if vq else []), patch_norm=mc.vq.patch_norm, mc=mc, **opts)
    if model is None or (vq and "vq" not in info["paths"]):
        raise OfficialCheckpointError(f"expected a NeuroLM-*.pt ({init}) and optionally a VQ.pt ({vq})")
    diff = []
    for part, fields in _SHAPE_FIELDS.items():
        a, b = (getattr(model.cfg, part), getattr(mc, part)) if part else (model.cfg, mc)
        diff += [
            f"{part or 'model'}.{f}: file {getattr(a, f)} vs config {getattr(b, f)}"
            for f in fields
            if getattr(a, f) != getattr(b, f)
        ]
    if diff:
        raise OfficialCheckpointError(
            f"{init} ({info['variant']}) does not match model config {mc.name}: " + "; ".join(diff)
        )
    model.cfg = mc
    return model
