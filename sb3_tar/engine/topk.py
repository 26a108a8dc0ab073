"""Scores to masks by exact top-k: counts are exact and ties break by position, never by chance."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the ``k`` largest entries of a 1-D ``scores``; among equal scores the earlier wins.

    Linear time (``kthvalue`` plus a cumulative sum) instead of a full sort.
    """
    n = scores.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    threshold = torch.kthvalue(scores, n - k + 1).values
    above = scores > threshold
    at_threshold = scores == threshold
    still_needed = k - int(above.sum())
    if int(at_threshold.sum()) == still_needed:  # the usual case: no tie to break
        return above | at_threshold
    return above | (at_threshold & (torch.cumsum(at_threshold, 0) <= still_needed))


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
