"""Cost of one RigL mask update next to one SAC gradient step, HalfCheetah-sized (17 observations, 6 actions).

Run (from the repository root): python -m benchmarks.bench_dst_update [--widths 256 1024] [--rounds N]

One RigL update, as a DST callback would run it every ``update_interval`` gradient steps:
1. one batch of 256 from the replay buffer and SAC's critic and actor losses on it (the same maths
   as ``SAC.train``), one backward each for the dense gradients of all prunable weights;
2. ``dst_update`` on the masks of the actor and both Q-networks (ERK, sparsity 0.9, drop fraction 0.1);
3. ``apply_mask_update``: zero dropped and regrown weights, their Adam moments and target weights.
The SAC step is SB3's own ``model.train(gradient_steps=1, batch_size=256)``. Both run with one torch
thread, interleaved round by round so machine noise hits them alike; the figures are medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from stable_baselines3 import SAC

from benchmarks.environment import describe_environment
from benchmarks.shapes import HalfCheetahShapes
from sb3_tar import apply_mask_update, apply_masks, dense_gradients, dst_update, prune_and_revive

BATCH_SIZE = 256
BUFFER_SIZE = 5_000
SPARSITY = 0.9
DROP_FRACTION = 0.1
UPDATE_INTERVAL = 1_000
ROUNDS = {256: 300, 1024: 60}


def sparse_sac(width: int) -> tuple[SAC, dict[str, torch.Tensor]]:
    """A SAC model with a filled replay buffer, ERK-masked actor and Q-networks, and their masks."""
    model = SAC("MlpPolicy", HalfCheetahShapes(), policy_kwargs={"net_arch": [width, width]}, buffer_size=BUFFER_SIZE,
                learning_starts=BUFFER_SIZE, batch_size=BATCH_SIZE, device="cpu", seed=0)
    model.learn(BUFFER_SIZE)  # random actions only: training starts after learning_starts
    networks = {"actor": model.actor, "qf0": model.critic.q_networks[0], "qf1": model.critic.q_networks[1]}
    masks = {}
    for index, (network_name, network) in enumerate(networks.items()):
        plan = prune_and_revive(network, sparsity=SPARSITY, criterion="erk", seed=index)
        apply_masks(network, plan.masks)
        masks.update({f"{network_name}.{name}": mask for name, mask in plan.masks.items()})
    return model, masks


def sac_losses(model: SAC) -> tuple[torch.Tensor, torch.Tensor]:
    """SAC's critic and actor losses on one fresh batch, as ``SAC.train`` computes them."""
    data = model.replay_buffer.sample(BATCH_SIZE)
    actions_pi, log_prob = model.actor.action_log_prob(data.observations)
    ent_coef = torch.exp(model.log_ent_coef.detach())
    with torch.no_grad():
        next_actions, next_log_prob = model.actor.action_log_prob(data.next_observations)
        next_q = torch.cat(model.critic_target(data.next_observations, next_actions), dim=1).min(dim=1, keepdim=True)[0]
        next_q = next_q - ent_coef * next_log_prob.reshape(-1, 1)
        target_q = data.rewards + (1 - data.dones) * model.gamma * next_q
    critic_loss = 0.5 * sum(F.mse_loss(q, target_q) for q in model.critic(data.observations, data.actions))
    min_q_pi = torch.cat(model.critic(data.observations, actions_pi), dim=1).min(dim=1, keepdim=True)[0]
    actor_loss = (ent_coef * log_prob.reshape(-1, 1) - min_q_pi).mean()
    return critic_loss, actor_loss


class RigLUpdate:
    """One RigL update of the actor and both Q-networks, timed in its three parts."""

    def __init__(self, model: SAC, masks: dict[str, torch.Tensor]) -> None:
        self.model = model
        self.masks = masks
        online = {"actor": model.actor, "qf0": model.critic.q_networks[0], "qf1": model.critic.q_networks[1]}
        target = {"qf0": model.critic_target.q_networks[0], "qf1": model.critic_target.q_networks[1]}
        self.actor_weights, self.critic_weights, self.targets = {}, {}, {}
        for key in masks:
            network_name, name = key.split(".", 1)
            weights = self.actor_weights if network_name == "actor" else self.critic_weights
            weights[key] = online[network_name].get_parameter(name)
            if network_name in target:
                self.targets[key] = target[network_name].get_parameter(name)
        self.weights = {**self.actor_weights, **self.critic_weights}

    def __call__(self) -> dict[str, float]:
        start = time.perf_counter()
        critic_loss, actor_loss = sac_losses(self.model)
        gradients = dense_gradients(critic_loss, self.critic_weights)
        gradients.update(dense_gradients(actor_loss, self.actor_weights))
        gradient_done = time.perf_counter()
        update = dst_update(self.weights, self.masks, method="rigl", drop_fraction=DROP_FRACTION,
                            dense_gradients=gradients)
        update_done = time.perf_counter()
        apply_mask_update(self.weights, update, [self.model.actor.optimizer, self.model.critic.optimizer],
                          target_weights=self.targets)
        self.masks = update.masks
        done = time.perf_counter()
        return {"gradient_ms": (gradient_done - start) * 1e3, "dst_update_ms": (update_done - gradient_done) * 1e3,
                "apply_ms": (done - update_done) * 1e3, "rigl_ms": (done - start) * 1e3}


def time_sac_step(model: SAC) -> float:
    start = time.perf_counter()
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    return (time.perf_counter() - start) * 1e3


def measure(width: int, rounds: int) -> dict[str, object]:
    model, masks = sparse_sac(width)
    rigl_update = RigLUpdate(model, masks)
    for _ in range(3):  # warm-up: first calls pay for lazy initialisation and Adam's state
        time_sac_step(model)
        rigl_update()
    sac_ms, parts = [], []
    for _ in range(rounds):
        sac_ms.append(time_sac_step(model))
        parts.append(rigl_update())
    row: dict[str, object] = {"width": width, "rounds": rounds, "sac_step_ms": statistics.median(sac_ms)}
    for part in parts[0]:
        row[part] = statistics.median(p[part] for p in parts)
    row["rigl_over_sac_step"] = row["rigl_ms"] / row["sac_step_ms"]
    row["amortised_ms_per_step"] = row["rigl_ms"] / UPDATE_INTERVAL
    row["amortised_percent_of_sac_step"] = 100.0 * row["amortised_ms_per_step"] / row["sac_step_ms"]
    row["prunable_weights"] = sum(weight.numel() for weight in rigl_update.weights.values())
    print(f"width {width:5d}  SAC step {row['sac_step_ms']:8.2f} ms  RigL update {row['rigl_ms']:8.2f} ms "
          f"(gradient {row['gradient_ms']:.2f}, dst_update {row['dst_update_ms']:.2f}, apply {row['apply_ms']:.2f})  "
          f"ratio {row['rigl_over_sac_step']:.2f}  amortised {row['amortised_percent_of_sac_step']:.3f} %")
    return row


def write_results(rows: list[dict[str, object]], output: Path) -> None:
    command = " ".join(["python -m benchmarks.bench_dst_update", *sys.argv[1:]])
    environment = {**describe_environment(), "command": command}
    output.mkdir(parents=True, exist_ok=True)
    (output / "dst_update.json").write_text(json.dumps({"environment": environment, "rows": rows}, indent=2))
    lines = [
        "# One RigL mask update vs one SAC gradient step",
        "",
        f"SAC (SB3 `MlpPolicy`, `net_arch=[W, W]`), HalfCheetah sizes (17 observations, 6 actions), batch {BATCH_SIZE}, "
        f"replay buffer of {BUFFER_SIZE} random transitions, one torch thread. Actor and both Q-networks ERK-masked "
        f"at sparsity {SPARSITY}.",
        "",
        "- RigL update: one extra batch through SAC's critic and actor losses and one backward each for the dense "
        f"gradients (`dense_gradients`), then `dst_update(method='rigl', drop_fraction={DROP_FRACTION})` on all 10 "
        "prunable weight matrices (actor 4, each Q-network 3), then `apply_mask_update` (weights, Adam "
        "`exp_avg`/`exp_avg_sq`, critic target weights).",
        "- SAC step: SB3's own `model.train(gradient_steps=1, batch_size=256)`, without mask enforcement (which adds "
        "about 0.3 %, DESIGN.md section 3).",
        f"- Both interleaved round by round; medians in ms. Amortised = RigL update / update_interval ({UPDATE_INTERVAL}).",
        "",
        *[f"- {key}: `{value}`" for key, value in environment.items()],
        "",
        "| width | prunable weights | rounds | SAC step | RigL update | dense gradient | dst_update | apply | "
        "RigL / SAC step | amortised per step | amortised % of SAC step |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r['width']} | {r['prunable_weights']} | {r['rounds']} | {r['sac_step_ms']:.2f} | {r['rigl_ms']:.2f} | "
            f"{r['gradient_ms']:.2f} | {r['dst_update_ms']:.2f} | {r['apply_ms']:.2f} | {r['rigl_over_sac_step']:.2f} | "
            f"{r['amortised_ms_per_step']:.4f} | {r['amortised_percent_of_sac_step']:.3f} % |"
            for r in rows
        ],
        "",
    ]
    (output / "dst_update.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--rounds", type=int, help=f"rounds per width (default: {ROUNDS}, else 20)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(width, args.rounds or ROUNDS.get(width, 20)) for width in args.widths]
    write_results(rows, args.output)


if __name__ == "__main__":
    main()
