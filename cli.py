"""Command-line entry points: ``neurolm-data`` (ingest, split, shard, audit) and ``neurolm-train``.

Both are typer apps. Commands are thin: they parse options, build the typed config and call one function of
``neurolm_data`` or ``neurolm_train``, which is also the Python API (``neurolm_data.ingest.run_ingest`` ...).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

data_app = typer.Typer(
    name="neurolm-data",
    help="Ingest EEG corpora into channel-standardized 200 Hz µV WebDataset shards with Parquet manifests.",
    no_args_is_help=True,
    add_completion=False,
)
train_app = typer.Typer(
    name="neurolm-train",
    help="Train and evaluate NeuroLM (VQ tokenizer, autoregressive pre-training, instruction tuning) on shards.",
    no_args_is_help=True,
    add_completion=False,
)

# ---------------------------------------------------------------- shared: --version, exit statuses, help types
#: Exit statuses, the same for every command (README, "Exit status"): 0 the command did its job; 1 it ran and
#: found a problem in the data (a recording that failed to ingest, a leak between splits, a shard that does not
#: match its index); 2 it could not run: a usage error, a missing or invalid input, an unknown name, a config
#: that conflicts with an existing output (click also uses 2 for usage errors).
EXIT_OK, EXIT_DATA, EXIT_INPUT = 0, 1, 2


def _fail(console, what: str, e: BaseException) -> typer.Exit:
    """Print ``what failed: e`` and return the ``typer.Exit`` for ``e``'s kind (``EXIT_DATA`` or ``EXIT_INPUT``)."""
    data_problems = ("LeakageError", "ShardIntegrityError")
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e  # str(KeyError) adds quotes
    console.print(f"[bold red]{what} failed[/]: {msg}")
    return typer.Exit(EXIT_DATA if type(e).__name__ in data_problems else EXIT_INPUT)


def _csv(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (comma-separated task or split lists on the command line)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def _print_scores(console, res: dict, out: str) -> None:
    """One line per (task, split) of a results dict (``task split n=N  metric value ...``) and where it went."""
    for task, per in res["scores"].items():
        for split, m in per.items():
            vals = "  ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float))
            console.print(f"{task} {split} n={m['n']}  {vals}")
    console.print(f"results: {out}/results.json, predictions: {out}/predictions.parquet")


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("neurolm")
        except PackageNotFoundError:  # run from a checkout that was never installed
            v = "unknown (not installed)"
        typer.echo(f"neurolm {v}")
        raise typer.Exit(EXIT_OK)


def _version_option(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version_callback,
        is_eager=True,
        help="Print the installed neurolm version and exit.",
    ),
) -> None:
    """Options shared by every command of the app."""


def _hide_flag_types() -> None:
    """Typer >= 0.16 prints a type next to every option in --help; for flags (``--force``, ``--help``) it is a
    bare ``<bool>`` that reads like a value to type. Show nothing there instead."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_neurolm", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._neurolm = True
    TyperOption.display_type_rich = display_type_rich


_hide_flag_types()
data_app.callback()(_version_option)
train_app.callback()(_version_option)


# ---------------------------------------------------------------- neurolm-data ingest (data-ingest)
@data_app.command("ingest")
def ingest_cmd(
    source: str = typer.Argument(
        ...,
        help="Source name: workload (alias eegmat), edf, mne, bids, tueg, ... (see the README's source table).",
    ),
    root: str = typer.Argument(
        None,
        help="Corpus folder in its native layout. For 'workload' it may be omitted when NEUROLM_EEGMAT is "
        "set (or with --download).",
    ),
    out: str = typer.Option(
        ..., "--out", help="Output folder (recordings/, recordings.parquet, ledger.parquet)."
    ),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes."),
    engine: str = typer.Option(
        "fast",
        "--engine",
        help="Preprocessing engine: fast (default, matches mne), mne, or exact (no resampler drift).",
    ),
    force: bool = typer.Option(
        False, "--force", help="Redo everything, replacing an ingest made with another config."
    ),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Source option KEY=VALUE (repeatable), e.g. -o notch_hz=60."
    ),
    min_duration: float = typer.Option(
        None,
        "--min-duration",
        help="Shortest usable recording in s (default: one window of the source's task).",
    ),
    download: bool = typer.Option(
        False,
        "--download",
        help="workload: fetch EEGMAT 1.0.0; eegmmidb: the imagery runs R04/R08/R12 of S001-S109; "
        "from PhysioNet once, SHA-256 verified.",
    ),
    executor: str = typer.Option(
        "local",
        "--executor",
        help="local (this process / a process pool of --workers) or ray (one Ray task per "
        "recording; see README 'Scaling out').",
    ),
    ray_address: str = typer.Option(
        None,
        "--ray-address",
        help="Ray cluster address for --executor ray (default: RAY_ADDRESS, else a local Ray).",
    ),
) -> None:
    """Discover, preprocess (0.1-75 Hz, notch, 200 Hz, float32 µV) and store every recording of a corpus."""
    # Before numpy is first imported (below): ingest makes no BLAS call, and an OpenBLAS thread pool started at
    # import spins on the other cores for a while (measured ~0.05-0.07 CPU-s per process). A user's own setting
    # wins; pool workers inherit it (run_ingest sets the same default for spawn/forkserver workers).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from pathlib import Path

    from rich.console import Console

    from neurolm_data.download import EEGMAT_ENV, fetch_eegmat
    from neurolm_data.ingest import ConfigMismatchError, run_ingest
    from neurolm_data.lock import OutputLockedError
    from neurolm_data.sources.base import canonical_source

    console = Console(stderr=True)
    try:
        source = canonical_source(source)
    except KeyError as e:
        raise _fail(console, "ingest", e) from None
    options = {}
    for item in option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            console.print(f"[bold red]ingest[/]: --option expects KEY=VALUE, got {item!r}")
            raise typer.Exit(2)
        options[key.strip()] = value.strip()
    if download and source == "eegmmidb":  # imagery runs R04/R08/R12 of S001-S109, PhysioNet's sums (via MNE)
        from neurolm_data.sources.eegmmidb import fetch_eegmmidb

        root = str(fetch_eegmmidb(root or "eegmmidb"))
    elif download:
        if source != "workload":
            console.print(
                "[bold red]ingest[/]: --download is only available for the workload (EEGMAT) and eegmmidb "
                "sources (the ADHD release needs an IEEE DataPort login)"
            )
            raise typer.Exit(2)
        root = str(fetch_eegmat(root, progress=True))
    if root is None:
        env = os.environ.get(EEGMAT_ENV) if source == "workload" else None
        if not env:
            console.print(
                f"[bold red]ingest[/]: ROOT is required (for workload: set {EEGMAT_ENV} or use --download)"
            )
            raise typer.Exit(2)
        root = env
    try:
        summary = run_ingest(
            source,
            root,
            out,
            workers=workers,
            force=force,
            engine=engine,
            source_options=options,
            min_duration_s=min_duration,
            progress=True,
            executor=executor,
            ray_address=ray_address,
        )
    except (ConfigMismatchError, OutputLockedError, FileNotFoundError, KeyError, ValueError) as e:
        raise _fail(console, "ingest", e) from None
    for _path, reason in summary.failures[:20]:
        console.print(f"[red]failed[/] {reason}")
    if len(summary.failures) > 20:
        console.print(
            f"[red]... and {len(summary.failures) - 20} more failures[/] (see {Path(out) / 'ledger.parquet'})"
        )
    console.print(("[green]" if summary.ok else "[bold red]") + summary.line() + "[/]")
    if not summary.ok:
        raise typer.Exit(1)


# ---------------------------------------------------------------- neurolm-data split / shard (data-split-shard)
@data_app.command("split")
def split_cmd(
    out: str = typer.Argument(..., help="Ingest output folder holding recordings.parquet."),
    protocol: str = typer.Option(
        ...,
        "--protocol",
        "-p",
        help="A shipped protocol name (workload, tuab, ...) or the path of your own protocol .toml.",
    ),
    exclude_eval_of: str = typer.Option(
        "",
        "--exclude-eval-of",
        help="Comma-separated ingest outputs of downstream corpora (e.g. OUT_TUAB,OUT_TUEV): drop their test "
        "subjects (same id, or sharing a recording's signal) from these splits; see OUT/exclusions.parquet.",
    ),
) -> None:
    """Assign every subject to train/val/test by a protocol; write OUT/splits.parquet (leakage-audited)."""
    from rich.console import Console
    from rich.table import Table

    from neurolm_data.lock import OutputLockedError
    from neurolm_data.protocols import ProtocolError
    from neurolm_data.split import LeakageError, SplitError, run_split

    console = Console()
    try:
        res = run_split(out, protocol, exclude_eval_of=[x for x in exclude_eval_of.split(",") if x.strip()])
    except (FileNotFoundError, ProtocolError, SplitError, LeakageError, OutputLockedError) as e:
        raise _fail(console, "split", e) from None
    p = res.protocol
    table = Table(title=f"{res.path}  (protocol {p.name} v{p.version}, rule {p.rule})")
    for col in ("split", "subjects", "recordings"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for s, n in res.subjects.items():
        table.add_row(s, str(n), str(res.recordings.get(s, 0)))
    console.print(table)
    if res.folds:  # kfold: test subjects per fold (fold f validates on fold f+1 mod k)
        console.print("test subjects per fold: " + ", ".join(f"{f}: {n}" for f, n in res.folds.items()))
    if res.dropped:
        console.print(
            f"[yellow]{len(res.dropped)} unlisted subject(s) dropped[/]: {', '.join(res.dropped[:10])}"
        )
    if res.absent:
        console.print(
            f"[yellow]{len(res.absent)} listed subject(s) have no recording[/]: {', '.join(res.absent[:10])}"
        )
    if exclude_eval_of:
        console.print(
            f"[yellow]{len(res.excluded)} subject(s) excluded as evaluation subjects of "
            f"{exclude_eval_of}[/]: {', '.join(res.excluded[:10])} (OUT/exclusions.parquet)"
        )


@data_app.command("shard")
def shard_cmd(
    out: str = typer.Argument(
        ..., help="Ingest output folder (recordings.parquet, recordings/, splits.parquet)."
    ),
    task: str = typer.Option(..., "--task", "-t", help="Task name (workload, pretrain, ...)."),
    protocol: str = typer.Option(
        None,
        "--protocol",
        "-p",
        help="Check that OUT/splits.parquet was made with this protocol (shard never runs split itself).",
    ),
    max_shard_bytes: int = typer.Option(
        256 * 1024 * 1024, "--max-shard-bytes", help="Upper bound per tar shard."
    ),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes (local executor)."),
    executor: str = typer.Option("local", "--executor", help="local or ray (one Ray task per shard)."),
    ray_address: str = typer.Option(
        None, "--ray-address", help="Ray cluster address (default: RAY_ADDRESS)."
    ),
) -> None:
    """Cut a task's windows into WebDataset shards: OUT/shards/TASK/{SPLIT/*.tar, windows.parquet, shards.json}."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from neurolm_data.lock import OutputLockedError
    from neurolm_data.protocols import ProtocolError
    from neurolm_data.shard import ShardConfig, run_shard
    from neurolm_data.split import LeakageError, SplitError

    console = Console()
    columns = (TextColumn("[bold]shard[/] windows"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        protocol = _existing_splits(out, task, protocol)
        with Progress(*columns, console=console, transient=True) as bar:
            job = bar.add_task("shard", total=None)
            res = run_shard(
                out,
                task,
                protocol=protocol,
                config=ShardConfig(max_shard_bytes=max_shard_bytes),
                progress=lambda done, total: bar.update(job, completed=done, total=total),
                executor=executor,
                workers=workers,
                ray_address=ray_address,
            )
    except (
        FileNotFoundError,
        KeyError,
        ValueError,
        ProtocolError,
        SplitError,
        LeakageError,
        OutputLockedError,
    ) as e:
        raise _fail(console, "shard", e) from None
    m = res.manifest
    state = "up to date, nothing written" if res.noop else "written"
    table = Table(title=f"{res.task_dir}  ({state}; protocol {m['inputs']['protocol']['name']})")
    for col in ("split", "subjects", "recordings", "windows", "shards", "labels"):
        table.add_column(col, justify="left" if col in ("split", "labels") else "right")
    for s, d in m["splits"].items():
        labels = " ".join(f"{k}:{v}" for k, v in d["labels"].items())
        table.add_row(
            s, str(d["subjects"]), str(d["recordings"]), str(d["windows"]), str(d["shards"]), labels
        )
    console.print(table)
    if m["skipped"]:
        console.print(
            f"[yellow]{len(m['skipped'])} recording(s) skipped[/] (reasons in shards.json), e.g. "
            f"{m['skipped'][0]['recording']}: {m['skipped'][0]['reason']}"
        )


def _existing_splits(out: str, task: str, protocol: str | None) -> None:
    """``shard`` uses the splits already in ``OUT/splits.parquet``; it never runs ``split`` itself.

    Returns None (``run_shard`` then reads the existing splits). Raises FileNotFoundError (no splits yet) or
    ValueError (made with another protocol than ``--protocol``), each naming the ``split`` command to run.
    """
    from neurolm_data.protocols import load_protocol
    from neurolm_data.split import read_splits
    from neurolm_data.tasks.base import get_task

    if "://" in out:  # an object-store OUT: run_shard reads (and checks) the mirrored splits itself
        return None
    path = Path(out) / "splits.parquet"
    wanted = protocol or get_task(task).default_protocol
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: run `neurolm-data split {out} --protocol {wanted}` first"
        )
    if protocol is not None:
        have = read_splits(out)[1]["protocol"]["name"]
        if have != load_protocol(protocol).name:
            raise ValueError(
                f"{path} was made with protocol {have!r}, not {protocol!r}: run "
                f"`neurolm-data split {out} --protocol {protocol}` first"
            )
    return None


# ---------------------------------------------------------------- neurolm-data verify (integrity)
@data_app.command("verify")
def verify_cmd(
    out: str = typer.Argument(
        ..., help="Ingest output folder holding shards/TASK/ (from `neurolm-data shard`)."
    ),
    task: list[str] = typer.Option(
        None, "--task", "-t", help="Task(s) to verify (default: every task folder)."
    ),
) -> None:
    """Check every shard against shards.json (files, sizes, sha256, window counts; members at fault).

    Exit status 1 when anything differs, each problem printed with the shard (and member) it concerns.
    """
    from rich.console import Console

    from neurolm_data.shard import verify_shards

    console = Console(stderr=True)
    try:
        report = verify_shards(out, task or None)
    except FileNotFoundError as e:
        raise _fail(console, "verify", e) from None
    bad = 0
    for name, problems in report.items():
        for p in problems:
            console.print(f"[red]{name}[/]: {p}", soft_wrap=True)
        bad += len(problems)
        if not problems:
            console.print(f"[green]{name}[/]: shards match shards.json (sha256 verified)")
    if not report:
        console.print(f"[bold red]verify failed[/]: no task folder with shards under {Path(out) / 'shards'}")
        raise typer.Exit(1)
    if bad:
        console.print(f"[bold red]{bad} problem(s)[/]; rebuild with `neurolm-data shard {out} --task NAME`")
        raise typer.Exit(1)


# ---------------------------------------------------------------- neurolm-data audit (corpora)
@data_app.command("audit")
def audit_cmd(
    outs: list[str] = typer.Argument(
        ..., help="Ingest output folders to compare (each with recordings.parquet)."
    ),
    report: str = typer.Option("audit.json", "--report", "-r", help="Where to write the JSON report."),
) -> None:
    """Report subject and signal overlap between every pair of (corpus, split) groups of the given outputs.

    Exit status 1 when an overlap is a leak (different splits, one of them test/val or an official eval).
    """
    from rich.console import Console
    from rich.table import Table

    from neurolm_data.audit import run_audit

    console = Console()
    try:
        res = run_audit(outs, report)
    except (FileNotFoundError, ValueError) as e:
        raise _fail(console, "audit", e) from None
    table = Table(title=f"{report}: {len(res['pairs'])} group pairs, {res['overlapping_pairs']} with overlap")
    for col in ("a", "b", "subjects", "recordings", "leak"):
        table.add_column(col)
    for p in res["pairs"]:
        if p["subjects"] or p["content"]:
            table.add_row(
                f"{p['a']['out']} {p['a']['source']}/{p['a']['split']}",
                f"{p['b']['out']} {p['b']['source']}/{p['b']['split']}",
                str(len(p["subjects"])),
                str(len(p["content"])),
                "[bold red]LEAK[/]" if p["leak"] else "",
            )
    console.print(table)
    if not res["ok"]:
        console.print(
            f"[bold red]{res['leaks']} leaking pair(s)[/]; exclude them with "
            "`neurolm-data split OUT --protocol NAME --exclude-eval-of OUT_EVAL,...`"
        )
        raise typer.Exit(1)


# ---------------------------------------------------------------- neurolm-train vq/pretrain/instruct/evaluate (trainer)
def _stage_command(stage: str):
    """One ``neurolm-train STAGE`` command (vq, pretrain, instruct); the options are shared."""

    def cmd(
        config: str = typer.Option("tiny", "--config", "-c", help="Model config: tiny, B, L or XL."),
        shards: list[str] = typer.Option(
            ..., "--shards", "-s", help="OUT/shards root(s) holding TASK/SPLIT/*.tar (repeatable)."
        ),
        out: str = typer.Option(
            ..., "--out", "-o", help="Run folder: config.json, ckpt.pt, best.pt, metrics.jsonl."
        ),
        tasks: str = typer.Option(
            None,
            "--tasks",
            "-t",
            help="Comma-separated training tasks (default: pretrain; instruct: the six).",
        ),
        steps: int = typer.Option(
            None, "--steps", help="Optimizer steps (default: epochs x batches per epoch)."
        ),
        epochs: int = typer.Option(
            None,
            "--epochs",
            help="Epochs (default: the stage's official value: 50 vq, 20 pretrain, 5 instruct).",
        ),
        batch_size: int = typer.Option(None, "--batch-size", "-b", help="Windows per micro-batch and rank."),
        grad_accum: int = typer.Option(None, "--grad-accum", help="Micro-batches per optimizer step."),
        workers: int = typer.Option(None, "--workers", "-w", help="DataLoader workers per rank."),
        text: str = typer.Option(
            None, "--text", help="Text corpus for the LM loss: a .txt or a nanoGPT uint16 .bin."
        ),
        init: str = typer.Option(
            None,
            "--init",
            help="Start from: a vq checkpoint or an official NeuroLM-*.pt with --vq (pretrain); a pretrain checkpoint or an official NeuroLM-*.pt (instruct).",
        ),
        vq: str = typer.Option(
            None, "--vq", help="Official VQ.pt paired with an official --init NeuroLM-*.pt."
        ),
        checkpoint: str = typer.Option(
            None,
            "--checkpoint",
            help="Official files as VQ.pt,NeuroLM-B.pt (= --vq, --init); one file = --init.",
        ),
        features: str = typer.Option(
            None,
            "--features",
            help="Stage-2/3 EEG features: bidirectional (official; they see future seconds, so the stage-2 targets leak) or causal.",
        ),
        gpt2: str = typer.Option(
            None, "--gpt2", help="GPT-2 weights: HF id in the local cache, a folder, or 'none' (random)."
        ),
        mixing: str = typer.Option(
            None,
            "--mixing",
            help="Task sampling: proportional (official: by dataset size), tempered or uniform.",
        ),
        precision: str = typer.Option(
            None,
            "--precision",
            help="auto (bf16 on CUDA, fp32 on CPU), bf16 or fp32; fp16 is refused (NaN losses, NeuroLM issue #6).",
        ),
        seed: int = typer.Option(None, "--seed", help="Run seed (model init, data order, text crops)."),
        eval_every: int = typer.Option(
            None,
            "--eval-every",
            help="Validate (and keep best.pt) every N steps; 0 = at the end only for instruct.",
        ),
        ckpt_every: int = typer.Option(
            None, "--ckpt-every", help="Write ckpt.pt every N steps (always at the end)."
        ),
        resume: bool = typer.Option(
            False, "--resume", help="Continue from OUT/ckpt.pt (bit-identical on CPU)."
        ),
        force: bool = typer.Option(
            False,
            "--force",
            help="Replace an existing run in OUT (its checkpoints and metrics are deleted first).",
        ),
        verify: bool = typer.Option(
            False,
            "--verify",
            help="Compare every shard's sha256 with shards.json before training (sizes and counts are always checked).",
        ),
        stop_at: int = typer.Option(
            None, "--stop-at", help="End this invocation after N steps (checkpointed; --resume continues)."
        ),
        init_optimizer: bool = typer.Option(
            False,
            "--init-optimizer",
            help="pretrain/instruct from an official NeuroLM-*.pt: AdamW starts from the file's moments and step counts (lr, betas, weight decay, schedule: the run's). Off by default: the official instruction tuning starts a fresh AdamW.",
        ),
        set_: list[str] = typer.Option(
            None, "--set", help="Any config field as FIELD=VALUE, e.g. optim.lr=1e-4 data.shuffle_buffer=200."
        ),
    ) -> None:
        from rich.console import Console

        from neurolm_data.lock import OutputLockedError
        from neurolm_train.config import parse_sets, stage_config
        from neurolm_train.train import train

        console = Console()
        if checkpoint:
            files = [f for f in checkpoint.split(",") if f.strip()]
            vq, init = (files[0], files[1]) if len(files) == 2 else (vq, files[0])
        flat = dict(
            steps=steps,
            epochs=epochs,
            grad_accum=grad_accum,
            init=init,
            vq=vq,
            features=features,
            gpt2=gpt2,
            precision=precision,
            seed=seed,
            eval_every=eval_every,
            ckpt_every=ckpt_every,
            stop_at=stop_at,
            init_optimizer=init_optimizer or None,
        )
        data = dict(
            shards=os.pathsep.join(shards),
            batch_size=batch_size,
            num_workers=workers,
            mixing=mixing,
            tasks=_csv(tasks) if tasks else None,
        )
        over = {k: v for k, v in flat.items() if v is not None}
        over["data"] = {k: v for k, v in data.items() if v is not None}
        if text:
            over["text"] = {"corpus": text}
        try:
            sets = parse_sets(set_ or [])
            for k, v in sets.items():
                over[k] = (
                    {**over.get(k, {}), **v} if isinstance(v, dict) and isinstance(over.get(k), dict) else v
                )
            cfg = stage_config(stage, config, out=out, resume=resume, **over)
            path = train(cfg, force=force, verify=verify)
        except (FileNotFoundError, ValueError, KeyError, OutputLockedError) as e:
            raise _fail(console, stage, e) from None
        console.print(f"{stage}: checkpoint {path}")

    cmd.__doc__ = {
        "vq": "Stage 1: train the text-aligned VQ tokenizer on unlabeled shards.",
        "pretrain": "Stage 2: multi-channel autoregressive pre-training from a vq checkpoint (--init), or continued from the official files (--checkpoint VQ.pt,NeuroLM-B.pt).",
        "instruct": "Stage 3: multi-task instruction tuning from a pretrain checkpoint or official file (--init).",
    }[stage]
    return cmd


for _stage in ("vq", "pretrain", "instruct"):
    train_app.command(_stage)(_stage_command(_stage))


@train_app.command("evaluate")
def evaluate_cmd(
    checkpoint: str = typer.Option(
        ...,
        "--checkpoint",
        help="An instruct checkpoint, normally RUN/best.pt (chosen on val), or official files VQ.pt,NeuroLM-B.pt.",
    ),
    shards: list[str] = typer.Option(
        ..., "--shards", "-s", help="OUT/shards root(s) holding TASK/SPLIT/*.tar (repeatable)."
    ),
    out: str = typer.Option(..., "--out", "-o", help="Folder for results.json and predictions.parquet."),
    config: str = typer.Option(
        None,
        "--config",
        "-c",
        help="Official files only: model config (tiny, B, L, XL; default: inferred B/L/XL).",
    ),
    tasks: str = typer.Option("workload", "--tasks", "-t", help="Comma-separated tasks to score."),
    splits: str = typer.Option("val,test", "--splits", help="Comma-separated splits to score."),
    generate: bool = typer.Option(
        False,
        "--generate",
        help="Also the paper's greedy decoding + string parsing, with its parse-failure rate.",
    ),
    hard_label: bool = typer.Option(
        False,
        "--hard-label",
        help="Also the official code's AUROC/AUC-PR from hard labels (not comparable with baselines).",
    ),
    limit: int = typer.Option(
        None, "--limit", help="Score an evenly spaced subset of at most N windows per task and split."
    ),
    batch_size: int = typer.Option(None, "--batch-size", "-b", help="Windows per evaluation batch."),
) -> None:
    """Score answer options by log-likelihood -> class probabilities -> BAcc/AUROC/AUC-PR or BAcc/kappa/F1."""
    from rich.console import Console
    from rich.table import Table

    from neurolm_data.lock import OutputLockedError
    from neurolm_train.evaluate import evaluate

    console = Console()
    try:
        res = evaluate(
            checkpoint,
            os.pathsep.join(shards),
            _csv(tasks),
            out,
            tuple(_csv(splits)),
            generate,
            hard_label,
            batch_size,
            limit,
            config,
        )
    except (FileNotFoundError, ValueError, KeyError, OutputLockedError) as e:
        raise _fail(console, "evaluate", e) from None
    table = Table(title=f"{checkpoint} (step {res['step']}, config {res['config_hash']})")
    for col in ("task", "split", "n", "metrics"):
        table.add_column(col)
    for task, per in res["scores"].items():
        for split, m in per.items():
            vals = "  ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float))
            table.add_row(task, split, str(m["n"]), vals)
    console.print(table)
    console.print(f"results: {out}/results.json, predictions: {out}/predictions.parquet")


# ---------------------------------------------------------------- neurolm-train leaderboard (leaderboard)
leaderboard_app = typer.Typer(
    name="leaderboard",
    help="Benchmark rows with their evidence (computed here) beside published results (reported).",
    no_args_is_help=True,
    add_completion=False,
)
train_app.add_typer(leaderboard_app, name="leaderboard")


@leaderboard_app.command("run")
def leaderboard_run_cmd(
    out: str = typer.Argument(..., help="Output folder holding shards/TASK/ (from `neurolm-data shard`)."),
    task: list[str] = typer.Option(
        None, "--task", "-t", help="Task(s) to run (default: every labelled task)."
    ),
    model: list[str] = typer.Option(
        None,
        "--model",
        "-m",
        help="Row(s): chance-majority, chance-stratified, bandpower-lr, riemann-ts-lr, csp-lda, eegnet, shallow-fbcsp, "
        "smallnet, neurolm-tiny (default: all).",
    ),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds."),
    results: str = typer.Option(None, "--results", help="Results store (default: OUT/leaderboard)."),
    config: str = typer.Option(
        None, "--config", help="TOML with one [ROW] table of config overrides per row."
    ),
    set_: list[str] = typer.Option(
        None, "--set", help="Override MODEL.FIELD=VALUE (e.g. smallnet.epochs=10)."
    ),
    max_windows: int = typer.Option(
        None, "--max-windows", help="Reduced run: ~N windows per split, spread over subjects and labels."
    ),
    force: bool = typer.Option(False, "--force", help="Re-run records even when they are current."),
    threads: int = typer.Option(1, "--threads", help="torch and BLAS threads while fitting."),
) -> None:
    """Fit every (row, task, seed) lacking a current record; skip the rest (same config and manifest hash)."""
    from rich.console import Console

    from neurolm_train.leaderboard.config import DataConfig, parse_sets, resolve_models
    from neurolm_train.leaderboard.runner import run_leaderboard
    from neurolm_train.leaderboard.windows import ShardIntegrityError

    console = Console()
    try:
        specs = resolve_models(model, parse_sets(set_ or []), config)
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        outcomes = run_leaderboard(
            out,
            specs,
            seed_list,
            task or None,
            results,
            DataConfig(max_windows),
            force,
            threads=threads,
            log=lambda o: console.print(
                f"{o.task:10s} {o.model:18s} seed {o.seed}"
                + ("" if o.fold is None else f" fold {o.fold}")
                + f": {o.status:8s} {o.wall_s:7.1f} s  "
                + "  ".join(f"{k} {v:.3f}" for k, v in o.scores.items())
            ),
        )
    except (FileNotFoundError, KeyError, ValueError, ShardIntegrityError, MemoryError) as e:
        raise _fail(console, "leaderboard run", e) from None
    ran = sum(o.status != "skipped" for o in outcomes)
    console.print(f"{ran} record(s) written, {len(outcomes) - ran} skipped (current).")


@leaderboard_app.command("show")
def leaderboard_show_cmd(
    out: str = typer.Argument(
        ..., help="Output folder holding shards/TASK/ (to verify the manifest hashes)."
    ),
    task: list[str] = typer.Option(None, "--task", "-t", help="Task(s) to show (default: all with rows)."),
    results: str = typer.Option(None, "--results", help="Results store (default: OUT/leaderboard)."),
    reported: str = typer.Option(
        None,
        "--reported",
        help="Folder of reported-result TOML files (default: the ones shipped with neurolm).",
    ),
    markdown: str = typer.Option(
        None, "--markdown", help="Markdown output (default: RESULTS/leaderboard.md)."
    ),
    png: str = typer.Option(None, "--png", help="PNG chart output (default: RESULTS/leaderboard.png)."),
    compare: list[str] = typer.Option(
        None, "--compare", help="A:B pair of computed rows to test (default: all pairs)."
    ),
    metric: str = typer.Option("bacc", "--metric", help="Metric of the paired tests and of the chart."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Subject-bootstrap resamples for the 95% CIs."),
) -> None:
    """Render the leaderboard: rich tables here, Markdown and a PNG chart on disk."""
    from pathlib import Path

    from rich.console import Console

    from neurolm_train.leaderboard.render import print_rich, to_markdown, to_png
    from neurolm_train.leaderboard.reported import DEFAULT_DIR, ReportedFormatError
    from neurolm_train.leaderboard.table import build_leaderboard

    console = Console()
    res_dir = Path(results) if results else Path(out) / "leaderboard"
    from neurolm_train.leaderboard.store import iter_records

    if not any(True for _ in iter_records(res_dir)):  # published rows alone are not a leaderboard of OUT
        console.print(
            f"[bold red]leaderboard show failed[/]: no leaderboard records under {res_dir}; run "
            f"`neurolm-train leaderboard run {out}` first (or pass --results FOLDER)"
        )
        raise typer.Exit(1)
    try:
        pairs = [tuple(p.split(":", 1)) for p in compare or []]
        if any(len(p) != 2 for p in pairs):
            raise ValueError("--compare expects A:B")
        board = build_leaderboard(
            out,
            res_dir,
            Path(reported) if reported else DEFAULT_DIR,
            task or None,
            pairs or None,
            metric,
            n_boot,
        )
        print_rich(board, console)
        md = Path(markdown) if markdown else res_dir / "leaderboard.md"
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(to_markdown(board))
        chart = to_png(board, Path(png) if png else res_dir / "leaderboard.png", metric)
        from neurolm_train.leaderboard.tidy import write_tidy

        tidy = write_tidy(board, res_dir)
    except (FileNotFoundError, KeyError, ValueError, ReportedFormatError) as e:
        raise _fail(console, "leaderboard show", e) from None
    console.print(f"Markdown: {md}\nPNG: {chart}\nTidy table: {tidy[0]}, {tidy[1]}")


# ---------------------------------------------------------------- neurolm-train pipeline (the main job)
@train_app.command("pipeline")
def pipeline_cmd(
    root: str = typer.Option(
        None, "--root", help="EEGMAT folder (SubjectNN_{1,2}.edf); default $NEUROLM_EEGMAT."
    ),
    out: str = typer.Option(
        "out/workload", "--out", "-o", help="Output folder: recordings, manifests, shards, leaderboard."
    ),
    download: bool = typer.Option(
        False, "--download", help="Fetch EEGMAT 1.0.0 from PhysioNet once (SHA-256 checked)."
    ),
    seeds: str = typer.Option(
        "0", "--seeds", help="Comma-separated leaderboard seeds (the README table uses 0,1,2)."
    ),
    model: list[str] = typer.Option(
        None, "--model", "-m", help="Leaderboard row(s) (default: all built-in rows)."
    ),
    workers: int = typer.Option(2, "--workers", "-j", help="Ingest processes."),
) -> None:
    """The main job: EEGMAT -> ingest -> split -> shard -> leaderboard (baselines + NeuroLM tiny) -> tables."""
    from rich.console import Console

    from neurolm_train.pipeline import resolve_eegmat_root, run_pipeline

    console = Console()
    try:
        eegmat = resolve_eegmat_root(root, download)
        res = run_pipeline(
            eegmat,
            Path(out),
            seeds=tuple(int(s) for s in seeds.split(",") if s.strip()),
            models=tuple(model) if model else None,
            workers=workers,
            console=console,
        )
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise _fail(console, "pipeline", e) from None
    if res.n_failed:
        console.print(f"[yellow]{res.n_failed} recording(s) failed to ingest; see {out}/ledger.parquet[/]")


# ---------------------------------------------------------------- neurolm-train unimind-train / unimind-evaluate
@train_app.command("unimind-train")
def unimind_train_cmd(
    shards: list[str] = typer.Option(
        ..., "--shards", "-s", help="OUT/shards root(s) holding TASK/SPLIT/*.tar (repeatable)."
    ),
    out: str = typer.Option(
        ..., "--out", "-o", help="Run folder: config.json, ckpt.pt, best.pt, metrics.jsonl."
    ),
    tasks: str = typer.Option(
        "workload", "--tasks", "-t", help="Comma-separated tasks trained together (one static query each)."
    ),
    config: str = typer.Option(
        "tiny", "--config", "-c", help="Model config: tiny, small (LaBraM-Base + GPT-2 LoRA) or official."
    ),
    epochs: int = typer.Option(None, "--epochs", help="Epochs (default 10, the released recipe)."),
    steps: int = typer.Option(None, "--steps", help="Optimizer steps (default: epochs x steps per epoch)."),
    batch_size: int = typer.Option(
        None, "--batch-size", "-b", help="Windows per batch and rank (one task per batch)."
    ),
    mixing: str = typer.Option(
        None, "--mixing", help="Task sampling per batch: proportional, tempered or uniform."
    ),
    lm_path: str = typer.Option(
        None, "--lm", help="Pre-trained causal LM (local folder or cached id) for small/official."
    ),
    encoder_init: str = typer.Option(
        None, "--encoder-init", help="labram-base.pth for the pre-trained LaBraM encoder."
    ),
    selection: str = typer.Option(
        None,
        "--selection",
        help="Query selection: st (default), gumbel, soft or hard (released: routers never learn).",
    ),
    seed: int = typer.Option(None, "--seed", help="Run seed (model init, data order, task draws)."),
    eval_every: int = typer.Option(
        None, "--eval-every", help="Validate every N steps (default every epoch; 0 = at the end only)."
    ),
    ckpt_every: int = typer.Option(
        None, "--ckpt-every", help="Write ckpt.pt every N steps (always at the end)."
    ),
    workers: int = typer.Option(None, "--workers", "-w", help="DataLoader workers per task loader and rank."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/ckpt.pt (bit-identical on CPU)."),
    stop_at: int = typer.Option(
        None, "--stop-at", help="End this invocation after N steps (checkpointed; --resume continues)."
    ),
    set_: list[str] = typer.Option(
        None, "--set", help="Any run field as FIELD=VALUE, e.g. optim.lr=1e-3 model_overrides.d_c=128."
    ),
) -> None:
    """UniMind: multi-task instruction tuning of the LaBraM encoder, query selector, connector, projector and LM."""
    from rich.console import Console

    from neurolm_train.config import parse_sets
    from neurolm_train.models.unimind.lm import LMWeightsMissing
    from neurolm_train.models.unimind.run import run_config, train

    console = Console()
    model_over = {
        k: v
        for k, v in dict(lm_path=lm_path, encoder_init=encoder_init, selection=selection).items()
        if v is not None
    }
    flat = dict(
        epochs=epochs, steps=steps, seed=seed, eval_every=eval_every, ckpt_every=ckpt_every, stop_at=stop_at
    )
    data = dict(
        shards=os.pathsep.join(shards),
        batch_size=batch_size,
        mixing=mixing,
        num_workers=workers,
        tasks=_csv(tasks),
    )
    over = {k: v for k, v in flat.items() if v is not None}
    over["data"] = {k: v for k, v in data.items() if v is not None}
    over["model_overrides"] = model_over
    try:
        for k, v in parse_sets(set_ or []).items():
            over[k] = {**over.get(k, {}), **v} if isinstance(v, dict) and isinstance(over.get(k), dict) else v
        path = train(run_config(config, out=out, resume=resume, **over))
    except (FileNotFoundError, LMWeightsMissing, ValueError, KeyError) as e:
        raise _fail(console, "unimind-train", e) from None
    console.print(f"unimind-train: checkpoint {path}")


@train_app.command("unimind-evaluate")
def unimind_evaluate_cmd(
    checkpoint: str = typer.Option(
        ..., "--checkpoint", help="A UniMind checkpoint, normally RUN/best.pt (chosen on val)."
    ),
    shards: list[str] = typer.Option(
        ..., "--shards", "-s", help="OUT/shards root(s) holding TASK/SPLIT/*.tar (repeatable)."
    ),
    out: str = typer.Option(..., "--out", "-o", help="Folder for results.json and predictions.parquet."),
    tasks: str = typer.Option(
        None, "--tasks", "-t", help="Comma-separated tasks to score (default: the trained ones)."
    ),
    splits: str = typer.Option("val,test", "--splits", help="Comma-separated splits to score."),
    beam: bool = typer.Option(
        False,
        "--beam",
        help="Also the released decoding: beam search 5 + closest-answer matching, with its parse-failure rate.",
    ),
    limit: int = typer.Option(
        None, "--limit", help="Score an evenly spaced subset of at most N windows per task and split."
    ),
    batch_size: int = typer.Option(None, "--batch-size", "-b", help="Windows per evaluation batch."),
) -> None:
    """Score each task of a UniMind checkpoint: candidate answers by log-likelihood -> class probabilities."""
    from rich.console import Console

    from neurolm_train.models.unimind.lm import LMWeightsMissing
    from neurolm_train.models.unimind.run import evaluate

    console = Console()
    try:
        res = evaluate(
            checkpoint,
            os.pathsep.join(shards),
            _csv(tasks) if tasks else None,
            out,
            tuple(_csv(splits)),
            beam,
            batch_size,
            limit,
        )
    except (FileNotFoundError, LMWeightsMissing, ValueError, KeyError) as e:
        raise _fail(console, "unimind-evaluate", e) from None
    _print_scores(console, res, out)


# ---------------------------------------------------------------- neurolm-train FAMILY-STAGE (model families)
def _family_stage_command(fam_name: str, stage: str):
    """``neurolm-train <prefix><stage>`` of a registered family other than NeuroLM (e.g. ``labram-finetune``)."""

    def cmd(
        config: str = typer.Option(
            "tiny", "--config", "-c", help="Model config of the family (labram: tiny or base)."
        ),
        shards: list[str] = typer.Option(
            ..., "--shards", "-s", help="OUT/shards root(s) holding TASK/SPLIT/*.tar (repeatable)."
        ),
        out: str = typer.Option(
            ..., "--out", "-o", help="Run folder: config.json, ckpt.pt, best.pt, metrics.jsonl."
        ),
        tasks: str = typer.Option(
            None,
            "--tasks",
            "-t",
            help="Comma-separated training tasks (default: pretrain; finetune: workload).",
        ),
        init: str = typer.Option(
            None, "--init", help="Start from a checkpoint of the previous stage or an official file."
        ),
        steps: int = typer.Option(
            None, "--steps", help="Optimizer steps (default: epochs x batches per epoch)."
        ),
        epochs: int = typer.Option(None, "--epochs", help="Epochs (default: the stage's official value)."),
        batch_size: int = typer.Option(None, "--batch-size", "-b", help="Windows per micro-batch and rank."),
        grad_accum: int = typer.Option(None, "--grad-accum", help="Micro-batches per optimizer step."),
        workers: int = typer.Option(None, "--workers", "-w", help="DataLoader workers per rank."),
        mixing: str = typer.Option(
            None, "--mixing", help="Task sampling: proportional, tempered or uniform."
        ),
        precision: str = typer.Option(
            None, "--precision", help="auto (bf16 on CUDA, fp32 on CPU), bf16 or fp32; fp16 is refused."
        ),
        seed: int = typer.Option(None, "--seed", help="Run seed (model init, data order, masks, crops)."),
        eval_every: int = typer.Option(
            None, "--eval-every", help="Validate (and keep best.pt) every N steps."
        ),
        ckpt_every: int = typer.Option(
            None, "--ckpt-every", help="Write ckpt.pt every N steps (always at the end)."
        ),
        resume: bool = typer.Option(
            False, "--resume", help="Continue from OUT/ckpt.pt (bit-identical on CPU)."
        ),
        stop_at: int = typer.Option(
            None, "--stop-at", help="End this invocation after N steps (checkpointed; --resume continues)."
        ),
        set_: list[str] = typer.Option(
            None,
            "--set",
            help="Any config field as FIELD=VALUE, e.g. layer_decay=0.9 model_overrides.cls_pos=first_patch.",
        ),
    ) -> None:
        from rich.console import Console

        from neurolm_train import families
        from neurolm_train.config import parse_sets

        console = Console()
        fam = families.get(fam_name)
        flat = dict(
            init=init,
            steps=steps,
            epochs=epochs,
            grad_accum=grad_accum,
            precision=precision,
            seed=seed,
            eval_every=eval_every,
            ckpt_every=ckpt_every,
            stop_at=stop_at,
        )
        data = dict(
            shards=os.pathsep.join(shards),
            batch_size=batch_size,
            num_workers=workers,
            mixing=mixing,
            tasks=_csv(tasks) if tasks else None,
        )
        over = {k: v for k, v in flat.items() if v is not None}
        over["data"] = {k: v for k, v in data.items() if v is not None}
        try:
            for k, v in parse_sets(set_ or []).items():
                over[k] = (
                    {**over.get(k, {}), **v} if isinstance(v, dict) and isinstance(over.get(k), dict) else v
                )
            cfg = fam.stage_config(stage, config, out=out, resume=resume, **over)
            path = fam.train(cfg)
        except (FileNotFoundError, ValueError, KeyError) as e:
            raise _fail(console, f"{fam.cli_prefix}{stage}", e) from None
        console.print(f"{fam.cli_prefix}{stage}: checkpoint {path}")

    cmd.__doc__ = None
    return cmd


def _family_evaluate_command(fam_name: str):
    def cmd(
        checkpoint: str = typer.Option(
            ..., "--checkpoint", help="RUN/best.pt of a fine-tuning run, or an official fine-tuned file."
        ),
        shards: list[str] = typer.Option(
            ..., "--shards", "-s", help="OUT/shards root(s) holding TASK/SPLIT/*.tar (repeatable)."
        ),
        out: str = typer.Option(..., "--out", "-o", help="Folder for results.json and predictions.parquet."),
        tasks: str = typer.Option("workload", "--tasks", "-t", help="The task to score."),
        splits: str = typer.Option("val,test", "--splits", help="Comma-separated splits to score."),
        config: str = typer.Option(
            None, "--config", "-c", help="Official files only: model config (default: base)."
        ),
        limit: int = typer.Option(
            None, "--limit", help="Score an evenly spaced subset of at most N windows per split."
        ),
        batch_size: int = typer.Option(None, "--batch-size", "-b", help="Windows per evaluation batch."),
    ) -> None:
        from rich.console import Console

        from neurolm_train import families

        console = Console()
        fam = families.get(fam_name)
        try:
            res = fam.evaluate(
                checkpoint,
                os.pathsep.join(shards),
                _csv(tasks),
                out,
                tuple(_csv(splits)),
                batch_size,
                limit,
                config,
            )
        except (FileNotFoundError, ValueError, KeyError) as e:
            raise _fail(console, f"{fam.cli_prefix}evaluate", e) from None
        _print_scores(console, res, out)

    return cmd


def _family_export_command(fam_name: str):
    def cmd(
        checkpoint: str = typer.Option(
            ..., "--checkpoint", help="A checkpoint of this trainer (ckpt.pt or best.pt)."
        ),
        out: str = typer.Option(..., "--out", "-o", help="Official-layout file to write."),
    ) -> None:
        from rich.console import Console

        from neurolm_train import families

        console = Console()
        try:
            kind = families.get(fam_name).extras["export"](checkpoint, out)
        except (FileNotFoundError, ValueError, KeyError) as e:
            raise _fail(console, "export", e) from None
        console.print(f"{kind} checkpoint written in the official layout: {out}")

    return cmd


def _register_families() -> None:
    """Commands of every registered family but NeuroLM, from its registration only (no torch import)."""
    from neurolm_train import families

    for name in families.names():
        if name == "neurolm":  # its commands are vq, pretrain, instruct, evaluate above
            continue
        ref = families.ref(name)
        n = len(ref.stages)
        for i, st in enumerate(ref.stages, 1):
            train_app.command(ref.cli_prefix + st, help=f"{ref.summary}: stage {i}/{n}, {st}.")(
                _family_stage_command(name, st)
            )
        train_app.command(
            ref.cli_prefix + "evaluate",
            help=f"{ref.summary}: score a fine-tuned model "
            "(class probabilities -> BAcc, AUROC, AUC-PR / kappa, F1).",
        )(_family_evaluate_command(name))
        train_app.command(
            ref.cli_prefix + "export",
            help=f"{ref.summary}: write a checkpoint of this trainer in the official layout.",
        )(_family_export_command(name))


_register_families()


if __name__ == "__main__":  # pragma: no cover
    data_app()
