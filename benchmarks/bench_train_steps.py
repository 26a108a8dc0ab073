"""SAC and TD3 gradient steps with a frozen sparse mask: dense ``MlpPolicy``, sb3-tar's masked dense layers, compressed layers.

Run (from the repository root): python -m benchmarks.bench_train_steps [--algos sac td3]
    [--widths 256 1024 2048] [--sparsities 0.8 0.9 0.95 0.98] [--rounds 5]

Part 2 of ``benchmarks/bench_train_kernels.py`` (part 1 times one MLP): whole SB3 gradient steps
(``model.train``: actor and critic losses, both optimizers, Polyak updates) on Humanoid-v4's spaces
(376 observations, 17 actions), ``net_arch=[W, W]``, batch 256, one torch thread, a replay buffer of
random transitions. Three variants per cell, timed in alternated rounds in one process:

- ``dense``: SB3's ``MlpPolicy``;
- ``masked``: ``TarMlpPolicy`` at the sparsity (TAR at the default recovery ratio), as sb3-tar
  trains today: dense layers, masks multiplied into weights and Adam's moments after each step;
- ``compressed``: the same ``TarMlpPolicy`` model (same masks) with every pruned layer of every
  network and target replaced by ``CompressedLinear`` (``compress_linear_layers``), its step hooks
  removed and its optimizers rebuilt over the new parameters: what ``kernel="sparse"`` will train.

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

import sb3_tar
from benchmarks.environment import describe_environment, environment_markdown
from sb3_tar.engine.compressed import compress_linear_layers
from sb3_tar.engine.layers import prunable_layers
from sb3_tar.sb3.masking import enforcement_of
from sb3_tar.sb3.networks import find_networks

ALGOS = {"sac": SAC, "td3": TD3}
ENV_ID = "Humanoid-v4"
BATCH = 256
STEPS_PER_ROUND = 5


def build(algo: str, policy: str, width: int, sparsity: float):
    kwargs = {"net_arch": [width, width], **({"sparsity": sparsity} if policy == "TarMlpPolicy" else {})}
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


def compress(model) -> None:
    """Swap every pruned layer (and its target copy) for ``CompressedLinear``; drop the step hooks; rebuild optimizers."""
    policy = model.policy
    masks = sb3_tar.sparse_agent(model).masks
    observations = torch.randn(BATCH, *model.observation_space.shape)
    actions = torch.rand(BATCH, *model.action_space.shape) * 2 - 1
    with torch.no_grad():
        before = torch.cat(policy.critic(observations, actions))
    for network in find_networks(policy):
        enforcement = enforcement_of(network.optimizer)
        if enforcement is not None:
            enforcement.remove()
        layer_masks = {layer.name: masks[network.weight_name(layer.name)] for layer in prunable_layers(network.module)}
        compress_linear_layers(network.module, layer_masks)
        if network.target is not None:
            compress_linear_layers(network.target, layer_masks)
    learning_rate = model.lr_schedule(1)
    policy.actor.optimizer = policy.optimizer_class(policy.actor.parameters(), lr=learning_rate,
                                                    **policy.optimizer_kwargs)
    critic_parameters = [p for n, p in policy.critic.named_parameters() if "features_extractor" not in n]
    policy.critic.optimizer = policy.optimizer_class(critic_parameters, lr=learning_rate, **policy.optimizer_kwargs)
    with torch.no_grad():
        after = torch.cat(policy.critic(observations, actions))
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)  # the same function, compressed


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
    models = {"dense": build(algo, "MlpPolicy", width, sparsity), "masked": build(algo, "TarMlpPolicy", width, sparsity),
              "compressed": build(algo, "TarMlpPolicy", width, sparsity)}
    compress(models["compressed"])
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
    return {"algo": algo, "width": width, "sparsity": sparsity, "step_ms": medians, "bytes": memory,
            "ratio_masked": medians["masked"] / medians["dense"],
            "ratio_compressed": medians["compressed"] / medians["dense"],
            "memory_ratio_masked": memory["masked"] / memory["dense"],
            "memory_ratio_compressed": memory["compressed"] / memory["dense"]}


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
    environment = describe_environment()
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "train_steps.json").write_text(json.dumps({"cells": cells, "environment": environment},
                                                             indent=2) + "\n")
    rows = [f"| {c['algo']} | {c['width']} | {c['sparsity']:g} | {c['step_ms']['dense']:.1f} | "
            f"{c['step_ms']['masked']:.1f} | {c['step_ms']['compressed']:.1f} | {c['ratio_masked']:.2f} | "
            f"{c['ratio_compressed']:.2f} | {c['memory_ratio_masked']:.2f} | {c['memory_ratio_compressed']:.2f} |"
            for c in cells]
    (args.output / "train_steps.md").write_text("\n".join([
        "# SAC and TD3 gradient steps: dense, masked dense and compressed layers", "",
        f"`python -m benchmarks.bench_train_steps --algos {' '.join(args.algos)} --widths "
        f"{' '.join(map(str, args.widths))} --sparsities {' '.join(f'{s:g}' for s in args.sparsities)} --rounds "
        f"{args.rounds}`: {ENV_ID}'s spaces, net_arch [W, W], batch {BATCH}, one thread; CPU time per gradient step "
        f"(`model.train`), medians of {args.rounds} alternated rounds of {STEPS_PER_ROUND} steps. Ratios are against "
        "dense `MlpPolicy` in the same run; memory is policy + optimizer tensors (masked: plus the step hooks' cached "
        "float masks).", "",
        "| algo | width | sparsity | dense (ms) | masked (ms) | compressed (ms) | masked / dense | compressed / dense "
        "| memory masked / dense | memory compressed / dense |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
        "## Where it ran", "", environment_markdown(environment), ""]))


if __name__ == "__main__":
    main()
