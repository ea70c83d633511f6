"""``leaderboard run``: fit every (model, task, seed) that has no current record, and store it.

For each task the windows manifest is loaded and hashed first; a record whose config hash and manifest
hash both match is skipped (and its files are not touched). Anything else (no record, a stale hash, a
damaged predictions file, or ``force``) is re-run and replaces the old record. Windows are read from the
shards at most once per task and run, and only if something has to be fitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from neurolm_train.leaderboard import store
from neurolm_train.leaderboard.baselines import Fit, fit_bandpower, fit_chance
from neurolm_train.leaderboard.braindecode_nets import fit_braindecode
from neurolm_train.leaderboard.config import DataConfig, ModelSpec, config_payload, stable_hash
from neurolm_train.leaderboard.neurolm import clear_run_dir, fit_neurolm
from neurolm_train.leaderboard.provenance import code_version
from neurolm_train.leaderboard.riemann import fit_csp, fit_riemann
from neurolm_train.leaderboard.scoring import metric_names, score_all
from neurolm_train.leaderboard.smallnet import fit_smallnet
from neurolm_train.leaderboard.windows import (
    TaskManifest,
    WindowSplit,
    available_tasks,
    load_manifest,
    read_split,
    select_keys,
)


@dataclass
class FitContext:
    """What a fitter may use: the task manifest, the data selection, the seed and lazily read splits.

    ``train``/``val``/``test`` are read from the shards on first access and shared by every model and
    seed of the task (:func:`run_leaderboard` keeps one context per task and swaps ``seed``). ``run_dir``
    is an empty folder for the fit's own files (checkpoints), ``RESULTS/runs/TASK/MODEL/seed-SEED``.
    """

    out_dir: Path
    manifest: TaskManifest
    data: DataConfig
    seed: int = 0
    max_bytes: int = 8 << 30
    run_dir: Path | None = None
    _cache: dict[str, WindowSplit] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return self.manifest.n_classes

    def keys(self, split: str) -> list[str]:
        """Selected keys of ``split`` (sorted); the row order of every prediction array."""
        return select_keys(self.manifest, split, self.data.max_windows_per_split)

    def split(self, name: str) -> WindowSplit:
        if name not in self._cache:
            self._cache[name] = read_split(self.manifest, name, self.keys(name), self.max_bytes)
        return self._cache[name]

    @property
    def train(self) -> WindowSplit:
        return self.split("train")

    @property
    def val(self) -> WindowSplit:
        return self.split("val")

    @property
    def test(self) -> WindowSplit:
        return self.split("test")


Fitter = Callable[[FitContext, Any], Fit]


def _windows_fitter(fn: Callable[..., Fit]) -> Fitter:
    """Adapt ``fn(train, val, test, n_classes, seed, config)`` to the :data:`Fitter` signature."""
    return lambda ctx, cfg: fn(ctx.train, ctx.val, ctx.test, ctx.n_classes, ctx.seed, cfg)


#: Fitter per model kind.
FITTERS: dict[str, Fitter] = {
    "chance": _windows_fitter(fit_chance),
    "bandpower": _windows_fitter(fit_bandpower),
    "smallnet": _windows_fitter(fit_smallnet),
    "neurolm": fit_neurolm,
    "riemann": _windows_fitter(fit_riemann),
    "csp": _windows_fitter(fit_csp),
    "braindecode": _windows_fitter(fit_braindecode),
}
#: Kinds whose fitter reads the raw windows (read before timing starts).
WINDOW_KINDS = {"chance", "bandpower", "smallnet", "riemann", "csp", "braindecode"}


def register_kind(kind: str, config_class: type, fitter: Fitter, *, windows: bool = False) -> None:
    """Add a model kind: its config class (``config.KIND_CONFIGS``) and fitter (:data:`FITTERS`).

    ``fitter(ctx, config) -> Fit`` gets a :class:`FitContext`; ``windows=True`` marks a fitter that reads the
    raw windows (``ctx.train/val/test``, read before the clock starts). Raises ``ValueError`` when the kind
    exists with another config class or fitter.
    """
    from neurolm_train.leaderboard.config import KIND_CONFIGS

    if KIND_CONFIGS.get(kind, config_class) is not config_class or FITTERS.get(kind, fitter) is not fitter:
        raise ValueError(f"model kind {kind!r} is already registered")
    KIND_CONFIGS[kind] = config_class
    FITTERS[kind] = fitter
    if windows:
        WINDOW_KINDS.add(kind)


@dataclass(frozen=True)
class Outcome:
    """What happened to one (task, model, seed): ``status`` is ``"ran"``, ``"replaced"`` or ``"skipped"``."""

    task: str
    model: str
    seed: int
    status: str
    wall_s: float
    scores: dict[str, float]
    fold: int | None = None


def seed_independent(spec: ModelSpec) -> bool:
    """True for rows whose fit does not depend on the seed (deterministic solvers: band power + LR, tangent
    space + LR, CSP + LDA, the prior chance row): :func:`run_leaderboard` fits them once per (task, fold) and
    stores that fit under every seed, marked ``details.reused_fit_of_seed`` (wall time 0 for the copies)."""
    return spec.kind in SEED_INDEPENDENT_KINDS or (spec.kind == "chance" and spec.config.strategy == "prior")


#: Kinds whose fit is a deterministic function of the windows (the seed only sets an unused random_state).
SEED_INDEPENDENT_KINDS = {"bandpower", "riemann", "csp"}


def run_one(
    ctx: FitContext,
    spec: ModelSpec,
    results: Path,
    force: bool = False,
    reuse: dict[tuple[str, int | None], tuple[int, Fit]] | None = None,
) -> Outcome:
    """Fit ``spec`` on ``ctx`` (task, seed) unless a current record exists; store and return the outcome.

    ``reuse``: a cache shared over seeds for :func:`seed_independent` rows, ``(model, fold) -> (seed, Fit)``.
    """
    task, seed, fold = ctx.manifest.task, ctx.seed, ctx.manifest.fold
    payload = config_payload(spec, ctx.data)  # hashes an input checkpoint once
    chash = stable_hash(payload)
    old = store.load_record(store.record_dir(results, task, spec.name, seed, fold))
    if not force and store.is_current(old, chash, ctx.manifest.manifest_hash):
        meta = old.meta  # type: ignore[union-attr]
        return Outcome(
            task, spec.name, seed, "skipped", 0.0, {m: meta["scores"][m] for m in meta["metrics"]}, fold
        )
    if spec.kind not in FITTERS:
        raise KeyError(f"no fitter for model kind {spec.kind!r}; known: {sorted(FITTERS)}")
    if spec.kind in WINDOW_KINDS:  # read the windows before the clock starts: wall_s is fitting only
        for name in ("train", "val"):
            ctx.split(name)
    test = ctx.test
    ctx.run_dir = (
        Path(results)
        / "runs"
        / task
        / spec.name
        / store.record_dir(results, task, spec.name, seed, fold).name
    )
    clear_run_dir(ctx.run_dir)
    if spec.kind not in WINDOW_KINDS:
        ctx.run_dir.mkdir(parents=True)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    cached = reuse.get((spec.name, fold)) if reuse is not None and seed_independent(spec) else None
    if cached is not None:
        fit = Fit(
            cached[1].test_prob, cached[1].val_scores, {**cached[1].details, "reused_fit_of_seed": cached[0]}
        )
    else:
        fit = FITTERS[spec.kind](ctx, spec.config)
        if reuse is not None and seed_independent(spec):
            reuse[(spec.name, fold)] = (seed, fit)
    wall = time.perf_counter() - t0
    if fit.test_prob.shape != (test.y.size, ctx.n_classes):
        raise ValueError(
            f"{spec.name}: test probabilities {fit.test_prob.shape}, expected {(test.y.size, ctx.n_classes)}"
        )
    if not np.all(np.isfinite(fit.test_prob)):
        raise ValueError(f"{spec.name}: non-finite test probabilities")
    scores = score_all(test.y, fit.test_prob)
    meta = {
        **payload,
        "task": task,
        "seed": seed,
        "fold": fold,
        "n_folds": ctx.manifest.n_folds,
        "config_hash": chash,
        "manifest_hash": ctx.manifest.manifest_hash,
        "n_classes": ctx.n_classes,
        "metrics": list(metric_names(ctx.n_classes)),
        "scores": scores,
        "val_scores": fit.val_scores,
        "details": fit.details,
        "n_test_windows": int(test.y.size),
        "n_test_subjects": int(np.unique(test.subjects).size),
        "channel_indices": list(test.channel_indices),
        "provenance": ctx.manifest.provenance,
        "code": code_version(),
        "started_utc": started.isoformat(timespec="microseconds"),
        "wall_s": round(wall, 3),
    }
    predictions = store.predictions_frame(test.keys, test.subjects, test.y, fit.test_prob)
    store.write_record(results, meta, predictions)
    return Outcome(task, spec.name, seed, "replaced" if old is not None else "ran", wall, scores, fold)


def run_leaderboard(
    out_dir: Path,
    models: Iterable[ModelSpec],
    seeds: Iterable[int] = (0, 1, 2),
    tasks: Iterable[str] | None = None,
    results: Path | None = None,
    data: DataConfig = DataConfig(),
    force: bool = False,
    max_bytes: int = 8 << 30,
    log: Callable[[Outcome], None] | None = None,
    threads: int = 1,
) -> list[Outcome]:
    """Run ``models`` x ``seeds`` on ``tasks`` (default: every labelled task under ``OUT/shards``).

    A task sharded under a ``kfold`` protocol runs every (model, seed) once per CV fold that has test
    windows (records ``seed-SEED-fold-F``); ``leaderboard show`` pools the folds' test predictions.

    ``results`` defaults to ``OUT/leaderboard``. ``log`` is called after each (task, model, seed).
    ``threads`` bounds torch and BLAS threads while fitting (``torch.set_num_threads`` and
    ``threadpoolctl``; restored afterwards): on a shared 2-core machine multi-threaded BLAS makes the small
    logistic-regression fits ~100x slower, so the default is 1.
    Raises ``FileNotFoundError`` when a task has no shards and ``ShardIntegrityError`` when shards and
    manifest disagree; a fitter's exception propagates (records already written stay valid).
    """
    out_dir = Path(out_dir)
    results = Path(results) if results is not None else out_dir / "leaderboard"
    task_list = list(tasks) if tasks is not None else available_tasks(out_dir)
    if not task_list:
        raise FileNotFoundError(f"no labelled task under {out_dir}/shards; run `neurolm-data shard` first")
    models = list(models)
    outcomes = []
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            for task in task_list:
                base = load_manifest(out_dir, task)
                # a kfold protocol: one context per fold (windows read once per fold); else the fixed split
                manifests = [base.for_fold(f) for f in base.folds] if base.n_folds else [base]
                for manifest in manifests:
                    ctx = FitContext(out_dir, manifest, data, max_bytes=max_bytes)
                    reuse: dict[tuple[str, int | None], tuple[int, Fit]] = {}
                    for spec in models:
                        for seed in seeds:
                            ctx.seed = int(seed)
                            outcome = run_one(ctx, spec, results, force, reuse)
                            outcomes.append(outcome)
                            if log is not None:
                                log(outcome)
    finally:
        torch.set_num_threads(torch_threads)
    return outcomes
