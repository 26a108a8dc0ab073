"""What TarMlpPolicy costs per SAC gradient step, against the same dense MlpPolicy.

Run (from the repository root): python -m benchmarks.bench_overhead [--rounds N] [--steps-per-block N]

Two SAC models, HalfCheetah-v4-sized (17 observations, 6 actions), net_arch [256, 256], batch 256,
one torch thread, the same seed and one shared replay buffer: ``"MlpPolicy"`` (dense) and
``"TarMlpPolicy"`` (sparsity 0.9, magnitude pruning, recovery ratio 0.01). Each round times one
block of ``model.train(gradient_steps=...)`` for each model, alternating which goes first, so
machine noise hits both alike. The result is the median time per gradient step of each and the
ratio of the medians (goal: at most 1.02). Both wall-clock time and the main thread's CPU time
are recorded: the CPU time is what the step costs, the wall-clock time also catches whatever
else the machine was doing. The forward and backward passes are the same dense matrix products in
both; the difference is the mask hook (one ``torch._foreach_mul_`` over the weights and their Adam
moments after each optimizer step), which is also timed alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from stable_baselines3 import SAC
from stable_baselines3.common.logger import configure

import sb3_tar  # noqa: F401  (registers "TarMlpPolicy")
from benchmarks.environment import write_record
from benchmarks.shapes import HalfCheetahShapes
from sb3_tar.sb3.masking import enforcement_of

NET_ARCH = [256, 256]
BATCH_SIZE = 256
BUFFER_SIZE = 10_000
TAR_SETTINGS = {"sparsity": 0.9, "criterion": "magnitude", "recovery_ratio": 0.01}
GOAL = 1.02


def sac(policy: str, policy_kwargs: dict[str, object]) -> SAC:
    model = SAC(policy, HalfCheetahShapes(), policy_kwargs={"net_arch": NET_ARCH, **policy_kwargs},
                buffer_size=BUFFER_SIZE, learning_starts=BUFFER_SIZE, batch_size=BATCH_SIZE, device="cpu", seed=0)
    model.set_logger(configure(None, []))
    return model


def time_block(model: SAC, steps: int) -> tuple[float, float]:
    """Wall-clock and CPU milliseconds per gradient step over one block of ``steps``."""
    start, start_cpu = time.perf_counter(), time.thread_time()
    model.train(gradient_steps=steps, batch_size=BATCH_SIZE)
    return (time.perf_counter() - start) * 1e3 / steps, (time.thread_time() - start_cpu) * 1e3 / steps


def time_hooks(model: SAC, repeats: int = 2000) -> float:
    """Milliseconds the mask hooks of both optimizers take per gradient step, alone (warm caches)."""
    hooks = [enforcement_of(optimizer) for optimizer in (model.actor.optimizer, model.critic.optimizer)]
    start = time.perf_counter()
    for _ in range(repeats):
        for hook in hooks:
            hook._mask_after_step()
    return (time.perf_counter() - start) * 1e3 / repeats


def measure(rounds: int, steps_per_block: int) -> dict[str, object]:
    load_before = os.getloadavg()[0]  # other work on the machine shows in the wall-clock figures
    dense = sac("MlpPolicy", {})
    tar = sac("TarMlpPolicy", TAR_SETTINGS)
    dense.learn(BUFFER_SIZE)  # random actions only: fills the buffer
    tar.replay_buffer = dense.replay_buffer
    for model in (dense, tar):  # warm-up: Adam's state and lazy initialisation
        time_block(model, steps_per_block)
    wall: dict[str, list[float]] = {"dense": [], "tar": []}
    cpu: dict[str, list[float]] = {"dense": [], "tar": []}
    models = {"dense": dense, "tar": tar}
    for round_index in range(rounds):
        order = ("dense", "tar") if round_index % 2 == 0 else ("tar", "dense")
        for name in order:
            wall_ms, cpu_ms = time_block(models[name], steps_per_block)
            wall[name].append(wall_ms)
            cpu[name].append(cpu_ms)
        print(f"round {round_index + 1:3d}/{rounds}: dense {wall['dense'][-1]:.2f} ms/step, "
              f"TarMlpPolicy {wall['tar'][-1]:.2f} ms/step (wall-clock)", flush=True)
    result: dict[str, object] = {"rounds": rounds, "steps_per_block": steps_per_block,
                                 "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}}
    for clock, times in (("wall", wall), ("cpu", cpu)):
        dense_ms, tar_ms = statistics.median(times["dense"]), statistics.median(times["tar"])
        result[clock] = {"dense_median_ms": dense_ms, "tar_median_ms": tar_ms, "ratio_of_medians": tar_ms / dense_ms,
                         "meets_goal": tar_ms / dense_ms <= GOAL, "dense_ms": times["dense"], "tar_ms": times["tar"]}
    result["hooks_ms"] = time_hooks(tar)
    result["goal"] = GOAL
    return result


def write_results(result: dict[str, object], output: Path) -> None:
    settings = {"algorithm": "SAC", "observations": 17, "actions": 6, "net_arch": NET_ARCH, "batch_size": BATCH_SIZE,
                "torch_threads": 1, **TAR_SETTINGS}
    lines = [
        "# TarMlpPolicy overhead per SAC gradient step",
        "",
        f"SAC, HalfCheetah-v4-sized (17 observations, 6 actions), net_arch {NET_ARCH}, batch {BATCH_SIZE}, one torch "
        f"thread. `TarMlpPolicy` ({', '.join(f'{k}={v}' for k, v in TAR_SETTINGS.items())}) against the same dense "
        f"`MlpPolicy`, same seed and replay buffer, {result['rounds']} rounds of {result['steps_per_block']} "
        "gradient steps each, alternating which model goes first.",
        "",
        f"1-minute load average before / after: `{result['load_average_1min']['before']:.2f}` / "
        f"`{result['load_average_1min']['after']:.2f}` (other work on the machine slows both models alike)",
        "",
        "| clock | dense MlpPolicy, median ms/step | TarMlpPolicy, median ms/step | ratio of medians | goal <= "
        f"{GOAL} |",
        "|---|---:|---:|---:|---|",
        *(f"| {label} | {result[clock]['dense_median_ms']:.3f} | {result[clock]['tar_median_ms']:.3f} | "
          f"**{result[clock]['ratio_of_medians']:.4f}** | {'met' if result[clock]['meets_goal'] else 'NOT met'} |"
          for clock, label in (("wall", "wall-clock"), ("cpu", "CPU time of the training thread"))),
        "",
        f"The mask hooks alone (weights and Adam moments after both optimizer steps, warm caches) take "
        f"{result['hooks_ms']:.3f} ms per gradient step, "
        f"{100 * result['hooks_ms'] / result['wall']['dense_median_ms']:.2f} % of a dense step. The per-round times "
        "are in `overhead.json`.",
        "",
    ]
    write_record(output, "overhead", {"settings": settings, "result": result}, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps-per-block", type=int, default=25)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = measure(args.rounds, args.steps_per_block)
    for clock in ("wall", "cpu"):
        figures = result[clock]
        print(f"{clock}: median ms/step dense {figures['dense_median_ms']:.3f}, TarMlpPolicy "
              f"{figures['tar_median_ms']:.3f}; ratio of medians {figures['ratio_of_medians']:.4f} (goal <= {GOAL})")
    print(f"hooks alone: {result['hooks_ms']:.3f} ms/step")
    write_results(result, args.output)


if __name__ == "__main__":
    main()
