"""``sb3-tar report RESULTS``: finished runs to a Markdown report with tables and figures."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sb3_tar.engine.errors import UserError
from sb3_tar.engine.report import plot_topology
from sb3_tar.engine.validation import is_finite_number
from sb3_tar.experiments.aggregate import (
    FINAL_EVALUATIONS,
    GainRow,
    Run,
    as_runs,
    dense_random_anchors,
    gain_rows,
    headline,
    rliable_aggregates,
)
from sb3_tar.experiments.algorithms import algorithm_name
from sb3_tar.experiments.figures import curve_label, learning_curves, return_vs_recovery_ratio, return_vs_width
from sb3_tar.experiments.files import read_mapping
from sb3_tar.experiments.provenance import provenance
from sb3_tar.experiments.store import load_results


def _signed(value: float | None, unit: str = "%") -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:+.1f}{unit}"


def best_gain_cell(rows: Sequence[GainRow]) -> str:
    """Where the best gain over Original comes from, with both returns: a ratio over a baseline near
    0 is large whatever TAR did, and the reader should see which it is."""
    defined = [row for row in rows if np.isfinite(row.gain_over_original)]
    if not defined:
        return ""
    best = max(defined, key=lambda row: row.gain_over_original)
    algo, env, sparsity, width = best.panel
    return (f" ({algorithm_name(algo)} {env}, sparsity {sparsity:g}, width {width}, {best.criterion} rr "
            f"{best.recovery_ratio:g}: Original {best.original:.1f}, TAR {best.tar:.1f})")


def gains_section(runs: Sequence[Run]) -> tuple[list[str], dict[str, float | None]]:
    rows = gain_rows(runs)
    stats = headline(rows)
    lines = [
        "## TAR against its static Original and the best DST baseline",
        "",
        f"Final return = mean of a run's last {FINAL_EVALUATIONS} evaluations, averaged over seeds. "
        "Gain = (TAR - baseline) / |baseline|. Best DST = the better of SET and RigL at the same sparsity. "
        "Seeds: the runs behind each mean, listed per method where they differ (a sweep still running).",
        "",
        f"- best TAR gain over Original: **{_signed(stats['max_gain_over_original'])}**{best_gain_cell(rows)}",
        f"- median TAR gain over Original: **{_signed(stats['median_gain_over_original'])}**",
        f"- median TAR gain over the best DST baseline: **{_signed(stats['median_gain_over_best_dst'])}**",
        "",
    ]
    panels = defaultdict(list)
    for row in rows:
        panels[row.panel].append(row)
    for (algo, env, sparsity, width), panel_rows in sorted(panels.items(), key=lambda item: item[0]):
        lines += [
            f"### {algorithm_name(algo)} {env}, sparsity {sparsity:g}, width {width}",
            "",
            "| criterion | rr | Original | TAR | TAR vs Original | best DST | TAR vs best DST | dense | seeds |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            *[
                f"| {r.criterion} | {r.recovery_ratio:g} | {r.original:.1f} | {r.tar:.1f} | "
                f"{_signed(r.gain_over_original)} | {'n/a' if r.best_dst is None else f'{r.best_dst:.1f}'} | "
                f"{_signed(r.gain_over_dst)} | {'n/a' if r.dense is None else f'{r.dense:.1f}'} | {r.seeds_text} |"
                for r in panel_rows
            ],
            "",
        ]
    return lines, stats


def methods_section(runs: Sequence[Run]) -> list[str]:
    """Every method's final return, mean and standard deviation over seeds, and its cost."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.task, run.spec["sparsity"], run.spec["width"], curve_label(run))].append(run)
    lines = [
        "## Final return and cost of every method",
        "",
        "Seconds per 1000 environment steps: the median over a run's 1000-step blocks after learning starts "
        "(blocks with an evaluation are slower; the median leaves them out), then the median over seeds. Wall time "
        "grows with whatever else shares the machine; the process's CPU time grows far less (it still rises with "
        "contention for caches and memory), so the ratio to dense uses CPU time. CPU time counts every thread of a "
        "run: it compares runs made with the same number of torch threads. The masks multiply dense weight "
        "matrices, so a sparse run does the dense run's arithmetic: FLOPs count kept weights only (see "
        "`sb3_tar/experiments/cost.py`), the saving a sparse kernel could realise.",
        "",
        "| algo | env | sparsity | width | method | final return | std | seeds | wall s / 1000 steps | "
        "CPU s / 1000 steps | CPU vs dense | MFLOPs / action | GFLOPs / train step |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def median_over(group: list[Run], field: str) -> float:
        timed = [getattr(run, field) for run in group if getattr(run, field) is not None]
        return statistics.median(timed) if timed else float("nan")

    dense_cpu = {(task, width): median_over(group, "cpu_seconds_per_1000_steps")
                 for (task, _, width, label), group in groups.items() if label == "Dense"}
    for (task, sparsity, width, label), group in sorted(groups.items(), key=lambda item: item[0]):
        finals = [run.final_return for run in group]
        spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
        cpu = median_over(group, "cpu_seconds_per_1000_steps")
        ratio = cpu / dense_cpu[(task, width)] if (task, width) in dense_cpu else float("nan")
        cost = group[0].spec.get("cost", {})
        lines.append(
            f"| {task[0]} | {task[1]} | {sparsity:g} | {width} | {label} | {statistics.fmean(finals):.1f} | {spread:.1f} | "
            f"{len(group)} | {median_over(group, 'seconds_per_1000_steps'):.2f} | {cpu:.2f} | {ratio:.2f}x | "
            f"{cost.get('flops_per_action', float('nan')) / 1e6:.3f} | "
            f"{cost.get('flops_per_training_step', float('nan')) / 1e9:.3f} |"
        )
    return [*lines, ""]


def rliable_section(runs: Sequence[Run], anchors: dict[tuple, tuple[float, float]] | None = None
                    ) -> tuple[list[str], list[dict]]:
    rows = rliable_aggregates(runs, anchors=anchors)
    if anchors:
        scale = ("Scores are final returns normalised per task by a random policy's return (0) and the dense "
                 "runs' mean final return (1): " + ", ".join(
                     f"{env}: random {low:.1f}, dense {high:.1f}" for (_, env), (low, high) in sorted(anchors.items()))
                 + ".")
    else:
        scale = "Scores are final returns min-max normalised per task over all of its runs."
    return [
        "## rliable aggregates",
        "",
        f"{scale} Tasks are the (algo, env) pairs; each setting aggregates the tasks on which all of its "
        "methods have runs (an unfinished sweep leaves the others out), with as many runs per task as the "
        "method's fewest. IQM with stratified-bootstrap 95% confidence intervals; P(X > Y) is rliable's "
        "probability of improvement, with its CI.",
        "",
        "| sparsity | width | method | rr | estimate | 95% CI | runs per task | tasks |",
        "|---:|---:|---|---:|---:|---|---:|---:|",
        *[
            f"| {r['sparsity']:g} | {r['width']} | {r['method']} | {r['recovery_ratio']:g} | {r['iqm']:.3f} | "
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {r['runs_per_task']} | {r['tasks']} |"
            for r in rows
        ],
        "",
    ], rows


def seeds_section(runs: Sequence[Run]) -> list[str]:
    """Every run's final return, seed by seed, so a reader sees the spread behind each mean."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.task, run.spec["sparsity"], run.spec["width"], curve_label(run))].append(run)
    seeds = sorted({run.spec["seed"] for run in runs})
    lines = [
        "## Final return of every run",
        "",
        f"Final return = mean of the run's last {FINAL_EVALUATIONS} evaluations.",
        "",
        "| algo | env | sparsity | width | method | " + " | ".join(f"seed {seed}" for seed in seeds) + " | mean |",
        "|---|---|---:|---:|---|" + "---:|" * (len(seeds) + 1),
    ]
    for (task, sparsity, width, label), group in sorted(groups.items(), key=lambda item: item[0]):
        by_seed = {run.spec["seed"]: run.final_return for run in group}
        cells = [f"{by_seed[seed]:.1f}" if seed in by_seed else "" for seed in seeds]
        lines.append(f"| {task[0]} | {task[1]} | {sparsity:g} | {width} | {label} | " + " | ".join(cells)
                     + f" | {statistics.fmean(by_seed.values()):.1f} |")
    return [*lines, ""]


def topology_section(runs: Sequence[Run]) -> list[str]:
    """The networks at the start of training, static against TAR: what revival changed, layer by layer.

    From each configuration's lowest-seed run: per layer, density after static pruning and after
    revival, the edges short of the connectivity floor, and the input/output units left without
    any edge after revival.
    """
    chosen: dict[tuple, Run] = {}
    for run in sorted(runs, key=lambda run: run.spec["seed"]):
        if run.spec["method"] in ("static", "tar", "uniform") and run.topology:
            chosen.setdefault((run.task, run.spec["sparsity"], run.spec["width"], curve_label(run)), run)
    if not chosen:
        return []
    lines = [
        "## The networks at the start of training",
        "",
        "Per layer: density after static pruning -> after revival, the deficit below the connectivity floor "
        "(edges short of ceil(N ln N / 2) after static pruning) and isolated input/output units after revival; "
        "from each configuration's lowest-seed run.",
        "",
    ]
    for (task, sparsity, width, label), run in sorted(chosen.items(), key=lambda item: item[0]):
        lines += [f"### {algorithm_name(task[0])} {task[1]}, sparsity {sparsity:g}, width {width}: {label} (seed {run.spec['seed']})",
                  "", "| network | layer | in x out | density | deficit | isolated in/out |", "|---|---|---|---|---:|---|"]
        for network, report in sorted(run.topology.items()):
            for layer in report["layers"]:
                lines.append(
                    f"| {network} | {layer['name'].removesuffix('.weight')} | {layer['in_features']}x{layer['out_features']} | "
                    f"{layer['density_before']:.4f} -> {layer['density_after']:.4f} | {layer['deficit']} | "
                    f"{layer['isolated_inputs_after']}/{layer['isolated_outputs_after']} |")
        lines.append("")
    return lines


def figures_section(runs: Sequence[Run], output: Path) -> list[str]:
    lines = ["## Figures", ""]
    by_task: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        by_task[run.task].append(run)
    for (algo, env), task_runs in sorted(by_task.items()):
        name = f"curves-{algo}-{env}.png"
        learning_curves(task_runs, output / name)
        lines += [f"![learning curves {algo} {env}]({name})", ""]
        if return_vs_width(task_runs, output / f"width-{algo}-{env}.png"):
            lines += [f"![return vs width {algo} {env}](width-{algo}-{env}.png)", ""]
        if return_vs_recovery_ratio(task_runs, output / f"rr-{algo}-{env}.png"):
            lines += [f"![return vs recovery ratio {algo} {env}](rr-{algo}-{env}.png)", ""]
    tar_runs = [run for run in runs if run.spec["method"] == "tar" and run.topology]
    if tar_runs:
        example = max(tar_runs, key=lambda run: (run.spec["sparsity"], run.spec["criterion"] == "magnitude"))
        for network, report in sorted(example.topology.items()):
            name = f"topology-{network}.png"
            plot_topology(report, output / name, title=f"{example.run_id}: {network}")
            lines += [f"![topology {network}]({name})", ""]
    return lines


def load_random_returns(path: str | Path) -> dict[str, float]:
    """A random policy's mean return per environment, from ``benchmarks/random_policy.py``'s JSON."""
    data = read_mapping(path, "--random-returns file")
    tasks = data.get("tasks")
    if not isinstance(tasks, dict) or not all(isinstance(task, dict) and is_finite_number(task.get("mean_return"))
                                              for task in tasks.values()):
        raise UserError(f"--random-returns file {str(path)!r} must hold 'tasks': {{env: {{mean_return: number}}}}, "
                        "as benchmarks/random_policy.py writes it")
    return {env: float(task["mean_return"]) for env, task in tasks.items()}


def _refuse_mixed_depths(runs: Sequence[Run], results: Path) -> None:
    """A report compares runs by width; runs of one width but different depths would be averaged together."""
    depths: dict[tuple, dict[int, str]] = defaultdict(dict)
    for run in runs:
        depths[(run.task, run.spec["width"])].setdefault(run.spec["depth"], run.run_id)
    for ((algo, env), width), examples in sorted(depths.items()):
        if len(examples) > 1:
            raise UserError(
                f"results={str(results)!r} holds {algorithm_name(algo)} {env} runs of width {width} with "
                f"{len(examples)} depths ({', '.join(f'{depth}: {run_id}' for depth, run_id in sorted(examples.items()))})"
                "; a report compares runs by width, so report each depth from its own results folder"
            )


def write_report(results: str | Path, output: str | Path | None = None, random_returns: str | Path | None = None) -> Path:
    """Write ``report.md``, ``summary.json`` and PNG figures for the finished runs under ``results``.

    :param random_returns: ``benchmarks/random_policy.py``'s JSON; with it (and dense runs), rliable
        scores are normalised between a random policy (0) and dense training (1) per task.
    """
    results = Path(results)
    runs = as_runs(load_results(results))
    if not runs:
        raise UserError(f"results={str(results)!r} holds no finished run (no */result.json)")
    _refuse_mixed_depths(runs, results)
    anchors = dense_random_anchors(runs, load_random_returns(random_returns)) if random_returns else None
    output = Path(output) if output else results / "report"
    output.mkdir(parents=True, exist_ok=True)
    gains, stats = gains_section(runs)
    rliable_lines, rliable_rows = rliable_section(runs, anchors)
    tasks = sorted({run.task for run in runs})
    lines = [
        "# sb3-tar sweep report",
        "",
        f"{len(runs)} finished runs from `{results}`; tasks: "
        + ", ".join(f"{algorithm_name(algo)} {env}" for algo, env in tasks) + ".",
        "",
        *gains,
        *rliable_lines,
        *seeds_section(runs),
        *methods_section(runs),
        *topology_section(runs),
        *figures_section(runs, output),
    ]
    (output / "report.md").write_text("\n".join(lines))
    summary = {"runs": len(runs), "headline": stats, "gains": [
        {"panel": list(row.panel), "criterion": row.criterion, "recovery_ratio": row.recovery_ratio,
         "original": row.original, "tar": row.tar, "best_dst": row.best_dst, "dense": row.dense,
         "gain_over_original": row.gain_over_original, "gain_over_best_dst": row.gain_over_dst, "seeds": row.seeds,
         "seed_counts": dict(row.seed_counts)}
        for row in gain_rows(runs)], "rliable": rliable_rows,
        # the same record every run and benchmark carries: which code and machine wrote this summary
        "provenance": provenance()}
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    return output / "report.md"
