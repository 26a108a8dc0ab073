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


def recurrent_weights(policy: Any) -> dict[str, int]:
    """RecurrentPPO's dense recurrent weights: the actor's LSTM, the critic's LSTM (or the linear layer
    that stands in for it); empty for a policy without them. Biases are left out, as for every layer."""
    if getattr(policy, "lstm_actor", None) is None:
        return {}
    counts = {}
    for role, names in (("actor", ("lstm_actor",)), ("critic", ("lstm_critic", "critic"))):
        module = next((getattr(policy, name) for name in names if getattr(policy, name, None) is not None), None)
        if module is not None:
            counts[role] = sum(weight.numel() for name, weight in module.named_parameters() if "weight" in name)
    return counts


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
    cost = cost_summary(algo, kept, training_batch_size(model), recurrent=recurrent_weights(model.policy))
    return {"kept_weights": kept, "plans": plans, "cost": cost}
