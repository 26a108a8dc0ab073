"""Figures of a finished sweep: learning curves, return vs width, return vs recovery ratio."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sb3_tar.experiments.aggregate import Run
from sb3_tar.experiments.algorithms import algorithm_name

CRITERION_COLOURS = {"magnitude": "#1f77b4", "erk": "#ff7f0e", "synflow": "#2ca02c", "random": "#8c564b"}
BASELINE_STYLES = {"dense": ("#000000", "--"), "set": ("#7f7f7f", ":"), "rigl": ("#9467bd", ":")}


def curve_label(run: Run) -> str:
    if run.spec["method"] in ("tar", "uniform"):
        return f"{run.label}, rr {run.spec['recovery_ratio']:g}"
    return run.label


def curve_style(run: Run) -> dict[str, object]:
    """Colour by criterion, Original thin, TAR thick; dense dashed, DST dotted."""
    method = run.spec["method"]
    if method in BASELINE_STYLES:
        colour, style = BASELINE_STYLES[method]
        return {"color": colour, "linestyle": style, "linewidth": 1.8}
    colour = CRITERION_COLOURS.get(run.spec["criterion"], "#17becf")
    return {"static": {"color": colour, "linestyle": "-", "linewidth": 1.0, "alpha": 0.55},
            "tar": {"color": colour, "linestyle": "-", "linewidth": 2.2},
            "uniform": {"color": colour, "linestyle": "-.", "linewidth": 1.5}}[method]


def bootstrap_interval(samples: np.ndarray, reps: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile-bootstrap interval of the mean over axis 0 (seeds)."""
    if samples.shape[0] < 2:
        return samples[0], samples[0]
    rng = np.random.default_rng(seed)
    means = samples[rng.integers(0, samples.shape[0], size=(reps, samples.shape[0]))].mean(axis=1)
    return np.percentile(means, 2.5, axis=0), np.percentile(means, 97.5, axis=0)


def _curves(runs: Sequence[Run]) -> dict[str, list[Run]]:
    grouped: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        grouped[curve_label(run)].append(run)
    return grouped


def learning_curves(runs: Sequence[Run], path: Path) -> None:
    """One figure per task: a panel per (sparsity, width), one mean curve with a shaded 95% CI per method."""
    task = runs[0].task
    panels = sorted({(r.spec["sparsity"], r.spec["width"]) for r in runs if r.spec["method"] != "dense"}
                    ) or sorted({(0.0, r.spec["width"]) for r in runs})  # a task with dense runs only, so far
    columns = min(2, max(1, len(panels)))
    rows = -(-max(1, len(panels)) // columns)
    figure = Figure(figsize=(6.0 * columns, 4.2 * rows), layout="constrained")
    axes_grid = np.atleast_1d(figure.subplots(rows, columns, sharey=True, squeeze=False)).ravel()
    ratios = sorted({r.spec["recovery_ratio"] for r in runs if r.spec["method"] in ("tar", "uniform")})
    for axes, (sparsity, width) in zip(axes_grid, panels):
        in_panel = [r for r in runs if r.spec["width"] == width
                    and (r.spec["sparsity"] == sparsity or r.spec["method"] == "dense")]
        for label, group in sorted(_curves(in_panel).items()):
            length = min(len(run.mean_returns) for run in group)
            steps = np.array(group[0].timesteps[:length])
            values = np.array([run.mean_returns[:length] for run in group])
            low, high = bootstrap_interval(values)
            style = curve_style(group[0])
            if group[0].spec["method"] in ("tar", "uniform") and len(ratios) > 1:  # tell recovery ratios apart
                style = {**style, "marker": "os^vD"[ratios.index(group[0].spec["recovery_ratio"]) % 5],
                         "markevery": max(1, length // 8), "markersize": 4}
            axes.plot(steps, values.mean(axis=0), label=f"{label} (n={len(group)})", **style)
            axes.fill_between(steps, low, high, color=style["color"], alpha=0.12, linewidth=0)
        axes.set_title(f"sparsity {sparsity:g}, width {width}" if sparsity else f"dense, width {width}")
        axes.set_xlabel("environment steps")
        axes.grid(alpha=0.3)
    for axes in axes_grid[len(panels):]:
        axes.set_visible(False)
    for axes in axes_grid[::columns]:
        axes.set_ylabel("evaluation return")
    for axes in axes_grid[:len(panels)]:  # a legend per panel: the seed counts differ between panels
        axes.legend(fontsize="x-small", loc="lower right")
    figure.suptitle(f"{algorithm_name(task[0])} on {task[1]}: mean over seeds, shaded 95% bootstrap CI")
    figure.savefig(path, dpi=110)


def _final_by(runs: Sequence[Run], key) -> dict[object, tuple[float, float, float]]:
    groups: dict[object, list[float]] = defaultdict(list)
    for run in runs:
        groups[key(run)].append(run.final_return)
    summary = {}
    for group_key, values in groups.items():
        low, high = bootstrap_interval(np.array(values)[:, None])
        summary[group_key] = (float(np.mean(values)), float(low[0]), float(high[0]))
    return summary


def _final_return_title(figure: Figure, runs: Sequence[Run]) -> None:
    algo, env = runs[0].task
    # Two short lines: one panel is narrow, and a one-line title would be cut on both sides.
    figure.suptitle(f"{algorithm_name(algo)} on {env}\nfinal return: mean over seeds, 95% bootstrap CI",
                    fontsize="medium")


def return_vs_width(runs: Sequence[Run], path: Path) -> bool:
    """Final return against width per method, one panel per sparsity; ``False`` if one width only."""
    widths = sorted({r.spec["width"] for r in runs})
    if len(widths) < 2:
        return False
    sparsities = sorted({r.spec["sparsity"] for r in runs if r.spec["method"] != "dense"})
    figure = Figure(figsize=(5.0 * len(sparsities), 4.0), layout="constrained")
    axes_row = np.atleast_1d(figure.subplots(1, len(sparsities), sharey=True))
    for axes, sparsity in zip(axes_row, sparsities):
        in_panel = [r for r in runs if r.spec["sparsity"] == sparsity or r.spec["method"] == "dense"]
        for label, group in sorted(_curves(in_panel).items()):
            summary = _final_by(group, lambda run: run.spec["width"])
            xs = sorted(summary)
            means = [summary[x][0] for x in xs]
            errors = [[summary[x][0] - summary[x][1] for x in xs], [summary[x][2] - summary[x][0] for x in xs]]
            axes.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=label, **curve_style(group[0]))
        axes.set_xscale("log", base=2)
        axes.set_xticks(widths, [str(w) for w in widths])
        axes.set_title(f"sparsity {sparsity:g}")
        axes.set_xlabel("width")
    _final_return_title(figure, runs)
    axes_row[0].set_ylabel("final return")
    axes_row[-1].legend(fontsize="x-small")
    figure.savefig(path, dpi=110)
    return True


def return_vs_recovery_ratio(runs: Sequence[Run], path: Path) -> bool:
    """Write ``recovery_ratio_figure``'s figure to ``path``; ``False`` (nothing written) if there is none."""
    figure = recovery_ratio_figure(runs)
    if figure is None:
        return False
    figure.savefig(path, dpi=110)
    return True


def recovery_ratio_figure(runs: Sequence[Run]) -> Figure | None:
    """Final return against rr (0 = Original) per criterion, one panel per sparsity; ``None`` if no TAR runs."""
    static = [r for r in runs if r.spec["method"] in ("static", "tar")]
    ratios = sorted({r.spec["recovery_ratio"] for r in static})
    if len(ratios) < 2:
        return None
    sparsities = sorted({r.spec["sparsity"] for r in static})
    figure = Figure(figsize=(max(5.0, 4.6 * len(sparsities)), 4.0), layout="constrained")
    axes_row = np.atleast_1d(figure.subplots(1, len(sparsities), sharey=True))
    criteria = sorted({r.spec["criterion"] for r in static})
    for axes, sparsity in zip(axes_row, sparsities):
        for offset, criterion in enumerate(criteria):
            group = [r for r in static if r.spec["sparsity"] == sparsity and r.spec["criterion"] == criterion]
            summary = _final_by(group, lambda run: run.spec["recovery_ratio"])
            xs = [ratios.index(x) + (offset - (len(criteria) - 1) / 2) * 0.8 / len(criteria) for x in sorted(summary)]
            means = [summary[x][0] for x in sorted(summary)]
            errors = [[summary[x][0] - summary[x][1] for x in sorted(summary)],
                      [summary[x][2] - summary[x][0] for x in sorted(summary)]]
            # Points and lines, not bars: returns can be negative, and a bar from 0 would mislead.
            axes.errorbar(xs, means, yerr=errors, capsize=3, marker="o", label=criterion,
                          color=CRITERION_COLOURS.get(criterion))
        axes.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
        axes.set_title(f"sparsity {sparsity:g}")
        axes.set_xlabel("recovery ratio (0 = Original)")
        axes.grid(alpha=0.3)
    _final_return_title(figure, runs)
    axes_row[0].set_ylabel("final return")
    axes_row[-1].legend(fontsize="x-small")
    return figure
