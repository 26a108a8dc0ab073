"""What a sparse agent reports through SB3's logger (stdout, CSV, TensorBoard), and the drift check.

Keys, one set per network (``actor``, ``qf0``, ``qf1``, ...):

- ``sparsity/<network>/sparsity``: fraction of the network's prunable weights that are zero; at
  training start from the mask, at each log interval measured on the weights;
- ``sparsity/<network>/revived``, ``sparsity/<network>/floor_deficit`` (edges short of the
  connectivity floor after static pruning, summed over layers), ``sparsity/<network>/isolated_units``
  (input and output units left without any kept edge, after revival), at training start;
- ``sparsity/<network>/density/<layer>``: each layer's density after revival, at training start
  (not printed to stdout).
"""

from __future__ import annotations

from stable_baselines3.common.logger import Logger

from sb3_tar.engine.compressed import CompressedLinear
from sb3_tar.sb3.agent import SparseAgent

PREFIX = "sparsity"


class MaskDriftError(RuntimeError):
    """A masked weight is no longer 0.0: the masks stopped holding."""


def record_topology(logger: Logger, agent: SparseAgent) -> None:
    """Record each network's sparsity and topology (call at training start)."""
    for name, plan in agent.plans().items():
        key = f"{PREFIX}/{name}"
        logger.record(f"{key}/sparsity", plan.sparsity)
        logger.record(f"{key}/revived", plan.revived)
        logger.record(f"{key}/floor_deficit", sum(layer.deficit for layer in plan.layers))
        logger.record(f"{key}/isolated_units",
                      sum(layer.isolated_inputs_after + layer.isolated_outputs_after for layer in plan.layers))
        for layer in plan.layers:
            logger.record(f"{key}/density/{layer.name.removesuffix('.weight')}", layer.density_after, exclude="stdout")


def check_masks(agent: SparseAgent) -> dict[str, float]:
    """Each network's measured sparsity; raises if a masked weight of it or its target is not 0.0.

    :raises MaskDriftError: naming the network, the weight and how many masked entries are non-zero.
    """
    sparsity = {}
    for network in agent.networks:
        nonzero = total = 0
        for where, weights in (("", agent.weights(network)), (" (target network)", agent.target_weights(network))):
            for name, weight in weights.items():
                drifted = int(weight.detach()[~agent.masks[name]].count_nonzero())
                if drifted:
                    raise MaskDriftError(
                        f"{drifted} masked weights of {name}{where} are non-zero: the {network.name} network has "
                        "drifted from its mask (were its weights changed outside the optimizer?)"
                    )
                if not where:
                    nonzero += int(weight.detach().count_nonzero())
                    total += weight.numel()
        for layer in network.module.modules():  # a compressed layer has no masked position to drift: count values
            if isinstance(layer, CompressedLinear):
                nonzero += int(layer.values.detach().count_nonzero())
                total += layer.out_features * layer.in_features
        sparsity[network.name] = 1.0 - nonzero / total  # as RevivalPlan.sparsity: 1 - kept / total
    return sparsity


def record_sparsity(logger: Logger, sparsity: dict[str, float]) -> None:
    """Record the measured sparsity of each network (call at each log interval)."""
    for name, value in sparsity.items():
        logger.record(f"{PREFIX}/{name}/sparsity", value)
