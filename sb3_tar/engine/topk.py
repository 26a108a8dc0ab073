"""Scores to masks by exact top-k: counts are exact and ties break by position, never by chance."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from sb3_tar.engine.errors import UserError

SAMPLED_SELECTION_MIN = 200_000  # below this a plain kthvalue is already fast


def kth_largest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th largest value of a 1-D tensor (``1 <= k <= n``), exactly (see ``_kth_largest_of_pieces``)."""
    n = scores.numel()
    if n < SAMPLED_SELECTION_MIN:
        return torch.kthvalue(scores, n - k + 1).values
    return _kth_largest_of_pieces(_ChunkedScores([scores], absolute=False), k, n)


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


def top_k_masks(pieces: Sequence[torch.Tensor], k: int, *, absolute: bool = False) -> list[torch.Tensor]:
    """``top_k_mask`` of the pieces' concatenation, piece by piece, without building the concatenation.

    For a network of large layers, copies cost as much as the selection: a strided sample brackets
    the threshold, one pass marks every score above the bracket and keeps those inside it with their
    positions, and the exact selection among those few decides the rest (the earliest ties in
    concatenation order win). The pass scores a chunk at a time into one reused buffer, so no
    layer-sized temporary is made.
    Equal to ``top_k_mask(torch.cat(pieces), k)`` split back into pieces.

    :param absolute: rank ``|piece|`` (magnitude pruning) without making a copy of it.
    """
    flats = [piece.detach().flatten() for piece in pieces]
    n = sum(flat.numel() for flat in flats)
    if n < SAMPLED_SELECTION_MIN or k <= 0 or k >= n:
        flat = torch.cat(flats)
        return split_flat(top_k_mask(flat.abs() if absolute else flat, k), [piece.shape for piece in pieces])
    scores = _ChunkedScores(flats, absolute)
    at_least = [torch.empty(flat.numel(), dtype=torch.bool, device=flat.device) for flat in flats]
    # What is above the bracket is kept, written straight into the masks.
    above_upper, inside, inside_places = _bracket_pass(scores, *_bracket(scores, k, n), at_least)
    if above_upper < k <= above_upper + inside.numel():
        threshold = torch.kthvalue(inside, inside.numel() - (k - above_upper) + 1).values
        keep = inside > threshold
        ties = torch.nonzero(inside == threshold).squeeze(1)
        keep[ties[:k - above_upper - int(keep.count_nonzero())]] = True  # the earliest ties win
        offset = 0
        for index, positions in inside_places:
            at_least[index][positions[keep[offset:offset + positions.numel()]]] = True
            offset += positions.numel()
        return [mask.reshape(piece.shape) for mask, piece in zip(at_least, pieces)]
    # The bracket missed (the sample was unlucky): the threshold from all values, then the masks anew.
    threshold = torch.kthvalue(scores.concatenated(), n - k + 1).values
    for index, start, chunk in scores:
        torch.ge(chunk, threshold, out=at_least[index][start:start + chunk.numel()])
    extra = sum(int(mask.count_nonzero()) for mask in at_least) - k
    for index in reversed(range(len(flats))):  # too many ties: the latest ones go
        if extra <= 0:
            break
        ties = torch.cat([torch.nonzero(chunk == threshold).squeeze(1) + start
                          for _, start, chunk in scores.of_piece(index)])[-extra:]
        at_least[index][ties] = False
        extra -= len(ties)
    return [mask.reshape(piece.shape) for mask, piece in zip(at_least, pieces)]


SCORE_CHUNK = 1 << 22  # values scored at a time: few enough chunks that a busy machine's thread hand-offs stay cheap


class _ChunkedScores:
    """The scores of flat pieces (the values, or their magnitudes), read a chunk at a time.

    Iterating yields ``(piece index, start, scores of flat[start:start + len])``; a magnitude is
    written into one reused buffer, valid until the next chunk is read.
    """

    def __init__(self, flats: list[torch.Tensor], absolute: bool) -> None:
        self.flats = flats
        self.absolute = absolute
        size = min(SCORE_CHUNK, max(flat.numel() for flat in flats))
        self.buffer = torch.empty(size, dtype=flats[0].dtype, device=flats[0].device) if absolute else None

    def of_piece(self, index: int) -> Iterator[tuple[int, int, torch.Tensor]]:
        flat = self.flats[index]
        for start in range(0, flat.numel(), SCORE_CHUNK):
            chunk = flat[start:start + SCORE_CHUNK]
            if self.buffer is not None:
                chunk = torch.abs(chunk, out=self.buffer[:chunk.numel()])
            yield index, start, chunk

    def __iter__(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        for index in range(len(self.flats)):
            yield from self.of_piece(index)

    def sample(self, stride: int) -> torch.Tensor:
        sample = torch.cat([flat[::stride] for flat in self.flats])
        return sample.abs() if self.absolute else sample

    def concatenated(self) -> torch.Tensor:
        flat = torch.cat(self.flats)
        return flat.abs() if self.absolute else flat


def _bracket(scores: _ChunkedScores, k: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lower, upper)`` that hold the ``k``-th largest score with near certainty, from a strided sample."""
    stride = max(1, n // 20_000)
    sample = scores.sample(stride)
    m = sample.numel()
    position = k * m / n  # rank of the answer inside the sample, counted from the top
    margin = 4.0 * (position * max(0.0, 1.0 - position / m)) ** 0.5 + 8.0 + len(scores.flats)
    ordered = torch.sort(sample, descending=True).values
    return ordered[min(m - 1, int(position + margin))], ordered[max(0, int(position - margin))]


def _bracket_pass(scores: _ChunkedScores, lower: torch.Tensor, upper: torch.Tensor,
                  above_out: list[torch.Tensor] | None = None) -> tuple[int, torch.Tensor, list[tuple[int, torch.Tensor]]]:
    """One pass over the scores: how many lie above the bracket, and those inside it with their places.

    :param above_out: per piece, a flat bool tensor to mark the scores above the bracket in.
    :returns: ``(count above, the scores inside in concatenation order, [(piece index, positions)] per chunk)``.
    """
    above_upper, inside_values, inside_places = 0, [], []
    for index, start, chunk in scores:
        out = None if above_out is None else above_out[index][start:start + chunk.numel()]
        above = torch.gt(chunk, upper, out=out)
        above_upper += int(above.count_nonzero())
        positions = torch.nonzero((chunk >= lower).logical_and_(chunk <= upper)).squeeze(1)
        inside_values.append(chunk.index_select(0, positions))
        inside_places.append((index, positions.add_(start)))
    return above_upper, torch.cat(inside_values), inside_places


def _kth_largest_of_pieces(scores: _ChunkedScores, k: int, n: int) -> torch.Tensor:
    """The ``k``-th largest of the scores (``n`` values in all), exactly.

    A strided sample brackets the answer (Floyd-Rivest selection), one pass over the data counts the
    values above the bracket and keeps those inside it, and the exact selection runs on those few:
    instead of a full ``kthvalue``, whose copy and select dominate SynFlow's rounds. A bracket that
    misses falls back to ``kthvalue``, so the result never depends on the sample.
    """
    above_upper, inside, _ = _bracket_pass(scores, *_bracket(scores, k, n))
    if above_upper < k <= above_upper + inside.numel():
        return torch.kthvalue(inside, inside.numel() - (k - above_upper) + 1).values
    return torch.kthvalue(scores.concatenated(), n - k + 1).values


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
        raise UserError(f"cannot draw {count} positions from {free} unmasked ones")
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
