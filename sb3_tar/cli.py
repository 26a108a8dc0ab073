"""The ``sb3-tar`` command line (also ``python -m sb3_tar``): one subcommand per job."""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from sb3_tar import __version__
from sb3_tar.engine import (
    ALLOCATIONS,
    BUDGETS,
    available_criteria,
    format_topology_table,
    plot_topology,
    prune_and_revive,
    topology_report,
)
from sb3_tar.engine.errors import UserError
from sb3_tar.engine.settings import DEFAULT_KERNEL, KERNELS
from sb3_tar.engine.validation import closest
from sb3_tar.experiments.algorithms import ALGORITHMS, METHODS, ON_POLICY_ALGORITHMS, algorithm_name
from sb3_tar.experiments.commands import add_experiment_commands
from sb3_tar.experiments.config import RunConfig, run_hyperparams
from sb3_tar.experiments.files import read_mapping
from sb3_tar.export.cli import ALGORITHMS as EXPORTED_ALGORITHMS
from sb3_tar.export.cli import add_export_command
from sb3_tar.settings import SETTING_NAMES, SparsitySettings


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, [], False) or action.help is None:
            return action.help or ""
        return super()._get_help_string(action)


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
    torch.manual_seed(args.seed)  # the MLP's initial weights, so the same seed gives the same report
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


SPARSE_FLAGS = ("sparsity", "actor_sparsity", "critic_sparsity", "criterion", "recovery_ratio", "budget",
                "allow_empty_layers")


# Flags that say how and where to run, not which run: the only ones a --config file leaves open.
CONFIG_COMPANIONS = ("command", "run", "config", "output", "overwrite", "no_progress_bar", "threads", "tensorboard")


def train_config(args: argparse.Namespace) -> RunConfig:
    """The run the flags describe: the tuned file's settings, with every flag given on top, or ``--config``'s run."""
    if args.config:
        clashing = [f"--{name.replace('_', '-')}" for name in vars(args)
                    if name in args.given and name not in CONFIG_COMPANIONS]
        if clashing:
            raise UserError(f"--config {args.config} gives the whole run, so {clashing} would be ignored: leave "
                            "them out, or set them in the file")
        return RunConfig.from_dict(read_mapping(args.config, "--config"))
    given = {flag: getattr(args, flag) for flag in SPARSE_FLAGS if getattr(args, flag) is not None}
    options = dict(args.option)
    if args.method == "dense" and (given or options):
        names = [f"--{name.replace('_', '-')}" for name in given] + ["--option"] * bool(options)
        raise UserError(f"method='dense' prunes nothing: leave out {names}")
    base = RunConfig(algo=args.algo, env=args.env, method=args.method)
    sparsity = None
    if given or options:
        defaults = base.sparsity_settings().as_kwargs()
        if "criterion" in given and given["criterion"] != defaults["criterion"]:  # the file's options fit its criterion
            defaults = {key: defaults[key] for key in SETTING_NAMES}
        if {"actor_sparsity", "critic_sparsity"} <= set(given) and "sparsity" not in given:
            defaults["sparsity"] = None  # both networks' sparsities given: the file's overall one no longer applies
        if args.method == "uniform":
            given["allocation"] = "uniform"
        sparsity = SparsitySettings.from_kwargs({**defaults, **given, **options}, owner="sb3-tar train")
    return RunConfig(
        algo=args.algo, env=args.env, method=args.method, sparsity=sparsity, dst=dict(args.dst),
        net_arch=tuple(args.net_arch) if args.net_arch else None, seed=args.seed, n_timesteps=args.timesteps,
        eval_freq=args.eval_freq, eval_episodes=args.eval_episodes, checkpoint_freq=args.checkpoint_freq,
        hyperparams=dict(args.hyperparam), device=args.device, kernel=args.kernel,
    )


def describe(config: RunConfig) -> str:
    """One paragraph: what will train, with which settings, and where the defaults came from."""
    settings = config.sparsity_settings()
    sparse = "" if settings is None else (
        f", sparsity {settings.sparsity if settings.sparsity is not None else f'{settings.actor_sparsity} (actor) / {settings.critic_sparsity} (critic)'}"
        + (f", recovery ratio {settings.recovery_ratio:g}" if config.method in ("tar", "uniform") else "")
        + (f", kernel {config.kernel}" if config.kernel != DEFAULT_KERNEL else ""))
    hyperparams = run_hyperparams(config)
    shown = {key: value for key, value in hyperparams.items() if key not in ("policy", "policy_kwargs", "callback")}
    steps = f"{config.budget()} steps"
    rollout = _rollout_steps(config.algo, hyperparams)
    if rollout is not None and config.budget() % rollout:  # SB3 collects whole rollouts: the budget rounds up
        steps += f" (whole rollouts of {rollout}: {-(-config.budget() // rollout) * rollout} steps)"
    return (f"training {algorithm_name(config.algo)} {config.label}{sparse} on {config.env} for {steps}, "
            f"seed {config.seed}, networks {config.resolved_net_arch()}\n"
            f"hyperparameters from {config.tuned()[1]}"
            + (f", with {sorted(config.hyperparams)} overridden" if config.hyperparams else "") + f": {shown}")


def _rollout_steps(algo: str, hyperparams: dict[str, object]) -> int | None:
    """Environment steps SB3 collects between two trainings (``None`` when counted in episodes)."""
    from rl_zoo3.utils import ALGOS

    defaults = inspect.signature(ALGOS[algo].__init__).parameters
    n_envs = int(hyperparams.get("n_envs", 1))
    if algo in ON_POLICY_ALGORITHMS:
        return int(hyperparams.get("n_steps", defaults["n_steps"].default)) * n_envs
    train_freq = hyperparams.get("train_freq", defaults["train_freq"].default)
    if isinstance(train_freq, (list, tuple)):
        return int(train_freq[0]) * n_envs if train_freq[1] == "step" else None
    return int(train_freq) * n_envs


def positive_integer(text: str) -> int:
    """An argparse type: an integer >= 1 (``--threads 0`` is refused by argparse, naming the flag)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be an integer >= 1")
    return value


def _stop_on_sigterm() -> None:
    """SIGTERM and SIGINT both stop a run cleanly (the last checkpoint is kept), even started in the background."""
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _what_it_holds(output: Path, config: RunConfig) -> str:
    """How the run published in ``output`` differs from ``config`` (a shorter smoke run, say), for the refusal."""
    from sb3_tar.experiments.backends import settings_changes
    from sb3_tar.experiments.store import ResultError, read_result

    try:
        result = read_result(output)
    except ResultError:
        return ""
    changes = settings_changes(result["config"], config)
    finished = str(result["provenance"].get("date") or "")[:16].replace("T", " ")
    when = f", finished {finished}" if finished else ""
    return (f" and holds this very run ({result['num_timesteps']} steps{when})" if changes is None
            else f" and holds another run ({changes}{when})")


def train_command(args: argparse.Namespace) -> None:
    """Train one agent, evaluate it, and save the model, its topology and its learning curve."""
    from sb3_tar.experiments.output_paths import check_output_folder, describe_os_error
    from sb3_tar.experiments.pipeline import RunInterrupted, kept_after_failure, run_training
    from sb3_tar.experiments.store import LockedError

    config = train_config(args)
    output = Path(args.output or Path("runs") / config.run_id)
    check_output_folder(output)
    if output.exists() and not args.overwrite:
        raise SystemExit(f"sb3-tar train: output folder {output} exists{_what_it_holds(output, config)}; choose "
                         "another with --output, or replace it with --overwrite")
    print(describe(config), flush=True)
    _stop_on_sigterm()
    torch.set_num_threads(args.threads)
    try:
        run = run_training(config, output, overwrite=args.overwrite, progress_bar=not args.no_progress_bar,
                           tensorboard=args.tensorboard)
    except KeyboardInterrupt as interrupted:  # RunInterrupted says what was kept; a bare one came before training
        print(f"sb3-tar train: {interrupted if isinstance(interrupted, RunInterrupted) else 'interrupted'}",
              file=sys.stderr)
        raise SystemExit(130) from None
    except (FileExistsError, LockedError) as error:
        raise SystemExit(f"sb3-tar train: {error}") from None
    except OSError as error:  # disk full, read-only, no permission: say what is kept
        raise SystemExit(f"sb3-tar train: {describe_os_error(error)}; {kept_after_failure(output)}") from None
    result, folder = run.result, run.output
    final = result["final_evaluation"]
    minutes, seconds = divmod(round(result["provenance"]["wall_time_s"]), 60)
    networks = ", ".join(path.name for path in sorted(folder.glob("topology-*.png")))
    print(f"done in {minutes}m {seconds:02d}s: final return {final['mean_return']:.1f} +- {final['std_return']:.1f} "
          f"over {final['episodes']} episodes")
    for error in result["report_errors"]:
        print(f"  (not written: {error})")
    print(f"results in {folder}/")
    print(f"  model           {folder / 'model.zip'}   ({algorithm_name(config.algo)}.load restores it, masks included)")
    if (folder / "vecnormalize.pkl").exists():
        print(f"  normalization   {folder / 'vecnormalize.pkl'}   (VecNormalize.load: what the model's inputs are)")
    if networks:
        print(f"  topology        {folder / 'topology.txt'}, topology.json, {networks}")
    print(f"  learning curve  {folder / 'learning_curve.png'}")
    print(f"  training log    {folder / 'progress.csv'}, <n>.monitor.csv (one per environment), evaluations.npz; everything in result.json")
    if config.algo in EXPORTED_ALGORITHMS:
        print(f"to deploy the actor alone (kept weights only; runs with torch): sb3-tar export {folder / 'model.zip'} "
              "actor.sb3tar")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algo", default="sac", choices=ALGORITHMS, help="the algorithm")
    parser.add_argument("--env", default="Pendulum-v1",
                        help="Gymnasium environment id (sac, td3, ddpg, tqc, crossq: continuous actions; dqn, qrdqn: "
                             "discrete; ppo, a2c, ppo_lstm: either)")
    parser.add_argument("--method", default="tar", choices=METHODS,
                        help="dense; static (recovery ratio 0); tar; uniform (Uniform Revival); set; rigl")
    parser.add_argument("--timesteps", type=int, help="environment steps (default: the tuned file's budget)")
    sparse = parser.add_argument_group("sparse settings (default: the tuned file's, adapted to --method)")
    sparse.add_argument("--sparsity", type=float, help="final fraction of zero weights in every network, in [0, 1)")
    sparse.add_argument("--actor-sparsity", type=float, help="the actor's sparsity (overrides --sparsity)")
    sparse.add_argument("--critic-sparsity", type=float,
                        help="the critic's sparsity: each Q-network's, the on-policy value network's, DQN's Q-network's "
                             "(overrides --sparsity)")
    sparse.add_argument("--criterion", choices=available_criteria(),
                        help="static pruning criterion (set/rigl: the initial masks')")
    sparse.add_argument("--recovery-ratio", type=float, help="revival budget (fraction of each network's weights)")
    sparse.add_argument("--budget", choices=BUDGETS, help="reserve: end exactly at the sparsity; extra: revive on top")
    sparse.add_argument("--allow-empty-layers", action="store_const", const=True,
                        help="train even if pruning leaves a layer with no weight (refused by default)")
    sparse.add_argument("--option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="a criterion option, e.g. --option scope=layerwise or --option iterations=50")
    sparse.add_argument("--dst", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="a SET/RigL option, e.g. --dst update_interval=500")
    parser.add_argument("--net-arch", type=int, nargs="+",
                        help="hidden layer widths of every network (PPO, A2C, RecurrentPPO: the actor's and the "
                             "critic's, each its own; default: the tuned file's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hyperparam", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="override a tuned hyperparameter, e.g. --hyperparam batch_size=512")
    parser.add_argument("--eval-freq", type=int, help="steps between evaluations (default: a tenth of the budget)")
    parser.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation")
    parser.add_argument("--checkpoint-freq", type=int,
                        help="steps between checkpoints a stopped run resumes from (default: --eval-freq)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--kernel", default=DEFAULT_KERNEL, choices=KERNELS,
                        help="how the sparse layers train: auto (per layer, whichever was measured faster), dense "
                             "(masked dense layers) or sparse (kept weights only, CPU)")
    parser.add_argument("--threads", type=positive_integer, default=1,
                        help="torch CPU threads (1 is fastest for small networks)")
    parser.add_argument("--config", help="a run configuration file (YAML/JSON, as in result.json's 'config'); "
                                         "gives the whole run: a setting above given beside it is refused")
    parser.add_argument("--output", help="folder for the results (default: runs/<run id>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the output folder, once the new run is complete (and discard an interrupted "
                             "run of other settings left there)")
    parser.add_argument("--no-progress-bar", action="store_true")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also write the training log (sparsity/... keys included) as TensorBoard events into the "
                             "output folder: tensorboard --logdir runs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sb3-tar", description="Sparse SB3 agents with Topology-Aware Revival.")
    parser.add_argument("--version", action="version", version=f"sb3-tar {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser("inspect", help="prune and revive a fresh MLP and print its topology report",
                                  formatter_class=HelpFormatter)
    inspect.add_argument("--input-width", type=int, default=376, help="observation (+ action) width")
    inspect.add_argument("--net-arch", type=int, nargs="+", default=[256, 256], help="hidden layer widths")
    inspect.add_argument("--output-width", type=int, default=17, help="action width (1 for a Q-network)")
    inspect.add_argument("--output", help="folder for topology.json and topology.png")
    add_pruning_arguments(inspect)
    inspect.set_defaults(run=inspect_command)

    train = commands.add_parser("train", help="train a sparse agent; save the model, its topology and learning curve",
                                description=train_command.__doc__ + " Stopped runs resume from their last checkpoint "
                                "when the same command is run again.",
                                formatter_class=HelpFormatter)
    add_train_arguments(train)
    train.set_defaults(run=train_command)
    add_experiment_commands(commands)
    add_export_command(commands)
    return parser


def _suppress_defaults(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:  # noqa: SLF001 - argparse has no public way to walk its actions
        action.default = argparse.SUPPRESS
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for command in action.choices.values():
                _suppress_defaults(command)


def _refuse_unknown(parser: argparse.ArgumentParser, command: str, unknown: list[str]) -> None:
    """argparse's "unrecognized arguments" error, with the closest option of the command for each misspelt one."""
    subparsers = next(action for action in parser._actions  # noqa: SLF001 - no public way to reach a sub-parser
                      if isinstance(action, argparse._SubParsersAction))  # noqa: SLF001
    command_parser = subparsers.choices[command]
    options = [option for action in command_parser._actions for option in action.option_strings]  # noqa: SLF001
    described = []
    for argument in unknown:
        close = closest(argument.split("=")[0], options, cutoff=0.75) if argument.startswith("-") else None
        described.append(f"{argument} (did you mean {close}?)" if close else argument)
    command_parser.error(f"unrecognized arguments: {' '.join(described)}")


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line, plus ``given``: the options it names, whatever their values.

    ``--seed 0`` gives the seed although 0 is its default; ``train --config`` refuses every run
    setting given beside it, so it must know which were given, not which differ from a default.
    """
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _refuse_unknown(parser, args.command, unknown)
    probe = build_parser()
    _suppress_defaults(probe)
    args.given = set(vars(probe.parse_args(argv)))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_arguments(argv)
    try:
        args.run(args)
    except UserError as error:  # bad input: one line; anything else is a bug and keeps its traceback
        raise SystemExit(f"sb3-tar {args.command}: {error}") from None
