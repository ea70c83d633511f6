"""The main job: the whole pipeline on the default dataset (EEGMAT = NeuroLM's Workload task), one call.

ingest (``workload`` source) -> split (``workload`` protocol: Subject00-25 / 26-30 / 31-35, reference §2.6) ->
shard (``workload`` task: last 60 s, 4-s windows, 2-s stride) -> leaderboard run (chance, band power +
logistic regression, a small supervised net, NeuroLM ``tiny`` through vq -> pretrain -> instruct) ->
leaderboard show (rich table, Markdown, PNG). Every step is resumable: re-running skips finished
recordings, identical shards and current leaderboard records, so an interrupted run continues where it
stopped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

#: Training budget of the NeuroLM ``tiny`` row in the main job and the README leaderboard (CPU): the
#: tokenizer sees the Workload train windows 15 times (3 before issue 11: its per-channel probe stayed at or
#: below a random-init tokenizer's, README "NeuroLM tiny on Workload"), the autoregressive stage 3 times,
#: instruction tuning 5 times, validated once per epoch (94 steps of 16 windows); ``best.pt`` = best val
#: balanced accuracy. Stage 1 runs without text, hence without the domain classifier (``VQTokenizer.forward``).
#: On 2 quiet cores the tokenizer's 1,410 steps cost about 2 minutes (282 steps took 26 s).
NEUROLM_TINY_BUDGET: tuple[str, ...] = (
    "vq_epochs=15",
    "pretrain_epochs=3",
    "instruct_epochs=5",
    "instruct_eval_every=94",
)

#: Environment variable naming a local EEGMAT folder (``SubjectNN_{1,2}.edf``).
EEGMAT_ENV = "NEUROLM_EEGMAT"


@dataclass(frozen=True)
class PipelineResult:
    """Where the main job left its outputs: the ingest/shard folder and the leaderboard files."""

    out: Path
    n_failed: int
    n_windows: int
    markdown: Path
    png: Path
    wall_s: float
    probes: dict[int, Path] | None = None


def resolve_eegmat_root(root: str | Path | None, download: bool = False) -> Path:
    """The EEGMAT folder: ``root``, else ``$NEUROLM_EEGMAT``, else (with ``download``) a verified download.

    Raises:
        FileNotFoundError: no folder given, none in the environment, and no download asked for.
    """
    if root is None:
        root = os.environ.get(EEGMAT_ENV)
    if root is None and download:
        from neurolm_data.download import fetch_eegmat

        return fetch_eegmat(progress=True)
    if root is None:
        raise FileNotFoundError(
            f"no EEGMAT folder: pass --root DIR, set {EEGMAT_ENV}, or add --download (PhysioNet, SHA-256 checked)"
        )
    root = Path(root)
    if not any(root.glob("Subject*_*.edf")):
        raise FileNotFoundError(f"{root}: no SubjectNN_{{1,2}}.edf files (the EEGMAT release layout)")
    return root


#: The main job's rows: chance, the classical baselines (band power, Riemannian tangent space, CSP), the small CNN
#: and NeuroLM tiny. The braindecode networks, LaBraM and UniMind rows are left out to keep the job within ~10
#: minutes on 2 CPU cores; name them with ``--model`` (or run ``neurolm-train leaderboard run``) to add them.
PIPELINE_MODELS = (
    "chance-majority",
    "chance-stratified",
    "bandpower-lr",
    "riemann-ts-lr",
    "csp-lda",
    "smallnet",
    "neurolm-tiny",
)


def run_pipeline(
    root: Path,
    out: Path,
    *,
    seeds: tuple[int, ...] = (0,),
    models: tuple[str, ...] | None = None,
    workers: int = 2,
    n_boot: int = 1000,
    console=None,
    neurolm_budget: tuple[str, ...] | None = None,
) -> PipelineResult:
    """Run the whole pipeline on EEGMAT into ``out`` and render the Workload leaderboard.

    Args:
        root: the EEGMAT folder. out: output folder (recordings, manifests, shards, ``leaderboard/``).
        seeds: leaderboard seeds per row. models: row names (default: ``PIPELINE_MODELS``).
        workers: ingest processes. n_boot: subject-bootstrap resamples for the 95% CIs.
        neurolm_budget: ``FIELD=VALUE`` items for the ``neurolm-tiny`` row (default ``NEUROLM_TINY_BUDGET``).

    The NeuroLM row's stage-1 tokenizer is probed on the Workload labels (``neurolm_train.probe``); each
    seed's ``probe.json`` is printed after the leaderboard run and listed in ``PipelineResult.probes``.

    Returns:
        A ``PipelineResult``. Failed recordings are reported and skipped (they do not stop the run).
    """
    from rich.console import Console

    from neurolm_data.ingest import run_ingest
    from neurolm_data.shard import run_shard
    from neurolm_data.split import run_split
    from neurolm_train.leaderboard.config import DataConfig, parse_sets, resolve_models
    from neurolm_train.leaderboard.render import print_rich, to_markdown, to_png
    from neurolm_train.leaderboard.runner import run_leaderboard
    from neurolm_train.leaderboard.table import build_leaderboard

    console = console or Console()
    out = Path(out)
    t0 = time.perf_counter()

    console.rule("1/5 ingest")
    summary = run_ingest("workload", root, out, workers=workers, progress=True)
    console.print(summary.line())
    console.rule("2/5 split")
    run_split(out, "workload")
    console.rule("3/5 shard")
    shards = run_shard(out, "workload")
    n_windows = sum(s["samples"] for s in shards.manifest["shards"])
    console.print(
        f"{n_windows} windows in {len(shards.manifest['shards'])} shards under {out / 'shards' / 'workload'}"
    )

    console.rule("4/5 leaderboard run")
    models = tuple(models) if models else PIPELINE_MODELS
    budget = "neurolm-tiny" in models
    items = NEUROLM_TINY_BUDGET if neurolm_budget is None else neurolm_budget
    sets = parse_sets([f"neurolm-tiny.{item}" for item in items] if budget else [])
    specs = resolve_models(list(models), sets, None)
    run_leaderboard(
        out,
        specs,
        seeds,
        ["workload"],
        None,
        DataConfig(None),
        False,
        log=lambda o: console.print(
            f"{o.model:18s} seed {o.seed}: {o.status:8s} {o.wall_s:7.1f} s  "
            + "  ".join(f"{k} {v:.3f}" for k, v in o.scores.items())
        ),
    )

    probes = report_probes(out / "leaderboard", seeds, console) if budget else {}

    console.rule("5/5 leaderboard show")
    results = out / "leaderboard"
    board = build_leaderboard(out, results, tasks=["workload"], n_resamples=n_boot)
    print_rich(board, console)
    md = results / "leaderboard.md"
    md.write_text(to_markdown(board))
    png = to_png(board, results / "leaderboard.png")
    wall = time.perf_counter() - t0
    console.print(f"Markdown: {md}\nPNG: {png}\nwall time: {wall:.0f} s")
    return PipelineResult(out, summary.n_failed, n_windows, md, png, wall, probes)


def report_probes(results: Path, seeds: tuple[int, ...], console) -> dict[int, Path]:
    """Print the stage-1 probe (``RUN/vq/probe.json``) of each seed's ``neurolm-tiny`` run and the val-calibrated
    threshold of its record; returns ``{seed: probe.json}`` for the seeds that have one."""
    import json

    from neurolm_train.leaderboard.store import iter_records
    from neurolm_train.probe import probe_line

    found = {}
    for seed in seeds:
        path = results / "runs" / "workload" / "neurolm-tiny" / f"seed-{seed}" / "vq" / "probe.json"
        if path.is_file():
            found[seed] = path
            console.print(f"neurolm-tiny seed {seed} tokenizer {probe_line(json.loads(path.read_text()))}")
    for rec in iter_records(results):
        thr = (
            (rec.meta.get("details") or {}).get("val_threshold")
            if rec.meta.get("model") == "neurolm-tiny"
            else None
        )
        if thr:
            console.print(
                f"neurolm-tiny seed {rec.meta.get('seed')}: test BAcc argmax {thr['test_bacc_argmax']:.3f}, "
                f"val-calibrated threshold {thr['test_bacc']:.3f} (threshold {thr['threshold']:+.3f})"
            )
    return found
