"""*How many* weights each layer gets: exact integer splits and Erdős–Rényi-Kernel densities."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from sb3_tar.engine.errors import UserError


def split_largest_remainder(total: int, weights: Sequence[float], capacities: Sequence[int]) -> list[int]:
    """Split ``total`` units in proportion to ``weights`` so the parts sum to ``total`` exactly.

    No part exceeds its capacity: a capped part's overflow is re-split over the others. Fractions
    are rounded by the largest-remainder method, ties going to the earlier part, so the split is
    deterministic. Exact rational arithmetic keeps float error out of the counts.

    :param total: units to hand out, at most ``sum(capacities)``.
    :param weights: non-negative shares; if every open part has weight 0, room decides instead.
    :param capacities: most units each part can take.
    """
    if total < 0 or total > sum(capacities):
        raise UserError(f"total={total} must lie in [0, sum(capacities)={sum(capacities)}]")
    parts = [0] * len(capacities)
    remaining = total
    open_parts = [i for i, capacity in enumerate(capacities) if capacity > 0]
    while remaining > 0:
        shares = {i: Fraction(weights[i]) for i in open_parts}
        if sum(shares.values()) <= 0:
            shares = {i: Fraction(capacities[i] - parts[i]) for i in open_parts}
        share_sum = sum(shares.values())
        quotas = {i: remaining * share / share_sum for i, share in shares.items()}
        capped = [i for i in open_parts if parts[i] + quotas[i] >= capacities[i]]
        if capped:
            for i in capped:
                remaining -= capacities[i] - parts[i]
                parts[i] = capacities[i]
            open_parts = [i for i in open_parts if i not in capped]
            continue
        floors = {i: math.floor(quota) for i, quota in quotas.items()}
        for i in open_parts:
            parts[i] += floors[i]
        leftover = remaining - sum(floors.values())
        by_remainder = sorted(open_parts, key=lambda i: (-(quotas[i] - floors[i]), i))
        for i in by_remainder[:leftover]:
            parts[i] += 1
        remaining = 0
    return parts


def erk_densities(shapes: Sequence[tuple[int, int]], density: float) -> list[float]:
    """Erdős–Rényi-Kernel densities of dense layers whose weighted mean is ``density``.

    Layer ``l`` of shape ``(in_l, out_l)`` gets ``d_l = eps * (in_l + out_l) / (in_l * out_l)``; a
    layer whose density would exceed 1 is made dense and ``eps`` is re-solved for the rest (the
    RigL procedure). Small layers thus stay denser than wide ones.

    :param shapes: ``(in_features, out_features)`` of each layer.
    :param density: fraction of all weights kept, in [0, 1].
    """
    if not 0.0 <= density <= 1.0:
        raise UserError(f"density must be in [0, 1], got {density}")
    sizes = [fan_in * fan_out for fan_in, fan_out in shapes]
    raw = [(fan_in + fan_out) / (fan_in * fan_out) for fan_in, fan_out in shapes]
    dense: set[int] = set()
    while True:
        sparse = [i for i in range(len(shapes)) if i not in dense]
        if not sparse:
            return [1.0] * len(shapes)
        budget = density * sum(sizes) - sum(sizes[i] for i in dense)
        eps = budget / sum(raw[i] * sizes[i] for i in sparse)
        # Making one layer dense only raises eps, so every layer over 1 now stays over 1.
        overflowing = [i for i in sparse if eps * raw[i] > 1.0]
        if not overflowing:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]
        dense.update(overflowing)
