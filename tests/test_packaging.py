"""Issue 17, acceptance 5: a wheel built from the checkout carries the protocols and reported results.

The wheel is built with pip from this checkout, installed with ``pip install --no-deps --target DIR`` (its
dependencies are the ones already installed here), and run with ``PYTHONPATH=DIR`` from a folder outside the
checkout: the modules must come from DIR, and ``split`` (a shipped protocol and a user's own protocol file given by
path) and ``shard`` must work on real EEGMAT recordings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{args}\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, installed into a fresh target folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(REPO)], cwd=tmp
    )
    wheels = list((tmp / "dist").glob("neurolm-*.whl"))
    assert len(wheels) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    shipped = {Path(n).name for n in names if n.startswith("neurolm_data/manifests/")}
    assert {p.name for p in (REPO / "manifests" / "protocols").glob("*.toml")} <= shipped
    assert {p.name for p in (REPO / "manifests" / "reported").glob("*.toml")} <= shipped
    target = tmp / "site"
    _run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheels[0])],
        cwd=tmp,
    )
    return target


def _env(target: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}


def test_installed_wheel_finds_its_manifests(installed: Path, tmp_path: Path) -> None:
    code = (
        "import cli, neurolm_data, neurolm_train\n"
        "from neurolm_data.protocols import PROTOCOL_DIR, available_protocols, load_protocol\n"
        "from neurolm_train.leaderboard.reported import DEFAULT_DIR, load_reported\n"
        "for m in (cli, neurolm_data, neurolm_train):\n"
        "    print('module', m.__file__)\n"
        "print('protocols', PROTOCOL_DIR, ' '.join(available_protocols()))\n"
        "print('reported', DEFAULT_DIR, len(load_reported(DEFAULT_DIR)))\n"
        "print('workload', load_protocol('workload').rule)\n"
    )
    out = _run([sys.executable, "-c", code], cwd=tmp_path, env=_env(installed)).stdout
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    for line in out.splitlines():
        if line.startswith(("module", "protocols", "reported")):
            assert line.split()[1].startswith(str(installed)), (
                line
            )  # not the checkout, not an editable install
    assert "workload" in lines["protocols"].split() and "tuab" in lines["protocols"].split()
    assert int(lines["reported"].split()[1]) > 0
    assert lines["workload"] == "explicit"


def test_installed_wheel_splits_and_shards(installed: Path, eegmat_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "eegmat"
    root.mkdir()
    for s in ("Subject00", "Subject27", "Subject33"):
        for run in (1, 2):
            shutil.copy(eegmat_dir / f"{s}_{run}.edf", root)
    env = _env(installed)
    cli = [sys.executable, "-c", "import sys, cli; sys.argv[0] = 'neurolm-data'; cli.data_app()"]
    work = tmp_path / "elsewhere"
    work.mkdir()
    _run([*cli, "ingest", "workload", str(root), "--out", "out"], cwd=work, env=env)
    _run([*cli, "split", "out", "--protocol", "workload"], cwd=work, env=env)
    res = _run([*cli, "shard", "out", "--task", "workload"], cwd=work, env=env)
    assert "protocol workload" in " ".join(res.stdout.split())
    assert len(list((work / "out" / "shards" / "workload").glob("*/*.tar"))) == 3
    # a user's own protocol file, passed by path: everyone in train except Subject33
    mine = tmp_path / "mine.toml"
    mine.write_text(
        'version = 1\nname = "mine"\nsource = "workload"\ntask = "workload"\n[split]\nrule = "explicit"\n'
        'unlisted = "error"\n[split.subjects]\ntrain = ["Subject00", "Subject27"]\ntest = ["Subject33"]\n'
    )
    res = _run([*cli, "split", "out", "--protocol", str(mine)], cwd=work, env=env)
    assert "protocol mine v1" in " ".join(res.stdout.split())
    res = _run([*cli, "shard", "out", "--task", "workload", "--protocol", str(mine)], cwd=work, env=env)
    assert "protocol mine" in " ".join(res.stdout.split())
    assert sorted(p.name for p in (work / "out" / "shards" / "workload").iterdir() if p.is_dir()) == [
        "test",
        "train",
    ]
