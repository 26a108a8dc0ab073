"""What a finished run leaves for a person to look at: topology tables and figures, and its learning curve.

These are written after the model is saved; a failure here is recorded in ``result.json`` under
``report_errors`` and never costs the trained model.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from sb3_tar.engine import format_topology_table, plot_topology, topology_report


def write_topology(plans: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``topology.txt``/``.json`` and one ``topology-<network>.png`` per network; returns the JSON data."""
    report = {name: topology_report(plan) for name, plan in plans.items()}
    (folder / "topology.json").write_text(json.dumps(report, indent=2))
    (folder / "topology.txt").write_text(
        "\n\n".join(format_topology_table(plan, title=f"network {name}") for name, plan in plans.items()) + "\n")
    for name, plan in plans.items():
        settings = plan.settings
        plot_topology(plan, folder / f"topology-{name}.png",
                      title=f"{name}: {settings.criterion}, sparsity {settings.sparsity:g}, rr {settings.recovery_ratio:g}")
    return report


def training_episodes(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Environment steps at the end of each training episode, and the episode's return, from every ``*.monitor.csv``.

    With ``n`` environments (one monitor file each) stepped together, an environment that has taken
    ``s`` steps of its own is at about ``n * s`` steps of the run.
    """
    files = sorted(folder.glob("*.monitor.csv"))
    steps, returns = [], []
    for monitor_csv in files:
        lines = [line for line in monitor_csv.read_text().splitlines() if line and not line.startswith("#")]
        rows = list(csv.DictReader(lines))
        steps.append(np.cumsum([int(row["l"]) for row in rows], dtype=np.int64) * len(files))
        returns.append(np.array([float(row["r"]) for row in rows]))
    if not files:
        return np.zeros(0), np.zeros(0)
    steps_all, returns_all = np.concatenate(steps), np.concatenate(returns)
    order = np.argsort(steps_all, kind="stable")
    return steps_all[order], returns_all[order]


def plot_learning_curve(folder: Path, evaluations: dict[str, Any], final: dict[str, Any], title: str) -> Path:
    """Write ``learning_curve_figure``'s figure to ``folder/learning_curve.png``."""
    path = folder / "learning_curve.png"
    learning_curve_figure(folder, evaluations, final, title).savefig(path, dpi=120)
    return path


def learning_curve_figure(folder: Path, evaluations: dict[str, Any], final: dict[str, Any], title: str) -> Any:
    """Training episodes (from ``folder``'s monitor files), each evaluation's mean and its min-max range, the final
    evaluation.

    The shaded band is the range of the evaluation episodes' returns, so it never leaves the
    returns that were actually observed (a +- std band can rise above a task's maximum return).
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    axes = figure.subplots()
    steps, returns = training_episodes(folder)
    if len(steps):
        axes.plot(steps, returns, ".", color="#9e9e9e", markersize=4, label="training episodes")
    if evaluations["timesteps"]:
        results = [np.asarray(row, dtype=float) for row in evaluations["returns"]]
        mean = [row.mean() for row in results]
        axes.fill_between(evaluations["timesteps"], [row.min() for row in results], [row.max() for row in results],
                          color="#2e7d32", alpha=0.2, label="evaluation (min-max)")
        axes.plot(evaluations["timesteps"], mean, "-o", color="#2e7d32", markersize=4, label="evaluation (mean)")
    axes.errorbar([final["timesteps"]], [final["mean_return"]], yerr=[[final["std_return"]], [final["std_return"]]],
                  fmt="D", color="#1565c0", capsize=4, zorder=3,
                  label=f"final: {final['mean_return']:.1f} +- {final['std_return']:.1f}")
    axes.set_xlabel("environment steps")
    axes.set_ylabel("episode return")
    axes.set_title(title, fontsize="medium")
    # Below the axes: inside, it can hide the last evaluation and the final marker at the right end.
    figure.legend(fontsize="small", loc="outside lower center", ncols=2, frameon=False)
    return figure
