"""One-shot cost of ``prune_and_revive`` per criterion on actor-sized MLPs (376 -> W -> W -> 17).

Run (from the repository root): python -m benchmarks.bench_engine [--widths 256 1024 4096] [--output benchmarks/results]
Every criterion of one width is timed in alternating rounds, so machine noise hits them alike;
the figure quoted is the median over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from benchmarks.environment import write_record
from sb3_tar import prune_and_revive
from sb3_tar.cli import mlp

CRITERIA = ("magnitude", "random", "erk", "synflow")
ROUNDS = {256: 15, 1024: 7, 4096: 3}
TARGETS_MS = {("magnitude", 256): 50, ("random", 256): 50, ("erk", 256): 50, ("synflow", 1024): 2000}


def time_prune_and_revive(network: torch.nn.Module, criterion: str, seed: int) -> float:
    start = time.perf_counter()
    prune_and_revive(network, sparsity=0.9, criterion=criterion, recovery_ratio=0.01, seed=seed)
    return (time.perf_counter() - start) * 1000.0


def measure(widths: list[int]) -> list[dict[str, object]]:
    rows = []
    for width in widths:
        torch.manual_seed(0)
        network = mlp(376, [width, width], 17)
        for criterion in CRITERIA:  # warm-up: first calls pay for lazy initialisation
            time_prune_and_revive(network, criterion, seed=0)
        times: dict[str, list[float]] = {criterion: [] for criterion in CRITERIA}
        for round_index in range(ROUNDS.get(width, 3)):
            for criterion in CRITERIA:
                times[criterion].append(time_prune_and_revive(network, criterion, seed=round_index))
        for criterion in CRITERIA:
            median = statistics.median(times[criterion])
            target = TARGETS_MS.get((criterion, width))
            rows.append({
                "width": width, "criterion": criterion, "median_ms": round(median, 2),
                "min_ms": round(min(times[criterion]), 2), "rounds": len(times[criterion]),
                "target_ms": target, "meets_target": None if target is None else median < target,
            })
            print(f"width {width:5d}  {criterion:9s}  median {median:9.2f} ms  min {min(times[criterion]):9.2f} ms")
    return rows


def write_results(rows: list[dict[str, object]], output: Path) -> None:
    lines = [
        "# One-shot pruning + revival time",
        "",
        "`prune_and_revive(sparsity=0.9, recovery_ratio=0.01)` on a freshly initialised 376-W-W-17 MLP "
        "(a Humanoid-sized actor), SynFlow with its default 100 iterations. Median over alternating rounds.",
        "",
        "| width | criterion | median (ms) | min (ms) | rounds | target (ms) | meets target |",
        "|---:|---|---:|---:|---:|---:|---|",
        *[
            f"| {r['width']} | {r['criterion']} | {r['median_ms']} | {r['min_ms']} | {r['rounds']} | "
            f"{r['target_ms'] or ''} | {'' if r['meets_target'] is None else ('yes' if r['meets_target'] else 'NO')} |"
            for r in rows
        ],
        "",
    ]
    write_record(output, "engine_speed", {"rows": rows}, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    write_results(measure(args.widths), args.output)


if __name__ == "__main__":
    main()
