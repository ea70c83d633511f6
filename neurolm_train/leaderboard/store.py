"""The results store: one record per (model, task, seed), MOABB-style, under the results folder.

Layout (``RESULTS`` defaults to ``OUT/leaderboard``)::

    RESULTS/records/TASK/MODEL/seed-SEED/record.json        scores, config + hash, manifest hash, provenance
    RESULTS/records/TASK/MODEL/seed-SEED/predictions.parquet  key, subject, label, pred, prob_0..prob_{K-1}
    RESULTS/records/TASK/MODEL/seed-SEED-fold-F/...          the same for CV fold F of a ``kfold`` protocol

A record is *current* when its ``config_hash`` and ``manifest_hash`` equal the ones of the present run and
its predictions file has the sha256 stored in the record. Records are written to a temporary folder and
renamed into place, so a crash never leaves half a record; a stale record is replaced, never kept beside
the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

RECORD = "record.json"
PREDICTIONS = "predictions.parquet"


@dataclass(frozen=True)
class Record:
    """A stored record: the parsed ``record.json`` (``meta``) and its folder."""

    path: Path
    meta: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, int, int]:
        """``(task, model, seed, fold)``; fold -1 for a fixed split."""
        fold = self.meta.get("fold")
        return (
            self.meta["task"],
            self.meta["model"],
            int(self.meta["seed"]),
            -1 if fold is None else int(fold),
        )

    def predictions(self) -> pl.DataFrame:
        """The per-window predictions, key order."""
        return pl.read_parquet(self.path / PREDICTIONS)

    def probabilities(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(y (N,) int64, prob (N, K) float64, subjects (N,) str)`` from the predictions file."""
        df = self.predictions()
        k = int(self.meta["n_classes"])
        prob = df.select([f"prob_{i}" for i in range(k)]).to_numpy().astype(np.float64)
        return df["label"].to_numpy().astype(np.int64), prob, df["subject"].to_numpy().astype(str)


def record_dir(results: Path, task: str, model: str, seed: int, fold: int | None = None) -> Path:
    """Folder of one record (``seed-SEED``, or ``seed-SEED-fold-F`` for CV fold ``fold``)."""
    return (
        Path(results)
        / "records"
        / task
        / model
        / (f"seed-{seed}" if fold is None else f"seed-{seed}-fold-{fold}")
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_record(path: Path) -> Record | None:
    """The record in ``path``, or ``None`` if absent, unreadable or its predictions file does not match."""
    meta_path = Path(path) / RECORD
    try:
        meta = json.loads(meta_path.read_text())
        ok = _sha256(Path(path) / PREDICTIONS) == meta["predictions_sha256"]
    except (OSError, ValueError, KeyError):
        return None
    return Record(Path(path), meta) if ok else None


def is_current(record: Record | None, config_hash: str, manifest_hash: str) -> bool:
    """True when ``record`` exists and was made with this config and this windows manifest."""
    return (
        record is not None
        and record.meta.get("config_hash") == config_hash
        and record.meta.get("manifest_hash") == manifest_hash
    )


def predictions_frame(
    keys: np.ndarray, subjects: np.ndarray, labels: np.ndarray, prob: np.ndarray
) -> pl.DataFrame:
    """Per-window predictions: ``key``, ``subject``, ``label``, ``pred`` (argmax), ``prob_0..prob_{K-1}``."""
    cols: dict[str, Any] = {
        "key": [str(k) for k in keys],
        "subject": [str(s) for s in subjects],
        "label": np.asarray(labels, dtype=np.int64),
        "pred": prob.argmax(axis=1).astype(np.int64),
    }
    for i in range(prob.shape[1]):
        cols[f"prob_{i}"] = prob[:, i].astype(np.float64)
    return pl.DataFrame(cols)


def write_record(results: Path, meta: dict[str, Any], predictions: pl.DataFrame) -> Record:
    """Atomically write (or replace) the record ``(meta['task'], meta['model'], meta['seed'])``.

    ``meta`` gets ``predictions_sha256`` added. Returns the stored :class:`Record`.
    """
    final = record_dir(results, meta["task"], meta["model"], int(meta["seed"]), meta.get("fold"))
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    predictions.write_parquet(tmp / PREDICTIONS)
    meta = dict(meta, predictions_sha256=_sha256(tmp / PREDICTIONS))
    (tmp / RECORD).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return Record(final, meta)


def iter_records(results: Path) -> list[Record]:
    """Every readable record under ``RESULTS/records``, sorted by (task, model, seed)."""
    root = Path(results) / "records"
    out = [r for p in sorted(root.glob("*/*/seed-*")) if (r := load_record(p)) is not None]
    return sorted(out, key=lambda r: r.key)
