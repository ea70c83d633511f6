"""Render a :class:`~neurolm_train.leaderboard.table.Leaderboard`: rich tables, Markdown and a PNG chart.

Cell formats: computed ``mean ± std [CI low, CI high]`` (std over seeds, 95% subject bootstrap CI);
reported ``value ± std [tag]`` with ``†`` when the published AUROC/AUC-PR came from hard labels.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

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
    parse = (f" · paper decoding: {100 * ev['parse_failure_rate']:.1f}% unparsed"
             if "parse_failure_rate" in ev else "")
    return (f"cfg {ev['config_hash'][:8]} · manifest {ev['manifest_hash'][:8]} · code "
            f"{'/'.join(c[:8] for c in ev['commits'])}{dirty} · {ev['n_test_subjects']} subj / "
            f"{ev['n_test_windows']} win{subset} · {ev['wall_s_per_seed']:.1f} s/seed{parse}")


def _headers(board: Leaderboard, task: str) -> list[str]:
    return ["Model", "Source", "Seeds", *[METRIC_LABELS[m] for m in board.metrics[task]], "Evidence"]


def _cells(board: Leaderboard, task: str, row: Row) -> list[str]:
    model = row.model + (f" ({row.params})" if row.params else "")
    seeds = str(row.n_seeds) if row.n_seeds is not None else ""
    return [model, row.origin, seeds, *[format_cell(row.metrics.get(m)) for m in board.metrics[task]],
            _evidence(row)]


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
        comps = [c for c in board.comparisons if c.task == task]
        if comps:
            out += [f"Paired comparisons on {task} (Wilcoxon signed-rank over test subjects, two-sided, "
                    "per-subject score averaged over seeds):", "",
                    "| A | B | metric | subjects | median A−B | W | p | note |", "|---|---|---|---|---|---|---|---|"]
            for c in comps:
                r = c.result
                out.append(f"| {c.model_a} | {c.model_b} | {METRIC_LABELS[r.metric]} | {len(r.subjects)} | "
                           f"{r.median_diff:+.3f} | {r.statistic:g} | {r.p:.3g} | {r.note} |")
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
            table.add_row(*(Text(c) for c in _cells(board, task, row)[:-1]), style=None if row.computed else "dim")
        console.print(table)
        for row in (r for r in rows if r.computed):
            console.print(Text(f"  {row.model}: {_evidence(row)}", style="dim"))
        for c in (c for c in board.comparisons if c.task == task):
            r = c.result
            console.print(Text(f"  {c.model_a} vs {c.model_b} ({METRIC_LABELS[r.metric]}, {len(r.subjects)} subjects): "
                               f"median diff {r.median_diff:+.3f}, Wilcoxon W={r.statistic:g}, p={r.p:.3g} {r.note}"))
    for note in _footnotes(board):
        console.print(Text(note, style="dim"))
    for e in board.excluded:
        console.print(Text(f"excluded: {e}", style="yellow"))


def to_png(board: Leaderboard, path: Path, metric: str = "bacc") -> Path:
    """Bar chart of ``metric`` per task: computed rows as bars with 95% CI whiskers, reported rows as
    hatched bars (no CI), chance level 1/K (BAcc) or 0.5 (AUROC) as a dashed line. Returns ``path``."""
    tasks = [t for t in board.tasks if any(metric in r.metrics for r in board.task_rows(t))]
    if not tasks:
        raise ValueError(f"no row reports {metric!r}")
    heights = [sum(metric in r.metrics for r in board.task_rows(t)) for t in tasks]
    fig, axes = plt.subplots(len(tasks), 1, figsize=(9, 0.9 + 0.38 * sum(heights) + 0.6 * len(tasks)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, task in zip(axes[:, 0], tasks, strict=True):
        rows = [r for r in board.task_rows(task) if metric in r.metrics]
        labels, means, lows, highs, colors, hatches = [], [], [], [], [], []
        for r in rows:
            cell = r.metrics[metric]
            labels.append(f"{r.model} ({'computed' if r.computed else r.origin.removeprefix('reported (')[:-1]})")
            means.append(cell.mean)
            lo = cell.ci.low if cell.ci is not None and not math.isnan(cell.ci.low) else cell.mean
            hi = cell.ci.high if cell.ci is not None and not math.isnan(cell.ci.high) else cell.mean
            lows.append(cell.mean - lo)
            highs.append(hi - cell.mean)
            colors.append("tab:blue" if r.computed else "lightgray")
            hatches.append("" if r.computed else "//")
        y = range(len(rows))
        bars = ax.barh(list(y), means, xerr=[lows, highs], color=colors, edgecolor="black", capsize=3)
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.invert_yaxis()
        k = TASK_CLASSES.get(task, 2)
        chance = 1.0 / k if metric == "bacc" else 0.5 if metric == "auroc" else None
        if chance is not None:
            ax.axvline(chance, color="red", linestyle="--", linewidth=1, label="chance")
        ax.set_xlim(0, 1)
        ax.set_title(f"{task}: {METRIC_LABELS[metric]} (computed: 95% subject-bootstrap CI; hatched: reported)",
                     fontsize=9)
    axes[-1, 0].set_xlabel(METRIC_LABELS[metric])
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
