"""What a trained model tells a report: kept weights per network, topology plans, and FLOPs."""

from __future__ import annotations

from typing import Any

from sb3_tar.engine import prunable_layers
from sb3_tar.experiments.cost import cost_summary
from sb3_tar.sb3 import find_networks, sparse_agent


def kept_weights(policy: Any) -> dict[str, int]:
    """Non-zero prunable weights per network (``actor``, ``qf0``, ``critic``, ``q_net``, ...) of an SB3 policy."""
    return {network.name: sum(int(layer.weight.count_nonzero()) for layer in prunable_layers(network.module))
            for network in find_networks(policy)}


def training_batch_size(model: Any) -> int:
    """Samples in one gradient step: ``batch_size`` (off-policy, DQN, PPO's minibatch), else A2C's whole rollout."""
    return int(getattr(model, "batch_size", None) or model.n_steps * model.n_envs)


def inspect_model(algo: str, model: Any) -> dict[str, Any]:
    """Kept weights per network (non-zero after training), the networks' ``RevivalPlan``s if sparse, the cost."""
    kept = kept_weights(model.policy)
    try:
        plans = sparse_agent(model).plans()
    except ValueError:  # a dense model has no masks
        plans = {}
    return {"kept_weights": kept, "plans": plans, "cost": cost_summary(algo, kept, training_batch_size(model))}
