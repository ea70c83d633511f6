"""Render a :class:`~neurolm_train.leaderboard.table.Leaderboard`: rich tables, Markdown and a PNG chart.

Cell formats: computed ``mean ± std [CI low, CI high]`` (std over seeds, 95% subject bootstrap CI);
reported ``value ± std [tag]`` with ``†`` when the published AUROC/AUC-PR came from hard labels.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402

from neurolm_train.leaderboard.scoring import METRIC_LABELS  # noqa: E402
from neurolm_train.leaderboard.table import TASK_CLASSES, Cell, Leaderboard, Row  # noqa: E402

HARD_LABEL_MARK = "†"


def _num(x: float | None, digits: int) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def format_cell(cell: Cell | None) -> str:
    """Text of one cell (``""`` when the row does not report the metric)."""
    if cell is None:
        return ""
    if cell.tag is None:  # computed here
        text = f"{cell.mean:.3f} ± {_num(cell.std, 3)}"
        if cell.ci is not None:
            text += f" [{_num(cell.ci.low, 3)}, {_num(cell.ci.high, 3)}]"
        return text
    text = f"{cell.mean:.4f}" + (f" ± {cell.std:.4f}" if cell.std is not None else "") + f" [{cell.tag}]"
    return text + (f" {HARD_LABEL_MARK}" if cell.hard_labels else "")


def _evidence(row: Row) -> str:
    if not row.computed:
        return row.evidence["missing"] or row.evidence["via"]
    ev = row.evidence
    subset = f", ≤{ev['max_windows_per_split']} win/split" if ev["max_windows_per_split"] else ""
    dirty = "+dirty" if ev["dirty"] else ""
    parse = (
        f" · paper decoding: {100 * ev['parse_failure_rate']:.1f}% unparsed"
        if "parse_failure_rate" in ev
        else ""
    )
    folds = f" · {ev['n_folds']}-fold CV, pooled" if ev.get("n_folds") else ""
    return (
        f"cfg {ev['config_hash'][:8]} · manifest {ev['manifest_hash'][:8]} · code "
        f"{'/'.join(c[:8] for c in ev['commits'])}{dirty} · {ev['n_test_subjects']} subj / "
        f"{ev['n_test_windows']} win{subset}{folds} · {ev['wall_s_per_seed']:.1f} s/seed{parse}"
    )


def _headers(board: Leaderboard, task: str) -> list[str]:
    return ["Model", "Source", "Seeds", *[METRIC_LABELS[m] for m in board.metrics[task]], "Evidence"]


def _cells(board: Leaderboard, task: str, row: Row) -> list[str]:
    model = row.model + (f" ({row.params})" if row.params else "")
    seeds = str(row.n_seeds) if row.n_seeds is not None else ""
    return [
        model,
        row.origin,
        seeds,
        *[format_cell(row.metrics.get(m)) for m in board.metrics[task]],
        _evidence(row),
    ]


def _footnotes(board: Leaderboard) -> list[str]:
    notes = [
        f"Computed rows: mean ± std over seeds [95% percentile bootstrap CI over test subjects, "
        f"{board.n_resamples} resamples of subjects, seed-averaged]. Metrics from probabilities "
        "(scikit-learn): binary BAcc/AUROC/AUC-PR, multiclass BAcc/Cohen κ/weighted F1 "
        "(neurolm docs/neurolm-reference.md §5.3).",
        "Reported rows: value ± std as published; trust tag (neurolm docs/neurolm-reference.md): [paper] confirmed paper "
        "number, [2nd] third-party summary, [mem] recalled/unverified, [untagged] quoted without a tag.",
        f"{HARD_LABEL_MARK} AUROC/AUC-PR computed by the official NeuroLM code from hard predictions "
        "(neurolm docs/neurolm-reference.md §5.3): "
        "tracks BAcc, not comparable with probability-based AUROC.",
        "Reported numbers come from other splits, preprocessing and training budgets; only computed rows "
        "share this machine's shards and subject-level splits.",
    ]
    return notes


def to_markdown(board: Leaderboard) -> str:
    """The whole leaderboard as GitHub Markdown: one table per task, comparisons, notes, exclusions."""
    out = ["# Leaderboard", ""]
    for task in board.tasks:
        rows = board.task_rows(task)
        if not rows:
            continue
        k = TASK_CLASSES.get(task)
        out += [f"## {task}" + (f" ({k} classes)" if k else ""), ""]
        head = _headers(board, task)
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        for row in rows:
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(board, task, row)) + " |")
        out.append("")
        subj = [r for r in rows if r.subject_metrics]
        if subj:
            out += [
                f"Per subject on {task} (each subject's mean class probability over its windows, one "
                "prediction per subject; mean ± std over seeds [95% bootstrap CI over subjects]):",
                "",
            ]
            names = [m for m in board.metrics[task] if m in subj[0].subject_metrics]
            out.append("| Model | Seeds | " + " | ".join(METRIC_LABELS[m] for m in names) + " |")
            out.append("|" + "|".join("---" for _ in range(len(names) + 2)) + "|")
            for row in subj:
                out.append(
                    f"| {row.model} | {row.n_seeds} | "
                    + " | ".join(format_cell(row.subject_metrics.get(m)) for m in names)
                    + " |"
                )
            out.append("")
        comps = [c for c in board.comparisons if c.task == task]
        if comps:
            out += [
                f"Paired comparisons on {task} (Wilcoxon signed-rank over test subjects, two-sided, "
                "per-subject score averaged over seeds):",
                "",
                "| A | B | metric | subjects | median A−B | W | p | note |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for c in comps:
                r = c.result
                out.append(
                    f"| {c.model_a} | {c.model_b} | {METRIC_LABELS[r.metric]} | {len(r.subjects)} | "
                    f"{r.median_diff:+.3f} | {r.statistic:g} | {r.p:.3g} | {r.note} |"
                )
            out.append("")
    out += ["Notes:", ""] + [f"- {n}" for n in _footnotes(board)]
    if board.excluded:
        out += ["", "Excluded records (never mixed into the table):", ""] + [f"- {e}" for e in board.excluded]
    return "\n".join(out) + "\n"


def print_rich(board: Leaderboard, console: Console | None = None) -> None:
    """Print one rich table per task (evidence of computed rows below it), the comparisons, the notes and
    the exclusions to ``console`` (default stdout). Cell text is never parsed as rich markup."""
    console = console or Console()
    for task in board.tasks:
        rows = board.task_rows(task)
        if not rows:
            continue
        table = Table(title=task)
        for h in _headers(board, task)[:-1]:
            table.add_column(h, overflow="fold")
        for row in rows:
            table.add_row(
                *(Text(c) for c in _cells(board, task, row)[:-1]), style=None if row.computed else "dim"
            )
        console.print(table)
        for row in (r for r in rows if r.computed):
            console.print(Text(f"  {row.model}: {_evidence(row)}", style="dim"))
        for c in (c for c in board.comparisons if c.task == task):
            r = c.result
            console.print(
                Text(
                    f"  {c.model_a} vs {c.model_b} ({METRIC_LABELS[r.metric]}, {len(r.subjects)} subjects): "
                    f"median diff {r.median_diff:+.3f}, Wilcoxon W={r.statistic:g}, p={r.p:.3g} {r.note}"
                )
            )
    for note in _footnotes(board):
        console.print(Text(note, style="dim"))
    for e in board.excluded:
        console.print(Text(f"excluded: {e}", style="yellow"))


def _chance(task: str, metric: str, board: Leaderboard) -> float | None:
    """Chance level of ``metric``: 1/K for BAcc, 0.5 for AUROC, 0 for Cohen's κ; None otherwise (AUC-PR and
    weighted F1 depend on the class balance)."""
    k = 2 if "auroc" in board.metrics.get(task, ()) else TASK_CLASSES.get(task, 2)
    return {"bacc": 1.0 / k, "auroc": 0.5, "kappa": 0.0}.get(metric)


def to_png(board: Leaderboard, path: Path, metric: str = "bacc") -> Path:
    """The leaderboard chart: one row of panels per task, one panel per metric of the task's set.

    Each metric panel: computed rows as blue bars with their 95% subject-bootstrap CI whiskers, reported rows
    as hatched grey bars (no CI); the value written at the end of each bar; the seed count in each computed
    row's label; chance level (1/K for BAcc, 0.5 for AUROC, 0 for κ) as a dashed red line named in the legend.
    A last panel per task plots ``metric`` per test subject (one dot per subject and seed-averaged, models
    side by side, grey lines joining a subject across models), the data behind the paired Wilcoxon tests.
    Returns ``path``. Raises ``ValueError`` when no row reports ``metric``.
    """
    from neurolm_train.leaderboard.stats import subject_scores

    tasks = [t for t in board.tasks if any(metric in r.metrics for r in board.task_rows(t))]
    if not tasks:
        raise ValueError(f"no row reports {metric!r}")
    n_cols = max(len(board.metrics[t]) for t in tasks) + 1
    heights = [max(2, sum(bool(r.metrics) for r in board.task_rows(t))) for t in tasks]
    fig, axes = plt.subplots(
        len(tasks),
        n_cols,
        figsize=(4.2 * n_cols, 1.2 + 0.42 * sum(heights) + 0.8 * len(tasks)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ti, task in enumerate(tasks):
        rows = board.task_rows(task)
        names = board.metrics[task]
        for mi in range(n_cols - 1):
            ax = axes[ti, mi]
            if mi >= len(names):
                ax.axis("off")
                continue
            m = names[mi]
            shown = [r for r in rows if m in r.metrics]
            labels, means, lows, highs, colors = [], [], [], [], []
            for r in shown:
                cell = r.metrics[m]
                src = (
                    "computed"
                    if r.computed
                    else r.origin.removeprefix("reported (").removeprefix("not retrieved (")[:-1]
                )
                seeds = f", {r.n_seeds} seed{'s' if r.n_seeds != 1 else ''}" if r.computed else ""
                labels.append(f"{r.model} ({src}{seeds})" if mi == 0 else "")
                means.append(cell.mean)
                lo = cell.ci.low if cell.ci is not None and not math.isnan(cell.ci.low) else cell.mean
                hi = cell.ci.high if cell.ci is not None and not math.isnan(cell.ci.high) else cell.mean
                lows.append(cell.mean - lo)
                highs.append(hi - cell.mean)
                colors.append("tab:blue" if r.computed else "lightgray")
            y = list(range(len(shown)))
            bars = ax.barh(y, means, xerr=[lows, highs], color=colors, edgecolor="black", capsize=3)
            for bar, r, v, hi in zip(bars, shown, means, highs, strict=True):
                if not r.computed:
                    bar.set_hatch("//")
                ax.text(
                    min(v + hi, 1.0) + 0.01,
                    bar.get_y() + bar.get_height() / 2,
                    f"{v:.3f}",
                    va="center",
                    fontsize=7,
                )
            ax.set_yticks(y, labels, fontsize=7)
            ax.invert_yaxis()
            chance = _chance(task, m, board)
            lo_lim = -0.2 if m == "kappa" else 0.0
            if chance is not None:
                ax.axvline(chance, color="red", linestyle="--", linewidth=1, label=f"chance ({chance:.2f})")
                ax.legend(loc="lower right", fontsize=7)
            ax.set_xlim(lo_lim, 1.12)
            ax.set_title(f"{task}: {METRIC_LABELS[m]}", fontsize=9)
        ax = axes[ti, n_cols - 1]
        computed = [r for r in rows if r.computed and r.runs and metric in r.metrics]
        if not computed:
            ax.axis("off")
            continue
        per = [subject_scores(list(r.runs), metric) for r in computed]
        subjects = sorted(set().union(*per))
        for s in subjects:
            ax.plot(
                [per[i].get(s, float("nan")) for i in range(len(computed))],
                range(len(computed)),
                color="0.8",
                linewidth=0.5,
                zorder=1,
            )
        for i, scores in enumerate(per):
            vals = np.array(list(scores.values()), dtype=float)
            ax.scatter(vals, np.full(vals.size, i), s=12, color="tab:blue", alpha=0.6, zorder=2)
            ax.plot([np.nanmean(vals)] * 2, [i - 0.3, i + 0.3], color="black", linewidth=2, zorder=3)
        chance = _chance(task, metric, board)
        if chance is not None:
            ax.axvline(chance, color="red", linestyle="--", linewidth=1, label=f"chance ({chance:.2f})")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_yticks(range(len(computed)), [r.model for r in computed], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(-0.02, 1.02)
        ax.set_title(
            f"{task}: {METRIC_LABELS[metric]} per subject ({len(subjects)} subjects; bar = mean)", fontsize=9
        )
    fig.suptitle(
        "computed: blue, 95% subject-bootstrap CI; reported: hatched; numbers = mean over seeds", fontsize=9
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
