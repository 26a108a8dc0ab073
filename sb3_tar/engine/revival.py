"""Topology-Aware Revival: give a few pruned connections back, where the topology needs them most."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from sb3_tar.engine.allocation import split_largest_remainder
from sb3_tar.engine.errors import UserError
from sb3_tar.engine.masking import any_kept
from sb3_tar.engine.topk import sample_unmasked

ALLOCATIONS = ("topology", "uniform")


def connectivity_floor(in_features: int, out_features: int) -> int:
    """Edges a random bipartite layer needs to be connected with high probability.

    The Erdős–Rényi threshold ``ceil(N ln N / 2)`` with ``N = in + out`` nodes, capped at the
    ``in * out`` edges the layer has.
    """
    if in_features < 1 or out_features < 1:
        raise UserError(f"in_features={in_features} and out_features={out_features} must be >= 1")
    nodes = in_features + out_features
    return min(in_features * out_features, math.ceil(nodes * math.log(nodes) / 2))


def coverage_probability(pruned: int, needed: int, revived: int) -> float:
    """Chance that ``revived`` uniform draws from ``pruned`` positions hit at least one of ``needed``.

    ``1 - C(D - k, b) / C(D, b)``, computed as a product of ``k`` ratios so it stays exact-ish and
    fast for layers with millions of pruned weights.
    """
    if not 0 <= needed <= pruned or not 0 <= revived <= pruned:
        raise UserError(
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
        flat[sample_unmasked(flat, budget, generator)] = True
        revived_masks.append(flat.reshape(mask.shape))
    return revived_masks


def revive_uniformly(masks: Sequence[torch.Tensor], budget: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Uniform Revival ablation: ``budget`` positions drawn uniformly over all pruned weights of the network."""
    flat = torch.cat([mask.flatten() for mask in masks])
    flat[sample_unmasked(flat, budget, generator)] = True
    return [piece.reshape(mask.shape) for piece, mask in zip(torch.split(flat, [m.numel() for m in masks]), masks)]


def chain_producers(count: int) -> list[int | None]:
    """The producers of a plain MLP: layer ``l`` reads layer ``l - 1``'s outputs, the first the network's input."""
    return [None, *range(count - 1)]


def _unconnected_units(masks: Sequence[torch.Tensor], producers: Sequence[int | None]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer: its output units with no kept input (all-zero rows), and the hidden units it must give an output.

    A hidden unit (an output of a producer layer) has an output if any layer that reads it keeps a
    weight in its column; one that has none is assigned to the first such layer. The network's own
    inputs (columns of layers that read no producer) need no output.
    """
    consumers: dict[int, list[int]] = {}
    for index, producer in enumerate(producers):
        if producer is not None:
            consumers.setdefault(producer, []).append(index)
    rows = [torch.nonzero(~any_kept(mask, dim=1)).squeeze(1) for mask in masks]
    columns = [torch.empty(0, dtype=torch.long) for _ in masks]
    for users in consumers.values():
        used = torch.stack([any_kept(masks[user], dim=0) for user in users]).any(dim=0)
        columns[users[0]] = torch.nonzero(~used).squeeze(1)
    return list(zip(rows, columns))


def repair_bounds(masks: Sequence[torch.Tensor], producers: Sequence[int | None]) -> list[int]:
    """The most weights ``connect_isolated_units`` can add to each layer of these (static) masks."""
    return [max(len(rows), len(columns)) for rows, columns in _unconnected_units(masks, producers)]


def connect_isolated_units(
    masks: Sequence[torch.Tensor], producers: Sequence[int | None], generator: torch.Generator
) -> tuple[list[torch.Tensor], list[int]]:
    """TAR's connectivity repair: give every unit left without an input or an output one connection.

    In each layer, the output units with no kept input and the hidden units with no kept output
    (``_unconnected_units``) are paired at random, one new weight per pair; an unpaired row gets a
    random column, an unpaired column a random row. So each layer gets ``max(rows, columns)`` new
    weights, every one a pruned position, and afterwards every unit lies on a path from the
    network's input to its output (every layer keeps a weight).

    :param masks: the masks after revival, in layer order.
    :param producers: per layer, the index of the layer whose outputs it reads (``None``: the input).
    :returns: the repaired masks (a mask with nothing to repair is returned as is, not copied) and,
        per layer, how many weights the repair added.
    """
    repaired_masks, added = [], []
    for mask, (rows, columns) in zip(masks, _unconnected_units(masks, producers)):
        out_features, in_features = mask.shape
        rows = rows[torch.randperm(len(rows), generator=generator)]
        columns = columns[torch.randperm(len(columns), generator=generator)]
        paired = min(len(rows), len(columns))
        spare_rows, spare_columns = rows[paired:], columns[paired:]
        row_index = torch.cat([rows[:paired], spare_rows,
                               torch.randint(out_features, (len(spare_columns),), generator=generator)])
        column_index = torch.cat([columns[:paired], torch.randint(in_features, (len(spare_rows),), generator=generator),
                                  spare_columns])
        if len(row_index):
            mask = mask.clone()
            mask[row_index, column_index] = True
        repaired_masks.append(mask)
        added.append(len(row_index))
    return repaired_masks, added
