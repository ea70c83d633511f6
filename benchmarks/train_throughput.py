"""Training throughput per stage: tokens/s of the real training loop (``neurolm_train.train.train``).

Issue 3, acceptance 7. For each stage (vq on ``--pretrain-shards``, pretrain from that vq checkpoint,
instruct on the Workload windows of ``--instruct-shards`` from that pretrain checkpoint) the loop runs
``--steps`` optimizer steps; tokens/s is the median over the steps after ``--warmup`` (EEG tokens plus
text tokens: LM-loss crops and, in instruct, the 80-token prompt+answer text of every window).

On CUDA (``--config B`` is the paper's NeuroLM-B) it also prints the model FLOPs utilisation:
achieved FLOP/s over ``--peak-tflops`` (bf16 dense; 989 for H100/H200 SXM). Model FLOPs per token follow
the nanoGPT/PaLM convention without the attention term: 6 x trainable parameters (forward + backward) for
every token the trained network processes, plus 2 x frozen parameters for frozen forward passes (the
stage-2/3 tokenizer encoder runs on every EEG token, twice in stage 2: features and target codes).

usage: python benchmarks/train_throughput.py --pretrain-shards OUT_PRE/shards --instruct-shards OUT_WL/shards
       [--config tiny] [--steps 8] [--warmup 2] [--batch N] [--text FILE] [--peak-tflops 989] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _params(stage: str, model: torch.nn.Module) -> tuple[int, int, int]:
    """(trainable, frozen tokenizer-encoder, GPT) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if stage == "vq":
        return trainable, 0, 0
    enc = sum(p.numel() for p in model.tokenizer.encoder.parameters())
    return trainable, enc, sum(p.numel() for p in model.gpt.parameters())


def flops_per_step(stage: str, counts: tuple[int, int, int], rec: dict) -> float:
    """Model FLOPs of one logged step (see the module docstring)."""
    trainable, enc, gpt = counts
    eeg, text = rec["tokens_eeg"], rec["tokens_text"]
    if stage == "vq":  # every EEG token through encoder + decoders; text tokens only hit the classifier
        return 6.0 * trainable * eeg
    frozen_passes = 2 if stage == "pretrain" else 1
    return 6.0 * trainable * eeg + 2.0 * frozen_passes * enc * eeg + 6.0 * gpt * text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pretrain-shards", required=True)
    ap.add_argument("--instruct-shards", required=True)
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=None, help="windows per step (default: the stage's)")
    ap.add_argument("--text", default=None, help="text corpus (default: the repository's Markdown)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    if a.threads:
        torch.set_num_threads(a.threads)
    from neurolm_train.config import stage_config
    from neurolm_train.models import NeuroLM, VQTokenizer
    from neurolm_train.stages import neurolm_config
    from neurolm_train.train import train

    cuda = torch.cuda.is_available()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = a.text
        if corpus is None:
            corpus = root / "corpus.txt"
            corpus.write_text(
                "\n\n".join(p.read_text() for p in sorted(REPO.glob("*.md")) + sorted(REPO.glob("docs/*.md")))
            )
        prev = None
        for stage in ("vq", "pretrain", "instruct"):
            shards = a.instruct_shards if stage == "instruct" else a.pretrain_shards
            tasks = ["workload"] if stage == "instruct" else ["pretrain"]
            data = {"shards": str(shards), "tasks": tasks, "val_limit": 8}
            if a.batch:
                data["batch_size"] = a.batch
            cfg = stage_config(
                stage,
                a.config,
                out=str(root / stage),
                steps=a.steps,
                data=data,
                text={"corpus": str(corpus)},
                init=prev,
                log_every=1,
            )
            train(cfg)
            recs = [json.loads(line) for line in (root / stage / "metrics.jsonl").read_text().splitlines()]
            recs = [r for r in recs if r.get("kind") != "val"][a.warmup :]
            tps = statistics.median(r["tok_per_s"] for r in recs)
            row = {
                "tok_per_s": tps,
                "s_per_step": statistics.median(r["dt"] for r in recs),
                "tokens_per_step": recs[0]["tokens"],
                "batch": cfg.data.batch_size,
                "text_batch": f"{cfg.text.batch_size}x{cfg.text.block}",
            }
            if cuda:
                mc = neurolm_config(cfg)
                counts = _params(stage, VQTokenizer(mc.vq) if stage == "vq" else NeuroLM(mc))
                achieved = statistics.median(flops_per_step(stage, counts, r) / r["dt"] for r in recs)
                row |= {"tflops": achieved / 1e12, "mfu": achieved / (a.peak_tflops * 1e12)}
            results[stage] = row
            prev = str(root / stage / "ckpt.pt")
    dev = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\n{a.config} on {dev}, {a.steps} steps ({a.warmup} warm-up):")
    for stage, r in results.items():
        extra = f"  {r['tflops']:.1f} TFLOP/s  MFU {100 * r['mfu']:.1f}%" if "mfu" in r else ""
        print(
            f"  {stage:9s} {r['tok_per_s']:10.0f} tokens/s  {r['s_per_step']:.3f} s/step "
            f"({r['tokens_per_step']} tokens/step: batch {r['batch']}, text {r['text_batch']}){extra}"
        )
    if a.json:
        Path(a.json).write_text(json.dumps({"config": a.config, "device": dev, "stages": results}, indent=2))


if __name__ == "__main__":
    main()
