"""The ``sb3-tar`` command line (also ``python -m sb3_tar``): one subcommand per job."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from sb3_tar.engine import (
    ALLOCATIONS,
    BUDGETS,
    available_criteria,
    format_topology_table,
    plot_topology,
    prune_and_revive,
    topology_report,
)
from sb3_tar.experiments.commands import add_experiment_commands


def mlp(input_width: int, hidden: Sequence[int], output_width: int) -> nn.Sequential:
    """A freshly initialised ReLU MLP, as SB3 builds its actors and critics."""
    widths = [input_width, *hidden, output_width]
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if index < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def add_pruning_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sparsity", type=float, default=0.9, help="final fraction of zero weights, in [0, 1)")
    parser.add_argument("--criterion", default="magnitude", choices=available_criteria())
    parser.add_argument("--recovery-ratio", type=float, default=0.01, help="revival budget (fraction of weights)")
    parser.add_argument("--allocation", default="topology", choices=ALLOCATIONS)
    parser.add_argument("--budget", default="reserve", choices=BUDGETS)
    parser.add_argument("--seed", type=int, default=0)


def inspect_command(args: argparse.Namespace) -> None:
    """Prune and revive a fresh MLP and print its topology report (no training)."""
    network = mlp(args.input_width, args.net_arch, args.output_width)
    plan = prune_and_revive(
        network, sparsity=args.sparsity, criterion=args.criterion, recovery_ratio=args.recovery_ratio,
        allocation=args.allocation, budget=args.budget, seed=args.seed,
    )
    print(format_topology_table(plan, title=f"MLP {args.input_width}-{'-'.join(map(str, args.net_arch))}-{args.output_width}"))
    if args.output:
        output = Path(args.output)
        output.mkdir(parents=True, exist_ok=True)
        (output / "topology.json").write_text(json.dumps(topology_report(plan), indent=2))
        plot_topology(plan, output / "topology.png")
        print(f"report and figure written to {output.resolve()}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sb3-tar", description="Sparse SB3 agents with Topology-Aware Revival.")
    commands = parser.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser("inspect", help="prune and revive a fresh MLP and print its topology report")
    inspect.add_argument("--input-width", type=int, default=376, help="observation (+ action) width")
    inspect.add_argument("--net-arch", type=int, nargs="+", default=[256, 256], help="hidden layer widths")
    inspect.add_argument("--output-width", type=int, default=17, help="action width (1 for a Q-network)")
    inspect.add_argument("--output", help="folder for topology.json and topology.png")
    add_pruning_arguments(inspect)
    inspect.set_defaults(run=inspect_command)
    add_experiment_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except ValueError as error:
        raise SystemExit(f"sb3-tar {args.command}: {error}") from None
