"""Scaling out: the data commands without torch, Ray as executor, object storage (S3 via moto's server).

Ray tests start one local Ray instance per module (2 CPUs, no dashboard). The S3 tests start moto's
S3-compatible HTTP server on 127.0.0.1 (the server s3fs's own test suite uses) and talk to it through s3fs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _link_files(src: Path, dst: Path, names: list[str]) -> Path:
    dst.mkdir(parents=True)
    for n in names:
        (dst / n).symlink_to((src / n).resolve())
    return dst


def _tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and p.name not in skip}


def _ledger_rows(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "ledger.parquet").to_pylist()
    for r in rows:
        r.pop("seconds")  # timing: the one column that differs between runs
    return rows


# ----------------------------------------------------------------------------------- no torch in neurolm-data


def test_data_commands_do_not_import_torch(eegmat_dir: Path, tmp_path: Path) -> None:
    """ingest, split, shard and verify through the CLI in a fresh interpreter: neither torch nor webdataset
    is imported (shards are written with Python's tarfile)."""
    root = _link_files(eegmat_dir, tmp_path / "root", [f"Subject0{i}_{r}.edf" for i in range(4) for r in (1, 2)])
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys
        from cli import data_app
        for argv in (["ingest", "workload", {str(root)!r}, "--out", {str(out)!r}],
                     ["split", {str(out)!r}, "--protocol", "workload"],
                     ["shard", {str(out)!r}, "--task", "workload"],
                     ["verify", {str(out)!r}]):
            try:
                data_app(argv, standalone_mode=False)
            except SystemExit as e:
                assert not e.code, (argv, e.code)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "webdataset", "transformers"))
        print("HEAVY", heavy)
    """)
    res = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "HEAVY []" in res.stdout, res.stdout[-2000:]
    assert json.loads((out / "shards" / "workload" / "shards.json").read_text())["n_windows"] > 0
