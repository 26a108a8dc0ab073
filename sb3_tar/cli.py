"""The ``sb3-tar`` command line (also ``python -m sb3_tar``): one subcommand per job."""

from __future__ import annotations

import argparse
import ast
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
from sb3_tar.sb3.training import ALGORITHMS, TrainConfig, train_run
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


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE as a Python literal (``0.5``, ``True``, ``[64, 64]``) or else a string."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        algo=args.algo, env=args.env, timesteps=args.timesteps, sparsity=args.sparsity,
        actor_sparsity=args.actor_sparsity, critic_sparsity=args.critic_sparsity, criterion=args.criterion,
        recovery_ratio=args.recovery_ratio, allocation=args.allocation, budget=args.budget,
        criterion_options=dict(args.option), net_arch=tuple(args.net_arch), seed=args.seed,
        learning_rate=args.learning_rate, action_noise=args.action_noise, hyperparams=dict(args.hyperparam),
        evaluations=args.evaluations, eval_episodes=args.eval_episodes, device=args.device, threads=args.threads,
        progress_bar=not args.no_progress_bar,
    )


def train_command(args: argparse.Namespace) -> None:
    """Train one sparse agent, evaluate it, and save the model, its topology and its learning curve."""
    config = train_config(args)
    config.validate()
    output = Path(args.output or Path("runs") / config.run_name())
    if output.exists() and not args.overwrite:
        raise SystemExit(f"sb3-tar train: output folder {output} exists; choose another with --output, "
                         "or replace it with --overwrite")
    print(f"training {config.algo.upper()} (TarMlpPolicy, {config.criterion}, sparsity "
          f"{config.sparsity if config.sparsity is not None else f'{config.actor_sparsity}/{config.critic_sparsity}'}, "
          f"recovery ratio {config.recovery_ratio:g}) on {config.env} for {config.timesteps} steps, seed {config.seed}")
    try:
        result = train_run(config, output, overwrite=args.overwrite)
    except KeyboardInterrupt:
        raise SystemExit(f"sb3-tar train: interrupted; nothing was written to {output}") from None
    except FileExistsError as error:
        raise SystemExit(f"sb3-tar train: {error}") from None
    minutes, seconds = divmod(round(result.wall_time_s), 60)
    folder = result.output_dir
    networks = ", ".join(path.name for path in sorted(folder.glob("topology-*.png")))
    print(f"done in {minutes}m {seconds:02d}s: final return {result.mean_return:.1f} +- {result.std_return:.1f} "
          f"over {config.eval_episodes} episodes")
    print(f"results in {folder}/")
    print(f"  model           {result.model}   ({config.algo.upper()}.load restores it, masks included)")
    print(f"  topology        {result.topology}, topology.json, {networks}")
    print(f"  learning curve  {result.learning_curve}")
    print(f"  training log    {folder / 'progress.csv'}, monitor.csv, evaluations.npz; settings in run.json")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--algo", default=defaults.algo, choices=sorted(ALGORITHMS))
    parser.add_argument("--env", default=defaults.env, help="Gymnasium environment id (continuous actions)")
    parser.add_argument("--timesteps", type=int, default=defaults.timesteps, help="environment steps to train for")
    parser.add_argument("--sparsity", type=float, default=defaults.sparsity,
                        help="final fraction of zero weights in every network, in [0, 1)")
    parser.add_argument("--actor-sparsity", type=float, help="the actor's sparsity (overrides --sparsity)")
    parser.add_argument("--critic-sparsity", type=float, help="each Q-network's sparsity (overrides --sparsity)")
    parser.add_argument("--criterion", default=defaults.criterion, choices=available_criteria())
    parser.add_argument("--recovery-ratio", type=float, default=defaults.recovery_ratio,
                        help="revival budget (fraction of each network's weights)")
    parser.add_argument("--allocation", default=defaults.allocation, choices=ALLOCATIONS)
    parser.add_argument("--budget", default=defaults.budget, choices=BUDGETS)
    parser.add_argument("--option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="a criterion option, e.g. --option scope=layerwise or --option iterations=50")
    parser.add_argument("--net-arch", type=int, nargs="+", default=list(defaults.net_arch),
                        help="hidden layer widths of the actor and of each Q-network")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--action-noise", type=float, default=defaults.action_noise,
                        help="std of TD3/DDPG's Gaussian exploration noise")
    parser.add_argument("--hyperparam", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="any other argument of the algorithm, e.g. --hyperparam batch_size=512")
    parser.add_argument("--evaluations", type=int, default=defaults.evaluations,
                        help="evaluations during training (points on the learning curve)")
    parser.add_argument("--eval-episodes", type=int, default=defaults.eval_episodes,
                        help="episodes per evaluation and for the final one")
    parser.add_argument("--device", default=defaults.device, help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads")
    parser.add_argument("--output", help="folder for the results (default: runs/<algo>-<env>-<criterion>-"
                                         "s<sparsity>-rr<recovery ratio>-seed<seed>)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
    parser.add_argument("--no-progress-bar", action="store_true")


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

    train = commands.add_parser("train", help="train a sparse agent; save the model, its topology and learning curve",
                                description=train_command.__doc__)
    add_train_arguments(train)
    train.set_defaults(run=train_command)
    add_experiment_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except ValueError as error:
        raise SystemExit(f"sb3-tar {args.command}: {error}") from None
