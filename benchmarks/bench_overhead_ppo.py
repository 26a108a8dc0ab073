"""Cost of the mask hook in PPO: ``TarMlpPolicy`` updates against the same dense ``MlpPolicy``, side by side.

Run (from the repository root): python -m benchmarks.bench_overhead_ppo [--rounds N] [--width W]

Two PPO models on HalfCheetah's spaces (17 observations, 6 actions), ``n_steps=2048``, batch 64,
10 epochs (320 minibatch gradient steps per update), ``net_arch=[W, W]``; one with
``TarMlpPolicy`` (sparsity 0.8, magnitude, TAR rr 0.01), one dense. Each collects one rollout, then
``model.train()`` (one full PPO update on that rollout) is timed in alternating rounds, so machine
noise hits both alike. The figure is the ratio of the medians (goal <= 1.02). The mask hook alone
(its ``_mask_after_step``, 1000 calls per round) is timed too: its share of a minibatch step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from stable_baselines3 import PPO

import sb3_tar  # noqa: F401  (registers TarMlpPolicy)
from sb3_tar.sb3.masking import enforcement_of
from benchmarks.environment import write_record
from benchmarks.shapes import HalfCheetahShapes

SPARSE = {"sparsity": 0.8, "criterion": "magnitude", "recovery_ratio": 0.01}


def ppo(policy: str, width: int) -> PPO:
    kwargs = {"net_arch": [width, width], **(SPARSE if policy == "TarMlpPolicy" else {})}
    model = PPO(policy, HalfCheetahShapes(), n_steps=2048, batch_size=64, n_epochs=10, policy_kwargs=kwargs,
                seed=0, device="cpu")
    model.learn(2048)  # one rollout (and one update) so the buffer is full
    return model


def time_update(model: PPO) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    model.train()
    return (time.perf_counter() - wall) * 1000.0, (time.process_time() - cpu) * 1000.0


def time_hook(model: PPO, calls: int = 1000) -> float:
    """Microseconds of one call of the sparse policy's mask hook (after a step: Adam's state exists)."""
    hook = enforcement_of(model.policy.optimizer)
    start = time.process_time()
    for _ in range(calls):
        hook._mask_after_step()
    return (time.process_time() - start) * 1e6 / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--width", type=int, default=64, help="hidden width (rl-zoo3's PPO MuJoCo entries: 64)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = {"dense": ppo("MlpPolicy", args.width), "sparse": ppo("TarMlpPolicy", args.width)}
    times: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in models}
    hook_us: list[float] = []
    for _ in range(args.rounds):
        for name, model in models.items():
            wall, cpu = time_update(model)
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
        hook_us.append(time_hook(models["sparse"]))
    medians = {name: {kind: statistics.median(values) for kind, values in kinds.items()} for name, kinds in times.items()}
    ratio = {kind: medians["sparse"][kind] / medians["dense"][kind] for kind in ("wall", "cpu")}
    steps_per_update = models["sparse"].n_epochs * -(-models["sparse"].n_steps // models["sparse"].batch_size)
    hook = statistics.median(hook_us)
    hook_share = hook * 1e-3 * steps_per_update / medians["dense"]["cpu"]
    result = {"width": args.width, "rounds": args.rounds, "medians_ms": medians,
              "ratio_sparse_over_dense": ratio, "hook_us_per_step": hook, "hook_share_of_dense_update": hook_share,
              "times_ms": times, "hook_us": hook_us}
    lines = [
        "# Mask hook overhead in PPO: TarMlpPolicy vs dense MlpPolicy",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        "| width | rounds | dense update (ms, median) | sparse update (ms, median) | ratio wall | ratio CPU "
        "| mask hook per step (µs) | hook share of a dense update |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {args.width} | {args.rounds} | {medians['dense']['wall']:.1f} | {medians['sparse']['wall']:.1f} | "
        f"{ratio['wall']:.3f} | {ratio['cpu']:.3f} | {hook:.1f} | {hook_share:.2%} |",
        "",
    ]
    write_record(args.output, "overhead_ppo", result, lines)
    print(lines[-2])


if __name__ == "__main__":
    main()
