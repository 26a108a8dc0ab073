"""SAC and TD3 gradient steps with a frozen sparse mask: dense ``MlpPolicy`` against each ``kernel`` of ``TarMlpPolicy``.

Run (from the repository root): python -m benchmarks.bench_train_steps [--algos sac td3]
    [--widths 256 1024 2048] [--sparsities 0.8 0.9 0.95 0.98] [--rounds 5]

Part 2 of ``benchmarks/bench_train_kernels.py`` (part 1 times one MLP): whole SB3 gradient steps
(``model.train``: actor and critic losses, both optimizers, Polyak updates) on Humanoid-v4's spaces
(376 observations, 17 actions), ``net_arch=[W, W]``, batch 256, one torch thread, a replay buffer of
random transitions. Four variants per cell, timed in alternated rounds in one process:

- ``dense``: SB3's ``MlpPolicy``;
- ``masked``: ``TarMlpPolicy`` at the sparsity (TAR at the default recovery ratio), as sb3-tar
  trains today: dense layers, masks multiplied into weights and Adam's moments after each step;
- ``sparse``: ``TarMlpPolicy(kernel="sparse")``, the same masks with every pruned layer of every
  network and target trained as ``CompressedLinear``;
- ``auto``: ``TarMlpPolicy(kernel="auto")``, compressed where the rule in ``sb3_tar.sb3.kernels`` says.

Figures: CPU time per gradient step, medians of the per-round means, ratios of medians; tensor
memory of policy + optimizer state (+ the step hooks' cached float masks for ``masked``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.logger import configure

import sb3_tar  # noqa: F401  (registers "TarMlpPolicy")
from benchmarks.environment import write_record
from sb3_tar.engine.compressed import CompressedLinear
from sb3_tar.sb3.masking import enforcement_of

ALGOS = {"sac": SAC, "td3": TD3}
ENV_ID = "Humanoid-v4"
# Variant -> the TarMlpPolicy kernel (None: SB3's dense MlpPolicy).
VARIANTS = {"dense": None, "masked": "dense", "sparse": "sparse", "auto": "auto"}
BATCH = 256
STEPS_PER_ROUND = 5


def build(algo: str, width: int, sparsity: float, kernel: str | None):
    """A model on Humanoid's spaces with a filled buffer: dense ``MlpPolicy`` (``kernel=None``) or ``TarMlpPolicy``."""
    policy = "MlpPolicy" if kernel is None else "TarMlpPolicy"
    kwargs = {"net_arch": [width, width], **({} if kernel is None else {"sparsity": sparsity, "kernel": kernel})}
    model = ALGOS[algo](policy, gym.make(ENV_ID), seed=0, device="cpu", batch_size=BATCH, buffer_size=4 * BATCH,
                        learning_starts=0, policy_kwargs=kwargs)
    model.set_logger(configure(folder=None, format_strings=[]))
    rng = np.random.default_rng(0)
    observation_shape, action_shape = model.observation_space.shape, model.action_space.shape
    for _ in range(2 * BATCH):
        model.replay_buffer.add(rng.standard_normal((1, *observation_shape)).astype(np.float32),
                                rng.standard_normal((1, *observation_shape)).astype(np.float32),
                                rng.uniform(-1, 1, (1, *action_shape)).astype(np.float32),
                                rng.standard_normal(1).astype(np.float32), np.zeros(1), [{}])
    return model


def tensor_bytes(model) -> int:
    """Policy parameters and buffers, optimizer state and the step hooks' cached multipliers, each storage once."""
    policy = model.policy
    tensors = [*policy.parameters(), *policy.buffers()]
    for optimizer in (policy.actor.optimizer, policy.critic.optimizer):
        tensors += [value for state in optimizer.state.values() for value in state.values()
                    if isinstance(value, torch.Tensor)]
        enforcement = enforcement_of(optimizer)
        if enforcement is not None:
            tensors += enforcement.masked()[1]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def measure(algo: str, width: int, sparsity: float, rounds: int) -> dict[str, object]:
    models = {name: build(algo, width, sparsity, kernel) for name, kernel in VARIANTS.items()}
    observations = torch.randn(BATCH, *models["dense"].observation_space.shape)
    with torch.no_grad():  # the same function: the masked and compressed critics agree on the same masks
        values = {name: torch.cat(models[name].policy.critic(observations, torch.zeros(BATCH, 17)))
                  for name in ("masked", "sparse", "auto")}
    torch.testing.assert_close(values["sparse"], values["masked"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(values["auto"], values["masked"], rtol=1e-4, atol=1e-4)
    # Where auto compresses nothing it builds the masked model itself (same layers, same step code):
    # its time is the masked one's, and timing it again would only measure the machine's noise.
    auto_is_masked = not any(isinstance(module, CompressedLinear) for module in models["auto"].policy.modules())
    if auto_is_masked:
        del models["auto"]
    for model in models.values():  # warm-up: Adam's state, the hooks' cache, the allocator
        model.train(gradient_steps=2, batch_size=BATCH)
    times: dict[str, list[float]] = {name: [] for name in models}
    for round_index in range(rounds):
        for name in (list(models) if round_index % 2 == 0 else list(reversed(list(models)))):
            start = time.process_time()
            models[name].train(gradient_steps=STEPS_PER_ROUND, batch_size=BATCH)
            times[name].append((time.process_time() - start) / STEPS_PER_ROUND * 1000.0)
    medians = {name: statistics.median(values) for name, values in times.items()}
    memory = {name: tensor_bytes(model) for name, model in models.items()}
    if auto_is_masked:
        medians["auto"], memory["auto"] = medians["masked"], memory["masked"]
    return {"algo": algo, "width": width, "sparsity": sparsity, "step_ms": medians, "bytes": memory,
            "ratio": {name: medians[name] / medians["dense"] for name in VARIANTS},
            "memory_ratio": {name: memory[name] / memory["dense"] for name in VARIANTS},
            "auto_over_masked": medians["auto"] / medians["masked"], "auto_is_masked": auto_is_masked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", choices=sorted(ALGOS), default=sorted(ALGOS))
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.8, 0.9, 0.95, 0.98])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cells = []
    for algo in args.algos:
        for width in args.widths:
            for sparsity in args.sparsities:
                cells.append(measure(algo, width, sparsity, args.rounds))
                print(json.dumps(cells[-1]), flush=True)
    rows = [f"| {c['algo']} | {c['width']} | {c['sparsity']:g} | {c['step_ms']['dense']:.1f} | "
            + " | ".join(f"{c['ratio'][name]:.2f}" for name in ("masked", "sparse", "auto"))
            + f" | {c['auto_over_masked']:.2f}{' (same model)' if c['auto_is_masked'] else ''} | "
            + " | ".join(f"{c['memory_ratio'][name]:.2f}" for name in ("masked", "sparse", "auto")) + " |"
            for c in cells]
    write_record(args.output, "train_steps", {"cells": cells}, [
        "# SAC and TD3 gradient steps: dense, masked dense and compressed layers", "",
        f"`python -m benchmarks.bench_train_steps --algos {' '.join(args.algos)} --widths "
        f"{' '.join(map(str, args.widths))} --sparsities {' '.join(f'{s:g}' for s in args.sparsities)} --rounds "
        f"{args.rounds}`: {ENV_ID}'s spaces, net_arch [W, W], batch {BATCH}, one thread; CPU time per gradient step "
        f"(`model.train`), medians of {args.rounds} alternated rounds of {STEPS_PER_ROUND} steps. Ratios are against "
        "dense `MlpPolicy` in the same run; memory is policy + optimizer tensors (masked: plus the step hooks' cached "
        "float masks).", "",
        "| algo | width | sparsity | dense (ms) | masked / dense | sparse / dense | auto / dense | auto / masked "
        "| memory masked | memory sparse | memory auto |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
        "Variants: `masked` = `TarMlpPolicy` with `kernel='dense'` (masked dense layers), `sparse` = `kernel='sparse'`, "
        "`auto` = `kernel='auto'`; every ratio is against dense `MlpPolicy` in the same run, except `auto / masked`, "
        "which is the goal's (auto never slower than the dense kernel). Memory columns are ratios to dense "
        "`MlpPolicy` too. *Same model*: auto compressed no layer, so it built the masked model itself; it is not "
        "timed twice, and its figures are the masked one's.", ""])


if __name__ == "__main__":
    main()
