"""The topology report of a ``RevivalPlan``: as data, as a readable table, and as a figure."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sb3_tar.engine.plan import RevivalPlan

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def topology_report(plan: RevivalPlan) -> dict[str, object]:
    """JSON-ready summary: settings, seed, network totals and one record per layer."""
    settings = plan.settings
    return {
        "sparsity": settings.sparsity,
        "criterion": settings.criterion,
        "criterion_options": {k: v for k, v in settings.criterion_options.items() if not callable(v)},
        "recovery_ratio": settings.recovery_ratio,
        "allocation": settings.allocation,
        "budget": settings.budget,
        "seed": plan.seed,
        "total_weights": plan.total,
        "kept_weights": plan.kept,
        "revived_weights": plan.revived,
        "repaired_weights": plan.repaired,
        "achieved_sparsity": plan.sparsity,
        "layers": [layer.as_dict() for layer in plan.layers],
    }


def format_topology_table(plan: RevivalPlan, title: str | None = None) -> str:
    """A fixed-width table a person can read in a terminal or a log file."""
    header = ("layer", "in x out", "density", "kept", "floor", "deficit", "revived", "iso in", "iso out", "cover")
    rows = [
        (
            layer.name,
            f"{layer.in_features}x{layer.out_features}",
            f"{layer.density_before:.4f}->{layer.density_after:.4f}",
            f"{layer.kept_before}->{layer.kept_after}",
            str(layer.floor),
            str(layer.deficit),
            str(layer.revived),
            f"{layer.isolated_inputs_before}->{layer.isolated_inputs_after}",
            f"{layer.isolated_outputs_before}->{layer.isolated_outputs_after}",
            "-" if layer.coverage is None else f"{layer.coverage:.4f}",
        )
        for layer in plan.layers
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
    settings = plan.settings
    summary = (
        f"{settings.criterion} pruning, sparsity {settings.sparsity:g}, recovery ratio {settings.recovery_ratio:g} "
        f"({settings.allocation} allocation, {settings.budget} budget), seed {plan.seed}: "
        f"kept {plan.kept}/{plan.total} weights (sparsity {plan.sparsity:.4f}), revived {plan.revived}"
        + (f" ({plan.repaired} by the connectivity repair)" if plan.repaired else "")
    )
    rule = "-" * len(lines[0])
    return "\n".join([*([title] if title else []), summary, rule, lines[0], rule, *lines[1:], rule])


def _tick_label(name: str, width: int = 14) -> str:
    """A layer name that fits under its bars: ``.weight`` dropped, broken into lines at its dots."""
    lines: list[str] = []
    for part in name.removesuffix(".weight").split("."):
        if lines and len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += "." + part
        else:
            lines.append(part if not lines else "." + part)
    return "\n".join(lines)


def plot_topology(plan: RevivalPlan | dict[str, object], path: str | Path | None = None,
                  title: str | None = None) -> Figure:
    """Per-layer density before and after revival against the connectivity floor's density.

    :param plan: a ``RevivalPlan`` or its ``topology_report`` (as saved with a trained model).
    """
    from matplotlib.figure import Figure

    report = topology_report(plan) if isinstance(plan, RevivalPlan) else plan
    layers = report["layers"]
    figure = Figure(figsize=(max(5.0, 1.4 * len(layers) + 2.0), 4.0), layout="constrained")
    axes = figure.subplots()
    positions = range(len(layers))
    axes.bar([p - 0.2 for p in positions], [layer["density_before"] for layer in layers], width=0.4,
             label="static pruning", color="#9e9e9e")
    axes.bar([p + 0.2 for p in positions], [layer["density_after"] for layer in layers], width=0.4,
             label="after revival", color="#2e7d32")
    axes.scatter(positions, [layer["floor"] / layer["size"] for layer in layers], marker="_", s=900,
                 color="#c62828", linewidths=2, label="connectivity floor", zorder=3)
    for position, layer in zip(positions, layers):
        if layer["kept_before"] == 0:  # invisible on a log scale: say it
            axes.annotate("0 kept", (position - 0.2, 0.0), xycoords=("data", "axes fraction"),
                          xytext=(0, 4), textcoords="offset points", ha="center", fontsize="small", color="#616161")
    axes.set_xticks(list(positions), [f"{_tick_label(layer['name'])}\n{layer['in_features']}x{layer['out_features']}"
                                      for layer in layers])
    axes.set_yscale("log")
    axes.set_ylabel("density (kept / all)")
    axes.set_title(title or f"{report['criterion']}, sparsity {report['sparsity']:g}, rr {report['recovery_ratio']:g}")
    axes.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.22), ncols=3, frameon=False)
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure
