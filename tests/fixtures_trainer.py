"""Helpers for the trainer tests: tiny run configs on the real session shards, a text corpus, metrics reading.

The text corpus is the repository's own prose (docs and README), written to ``tmp_path``; nothing here is
committed data.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from neurolm_train.config import RunConfig, stage_config

REPO = Path(__file__).resolve().parents[1]


def write_corpus(dst: Path) -> Path:
    """A small real text file for the LM loss: the repository's Markdown prose."""
    text = "\n\n".join(
        p.read_text(encoding="utf-8") for p in sorted(REPO.glob("**/*.md")) if ".git" not in p.parts
    )
    dst.write_text(text, encoding="utf-8")
    return dst


def tiny(
    stage: str, out: Path, shards: Path, corpus: Path, tasks: list[str], batch_size: int, **kw
) -> RunConfig:
    """A ``tiny`` run config with seed 0, 2 text crops of 32 tokens, ``batch_size`` windows per step."""
    data = {"shards": str(shards), "tasks": tasks, "batch_size": batch_size, **kw.pop("data", {})}
    text = {"corpus": str(corpus), "block": 32, "batch_size": 2}
    kw.setdefault("seed", 0)
    return stage_config(stage, "tiny", out=str(out), data=data, text=text, **kw)


def step_records(run: Path) -> list[dict]:
    """Training-step records of ``metrics.jsonl`` (validation records left out)."""
    return [
        r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r.get("kind") != "val"
    ]


def same_tensors(a: dict, b: dict) -> bool:
    """True when two state dicts hold bit-identical tensors under the same keys."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def cli(*args: str, ok: bool = True) -> str:
    """Run ``neurolm-train ARGS``; assert it succeeded (or failed, ``ok=False``); the output with rich's line
    wrapping undone."""
    from typer.testing import CliRunner

    from cli import train_app

    res = CliRunner().invoke(train_app, list(args))
    assert (res.exit_code == 0) == ok, res.output + repr(res.exception)
    return " ".join(res.output.split())


def random_tiny_neurolm(stage: str):
    """A random ``tiny`` NeuroLM for ``stage`` (seed 0) with a random unit-norm codebook marked initialised
    (no k-means needed), and its tokenizer: ``(model, tokenizer)``."""
    from neurolm_train.models import NeuroLM, VQTokenizer
    from neurolm_train.stages import neurolm_config

    mc = neurolm_config(stage_config(stage, "tiny"))
    torch.manual_seed(0)
    tok = VQTokenizer(mc.vq)
    with torch.no_grad():
        tok.quantize.codebook.copy_(
            torch.nn.functional.normalize(torch.randn_like(tok.quantize.codebook), dim=-1)
        )
        tok.quantize.initted.fill_(1.0)
    model = NeuroLM(mc)
    model.load_tokenizer(tok.eval())
    return model, tok
