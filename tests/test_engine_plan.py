"""``prune_and_revive``: the invariants every later feature relies on."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sb3_tar import apply_masks, erk_densities, prune_and_revive
from sb3_tar.cli import mlp
from sb3_tar.engine.revival import chain_producers, repair_bounds

CRITERIA = ["magnitude", "random", "erk", "synflow"]


def assert_connected(masks: list[torch.Tensor]) -> None:
    """Every unit of a chain MLP has an input, and every hidden unit an output."""
    for index, mask in enumerate(masks):
        assert mask.any(dim=1).all(), f"layer {index} has an output unit without an input"
        if index > 0:
            assert mask.any(dim=0).all(), f"layer {index} reads a hidden unit that has no output"


class TwoHeads(nn.Module):
    """SAC's actor in miniature: a trunk and two heads that both read its last layer."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_pi = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        self.mu = nn.Linear(16, 2)
        self.log_std = nn.Linear(16, 2)


def kept(masks: dict[str, torch.Tensor]) -> int:
    return sum(int(mask.sum()) for mask in masks.values())


def contains(outer: dict[str, torch.Tensor], inner: dict[str, torch.Tensor]) -> bool:
    return all(torch.all(outer[name][mask]) for name, mask in inner.items())


@pytest.mark.parametrize("criterion", CRITERIA)
def test_masks_are_bool_tensors_keyed_by_qualified_weight_names(criterion, small_net):
    plan = prune_and_revive(small_net, sparsity=0.8, criterion=criterion, recovery_ratio=0.05, seed=0)
    assert list(plan.masks) == ["0.weight", "2.weight", "4.weight"]
    for name, mask in plan.masks.items():
        assert mask.dtype == torch.bool
        assert mask.shape == small_net.get_parameter(name).shape
    assert [layer.name for layer in plan.layers] == list(plan.masks)


def test_nested_modules_are_addressed_by_their_full_path():
    plan = prune_and_revive(TwoHeads(), sparsity=0.5, seed=0)
    assert list(plan.masks) == ["latent_pi.0.weight", "mu.weight", "log_std.weight"]


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("budget", ["reserve", "extra"])
def test_final_sparsity_and_revival_budget_are_exact(criterion, budget, actor):
    plan = prune_and_revive(actor, sparsity=0.9, criterion=criterion, recovery_ratio=0.02, budget=budget,
                            seed=3, iterations=10) if criterion == "synflow" else prune_and_revive(
        actor, sparsity=0.9, criterion=criterion, recovery_ratio=0.02, budget=budget, seed=3)
    total = plan.total
    revived = round(0.02 * total)
    final = round(0.1 * total) if budget == "reserve" else round(0.1 * total) + revived
    # Beyond the budget, TAR's connectivity repair adds one weight per unit revival left unconnected.
    assert kept(plan.masks) == final + plan.repaired
    assert plan.revived == revived + plan.repaired
    assert kept(plan.masks_before_revival) == final - revived
    bounds = repair_bounds(list(plan.masks_before_revival.values()), chain_producers(len(plan.layers)))
    assert all(0 <= layer.repaired <= bound for layer, bound in zip(plan.layers, bounds))


@pytest.mark.parametrize("criterion", CRITERIA)
def test_revival_never_removes_a_kept_weight(criterion, actor):
    plan = prune_and_revive(actor, sparsity=0.95, criterion=criterion, recovery_ratio=0.01, seed=0)
    assert contains(plan.masks, plan.masks_before_revival)


@pytest.mark.parametrize("criterion", ["magnitude", "random", "erk"])
def test_masks_before_revival_are_the_static_masks_at_the_pre_revival_sparsity(criterion):
    torch.manual_seed(0)
    network = mlp(10, [10], 10)  # 200 weights: 0.5 + 0.05 is exact
    plan = prune_and_revive(network, sparsity=0.5, criterion=criterion, recovery_ratio=0.05, seed=4)
    static = prune_and_revive(network, sparsity=0.55, criterion=criterion, seed=4)
    for name in plan.masks:
        assert torch.equal(plan.masks_before_revival[name], static.masks[name])


@pytest.mark.parametrize("criterion", CRITERIA)
def test_zero_recovery_ratio_gives_exactly_the_static_mask(criterion, small_net):
    plan = prune_and_revive(small_net, sparsity=0.7, criterion=criterion, recovery_ratio=0.0, seed=5)
    assert plan.revived == 0
    for name in plan.masks:
        assert torch.equal(plan.masks[name], plan.masks_before_revival[name])


def test_budget_covering_all_deficits_lifts_every_layer_to_its_floor(actor):
    plan = prune_and_revive(actor, sparsity=0.97, criterion="random", recovery_ratio=0.02, seed=0)
    assert plan.revived >= sum(layer.deficit for layer in plan.layers)
    assert all(layer.kept_after >= layer.floor for layer in plan.layers)


def test_budget_short_of_the_deficits_is_split_in_proportion_to_them(actor):
    plan = prune_and_revive(actor, sparsity=0.97, criterion="magnitude", recovery_ratio=0.01, seed=0)
    deficits = [layer.deficit for layer in plan.layers]
    budget = plan.revived - plan.repaired
    assert budget < sum(deficits)
    for layer, deficit in zip(plan.layers, deficits):
        assert abs(layer.revived - layer.repaired - budget * deficit / sum(deficits)) < 1


def test_global_magnitude_collapses_the_wide_input_layer_and_tar_brings_it_back(actor):
    """Fan-in 376 has the smallest initial scale, so at 97% a global threshold keeps none of it."""
    static = prune_and_revive(actor, sparsity=0.97, criterion="magnitude", seed=0)
    assert static.layers[0].kept_after == 0
    assert static.layers[0].isolated_inputs_after == 376
    tar = prune_and_revive(actor, sparsity=0.97, criterion="magnitude", recovery_ratio=0.01, seed=0)
    assert tar.layers[0].kept_before == 0
    assert tar.layers[0].revived > 0
    assert tar.layers[0].isolated_inputs_after < 376


def test_synflow_does_not_collapse_a_layer_where_global_magnitude_does(actor):
    synflow = prune_and_revive(actor, sparsity=0.97, criterion="synflow", seed=0)
    assert all(layer.kept_after > 0 for layer in synflow.layers)


@pytest.mark.parametrize("criterion", CRITERIA)
def test_prune_and_revive_leaves_the_network_bit_identical(criterion, actor):
    before = {name: tensor.clone() for name, tensor in actor.state_dict().items()}
    prune_and_revive(actor, sparsity=0.9, criterion=criterion, recovery_ratio=0.01, seed=0)
    for name, tensor in actor.state_dict().items():
        assert torch.equal(tensor, before[name])
        assert tensor.dtype == before[name].dtype


def test_erk_layer_counts_follow_erk_densities(actor):
    plan = prune_and_revive(actor, sparsity=0.9, criterion="erk", seed=0)
    densities = erk_densities([(layer.in_features, layer.out_features) for layer in plan.layers], 0.1)
    for layer, density in zip(plan.layers, densities):
        assert abs(layer.kept_before - density * layer.size) <= 1


def test_random_keeps_each_layer_within_one_weight_of_its_target(actor):
    plan = prune_and_revive(actor, sparsity=0.8, criterion="random", seed=0)
    assert all(abs(layer.kept_before - 0.2 * layer.size) <= 1 for layer in plan.layers)


def test_plan_masks_takes_the_settings_object_as_prune_and_revive_builds_it(actor):
    """The policies hand their PruningSettings to the engine as they are: the same masks as the keyword form."""
    from sb3_tar.engine.plan import plan_masks
    from sb3_tar.engine.settings import PruningSettings

    settings = PruningSettings(0.9, "magnitude", 0.02, "topology", "reserve", {"scope": "erk"})
    plan = plan_masks(actor, settings, seed=4)
    same = prune_and_revive(actor, sparsity=0.9, criterion="magnitude", recovery_ratio=0.02, scope="erk", seed=4)
    assert plan.settings == settings and all(torch.equal(plan.masks[name], same.masks[name]) for name in same.masks)


def test_erk_is_random_selection_cut_by_erk_densities(actor):
    """criterion='erk' keeps its meaning: the random scorer with scope='erk' draws the very same masks."""
    erk = prune_and_revive(actor, sparsity=0.9, criterion="erk", recovery_ratio=0.02, seed=3)
    composed = prune_and_revive(actor, sparsity=0.9, criterion="random", scope="erk", recovery_ratio=0.02, seed=3)
    assert all(torch.equal(erk.masks[name], composed.masks[name]) for name in erk.masks)


def test_magnitude_with_erk_densities_keeps_each_layers_largest_weights_at_its_erk_count(actor):
    """A scorer and a distribution compose: ERK's per-layer counts, magnitude's choice within each layer."""
    plan = prune_and_revive(actor, sparsity=0.9, criterion="magnitude", scope="erk", seed=0)
    erk = prune_and_revive(actor, sparsity=0.9, criterion="erk", seed=0)
    assert [layer.kept_before for layer in plan.layers] == [layer.kept_before for layer in erk.layers]
    for layer in plan.layers:
        weight = actor.get_parameter(layer.name).abs()
        mask = plan.masks_before_revival[layer.name]
        assert weight[mask].min() >= weight[~mask].max()


@pytest.mark.parametrize("scope", ["global", "layerwise", "erk"])
def test_every_scope_of_the_random_scorer_keeps_exactly_the_networks_count(scope, actor):
    plan = prune_and_revive(actor, sparsity=0.85, criterion="random", scope=scope, seed=1)
    assert sum(layer.kept_before for layer in plan.layers) == round(0.15 * sum(layer.size for layer in plan.layers))


@pytest.mark.parametrize("criterion", ["magnitude", "random"])
def test_an_unknown_scope_is_refused_naming_the_distributions(criterion, small_net):
    with pytest.raises(ValueError, match=r"scope='uniform' is not a distribution .*allowed: \['global', 'layerwise', 'erk'\]"):
        prune_and_revive(small_net, sparsity=0.5, criterion=criterion, scope="uniform")


def test_layerwise_magnitude_prunes_every_layer_at_the_sparsity(actor):
    plan = prune_and_revive(actor, sparsity=0.8, criterion="magnitude", scope="layerwise", seed=0)
    for layer in plan.layers:
        assert abs(layer.kept_before - 0.2 * layer.size) <= 1
        weight = actor.get_parameter(layer.name).abs()
        mask = plan.masks[layer.name]
        assert weight[mask].min() >= weight[~mask].max()


@pytest.mark.parametrize("criterion", CRITERIA)
def test_same_seed_gives_the_same_masks(criterion, small_net):
    first = prune_and_revive(small_net, sparsity=0.8, criterion=criterion, recovery_ratio=0.05, seed=11)
    second = prune_and_revive(small_net, sparsity=0.8, criterion=criterion, recovery_ratio=0.05, seed=11)
    assert all(torch.equal(first.masks[name], second.masks[name]) for name in first.masks)


@pytest.mark.parametrize("criterion", CRITERIA)
def test_a_different_seed_changes_the_random_part(criterion, actor):
    first = prune_and_revive(actor, sparsity=0.9, criterion=criterion, recovery_ratio=0.01, seed=1)
    second = prune_and_revive(actor, sparsity=0.9, criterion=criterion, recovery_ratio=0.01, seed=2)
    assert any(not torch.equal(first.masks[name], second.masks[name]) for name in first.masks)
    if criterion in ("magnitude", "synflow"):  # deterministic criteria: only the revival differs
        assert all(torch.equal(first.masks_before_revival[n], second.masks_before_revival[n]) for n in first.masks)


@pytest.mark.parametrize("criterion", CRITERIA)
def test_a_seeded_run_leaves_torch_global_random_state_untouched(criterion, small_net):
    state = torch.get_rng_state()
    prune_and_revive(small_net, sparsity=0.8, criterion=criterion, recovery_ratio=0.05, seed=0)
    assert torch.equal(torch.get_rng_state(), state)


def test_without_a_seed_one_is_drawn_from_the_global_generator_and_recorded(small_net):
    torch.manual_seed(123)
    first = prune_and_revive(small_net, sparsity=0.8, criterion="random", recovery_ratio=0.05)
    torch.manual_seed(123)
    second = prune_and_revive(small_net, sparsity=0.8, criterion="random", recovery_ratio=0.05)
    assert first.seed == second.seed
    replay = prune_and_revive(small_net, sparsity=0.8, criterion="random", recovery_ratio=0.05, seed=first.seed)
    assert all(torch.equal(first.masks[name], replay.masks[name]) for name in first.masks)


def test_uniform_allocation_spends_the_same_exact_budget_without_a_floor(actor):
    plan = prune_and_revive(actor, sparsity=0.97, criterion="magnitude", recovery_ratio=0.01,
                            allocation="uniform", seed=0)
    assert plan.revived == round(0.01 * plan.total)
    assert contains(plan.masks, plan.masks_before_revival)
    # Spread by size, not by need: the collapsed input layer gets ~ its share of pruned weights.
    share = plan.layers[0].revived / plan.revived
    assert abs(share - plan.layers[0].size / (plan.total - plan.kept + plan.revived)) < 0.05


def test_apply_masks_zeroes_exactly_the_masked_weights_and_is_idempotent(small_net):
    plan = prune_and_revive(small_net, sparsity=0.8, criterion="random", seed=0)
    kept_values = {name: small_net.get_parameter(name)[mask].clone() for name, mask in plan.masks.items()}
    for _ in range(2):
        apply_masks(small_net, plan.masks)
        for name, mask in plan.masks.items():
            weight = small_net.get_parameter(name)
            assert torch.all(weight[~mask] == 0.0)
            assert torch.equal(weight[mask], kept_values[name])


layer_widths = st.integers(1, 48)


@settings(max_examples=60, deadline=None)
@given(
    input_width=layer_widths,
    hidden=st.lists(layer_widths, min_size=0, max_size=3),
    output_width=st.integers(1, 8),
    sparsity=st.floats(0.0, 0.98),
    ratio_fraction=st.floats(0.0, 1.0),
    criterion=st.sampled_from(CRITERIA),
    allocation=st.sampled_from(["topology", "uniform"]),
    budget=st.sampled_from(["reserve", "extra"]),
    seed=st.integers(0, 2**31),
)
def test_invariants_hold_for_random_mlps_and_settings(
    input_width, hidden, output_width, sparsity, ratio_fraction, criterion, allocation, budget, seed
):
    torch.manual_seed(seed)
    network = mlp(input_width, hidden, output_width)
    limit = (1.0 - sparsity) * 0.999 if budget == "reserve" else sparsity
    recovery_ratio = ratio_fraction * min(limit, 0.2)
    options = {"iterations": 5} if criterion == "synflow" else {}
    plan = prune_and_revive(network, sparsity=sparsity, criterion=criterion, recovery_ratio=recovery_ratio,
                            allocation=allocation, budget=budget, seed=seed, **options)
    total = plan.total
    static_kept, revival_budget = plan.settings.kept_counts(total)
    assert kept(plan.masks_before_revival) == static_kept
    assert plan.revived - plan.repaired == revival_budget == min(round(recovery_ratio * total), revival_budget)
    if budget == "reserve":
        assert kept(plan.masks) == round((1.0 - sparsity) * total) + plan.repaired
    assert contains(plan.masks, plan.masks_before_revival)
    bounds = repair_bounds(list(plan.masks_before_revival.values()), chain_producers(len(plan.layers)))
    assert all(0 <= layer.repaired <= bound for layer, bound in zip(plan.layers, bounds))
    if allocation == "topology" and recovery_ratio > 0:
        assert_connected(list(plan.masks.values()))
    else:
        assert plan.repaired == 0
    if allocation == "topology" and plan.revived - plan.repaired >= sum(layer.deficit for layer in plan.layers):
        assert all(layer.kept_after >= layer.floor for layer in plan.layers)
    for layer in plan.layers:
        mask = plan.masks[layer.name]
        assert layer.kept_after == int(mask.sum())
        assert layer.isolated_inputs_after == int((~mask.any(dim=0)).sum())
        assert layer.isolated_outputs_after == int((~mask.any(dim=1)).sum())
    replay = prune_and_revive(network, sparsity=sparsity, criterion=criterion, recovery_ratio=recovery_ratio,
                              allocation=allocation, budget=budget, seed=seed, **options)
    assert all(torch.equal(plan.masks[name], replay.masks[name]) for name in plan.masks)


def test_revival_budget_is_capped_by_the_pruned_count():
    torch.manual_seed(0)
    network = mlp(5, [], 1)  # 5 weights: keeps round(3.5) = 4, prunes 1, but round(0.3 * 5) = 2 to revive
    plan = prune_and_revive(network, sparsity=0.3, recovery_ratio=0.3, budget="extra", seed=0)
    assert plan.revived == 1 and kept(plan.masks) == 5
    assert math.isclose(plan.sparsity, 0.0)


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("hidden", [[2], [2, 2], [3, 1, 5]])
def test_tar_connects_every_unit_of_a_tiny_network_whose_budget_rounds_to_zero(criterion, hidden):
    torch.manual_seed(0)
    network = mlp(4, hidden, 2)  # under 50 weights: round(0.01 * P) = 0
    plan = prune_and_revive(network, sparsity=0.8, criterion=criterion, recovery_ratio=0.01, seed=0)
    assert plan.revived == plan.repaired > 0
    assert_connected(list(plan.masks.values()))
    assert all(layer.kept_after > 0 for layer in plan.layers)


def test_static_pruning_is_never_repaired():
    torch.manual_seed(0)
    plan = prune_and_revive(mlp(4, [2], 2), sparsity=0.9, recovery_ratio=0.0, seed=0)
    assert plan.repaired == 0 and any(layer.kept_after == 0 for layer in plan.layers)


def test_a_hidden_unit_read_by_two_heads_needs_an_output_in_only_one():
    network = TwoHeads()
    producers = {"latent_pi.0.weight": None, "mu.weight": "latent_pi.0.weight", "log_std.weight": "latent_pi.0.weight"}
    plan = prune_and_revive(network, sparsity=0.9, criterion="random", recovery_ratio=0.01, seed=0,
                            producers=producers)
    masks = plan.masks
    assert all(mask.any(dim=1).all() for mask in masks.values())
    assert (masks["mu.weight"].any(dim=0) | masks["log_std.weight"].any(dim=0)).all()
    # As a chain, log_std would be read from mu's 2 outputs: its 16 columns cannot be.
    with pytest.raises(ValueError, match="producers must name every layer"):
        prune_and_revive(network, sparsity=0.9, recovery_ratio=0.01, seed=0, producers={"mu.weight": None})
    with pytest.raises(ValueError, match="reads 'log_std.weight', which is not an earlier layer"):
        prune_and_revive(network, sparsity=0.9, recovery_ratio=0.01, seed=0,
                         producers={**producers, "mu.weight": "log_std.weight"})
