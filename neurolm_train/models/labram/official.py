"""The official LaBraM checkpoints: ``labram-base.pth`` (MEM pre-training), ``vqnsp.pth`` (VQ-NSP tokenizer)
and the fine-tuned classifiers of ``run_class_finetuning.py``: read, check, map, export.

Source: github.com/935963004/LaBraM (``checkpoints/``, ``modeling_pretrain.py``, ``modeling_vqnsp.py``,
``modeling_finetune.py``, ``run_class_finetuning.py``). Files are read with ``torch.load(weights_only=True)``
(never unpickled), on the CPU; the state dict is the ``model`` entry. The layout is checked in full: a
missing, unexpected or mis-shaped key raises ``OfficialCheckpointError`` naming it (the official
``--finetune`` loads non-strictly and only prints mismatches, LaBraM flaw: a checkpoint without the
``student.`` prefix silently loads nothing).

=========================================  =====================================================
official key (kind)                        project
=========================================  =====================================================
``student.*`` (mem)                        ``LaBraMMEM.student.*``
``student.lm_head.*`` (mem)                never used officially; kept in ``info["unused"]`` and
``projection_head.0.*`` (mem)              written back on export (fresh init when absent)
``lm_head.*`` (mem)                        ``LaBraMMEM.lm_head.*``
``encoder.*``, ``decoder.*`` (vqnsp)       ``LaBraMVQNSP.encoder.*``, ``.decoder.*``
``quantize.embedding.weight`` (vqnsp)      ``LaBraMVQNSP.quantize.codebook``
``quantize.embedding.cluster_size``        ``quantize.init_counts`` (k-means cluster sizes)
``quantize.embedding.initted``             ``quantize.initted``
``quantize.cluster_size``                  ``quantize.cluster_size``
``quantize.embedding.embed_avg``           none (never used nor updated officially; zeros on export)
``encode_task_layer``, ``decode_task_layer``, ``decode_task_layer_angle``: same names
``cls_token``, ``pos_embed`` ... ``head`` (finetune)   ``NeuralTransformer`` with a head, same names
=========================================  =====================================================

Every tensor keeps its official shape (``pos_embed`` (1, 129, d), ``time_embed`` (1, 16, d), the decoder's
``patch_embed.proj.weight`` (d, code_dim, 1, 1)), so nothing is reshaped. Fine-tuning from ``labram-base.pth``
takes ``student.*`` without ``mask_token``, ``norm`` and ``lm_head`` (listed in ``info["unused"]``); ``fc_norm``
and ``head`` are new (``info["new"]``), as officially.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neurolm_train.official import OfficialCheckpointError, check_layout, strip_prefix

from .config import LaBraMConfig
from .model import LaBraMMEM, LaBraMVQNSP, NeuralTransformer

GITHUB = "https://github.com/935963004/LaBraM/raw/main/checkpoints"
_QUANT = {
    "codebook": "embedding.weight",
    "init_counts": "embedding.cluster_size",
    "initted": "embedding.initted",
    "cluster_size": "cluster_size",
}
_QUANT_BACK = {v: k for k, v in _QUANT.items()}
_UNUSED_MEM = (
    "student.lm_head.weight",
    "student.lm_head.bias",
    "projection_head.0.weight",
    "projection_head.0.bias",
)
_HEADS_BY_WIDTH = {200: 10, 400: 16, 800: 16}  # labram_base/large/huge registry functions


# ----------------------------------------------------------------------------------------------- reading
def resolve(path: str | Path) -> Path:
    """A local file, or a file name already in the torch hub download cache (``torch.hub.get_dir()/checkpoints``,
    where ``torch.hub.load_state_dict_from_url`` of the GitHub URL puts it). Never the network. Raises
    FileNotFoundError saying how to fetch it."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(path).name
    if cached.is_file():
        return cached
    raise FileNotFoundError(
        f"{path}: no such file, nor in the torch hub cache ({cached.parent}); on a machine with internet run "
        f"`curl -L -o {Path(path).name} {GITHUB}/{Path(path).name}` and pass the local path"
    )


def read_state(path: str | Path) -> dict[str, Tensor]:
    """The ``model`` state dict of an official file (weights only, CPU, ``module.`` / ``_orig_mod.`` prefixes
    stripped). Raises OfficialCheckpointError when there is no ``model`` state dict."""
    ck = torch.load(resolve(path), map_location="cpu", weights_only=True)
    sd = ck.get("model") if isinstance(ck, dict) else None
    if not isinstance(sd, dict):
        raise OfficialCheckpointError(f"{path}: not an official LaBraM checkpoint (no 'model' state dict)")
    sd = strip_prefix(sd)
    return OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in sd.items())


def kind_of(sd: dict[str, Tensor]) -> str:
    """``"mem"`` (``labram-base.pth``), ``"vqnsp"`` (``vqnsp.pth``) or ``"finetune"`` (a fine-tuned classifier),
    told apart by their keys. Raises OfficialCheckpointError otherwise."""
    if "student.cls_token" in sd:
        return "mem"
    if "encoder.cls_token" in sd and "quantize.embedding.weight" in sd:
        return "vqnsp"
    if "cls_token" in sd and "blocks.0.norm1.weight" in sd:
        return "finetune"
    raise OfficialCheckpointError(
        "neither labram-base.pth (student.*), vqnsp.pth (encoder.*, quantize.*) nor a "
        f"fine-tuned LaBraM (cls_token, blocks.*): first keys {list(sd)[:4]}"
    )


def _shape(sd: dict[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise OfficialCheckpointError(f"missing key '{key}'")
    return tuple(sd[key].shape)


def _depth(sd: dict[str, Tensor], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"blocks\.(\d+)\.")
    idx = {int(m.group(1)) for k in sd if (m := pat.match(k))}
    return max(idx) + 1 if idx else 0


def config_from_state(sd: dict[str, Tensor], like: LaBraMConfig | None = None) -> LaBraMConfig:
    """The ``LaBraMConfig`` of an official state dict: shapes from the tensors, everything else (options) from
    ``like`` (default ``base``). Heads: from the per-head QK-norm width when present, else ``like.n_head`` when
    given, else the official count for the width (10 for 200). Raises OfficialCheckpointError on a missing
    key."""
    kind = kind_of(sd)
    base = LaBraMConfig(name="official") if like is None else like
    p = {"mem": "student.", "vqnsp": "encoder.", "finetune": ""}[kind]
    rows, d = _shape(sd, p + "pos_embed")[1:]
    k = _shape(sd, p + "patch_embed.conv1.weight")[0]
    if 25 * k != d:
        raise OfficialCheckpointError(f"{p}pos_embed width {d} is not 25 x conv channels {k}")
    heads = base.n_head if like is not None else _HEADS_BY_WIDTH.get(d, base.n_head)
    if f"{p}blocks.0.attn.q_norm.weight" in sd:  # QK-norm is per head: its width is the head dimension
        heads = d // _shape(sd, f"{p}blocks.0.attn.q_norm.weight")[0]
    kw = base.to_dict()
    kw.update(conv_chans=k, n_head=heads, n_chan_rows=rows, n_time_rows=_shape(sd, p + "time_embed")[1])
    if kind == "vqnsp":
        n_codes, code_dim = _shape(sd, "quantize.embedding.weight")
        kw.update(
            vq_depth=_depth(sd, "encoder."),
            vq_decoder_depth=_depth(sd, "decoder."),
            n_codes=n_codes,
            code_dim=code_dim,
            n_freq=_shape(sd, "decode_task_layer.2.weight")[0],
        )
    else:
        kw.update(
            depth=_depth(sd, p),
            qk_norm=f"{p}blocks.0.attn.q_norm.weight" in sd,
            qkv_bias=f"{p}blocks.0.attn.q_bias" in sd,
        )
        if f"{p}blocks.0.gamma_1" not in sd:
            kw["init_values"] = 0.0
        elif not kw["init_values"]:
            kw["init_values"] = 0.1
        if kind == "mem":
            kw["n_codes"] = _shape(sd, "lm_head.weight")[0]
    try:
        return LaBraMConfig(**kw)
    except ValueError as e:
        raise OfficialCheckpointError(f"official shapes do not make a LaBraM config: {e}") from None


# ----------------------------------------------------------------------------------------------- export
def _fresh_unused(d: int, n_codes: int) -> dict[str, Tensor]:
    """Fixed-seed stand-ins for the never-used MEM heads (trunc-normal 0.02 weights, zero biases)."""
    g = torch.Generator().manual_seed(0)
    w1 = torch.randn(n_codes, d, generator=g).mul_(0.02).clamp_(-0.04, 0.04)
    w2 = torch.randn(d, d, generator=g).mul_(0.02).clamp_(-0.04, 0.04)
    return {
        "student.lm_head.weight": w1,
        "student.lm_head.bias": torch.zeros(n_codes),
        "projection_head.0.weight": w2,
        "projection_head.0.bias": torch.zeros(d),
    }


def mem_to_official(mem: LaBraMMEM, unused: dict[str, Tensor] | None = None) -> OrderedDict[str, Tensor]:
    """``mem`` as the ``model`` entry of ``labram-base.pth``: ``student.*``, the two never-used heads (from
    ``unused``, e.g. ``info["unused"]`` of a loaded file, else fixed-seed stand-ins) and ``lm_head.*``."""
    out: OrderedDict[str, Tensor] = OrderedDict(
        ("student." + k, v) for k, v in mem.student.state_dict().items()
    )
    extra = unused or _fresh_unused(mem.cfg.embed_dim, mem.cfg.n_codes)
    for k in _UNUSED_MEM[:2]:
        out[k] = extra[k]
    for k, v in mem.lm_head.state_dict().items():
        out["lm_head." + k] = v
    for k in _UNUSED_MEM[2:]:
        out[k] = extra[k]
    return out


def vqnsp_to_official(vq: LaBraMVQNSP) -> OrderedDict[str, Tensor]:
    """``vq`` as the ``model`` entry of ``vqnsp.pth`` (the restart counters ``unused_steps`` are not official)."""
    out: OrderedDict[str, Tensor] = OrderedDict()
    for k, v in vq.state_dict().items():
        part, rest = k.split(".", 1)
        if part != "quantize":
            out[k] = v
        elif rest in _QUANT:
            out["quantize." + _QUANT[rest]] = v
            if rest == "codebook":
                out["quantize.embedding.embed_avg"] = torch.zeros_like(v)
    return out


def finetune_to_official(model: NeuralTransformer) -> OrderedDict[str, Tensor]:
    """A fine-tuned backbone as the ``model`` entry of ``run_class_finetuning.py``'s checkpoints (same names)."""
    if model.head is None or model.final != "fc_norm":
        raise ValueError("a fine-tuned LaBraM has mean pooling (fc_norm) and a head")
    return OrderedDict(model.state_dict())


def to_official(model: nn.Module, unused: dict[str, Tensor] | None = None) -> OrderedDict[str, Tensor]:
    """Dispatch on the model type (``LaBraMMEM``, ``LaBraMVQNSP`` or a ``NeuralTransformer`` with a head)."""
    if isinstance(model, LaBraMMEM):
        return mem_to_official(model, unused)
    if isinstance(model, LaBraMVQNSP):
        return vqnsp_to_official(model)
    if isinstance(model, NeuralTransformer):
        return finetune_to_official(model)
    raise TypeError(f"no official LaBraM layout for {type(model).__name__}")


def save_official(
    model: nn.Module, path: str | Path, unused: dict[str, Tensor] | None = None, epoch: int = 0
) -> None:
    """Write ``model`` as an official file (``{"model": state dict, "epoch": epoch}``, as the official
    ``utils.save_model`` writes the weights) readable by the official scripts and by ``load_official``."""
    torch.save({"model": to_official(model, unused), "epoch": epoch}, path)


# ----------------------------------------------------------------------------------------------- loading
def _build(kind: str, cfg: LaBraMConfig, n_classes: int) -> nn.Module:
    if kind == "mem":
        return LaBraMMEM(cfg)
    if kind == "vqnsp":
        return LaBraMVQNSP(cfg)
    return NeuralTransformer(cfg, n_classes=n_classes)


def load_official(
    path: str | Path, like: LaBraMConfig | None = None
) -> tuple[str, nn.Module, dict[str, Any]]:
    """Build the project model of an official file, checking every key and shape.

    Args:
        path: ``labram-base.pth``, ``vqnsp.pth`` or a fine-tuned classifier (local, or in the torch hub cache).
        like: supplies what the shapes do not (head count, ``patch_norm``, ``cls_pos``); default ``base``.

    Returns ``(kind, model, info)``: kind ``"mem"`` -> ``LaBraMMEM``, ``"vqnsp"`` -> ``LaBraMVQNSP``,
    ``"finetune"`` -> ``NeuralTransformer`` with the file's head; eval mode, CPU. ``info`` holds ``config``,
    ``path`` and ``unused`` (the never-used MEM heads, for a faithful export). Raises OfficialCheckpointError
    naming every missing, unexpected and mis-shaped key, FileNotFoundError for a missing file.
    """
    sd = read_state(path)
    kind = kind_of(sd)
    cfg = config_from_state(sd, like)
    n_classes = _shape(sd, "head.weight")[0] if kind == "finetune" and "head.weight" in sd else 0
    if kind == "finetune" and not n_classes:
        raise OfficialCheckpointError(f"{path}: missing key 'head.weight' (a fine-tuned LaBraM has a head)")
    model = _build(kind, cfg, n_classes)
    check_layout(sd, to_official(model), f"{path} ({kind})")
    unused = {k: sd[k].clone() for k in _UNUSED_MEM} if kind == "mem" else None
    own: dict[str, Tensor] = {}
    for k, v in sd.items():
        if k in _UNUSED_MEM:
            continue
        if kind == "mem":
            k = k[len("student.") :] if k.startswith("student.") else k
            k = k if k.startswith("lm_head.") else "student." + k
        elif kind == "vqnsp" and k.startswith("quantize."):
            rest = k[len("quantize.") :]
            if rest == "embedding.embed_avg":
                continue
            k = "quantize." + _QUANT_BACK[rest]
        own[k] = v.clone()
    model.load_state_dict(own, strict=True)
    return kind, model.eval(), {"config": cfg, "path": str(path), "unused": unused}


def backbone_from_official(
    path: str | Path, cfg: LaBraMConfig, n_classes: int, drop_path: float = 0.0
) -> tuple[NeuralTransformer, dict[str, Any]]:
    """The fine-tuning start from an official file (``--init labram-base.pth``): a ``NeuralTransformer`` of
    ``cfg`` with ``n_classes`` outputs, the file's backbone weights copied in.

    From ``labram-base.pth``: ``student.*`` except ``mask_token``, ``norm`` and ``lm_head`` (``info["unused"]``);
    ``fc_norm`` and ``head`` stay new (``info["new"]``). From a fine-tuned file: everything, except a ``head``
    of another size, which is new. The file's shapes must equal ``cfg``'s (checked field by field; a config
    with more ``n_chan_rows`` than the file gets the file's rows first and new rows after, listed in
    ``info["extended"]``). Raises OfficialCheckpointError (naming the fields or keys) or FileNotFoundError.
    """
    kind, src, info = load_official(path, like=cfg)
    if kind == "vqnsp":
        raise OfficialCheckpointError(
            f"{path} is a VQ-NSP tokenizer: fine-tuning starts from labram-base.pth (or a fine-tuned LaBraM)"
        )
    fc = info["config"]
    fields = ("conv_chans", "depth", "n_head", "qk_norm", "qkv_bias", "n_time_rows")
    diff = [
        f"{f}: file {getattr(fc, f)} vs config {getattr(cfg, f)}"
        for f in fields
        if getattr(fc, f) != getattr(cfg, f)
    ]
    if (fc.init_values > 0) != (cfg.init_values > 0):
        diff.append(
            f"LayerScale: file {'on' if fc.init_values > 0 else 'off'}, config init_values {cfg.init_values}"
        )
    if cfg.n_chan_rows < fc.n_chan_rows:
        diff.append(f"n_chan_rows: file {fc.n_chan_rows} vs config {cfg.n_chan_rows}")
    if diff:
        raise OfficialCheckpointError(f"{path} does not fit config {cfg.name}: " + "; ".join(diff))
    bb = src.student if kind == "mem" else src
    model = NeuralTransformer(cfg, n_classes=n_classes, drop_path=drop_path)
    own = model.state_dict()
    unused: list[str] = []
    extended: list[str] = []
    taken: set[str] = set()
    for k, v in bb.state_dict().items():
        if k not in own or (k.startswith("head.") and own[k].shape != v.shape):
            unused.append(("student." if kind == "mem" else "") + k)
            continue
        taken.add(k)
        if k == "pos_embed" and v.shape != own[k].shape:
            own[k][:, : v.shape[1]] = v
            extended.append(f"pos_embed rows {v.shape[1]}..{own[k].shape[1] - 1}")
        else:
            own[k] = v
    if kind == "mem":
        unused += ["lm_head.weight", "lm_head.bias", *_UNUSED_MEM]
    new = [k for k in own if k not in taken]
    model.load_state_dict(own)
    return model, {"kind": kind, "path": str(path), "unused": unused, "new": new, "extended": extended}
