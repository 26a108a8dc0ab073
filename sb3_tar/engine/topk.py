"""Scores to masks by exact top-k: counts are exact and ties break by position, never by chance."""

from __future__ import annotations

from collections.abc import Sequence

import torch


SAMPLED_SELECTION_MIN = 200_000  # below this a plain kthvalue is already fast


def kth_largest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th largest value of a 1-D tensor (``1 <= k <= n``), exactly (see ``_kth_largest_of_pieces``)."""
    n = scores.numel()
    if n < SAMPLED_SELECTION_MIN:
        return torch.kthvalue(scores, n - k + 1).values
    return _kth_largest_of_pieces([scores], k, n)


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the ``k`` largest entries of a 1-D ``scores``; among equal scores the earlier wins.

    Linear time (a selection and one comparison) instead of a full sort.
    """
    n = scores.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    threshold = kth_largest(scores, k)
    mask = scores >= threshold  # exactly k in the usual case: one value at the threshold
    extra = int(mask.count_nonzero()) - k
    if extra > 0:  # ties at the threshold: the latest ones go, so the earliest win
        mask[torch.nonzero(scores == threshold).squeeze(1)[-extra:]] = False
    return mask


def top_k_masks(pieces: Sequence[torch.Tensor], k: int) -> list[torch.Tensor]:
    """``top_k_mask`` of the pieces' concatenation, piece by piece, without building the concatenation.

    For a network of large layers the copy into one tensor costs as much as the selection. The
    threshold is found as ``kth_largest`` finds it (a strided sample brackets it, the exact
    selection runs inside the bracket), then each piece keeps what exceeds it and the earliest ties
    in concatenation order. Equal to ``top_k_mask(torch.cat(pieces), k)`` split back into pieces.
    """
    flats = [piece.flatten() for piece in pieces]
    n = sum(flat.numel() for flat in flats)
    if n < SAMPLED_SELECTION_MIN or k <= 0 or k >= n:
        flat = top_k_mask(torch.cat(flats), k)
        return split_flat(flat, [piece.shape for piece in pieces])
    threshold = _kth_largest_of_pieces(flats, k, n)
    # At or above the threshold: exactly k in the usual case (one value at the threshold), so no pass for ties.
    at_least = [flat >= threshold for flat in flats]
    extra = sum(int(mask.count_nonzero()) for mask in at_least) - k
    for flat, mask in zip(reversed(flats), reversed(at_least)):  # too many ties: the latest ones go
        if extra <= 0:
            break
        ties = torch.nonzero(flat == threshold).squeeze(1)[-extra:]
        mask[ties] = False
        extra -= len(ties)
    return [mask.reshape(piece.shape) for mask, piece in zip(at_least, pieces)]


def _kth_largest_of_pieces(flats: list[torch.Tensor], k: int, n: int) -> torch.Tensor:
    """The ``k``-th largest value of the pieces' concatenation (``n`` values), exactly.

    A strided sample brackets the answer (Floyd-Rivest selection) and the exact selection runs only
    on the side of the data the answer lies in: one pass over the data instead of a full
    ``kthvalue``, whose copy and select dominate SynFlow's rounds. A bracket that misses falls back
    to ``kthvalue``, so the result never depends on the sample.
    """
    stride = max(1, n // 20_000)
    sample = torch.cat([flat[::stride] for flat in flats])
    m = sample.numel()
    position = k * m / n  # rank of the answer inside the sample, counted from the top
    margin = 4.0 * (position * max(0.0, 1.0 - position / m)) ** 0.5 + 8.0 + len(flats)
    ordered = torch.sort(sample, descending=True).values
    upper = ordered[max(0, int(position - margin))]
    lower = ordered[min(m - 1, int(position + margin))]
    if 2 * k <= n:  # the answer is among the few largest: keep the values at or above the bracket
        side = torch.cat([flat[flat >= lower] for flat in flats])
        inside = side[side <= upper]
        above_upper = side.numel() - inside.numel()
    else:  # among the many largest: keep the values at or below it, count the rest
        side = torch.cat([flat[flat <= upper] for flat in flats])
        inside = side[side >= lower]
        above_upper = n - side.numel()
    if above_upper < k <= above_upper + inside.numel():
        return torch.kthvalue(inside, inside.numel() - (k - above_upper) + 1).values
    everything = torch.cat(flats) if len(flats) > 1 else flats[0]
    return torch.kthvalue(everything, n - k + 1).values


def split_flat(flat: torch.Tensor, shapes: Sequence[torch.Size]) -> list[torch.Tensor]:
    """Cut a flat tensor into consecutive pieces of the given shapes."""
    sizes = [int(torch.Size(shape).numel()) for shape in shapes]
    return [piece.reshape(shape) for piece, shape in zip(torch.split(flat, sizes), shapes)]


def sample_without_replacement(population: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``count`` distinct items drawn uniformly from ``range(population)``.

    Float64 keys make ties practically impossible, and ``top_k_mask`` breaks any that occur by
    position, so the draw depends on the generator alone.
    """
    keys = torch.rand(population, generator=generator, dtype=torch.float64)
    return torch.nonzero(top_k_mask(keys, count)).squeeze(1)


REJECTION_SAMPLING_MIN = 200_000  # pruned positions from which drawing by rejection beats ranking random keys


def _first_distinct(values: torch.Tensor, count: int) -> torch.Tensor:
    """The first ``count`` distinct entries of ``values``, in the order they first occur."""
    unique, inverse = torch.unique(values, return_inverse=True)
    first = torch.full((len(unique),), len(values), dtype=torch.long).scatter_reduce_(
        0, inverse, torch.arange(len(values)), "amin")
    is_first = torch.zeros(len(values), dtype=torch.bool)
    is_first[first] = True  # boolean selection keeps the order of occurrence: no sort of the firsts needed
    return values[is_first][:count]


def sample_unmasked(mask: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Positions of ``count`` distinct ``False`` entries of a 1-D bool ``mask``, drawn uniformly.

    Few draws from many positions (a revival of 1-2 % of a wide layer) are taken by rejection:
    uniform positions of the whole mask, the ``True`` ones dropped, the first ``count`` distinct
    kept, which is a uniform draw without replacement that never lists the pruned positions. Other
    draws rank random keys over the listed positions (``sample_without_replacement``). Either way
    the draw depends on the generator alone.
    """
    size = mask.numel()
    free = size - int(mask.count_nonzero())
    if count > free:
        raise ValueError(f"cannot draw {count} positions from {free} unmasked ones")
    if free < REJECTION_SAMPLING_MIN or 4 * count > free:
        positions = torch.nonzero(~mask).squeeze(1)
        return positions[sample_without_replacement(len(positions), count, generator)]
    drawn = torch.empty(0, dtype=torch.long)
    chosen = drawn
    while len(chosen) < count:
        batch = int((count - len(chosen)) * size / free * 1.1) + 64
        candidates = torch.randint(size, (batch,), generator=generator)
        drawn = torch.cat([drawn, candidates[~mask[candidates]]])
        chosen = _first_distinct(drawn, count)
    return chosen
