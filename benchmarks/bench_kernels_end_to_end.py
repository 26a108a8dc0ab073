"""One end-to-end training run per kernel: SAC on Humanoid-v4, width 1024, sparsity 0.95, 20,000 steps.

Run (from the repository root): python -m benchmarks.bench_kernels_end_to_end [--runs runs/kernels-e2e]
    [--timesteps 20000] [--seed 0]

Both runs are ``sb3-tar train`` with the same settings and seed (TAR, the tuned Humanoid entry:
learning_starts 10,000, so 10,000 gradient steps), one with ``--kernel sparse`` and one with
``--kernel dense``, started together so the machine's load hits both alike, one torch thread each.
The record (``results/train_kernels_end_to_end.md``) gives each run's wall and CPU time per 1,000
steps (from its ``result.json``, measured by the run), its final return and its learning curve. The
two kernels compute the same function up to float rounding, so the returns should agree within seed
noise; one seed cannot show more than that.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.environment import write_record

KERNELS = ("sparse", "dense")


def train_command(kernel: str, output: Path, timesteps: int, seed: int) -> list[str]:
    return [sys.executable, "-m", "sb3_tar", "train", "--algo", "sac", "--env", "Humanoid-v4", "--method", "tar",
            "--sparsity", "0.95", "--net-arch", "1024", "1024", "--timesteps", str(timesteps), "--seed", str(seed),
            "--kernel", kernel, "--threads", "1", "--device", "cpu", "--no-progress-bar", "--output", str(output)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/kernels-e2e"), help="folder for the two runs")
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    if not all((args.runs / kernel / "result.json").is_file() for kernel in KERNELS):  # else: write the record again
        processes = {kernel: subprocess.Popen(train_command(kernel, args.runs / kernel, args.timesteps, args.seed),
                                              stdout=(args.runs / f"{kernel}.log").open("w"), stderr=subprocess.STDOUT)
                     for kernel in KERNELS}
        failed = [kernel for kernel, process in processes.items() if process.wait() != 0]
        if failed:
            raise SystemExit(f"the {failed} run(s) failed: see {args.runs}/<kernel>.log")
    results = {kernel: json.loads((args.runs / kernel / "result.json").read_text()) for kernel in KERNELS}
    rows, cells = [], {}
    for kernel, result in results.items():
        final = result["final_evaluation"]
        cells[kernel] = {"wall_s_per_1000": result["seconds_per_1000_steps"],
                         "cpu_s_per_1000": result["cpu_seconds_per_1000_steps"],
                         "wall_s": result["provenance"]["wall_time_s"], "final_return": final["mean_return"],
                         "final_std": final["std_return"], "episodes": final["episodes"],
                         "curve": dict(zip(result["evaluations"]["timesteps"], result["evaluations"]["mean_return"])),
                         "last_three": sum(result["evaluations"]["mean_return"][-3:]) / 3,
                         "git_commit": result["provenance"]["git_commit"]}
        cell = cells[kernel]
        rows.append(f"| {kernel} | {cell['wall_s'] / 60:.1f} | {cell['wall_s_per_1000']:.1f} | "
                    f"{cell['cpu_s_per_1000']:.1f} | {cell['final_return']:.1f} +- {cell['final_std']:.1f} "
                    f"({cell['episodes']} episodes) | {cell['last_three']:.1f} |")
    ratios = {key: cells["sparse"][key] / cells["dense"][key] for key in ("wall_s_per_1000", "cpu_s_per_1000")}
    steps = sorted(cells["sparse"]["curve"])
    curve = [f"| {step} | {cells['sparse']['curve'][step]:.1f} | {cells['dense']['curve'].get(step, float('nan')):.1f} |"
             for step in steps]
    write_record(args.output, "train_kernels_end_to_end", {"cells": cells, "ratios": ratios}, [
        "# End to end: SAC on Humanoid-v4, width 1024, sparsity 0.95, sparse against dense kernel", "",
        f"`python -m benchmarks.bench_kernels_end_to_end --timesteps {args.timesteps} --seed {args.seed}`: two "
        f"`sb3-tar train` runs started together (`{' '.join(train_command('sparse', Path('<run>'), args.timesteps, args.seed)[1:])}`"
        f" and the same with `--kernel dense`), one torch thread each (the runs' own commit: "
        f"{cells['sparse']['git_commit']}). Per 1,000 steps: the run's own median over the 1,000-step blocks after "
        "learning_starts (10,000), each with 1,000 gradient steps. The sparse run finished first, so the dense one had "
        "the machine more to itself at the end: compare CPU time.", "",
        "| kernel | wall (min) | wall s / 1000 steps | CPU s / 1000 steps | final evaluation (mean +- std) | mean of "
        "the last 3 evaluations |",
        "|---|---:|---:|---:|---:|---:|", *rows, "",
        f"Sparse / dense: wall {ratios['wall_s_per_1000']:.2f}x, CPU {ratios['cpu_s_per_1000']:.2f}x per 1,000 steps.",
        "", "Evaluation returns (deterministic, mean over the run's evaluation episodes):", "",
        "| step | sparse | dense |", "|---:|---:|---:|", *curve, "",
        "One seed: the two kernels compute the same function up to float rounding, and that rounding grows over "
        "training into different trajectories, as two seeds would. This run shows the costs side by side and that "
        "the sparse kernel learns; a difference in learning would need many seeds.", ""])


if __name__ == "__main__":
    main()
