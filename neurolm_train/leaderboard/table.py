"""Build the leaderboard table: computed rows from the store (checked against the current manifests),
reported rows from ``manifests/reported``, bootstrap CIs and paired comparisons.

A stored record enters the table only if its ``manifest_hash`` equals the hash of the task's current
``windows.parquet``; within a (task, model) row only records sharing one config hash are averaged (the
most recently run config wins). Everything left out is listed in :attr:`Leaderboard.excluded` with the
reason, never mixed in. Under a ``kfold`` protocol each seed's fold records are pooled first (every subject
of the corpus tested once), so scores, bootstrap CIs and paired tests run over all subjects.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from neurolm_train.leaderboard.reported import DEFAULT_DIR, ReportedRow, load_reported
from neurolm_train.leaderboard.scoring import metric_names, score_all
from neurolm_train.leaderboard.stats import Interval, Paired, bootstrap_cis, paired_wilcoxon, subject_scores
from neurolm_train.leaderboard.store import Record, iter_records
from neurolm_train.leaderboard.windows import load_manifest

#: Classes per NeuroLM task (docs/neurolm-reference.md §5.2, the answer lists): decides the metric set of a task
#: that has only reported rows here. Tasks with records use the stored ``n_classes``.
TASK_CLASSES = {"tuab": 2, "tuev": 6, "seed": 3, "hmc": 5, "workload": 2, "tusl": 3, "mi": 2, "adhd": 2}
#: Display order of tasks (reference §5.2 order, then the tasks of issue 10); unknown tasks follow alphabetically.
TASK_ORDER = ("workload", "tuab", "tuev", "seed", "hmc", "tusl", "mi", "adhd")


@dataclass(frozen=True)
class Cell:
    """One metric of one row: ``mean`` (fraction), ``std`` over seeds (computed) or as published
    (reported; ``None`` if not given), the bootstrap ``ci`` (computed only), trust ``tag`` (reported
    only) and ``hard_labels`` (reported AUROC/AUC-PR from hard predictions, reference §5.3)."""

    mean: float
    std: float | None
    ci: Interval | None = None
    tag: str | None = None
    hard_labels: bool = False


@dataclass(frozen=True)
class Row:
    """A leaderboard row. ``origin`` is ``"computed here"`` or ``"reported (<source>)"``; ``evidence``
    holds, for computed rows, the config/manifest hashes, code commit(s), seeds, test subjects/windows
    and wall time; for reported rows the citation and where it was transcribed from."""

    task: str
    model: str
    origin: str
    metrics: dict[str, Cell]
    n_seeds: int | None
    evidence: dict[str, Any]
    params: str | None = None
    note: str | None = None
    subject_metrics: dict[str, Cell] | None = None
    runs: tuple = field(default=(), repr=False, compare=False)

    @property
    def computed(self) -> bool:
        return self.origin == "computed here"


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of two computed rows of one task (:func:`stats.paired_wilcoxon`)."""

    task: str
    model_a: str
    model_b: str
    result: Paired


@dataclass
class Leaderboard:
    """Everything ``show`` renders. ``metrics[task]`` is the task's metric set (reference §5.3)."""

    tasks: list[str]
    metrics: dict[str, tuple[str, ...]]
    rows: list[Row]
    comparisons: list[Comparison] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    n_resamples: int = 1000

    def task_rows(self, task: str) -> list[Row]:
        return [r for r in self.rows if r.task == task]


def _select_current(
    task: str, model: str, records: list[Record], manifest_hash: str | None, excluded: list[str]
) -> list[Record]:
    """Records of (task, model) made on the current manifest with the most recently run config."""
    if manifest_hash is None:
        excluded.extend(
            f"{task}/{model}/seed-{r.meta['seed']}: no shards for task {task!r} here, cannot "
            "verify its windows manifest"
            for r in records
        )
        return []
    fresh = [r for r in records if r.meta["manifest_hash"] == manifest_hash]
    excluded.extend(
        f"{task}/{model}/seed-{r.meta['seed']}: stale windows manifest "
        f"{r.meta['manifest_hash'][:12]} (current {manifest_hash[:12]}); re-run `leaderboard run`"
        for r in records
        if r not in fresh
    )
    if not fresh:
        return []
    latest = max(fresh, key=lambda r: r.meta.get("started_utc", "")).meta["config_hash"]
    keep = [r for r in fresh if r.meta["config_hash"] == latest]
    excluded.extend(
        f"{task}/{model}/seed-{r.meta['seed']}: config {r.meta['config_hash'][:12]} differs from the "
        f"row's latest config {latest[:12]}; re-run `leaderboard run` with the seeds it lacks"
        for r in fresh
        if r not in keep
    )
    return keep


def pool_folds(
    records: list[Record], folds: list[int] | None, excluded: list[str]
) -> dict[int, list[Record]]:
    """Group a row's records by seed. Under a ``kfold`` protocol (``folds`` = the folds with test windows) a
    seed enters only when it has a record for every fold, so that its pooled test predictions cover every
    subject of the corpus; an incomplete seed is listed in ``excluded``. Returns ``{seed: records}``."""
    by_seed: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        by_seed[int(r.meta["seed"])].append(r)
    if folds is None:
        return dict(sorted(by_seed.items()))
    out = {}
    for s, recs in sorted(by_seed.items()):
        have = sorted(int(r.meta["fold"]) for r in recs if r.meta.get("fold") is not None)
        if have == folds:
            out[s] = sorted(recs, key=lambda r: int(r.meta["fold"]))
        else:
            r0 = recs[0].meta
            excluded.append(
                f"{r0['task']}/{r0['model']}/seed-{s}: folds {have} of {folds}; "
                "run `leaderboard run` for the missing folds"
            )
    return out


def pooled_run(records: list[Record]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One seed's test predictions over all its records (one per CV fold, or the single fixed-split record),
    concatenated: ``(y (N,), prob (N, K), subjects (N,))``."""
    parts = [r.probabilities() for r in records]
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def subject_level(
    run: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per-subject predictions: each subject's mean class probability over its windows and its label, as a run
    with one row per subject; ``None`` when some subject's windows carry more than one label (then a
    subject-level score is not defined, e.g. Workload's rest and task recordings)."""
    y, prob, subj = run
    names = np.unique(subj)
    ys, ps = [], []
    for s in names:
        sel = subj == s
        labels = np.unique(y[sel])
        if labels.size != 1:
            return None
        ys.append(int(labels[0]))
        ps.append(prob[sel].mean(axis=0))
    return np.asarray(ys, dtype=np.int64), np.stack(ps), names


def _cells(
    names: tuple[str, ...], runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_resamples: int, seed: int
) -> dict[str, Cell]:
    cis = bootstrap_cis(runs, n_resamples, seed=seed)
    cells = {}
    per_seed = [score_all(y, p) for y, p, _ in runs]
    for m in names:
        values = np.array([s[m] for s in per_seed], dtype=float)
        std = float(values.std(ddof=1)) if values.size > 1 else None
        cells[m] = Cell(float(values.mean()), std, cis[m])
    return cells


def _computed_row(
    task: str, model: str, by_seed: dict[int, list[Record]], n_resamples: int, seed: int
) -> Row:
    records = [r for recs in by_seed.values() for r in recs]
    runs = [pooled_run(recs) for recs in by_seed.values()]
    names = tuple(records[0].meta["metrics"])
    cells = _cells(names, runs, n_resamples, seed)
    subj_runs = [subject_level(r) for r in runs]
    subject_cells = (
        _cells(names, subj_runs, n_resamples, seed)  # type: ignore[arg-type]
        if all(r is not None for r in subj_runs) and runs[0][2].size > np.unique(runs[0][2]).size
        else None
    )
    meta = records[0].meta
    commits = sorted({str((r.meta.get("code") or {}).get("commit") or "unknown")[:12] for r in records})
    evidence = {
        "config_hash": meta["config_hash"],
        "manifest_hash": meta["manifest_hash"],
        "commits": commits,
        "dirty": any(bool((r.meta.get("code") or {}).get("dirty")) for r in records),
        "seeds": sorted(by_seed),
        "n_folds": int(meta.get("n_folds") or 0),
        "n_test_subjects": int(np.unique(runs[0][2]).size),
        "n_test_windows": int(runs[0][0].size),
        # fits copied from another seed (seed-independent rows, ``details.reused_fit_of_seed``) cost no time
        "wall_s_per_seed": float(
            np.mean(
                [
                    sum(r.meta["wall_s"] for r in recs)
                    for recs in by_seed.values()
                    if not all("reused_fit_of_seed" in (r.meta.get("details") or {}) for r in recs)
                ]
                or [0.0]
            )
        ),
        "wall_s_total": float(sum(r.meta["wall_s"] for r in records)),
        "max_windows_per_split": meta["data"].get("max_windows_per_split"),
        "records": [str(r.path) for r in records],
    }
    failures = [
        r.meta["details"]["trainer_test_scores"]["generation"]["parse_failure_rate"]
        for r in records
        if "generation" in (r.meta.get("details") or {}).get("trainer_test_scores", {})
    ]
    if failures:  # the paper's decoding (reference §5.3): share of answers that could not be parsed
        evidence["parse_failure_rate"] = float(np.mean(failures))
    return Row(
        task,
        model,
        "computed here",
        cells,
        len(by_seed),
        evidence,
        note=meta["kind"],
        subject_metrics=subject_cells,
        runs=tuple(runs),
    )


def _reported_row(row: ReportedRow) -> Row:
    cells = {m: Cell(v.value, v.std, None, v.tag, v.hard_labels) for m, v in row.metrics.items()}
    evidence = {
        "citation": row.citation,
        "via": row.via,
        "file": row.file,
        "file_sha256": row.file_sha256,
        "missing": row.missing,
    }
    origin = f"reported ({row.source})" if row.missing is None else f"not retrieved ({row.source})"
    return Row(row.task, row.model, origin, cells, None, evidence, row.params, row.note)


def _task_sort_key(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER), task)


def build_leaderboard(
    out_dir: Path,
    results: Path | None = None,
    reported_dir: Path | None = DEFAULT_DIR,
    tasks: Iterable[str] | None = None,
    compare: Sequence[tuple[str, str]] | None = None,
    compare_metric: str = "bacc",
    n_resamples: int = 1000,
    seed: int = 0,
) -> Leaderboard:
    """Assemble the leaderboard from the store under ``results`` (default ``OUT/leaderboard``).

    ``tasks``: restrict to these; default = tasks with records plus tasks with reported rows.
    ``reported_dir``: folder of reported TOML files (``None`` = no reported rows). ``compare``: pairs of
    computed model names to test on every task that has both (ValueError with fewer than 2 common test
    subjects); default = every pair of computed rows except chance-vs-chance, leaving out pairs with fewer
    than 2 common test subjects (no paired test exists there).
    ``n_resamples``/``seed``: the subject bootstrap (deterministic for a given seed).
    """
    out_dir = Path(out_dir)
    results = Path(results) if results is not None else out_dir / "leaderboard"
    wanted = set(tasks) if tasks is not None else None
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for rec in iter_records(results):
        if wanted is None or rec.meta["task"] in wanted:
            groups[(rec.meta["task"], rec.meta["model"])].append(rec)
    reported = [
        r
        for r in (load_reported(reported_dir) if reported_dir is not None else [])
        if wanted is None or r.task in wanted
    ]
    manifests: dict[str, str | None] = {}
    folds: dict[str, list[int] | None] = {}
    for task in {t for t, _ in groups}:
        try:
            m = load_manifest(out_dir, task)
            manifests[task], folds[task] = m.manifest_hash, (m.folds if m.n_folds else None)
        except FileNotFoundError:
            manifests[task], folds[task] = None, None
    excluded: list[str] = []
    rows: list[Row] = []
    n_classes: dict[str, int] = {}
    with threadpool_limits(limits=1):  # thousands of tiny sklearn calls: BLAS threads only add overhead
        for (task, model), records in sorted(groups.items()):
            keep = _select_current(task, model, records, manifests[task], excluded)
            by_seed = pool_folds(keep, folds.get(task), excluded) if keep else {}
            if by_seed:
                n_classes[task] = int(keep[0].meta["n_classes"])
                rows.append(_computed_row(task, model, by_seed, n_resamples, seed))
    rows.sort(key=lambda r: (r.task, -r.metrics[next(iter(r.metrics))].mean))  # best computed row first
    rows.extend(_reported_row(r) for r in reported)
    task_list = sorted({r.task for r in rows} | (wanted or set()), key=_task_sort_key)
    metrics = {}
    for task in task_list:
        k = n_classes.get(task, TASK_CLASSES.get(task))
        if k is None:  # a task known neither here nor in the spec: show whichever metrics its rows carry
            seen = {m for r in rows if r.task == task for m in r.metrics}
            metrics[task] = tuple(m for m in ("bacc", "auroc", "auc_pr", "kappa", "f1_weighted") if m in seen)
        else:
            metrics[task] = metric_names(k)
    board = Leaderboard(task_list, metrics, rows, excluded=excluded, n_resamples=n_resamples)
    board.comparisons = _comparisons(board, compare, compare_metric)
    return board


def _comparisons(
    board: Leaderboard, compare: Sequence[tuple[str, str]] | None, metric: str
) -> list[Comparison]:
    out = []
    for task in board.tasks:
        computed = {r.model: r for r in board.task_rows(task) if r.computed}
        if compare is not None:
            pairs = list(compare)
        else:  # every pair, except two chance rows against each other
            pairs = [
                (a, b)
                for a, b in itertools.combinations(sorted(computed), 2)
                if not (computed[a].note == "chance" and computed[b].note == "chance")
            ]
        for a, b in pairs:
            if a not in computed or b not in computed:
                continue
            if metric not in board.metrics[task]:
                raise ValueError(f"metric {metric!r} is not in task {task}'s set {board.metrics[task]}")
            scores = [subject_scores(list(computed[name].runs), metric) for name in (a, b)]
            if compare is None and len(set(scores[0]) & set(scores[1])) < 2:
                continue  # default pairs: a paired test needs >= 2 common test subjects; asked-for pairs raise
            out.append(Comparison(task, a, b, paired_wilcoxon(scores[0], scores[1], metric)))
    return out
