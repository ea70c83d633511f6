"""Issue 14, acceptance 1 and the checkpoint messages: a crafted checkpoint that would write a marker file when
unpickled is refused by every loading path (``evaluate``, ``--init``, ``--resume``, official pairs, the Python
API) and the marker is never written; a file that is not a checkpoint gets one line naming it; a stage refuses
to overwrite an existing run without ``--resume`` or ``--force``."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import torch
from fixtures_trainer import cli, random_tiny_neurolm, step_records, tiny, write_corpus

from neurolm_train import checkpoint
from neurolm_train.checkpoint import CheckpointError
from neurolm_train.official import load_official, save_official_vq
from neurolm_train.train import RunExistsError, train

torch.set_num_threads(1)


class _Payload:
    """Unpickling this calls ``exec`` with code that writes ``marker``: what a hostile checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def craft(path: Path, marker: Path, layout: str) -> Path:
    """A real ``torch.save`` zip whose pickle runs code on load; ``layout`` "project" looks like one of our
    checkpoints (``stage``), "official" like an official NeuroLM file (``model`` with GPT2 keys)."""
    model = {"_orig_mod.GPT2.lm_head.weight": torch.zeros(2, 2)}
    obj = (
        {"stage": "instruct", "step": 1, "model": model, "config": _Payload(marker)}
        if layout == "project"
        else {"model": model, "optimizer": None, "model_args": _Payload(marker), "iter_num": 0, "epoch": 0}
    )
    torch.save(obj, path)
    return path


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    marker = tmp_path / "MARKER"
    model, tok = random_tiny_neurolm("instruct")
    save_official_vq(tok, tmp_path / "VQ.pt", torch.randn(50257, model.cfg.vq.n_embd))
    out = {
        "marker": marker,
        "vq": tmp_path / "VQ.pt",
        "project": craft(tmp_path / "best.pt", marker, "project"),
        "official": craft(tmp_path / "NeuroLM-B.pt", marker, "official"),
    }
    # the payload is live: an unsafe load would run it (the test could fail)
    probe = tmp_path / "PROBE"
    torch.load(craft(tmp_path / "probe.pt", probe, "project"), weights_only=False)
    assert probe.read_text() == "pwned"
    return out


def test_crafted_checkpoints_are_refused_everywhere(
    files, workload_out: Path, pretrain_out: Path, tmp_path: Path
):
    marker, wl, pre = files["marker"], str(workload_out / "shards"), str(pretrain_out / "shards")
    runs = []
    for name in ("project", "official"):
        f = str(files[name])
        runs += [
            (
                "evaluate",
                "--checkpoint",
                f,
                "--shards",
                wl,
                "--tasks",
                "workload",
                "--out",
                str(tmp_path / "e"),
            ),
            (
                "evaluate",
                "--checkpoint",
                f"{files['vq']},{f}",
                "--shards",
                wl,
                "--tasks",
                "workload",
                "--config",
                "tiny",
                "--out",
                str(tmp_path / "e2"),
            ),
            (
                "instruct",
                "--init",
                f,
                "--shards",
                wl,
                "--tasks",
                "workload",
                "--steps",
                "1",
                "--out",
                str(tmp_path / f"i-{name}"),
            ),
            (
                "instruct",
                "--checkpoint",
                f"{files['vq']},{f}",
                "--shards",
                wl,
                "--tasks",
                "workload",
                "--steps",
                "1",
                "--out",
                str(tmp_path / f"c-{name}"),
            ),
            ("pretrain", "--init", f, "--shards", pre, "--steps", "1", "--out", str(tmp_path / f"p-{name}")),
        ]
    for args in runs:
        text = cli(*args, ok=False)
        assert "refused to load: it needs the Python object exec to unpickle" in text, (args, text)
        assert "cannot run code" in text and "Traceback" not in text
        assert not marker.exists(), args
    # --resume: the run folder's ckpt.pt is the crafted file
    run = tmp_path / "resume"
    run.mkdir()
    (run / "ckpt.pt").write_bytes(files["project"].read_bytes())
    text = cli(
        "vq", "--shards", pre, "--steps", "2", "--batch-size", "4", "--resume", "--out", str(run), ok=False
    )
    assert f"{run / 'ckpt.pt'}: refused to load" in text
    # the Python API
    with pytest.raises(CheckpointError, match="Python object exec"):
        load_official(f"{files['vq']},{files['official']}")
    with pytest.raises(CheckpointError, match="Python object exec"):
        checkpoint.load(files["project"])
    assert not marker.exists()


def test_not_a_checkpoint_is_one_line(workload_out: Path, tmp_path: Path):
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = cli(
        "evaluate",
        "--checkpoint",
        str(readme),
        "--shards",
        str(workload_out / "shards"),
        "--out",
        str(tmp_path / "e"),
        ok=False,
    )
    assert f"evaluate failed: {readme}: not a PyTorch checkpoint (expected a neurolm checkpoint" in text
    assert "Traceback" not in text and len(text) < 400
    missing = tmp_path / "run" / "best.pt"
    text = cli(
        "evaluate",
        "--checkpoint",
        str(missing),
        "--shards",
        str(workload_out / "shards"),
        "--out",
        str(tmp_path / "e"),
        ok=False,
    )
    assert f"{missing}: no such file (for a run's checkpoint: did the stage finish" in text
    assert "huggingface" not in text.lower()
    trunc = tmp_path / "trunc.pt"
    ok = tmp_path / "ok.pt"
    checkpoint.atomic_save({"stage": "vq", "model": {"w": torch.ones(3)}}, ok)
    trunc.write_bytes(ok.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="trunc.pt: "):
        checkpoint.load(trunc)


def test_checkpoints_hold_only_tensors_and_plain_values(pretrain_out: Path, tmp_path: Path):
    """A real run's checkpoint loads with weights_only=True (numpy RNG state stored as a tensor) and resumes."""
    corpus = write_corpus(tmp_path / "corpus.txt")
    cfg = tiny("vq", tmp_path / "vq", pretrain_out / "shards", corpus, ["pretrain"], 4, steps=2, stop_at=1)
    train(cfg)
    ck = torch.load(tmp_path / "vq" / "ckpt.pt", map_location="cpu", weights_only=True)
    assert isinstance(ck["rng"][0]["numpy"]["keys"], torch.Tensor) and ck["stage"] == "vq"
    train(tiny("vq", tmp_path / "vq", pretrain_out / "shards", corpus, ["pretrain"], 4, steps=2, resume=True))
    assert [r["step"] for r in step_records(tmp_path / "vq")] == [1, 2]


def test_a_stage_refuses_to_overwrite_a_run(pretrain_out: Path, tmp_path: Path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    run = tmp_path / "vq"
    args = (
        "vq",
        "--shards",
        str(pretrain_out / "shards"),
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--text",
        str(corpus),
        "--set",
        "text.block=32",
        "--set",
        "text.batch_size=2",
        "--out",
        str(run),
    )
    cli(*args)
    first = (run / "ckpt.pt").read_bytes()
    text = cli(*args, ok=False)
    assert (
        f"vq failed: {run} already holds a run (ckpt.pt, metrics.jsonl): pass --resume to continue it, "
        "--force to replace it, or choose another --out"
    ) in text
    assert (run / "ckpt.pt").read_bytes() == first and len(step_records(run)) == 1
    cli(*args, "--force")
    assert [r["step"] for r in step_records(run)] == [1]  # no duplicate metric lines
    with pytest.raises(RunExistsError):
        train(tiny("vq", run, pretrain_out / "shards", corpus, ["pretrain"], 4, steps=1))
    assert json.loads((run / "config.json").read_text())["config"]["steps"] == 1
