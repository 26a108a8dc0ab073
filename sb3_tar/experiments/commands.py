"""``sb3-tar sweep``, ``report`` and ``evaluate``: the command-line side of the experiments package."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def sweep_command(args: argparse.Namespace) -> None:
    from sb3_tar.experiments.backends import INTERRUPTED, SweepConflictError, run_sweep
    from sb3_tar.experiments.grid import load_sweep
    from sb3_tar.experiments.store import LockedError

    configs = load_sweep(args.sweep)  # a malformed sweep fails here, before anything runs
    if args.list:
        for config in configs:
            print(config.run_id)
        return
    results = Path(args.results or Path("results") / Path(args.sweep).stem)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops a sweep as Ctrl-C does
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        outcome = run_sweep(configs, results, backend=args.backend, workers=args.workers, address=args.address,
                            overwrite=args.overwrite)
    except (LockedError, SweepConflictError) as error:
        raise SystemExit(f"sb3-tar sweep: {error}") from None
    print(f"{len(outcome.completed)} runs finished now, {outcome.skipped} were already done, "
          f"{len(outcome.failed)} failed" + (f", {len(outcome.stopped)} stopped" if outcome.stopped else "")
          + f"; results in {results.resolve()}")
    if outcome.interrupted:
        print("sb3-tar sweep: interrupted; runs in flight kept their last checkpoint: run the same command again "
              "to resume", file=sys.stderr)
        raise SystemExit(INTERRUPTED)
    print(f"next: sb3-tar report {results}")
    problems = []
    if outcome.failed:
        problems.append(f"{len(outcome.failed)} runs failed: {sorted(outcome.failed)}")
    if outcome.stopped:
        problems.append(f"{len(outcome.stopped)} runs were stopped by a signal before their budget: "
                        f"{sorted(outcome.stopped)}; run the same command again to resume them")
    if problems:
        raise SystemExit("sb3-tar sweep: " + "; ".join(problems))


def report_command(args: argparse.Namespace) -> None:
    from sb3_tar.experiments.report import write_report

    report = write_report(args.results, args.output, random_returns=args.random_returns)
    print(f"report written to {report.resolve()} (figures beside it)")


def evaluate_command(args: argparse.Namespace) -> None:
    """Replay a run's saved model in the environment it trained in, and print the returns."""
    import torch

    from sb3_tar.experiments.evaluation import evaluate_run

    torch.set_num_threads(1)
    evaluation = evaluate_run(args.run_folder, episodes=args.episodes, deterministic=not args.stochastic,
                              seed=args.seed, video=args.video)
    policy = "deterministic" if evaluation.deterministic else "stochastic"
    print(f"{evaluation.run_id}: mean return {evaluation.mean:.1f} +- {evaluation.std:.1f} over "
          f"{len(evaluation.returns)} episodes ({policy} actions, seed {args.seed}; mean length "
          f"{sum(evaluation.lengths) / len(evaluation.lengths):.0f} steps"
          + ("; observations normalised with the run's vecnormalize.pkl" if evaluation.normalized else "") + ")")
    print("returns: " + ", ".join(f"{value:.1f}" for value in evaluation.returns))
    if args.video:
        print(f"video: {evaluation.video}" if evaluation.video else f"video: none written in {args.video}")


def add_experiment_commands(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser("sweep", help="train every run of a sweep grid (resumable; local pool or Ray)")
    sweep.add_argument("sweep", help="sweep YAML, e.g. benchmarks/sweeps/cpu.yml")
    sweep.add_argument("--results", help="results folder (default: results/<sweep name>)")
    sweep.add_argument("--backend", default="local", choices=["local", "ray"],
                       help="local: a process pool on this machine; ray: an existing Ray cluster")
    sweep.add_argument("--workers", type=int, help="runs at a time on this machine (default: one per core)")
    sweep.add_argument("--address", help="Ray cluster address (default: auto); results must be on a shared disk")
    sweep.add_argument("--list", action="store_true", help="print the run ids and exit")
    sweep.add_argument("--overwrite", action="store_true",
                       help="train again the runs whose result or checkpoint in the folder has other settings "
                            "(they move to RESULTS/.sb3-tar-replaced/)")
    sweep.set_defaults(run=sweep_command)

    report = commands.add_parser("report", help="tables, rliable aggregates and figures from finished runs")
    report.add_argument("results", help="a sweep's results folder")
    report.add_argument("--output", help="report folder (default: RESULTS/report)")
    report.add_argument("--random-returns", help="random-policy returns per task (benchmarks/results/random_policy.json): "
                                                 "normalise rliable scores between random (0) and dense (1)")
    report.set_defaults(run=report_command)

    evaluate = commands.add_parser("evaluate", help="replay a run's saved model with its own wrappers and "
                                                    "normalisation, and print the returns")
    evaluate.add_argument("run_folder", help="a sb3-tar train output folder, e.g. runs/<run id>")
    evaluate.add_argument("--episodes", type=int, default=10, help="episodes to replay (default: 10)")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of the deterministic ones")
    evaluate.add_argument("--seed", type=int, default=0, help="the environment's seed (default: 0)")
    evaluate.add_argument("--video", help="folder for an mp4 of the episodes (MuJoCo renders off-screen)")
    evaluate.set_defaults(run=evaluate_command)
