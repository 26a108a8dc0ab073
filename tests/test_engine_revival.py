"""The revival maths: connectivity floor, coverage probability, and TAR's per-layer budgets."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sb3_tar import connectivity_floor, coverage_probability, top_k_mask
from sb3_tar.engine.revival import revive_in_layers, revive_uniformly, topology_budgets
from sb3_tar.engine.topk import sample_unmasked, top_k_masks


def test_connectivity_floor_is_the_erdos_renyi_threshold():
    nodes = 376 + 256
    assert connectivity_floor(376, 256) == math.ceil(nodes * math.log(nodes) / 2)


def test_connectivity_floor_is_capped_at_the_layer_size():
    assert connectivity_floor(2, 1) == 2
    assert connectivity_floor(1, 1) == 1


def test_coverage_probability_matches_the_binomial_formula():
    assert coverage_probability(10, 2, 3) == pytest.approx(1 - math.comb(8, 3) / math.comb(10, 3))
    assert coverage_probability(1000, 1, 10) == pytest.approx(0.01)
    assert coverage_probability(10, 3, 8) == 1.0
    assert coverage_probability(10, 0, 5) == 0.0


@given(st.integers(1, 60), st.data())
def test_coverage_probability_agrees_with_exact_combinatorics(pruned, data):
    needed = data.draw(st.integers(0, pruned))
    revived = data.draw(st.integers(0, pruned))
    exact = 1 - math.comb(pruned - needed, revived) / math.comb(pruned, revived)
    assert coverage_probability(pruned, needed, revived) == pytest.approx(exact, abs=1e-12)


def test_coverage_probability_rejects_impossible_counts():
    with pytest.raises(ValueError, match="needed"):
        coverage_probability(5, 6, 1)


def test_deficits_are_served_first_and_the_rest_follows_the_floors():
    # Layer 0 is 100 short of its floor; the other 50 go 1:3 by floor (12.5 : 37.5, tie to the first).
    budgets = topology_budgets(kept=[0, 500], sizes=[1000, 1000], floors=[100, 300], budget=150)
    assert budgets == [100 + 13, 37]


def test_a_budget_smaller_than_the_deficits_is_split_in_proportion_to_them():
    assert topology_budgets(kept=[0, 0], sizes=[1000, 1000], floors=[300, 100], budget=40) == [30, 10]


def test_no_layer_gets_more_than_it_has_pruned():
    budgets = topology_budgets(kept=[95, 0], sizes=[100, 1000], floors=[100, 10], budget=500)
    assert budgets[0] <= 5
    assert sum(budgets) == 500


def test_layer_revival_only_adds_the_budgeted_pruned_positions():
    generator = torch.Generator().manual_seed(0)
    masks = [torch.rand(20, 30, generator=generator) < 0.1, torch.rand(5, 20, generator=generator) < 0.1]
    revived = revive_in_layers(masks, [7, 3], torch.Generator().manual_seed(1))
    for before, after, budget in zip(masks, revived, [7, 3]):
        assert torch.all(after[before])
        assert int(after.sum()) - int(before.sum()) == budget


def test_uniform_revival_spreads_one_budget_over_the_whole_network():
    masks = [torch.zeros(10, 10, dtype=torch.bool), torch.zeros(10, 90, dtype=torch.bool)]
    revived = revive_uniformly(masks, 100, torch.Generator().manual_seed(0))
    assert sum(int(mask.sum()) for mask in revived) == 100
    # With a uniform draw the larger layer gets most of the budget (expected 90 of 100).
    assert int(revived[1].sum()) > int(revived[0].sum())


@settings(max_examples=15, deadline=None)
@given(st.integers(200_000, 400_000), st.floats(0.0, 1.0), st.integers(1, 50), st.integers(0, 2**31))
def test_sampled_selection_picks_exactly_the_top_k_with_ties_broken_by_position(n, fraction, levels, seed):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (n,), generator=generator).double() + torch.rand(n, generator=generator).double() * (levels > 40)
    k = max(1, min(n - 1, round(fraction * n)))
    mask = top_k_mask(scores, k)
    assert int(mask.sum()) == k
    order = torch.sort(-scores, stable=True).indices  # descending, earlier position first on ties
    assert torch.equal(torch.nonzero(mask).squeeze(1), torch.sort(order[:k]).values)


@pytest.mark.parametrize("size", [1_000, 1_000_000])  # below and above the rejection sampler's threshold
def test_sampling_unmasked_positions_draws_exactly_count_distinct_free_positions_reproducibly(size):
    generator = torch.Generator().manual_seed(0)
    mask = torch.rand(size, generator=generator) < 0.9  # 10 % free, as after pruning at 0.9
    count = int(0.01 * size)
    first = sample_unmasked(mask, count, torch.Generator().manual_seed(1))
    assert len(first) == count == len(torch.unique(first))
    assert not mask[first].any()
    assert torch.equal(first, sample_unmasked(mask, count, torch.Generator().manual_seed(1)))
    assert not torch.equal(first, sample_unmasked(mask, count, torch.Generator().manual_seed(2)))


def test_rejection_sampling_is_uniform_over_the_free_positions():
    mask = torch.zeros(400_000, dtype=torch.bool)
    mask[::2] = True  # 200,000 free positions: the rejection sampler
    hits = torch.zeros(400_000)
    for seed in range(40):
        hits[sample_unmasked(mask, 20_000, torch.Generator().manual_seed(seed))] += 1
    free = hits[~mask]
    assert hits[mask].sum() == 0
    # 40 draws of 10 % each: every free position is hit 4 times on average; quarters of the range alike.
    quarters = free.reshape(4, -1).sum(dim=1) / free.sum()
    assert torch.allclose(quarters, torch.full((4,), 0.25), atol=0.01)
    assert abs(float(free.mean()) - 4.0) < 1e-6 and 1.8 < float(free.var()) < 4.2  # binomial(40, 0.1): 3.6


def test_drawing_more_than_the_free_positions_is_refused():
    with pytest.raises(ValueError, match="cannot draw 3 positions from 2 unmasked ones"):
        sample_unmasked(torch.tensor([True, False, False]), 3, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("ties", [False, True])
def test_the_global_top_k_of_pieces_equals_the_top_k_of_their_concatenation(ties):
    generator = torch.Generator().manual_seed(0)
    pieces = [torch.rand(300, 400, generator=generator), torch.rand(500, 300, generator=generator),
              torch.rand(7, 300, generator=generator)]
    if ties:  # a few values, many ties at the threshold: the earliest in concatenation order win
        pieces = [(piece * 8).floor() for piece in pieces]
    flat = torch.cat([piece.flatten() for piece in pieces])
    for k in (1, 1000, 123_457, flat.numel() - 1):
        expected = top_k_mask(flat, k)
        masks = top_k_masks(pieces, k)
        assert [mask.shape for mask in masks] == [piece.shape for piece in pieces]
        assert torch.equal(torch.cat([mask.flatten() for mask in masks]), expected)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("chunk", [1 << 18, 4096])
def test_ranking_magnitudes_chunk_by_chunk_equals_ranking_a_copy_of_them(ties, chunk, monkeypatch):
    """absolute=True scores |w| a chunk at a time (pieces spanning several chunks) and selects exactly what |w| does."""
    import sb3_tar.engine.topk as topk

    monkeypatch.setattr(topk, "SCORE_CHUNK", chunk)
    generator = torch.Generator().manual_seed(1)
    pieces = [torch.randn(300, 400, generator=generator), torch.randn(500, 301, generator=generator),
              torch.randn(7, 300, generator=generator)]
    if ties:  # equal magnitudes of both signs tie at the threshold: the earliest still win
        pieces = [(piece * 4).round() for piece in pieces]
    n = sum(piece.numel() for piece in pieces)
    for k in (1, 1000, n // 10, n // 2 + 3, n - 1):
        expected = top_k_masks([piece.abs() for piece in pieces], k)
        masks = top_k_masks(pieces, k, absolute=True)
        assert all(torch.equal(mask, want) for mask, want in zip(masks, expected)), k
        assert sum(int(mask.count_nonzero()) for mask in masks) == k
        assert all(torch.equal(piece, original) for piece, original in zip(pieces, pieces))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("miss", ["above", "below"])
def test_a_bracket_that_misses_the_threshold_still_selects_exactly(ties, miss, monkeypatch):
    """An unlucky sample (a bracket wholly above or below the k-th largest) falls back to the exact threshold."""
    import sb3_tar.engine.topk as topk

    generator = torch.Generator().manual_seed(5)
    pieces = [torch.randn(400, 300, generator=generator), torch.randn(300, 500, generator=generator)]
    if ties:
        pieces = [(piece * 4).round() for piece in pieces]
    flat = torch.cat([piece.abs().flatten() for piece in pieces])
    wrong = flat.max() if miss == "above" else flat.min()
    monkeypatch.setattr(topk, "_bracket", lambda scores, k, n: (wrong, wrong))
    for k in (1000, flat.numel() // 3):
        masks = top_k_masks(pieces, k, absolute=True)
        assert torch.equal(torch.cat([mask.flatten() for mask in masks]), top_k_mask(flat, k)), k


@pytest.mark.parametrize("ties", [False, True])
def test_the_sampled_selection_equals_kthvalue_on_either_side_of_the_median(ties):
    """kth_largest brackets the answer by a sample and selects among the values on the answer's side."""
    from sb3_tar.engine.topk import kth_largest

    values = torch.rand(400_000, generator=torch.Generator().manual_seed(3))
    if ties:
        values = (values * 50).floor()
    n = values.numel()
    for k in (1, 7, 1000, n // 10, n // 2, n // 2 + 1, 9 * n // 10, n - 1000, n - 1, n):
        assert kth_largest(values, k) == torch.kthvalue(values, n - k + 1).values, k


@pytest.mark.parametrize("n", [1000, 300_000])
def test_top_k_keeps_the_k_largest_and_the_earliest_of_equal_scores(n):
    """Against a stable sort: among scores tied at the threshold, the earliest positions are kept."""
    from sb3_tar.engine.topk import top_k_mask

    scores = (torch.rand(n, generator=torch.Generator().manual_seed(n)) * 20).floor()  # many ties everywhere
    for k in (1, n // 7, n // 2, n - 3):
        expected = torch.zeros(n, dtype=torch.bool)
        expected[torch.sort(scores, descending=True, stable=True).indices[:k]] = True
        assert torch.equal(top_k_mask(scores, k), expected), k
        pieces = [scores[: n // 3].reshape(-1, 1), scores[n // 3:]]
        assert torch.equal(torch.cat([mask.flatten() for mask in top_k_masks(pieces, k)]), expected), k
