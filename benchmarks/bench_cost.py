"""Cost of sparse training against dense: wall time per 1000 gradient steps, and FLOPs.

Run (from the repository root): python -m benchmarks.bench_cost [--rounds N] [--steps-per-block N]

For SAC and TD3, HalfCheetah-v4-sized (17 observations, 6 actions), widths 256 and 1024, one
torch thread: a dense ``MlpPolicy`` and a ``TarMlpPolicy`` (sparsity 0.9, magnitude, rr 0.01)
share one replay buffer and are timed in alternating blocks, so machine noise hits both alike.
(A SET/RigL step costs what a fixed-mask step costs, plus its periodic update: see
``bench_dst_update``.) FLOPs per action and
per gradient step count kept weights only (``sb3_tar.experiments.cost``): what a sparse kernel
would do; PyTorch's dense kernels do the dense work, which is why the wall times match.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.logger import configure

import sb3_tar  # noqa: F401  (registers "TarMlpPolicy")
from benchmarks.environment import write_record
from benchmarks.shapes import HalfCheetahShapes
from sb3_tar.experiments.cost import cost_summary
from sb3_tar.experiments.inspection import kept_weights

ALGOS = {"sac": SAC, "td3": TD3}
BATCH_SIZE = 256
BUFFER_SIZE = 5_000
SPARSITY = 0.9


def build(algo: str, width: int, method: str):
    policy = "TarMlpPolicy" if method == "tar" else "MlpPolicy"
    kwargs = {"sparsity": SPARSITY, "criterion": "magnitude", "recovery_ratio": 0.01} if method == "tar" else {}
    model = ALGOS[algo](policy, HalfCheetahShapes(), policy_kwargs={"net_arch": [width, width], **kwargs},
                        buffer_size=BUFFER_SIZE, learning_starts=BUFFER_SIZE, batch_size=BATCH_SIZE, device="cpu",
                        seed=0)
    model.set_logger(configure(None, []))
    return model


def measure(algo: str, width: int, rounds: int, steps: int) -> dict[str, object]:
    models = {method: build(algo, width, method) for method in ("dense", "tar")}
    models["dense"].learn(BUFFER_SIZE)  # random actions: fills the shared buffer
    for model in models.values():
        model.replay_buffer = models["dense"].replay_buffer
        model.train(gradient_steps=steps, batch_size=BATCH_SIZE)  # warm-up
    times: dict[str, list[float]] = {method: [] for method in models}
    for round_index in range(rounds):
        order = list(models) if round_index % 2 == 0 else list(reversed(models))
        for method in order:
            start = time.perf_counter()
            models[method].train(gradient_steps=steps, batch_size=BATCH_SIZE)
            times[method].append((time.perf_counter() - start) * 1e6 / steps)  # ms per 1000 steps
    rows = {}
    for method, model in models.items():
        kept = kept_weights(model.policy)
        rows[method] = {"ms_per_1000_steps": statistics.median(times[method]), "kept_weights": kept,
                        **cost_summary(algo, kept, BATCH_SIZE)}
    for method in rows:
        rows[method]["time_ratio_to_dense"] = rows[method]["ms_per_1000_steps"] / rows["dense"]["ms_per_1000_steps"]
        rows[method]["flops_ratio_to_dense"] = (rows[method]["flops_per_training_step"]
                                                / rows["dense"]["flops_per_training_step"])
    print(algo, width, {m: round(r["ms_per_1000_steps"]) for m, r in rows.items()}, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps-per-block", type=int, default=100)
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {f"{algo}-w{width}": measure(algo, width, args.rounds, args.steps_per_block)
               for algo in ALGOS for width in args.widths}
    names = {"dense": "dense MlpPolicy", "tar": f"TarMlpPolicy (sparsity {SPARSITY}, rr 0.01)"}
    lines = [
        "# Cost of sparse training: wall time and FLOPs",
        "",
        "HalfCheetah-v4-sized SAC and TD3 (17 observations, 6 actions), batch 256, one torch thread, "
        f"{args.rounds} alternating blocks of {args.steps_per_block} gradient steps per model; medians. FLOPs "
        "count kept weights only (see `sb3_tar/experiments/cost.py`).",
        "",
        "| algo | width | method | ms / 1000 gradient steps | time vs dense | MFLOPs / action | GFLOPs / gradient step | FLOPs vs dense |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for key, rows in results.items():
        algo, width = key.split("-w")
        for method, row in rows.items():
            lines.append(
                f"| {algo.upper()} | {width} | {names[method]} | {row['ms_per_1000_steps']:.0f} | "
                f"{row['time_ratio_to_dense']:.3f} | {row['flops_per_action'] / 1e6:.3f} | "
                f"{row['flops_per_training_step'] / 1e9:.3f} | {row['flops_ratio_to_dense']:.3f} |")
    lines += ["", "Dense PyTorch kernels do not skip zeros, so the wall time of a sparse model stays that of the "
              "dense one (plus the mask hooks); the FLOPs column is what sparsity saves on hardware or kernels "
              "that exploit it. SET/RigL add their periodic update on top: `dst_update.md`.", ""]
    write_record(args.output, "cost", {"results": results}, lines)


if __name__ == "__main__":
    main()
