"""What a saved model tells a report: kept weights per network, topology, and FLOPs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sb3_tar.engine import prunable_layers, topology_report
from sb3_tar.experiments.cost import cost_summary
from sb3_tar.sb3 import find_networks, sparse_agent


def kept_weights(policy: Any) -> dict[str, int]:
    """Non-zero prunable weights per network (``actor``, ``qf0``, ...) of an SB3 off-policy policy."""
    return {network.name: sum(int(layer.weight.count_nonzero()) for layer in prunable_layers(network.module))
            for network in find_networks(policy)}


def inspect_saved_model(algo: str, model_path: Path, batch_size: int) -> dict[str, Any]:
    """Kept weights per network (non-zero after training), their topology reports if sparse, and the cost."""
    from rl_zoo3.utils import ALGOS

    model = ALGOS[algo].load(model_path, device="cpu")
    kept = kept_weights(model.policy)
    try:
        topology = {name: topology_report(plan) for name, plan in sparse_agent(model).plans().items()}
    except ValueError:  # a dense model has no masks
        topology = {}
    return {"num_timesteps": int(model.num_timesteps), "kept_weights": kept, "topology": topology,
            "cost": cost_summary(algo, kept, batch_size)}
