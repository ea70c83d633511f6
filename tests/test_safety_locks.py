"""Issue 14, acceptance 3: two writers on one OUT. While one ``shard`` (or ``ingest``) holds OUT, a second is
refused with a message naming the holder; two started together end with one output, byte-identical to a
single run."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HOLD = (
    "import sys\nfrom neurolm_data.lock import output_lock\n"
    "with output_lock(sys.argv[1], sys.argv[2]):\n    print('held', flush=True)\n    sys.stdin.read()\n"
)
DATA = "from cli import data_app; data_app()"


def data_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", DATA, *args]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(data_cmd(*args), cwd=REPO, capture_output=True, text=True, timeout=600)


def ingest_out(workload_out: Path, dst: Path) -> Path:
    """An OUT holding the Workload ingest (manifests copied, arrays linked): input for ``shard``."""
    dst.mkdir(parents=True)
    for name in ("recordings.parquet", "splits.parquet", "ledger.parquet", "ingest_config.json"):
        shutil.copy(workload_out / name, dst / name)
    (dst / "recordings").symlink_to(workload_out / "recordings")
    return dst


def same_tree(a: Path, b: Path, skip=(".neurolm.lock",)) -> None:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name not in skip)
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name not in skip)
    assert fa == fb
    for rel in fa:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


def hold(out: Path, command: str) -> subprocess.Popen:
    p = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out), command],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline().strip() == "held"
    return p


def release(p: subprocess.Popen) -> None:
    p.stdin.close()
    assert p.wait(timeout=60) == 0


def refused(res: subprocess.CompletedProcess, out: Path, pid: int, command: str, rc: int = 2) -> None:
    text = " ".join((res.stdout + res.stderr).split()).replace(" ", "")
    assert res.returncode == rc, res.stdout + res.stderr
    want = f"{out} is being written by another process (pid {pid} on host"
    assert want.replace(" ", "") in text, res.stdout + res.stderr
    assert f"`{command}` since".replace(" ", "") in text and "Traceback" not in text


def test_second_shard_is_refused_and_output_matches_a_single_run(workload_out: Path, tmp_path: Path):
    ref = ingest_out(workload_out, tmp_path / "ref")
    assert run("shard", str(ref), "--task", "workload").returncode == 0
    out = ingest_out(workload_out, tmp_path / "out")
    holder = hold(out, "neurolm-data shard")
    try:
        res = run("shard", str(out), "--task", "workload")
        refused(res, out, holder.pid, "neurolm-data shard")
        assert not (out / "shards").exists()
    finally:
        release(holder)
    # two shard runs started together: the second is refused (or, started after the first ended, a no-op)
    procs = [
        subprocess.Popen(
            data_cmd("shard", str(out), "--task", "workload"),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [(p.wait(timeout=600), p.stdout.read()) for p in procs]
    assert sorted(rc for rc, _ in outs)[0] == 0, outs
    for rc, text in outs:
        assert rc == 0 or "is being written by another process" in " ".join(text.split()), text
    same_tree(ref / "shards", out / "shards")


def test_second_ingest_is_refused_and_output_matches_a_single_run(eegmat_dir: Path, tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    for name in ("Subject00_1.edf", "Subject00_2.edf", "Subject01_2.edf"):
        shutil.copy(eegmat_dir / name, root / name)
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert run("ingest", "workload", str(root), "--out", str(ref)).returncode == 0
    holder = hold(out, "neurolm-data ingest workload")
    try:
        res = run("ingest", "workload", str(root), "--out", str(out), "--workers", "2")
        refused(res, out, holder.pid, "neurolm-data ingest workload")
        assert not (out / "ingest_config.json").exists()
    finally:
        release(holder)
    procs = [
        subprocess.Popen(
            data_cmd("ingest", "workload", str(root), "--out", str(out)),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [(p.wait(timeout=600), p.stdout.read()) for p in procs]
    assert sorted(rc for rc, _ in outs)[0] == 0, outs
    for rc, text in outs:
        assert rc == 0 or "is being written by another process" in " ".join(text.split()), text
    # the ledger and the sidecars hold timings (seconds): the manifests and arrays are byte-identical
    for rel in [
        "recordings.parquet",
        "ingest_config.json",
        *(p.relative_to(ref) for p in sorted((ref / "recordings").glob("*.npy"))),
    ]:
        assert filecmp.cmp(ref / rel, out / rel, shallow=False), rel
    assert len(list((out / "recordings").glob("*.npy"))) == 3


@pytest.mark.parametrize("stage_args", [("split", "--protocol", "workload")])
def test_split_is_locked_too(workload_out: Path, tmp_path: Path, stage_args):
    out = ingest_out(workload_out, tmp_path / "out")
    holder = hold(out, "neurolm-data shard")
    try:
        refused(run(stage_args[0], str(out), *stage_args[1:]), out, holder.pid, "neurolm-data shard")
    finally:
        release(holder)
    assert run(stage_args[0], str(out), *stage_args[1:]).returncode == 0


def test_evaluate_out_is_locked_too(workload_out: Path, tmp_path: Path):
    """``neurolm-train evaluate --out E`` while another process writes E: refused naming the holder, nothing
    written; once released, the same command writes its results."""
    import torch
    from fixtures_trainer import random_tiny_neurolm

    from neurolm_train.official import save_official_neurolm, save_official_vq

    model, tok = random_tiny_neurolm("instruct")
    save_official_vq(tok, tmp_path / "VQ.pt", torch.randn(50257, model.cfg.vq.n_embd))
    save_official_neurolm(model, tmp_path / "NeuroLM-T.pt")
    out = tmp_path / "e"
    out.mkdir()
    args = [
        "-c",
        "from cli import train_app; train_app()",
        "evaluate",
        "--checkpoint",
        f"{tmp_path / 'VQ.pt'},{tmp_path / 'NeuroLM-T.pt'}",
        "--config",
        "tiny",
        "--shards",
        str(workload_out / "shards"),
        "--tasks",
        "workload",
        "--limit",
        "8",
        "--out",
        str(out),
    ]
    holder = hold(out, "neurolm-train evaluate --out other")
    try:
        res = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
        refused(res, out, holder.pid, "neurolm-train evaluate --out other")
        assert not (out / "results.json").exists()
    finally:
        release(holder)
    res = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (out / "results.json").is_file() and (out / "predictions.parquet").is_file()
