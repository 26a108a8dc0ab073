"""Topology-Aware Revival: give a few pruned connections back, where the topology needs them most."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from sb3_tar.engine.allocation import split_largest_remainder
from sb3_tar.engine.topk import sample_without_replacement

ALLOCATIONS = ("topology", "uniform")


def connectivity_floor(in_features: int, out_features: int) -> int:
    """Edges a random bipartite layer needs to be connected with high probability.

    The Erdős–Rényi threshold ``ceil(N ln N / 2)`` with ``N = in + out`` nodes, capped at the
    ``in * out`` edges the layer has.
    """
    if in_features < 1 or out_features < 1:
        raise ValueError(f"in_features={in_features} and out_features={out_features} must be >= 1")
    nodes = in_features + out_features
    return min(in_features * out_features, math.ceil(nodes * math.log(nodes) / 2))


def coverage_probability(pruned: int, needed: int, revived: int) -> float:
    """Chance that ``revived`` uniform draws from ``pruned`` positions hit at least one of ``needed``.

    ``1 - C(D - k, b) / C(D, b)``, computed as a product of ``k`` ratios so it stays exact-ish and
    fast for layers with millions of pruned weights.
    """
    if not 0 <= needed <= pruned or not 0 <= revived <= pruned:
        raise ValueError(
            f"coverage_probability needs 0 <= needed ({needed}) <= pruned ({pruned}) "
            f"and 0 <= revived ({revived}) <= pruned"
        )
    miss = 1.0
    for i in range(needed):
        miss *= (pruned - revived - i) / (pruned - i)
        if miss <= 0.0:
            return 1.0
    return 1.0 - miss


def topology_budgets(kept: Sequence[int], sizes: Sequence[int], floors: Sequence[int], budget: int) -> list[int]:
    """TAR's per-layer revival budgets: connectivity deficits first, the rest by connectivity demand.

    If the deficits exceed ``budget`` it is split in proportion to them; otherwise each deficit is
    filled and the remainder is split in proportion to the floors ``E_topo``, never beyond a layer's
    pruned count.
    """
    deficits = [max(0, floor - k) for floor, k in zip(floors, kept)]
    if budget <= sum(deficits):
        return split_largest_remainder(budget, deficits, deficits)
    room = [size - k - deficit for size, k, deficit in zip(sizes, kept, deficits)]
    extra = split_largest_remainder(budget - sum(deficits), floors, room)
    return [deficit + more for deficit, more in zip(deficits, extra)]


def revive_in_layers(masks: Sequence[torch.Tensor], budgets: Sequence[int], generator: torch.Generator) -> list[torch.Tensor]:
    """Turn on ``budgets[l]`` pruned positions of layer ``l``, drawn uniformly without replacement."""
    revived_masks = []
    for mask, budget in zip(masks, budgets):
        flat = mask.flatten().clone()
        pruned_positions = torch.nonzero(~flat).squeeze(1)
        flat[pruned_positions[sample_without_replacement(len(pruned_positions), budget, generator)]] = True
        revived_masks.append(flat.reshape(mask.shape))
    return revived_masks


def revive_uniformly(masks: Sequence[torch.Tensor], budget: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Uniform Revival ablation: ``budget`` positions drawn uniformly over all pruned weights of the network."""
    flat = torch.cat([mask.flatten() for mask in masks])
    pruned_positions = torch.nonzero(~flat).squeeze(1)
    flat[pruned_positions[sample_without_replacement(len(pruned_positions), budget, generator)]] = True
    return [piece.reshape(mask.shape) for piece, mask in zip(torch.split(flat, [m.numel() for m in masks]), masks)]
