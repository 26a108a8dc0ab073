"""Dynamic sparse training (SET, RigL): schedule, one mask update, and pushing it into a model."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sb3_tar import (
    apply_mask_update,
    cosine_drop_fraction,
    dense_gradients,
    dst_update,
    is_dst_update_step,
    prune_and_revive,
)


def rigl(weight: torch.Tensor, mask: torch.Tensor, gradient: torch.Tensor, drop_fraction: float):
    return dst_update({"w": weight}, {"w": mask}, method="rigl", drop_fraction=drop_fraction,
                      dense_gradients={"w": gradient})


def set_update(weight: torch.Tensor, mask: torch.Tensor, drop_fraction: float, seed: int):
    return dst_update({"w": weight}, {"w": mask}, method="set", drop_fraction=drop_fraction,
                      generator=torch.Generator().manual_seed(seed))


# --- schedule ------------------------------------------------------------------------------------


def test_cosine_drop_fraction_starts_at_the_initial_fraction_and_halves_at_mid_schedule():
    assert cosine_drop_fraction(0, initial=0.1, end_step=800) == pytest.approx(0.1)
    assert cosine_drop_fraction(400, initial=0.1, end_step=800) == pytest.approx(0.05)
    assert cosine_drop_fraction(200, initial=0.3, end_step=800) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))


def test_cosine_drop_fraction_is_zero_at_and_after_the_end_step():
    assert cosine_drop_fraction(800, initial=0.1, end_step=800) == 0.0
    assert cosine_drop_fraction(801, initial=0.1, end_step=800) == 0.0
    assert cosine_drop_fraction(10**9, end_step=800) == 0.0


def test_cosine_drop_fraction_decays_monotonically():
    fractions = [cosine_drop_fraction(step, end_step=1000) for step in range(0, 1001, 50)]
    assert all(later <= earlier for earlier, later in zip(fractions, fractions[1:]))


def test_updates_happen_every_interval_before_the_end_step_and_never_at_step_zero():
    due = [step for step in range(0, 5001) if is_dst_update_step(step, update_interval=1000, end_step=4000)]
    assert due == [1000, 2000, 3000]


# --- one update: counts ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_every_layer_keeps_exactly_its_active_count(method, small_net):
    masks = prune_and_revive(small_net, sparsity=0.8, criterion="erk", seed=0).masks
    weights = {name: small_net.get_parameter(name) for name in masks}
    gradients = {name: torch.randn(weight.shape) for name, weight in weights.items()}
    update = dst_update(weights, masks, method=method, drop_fraction=0.3, generator=torch.Generator().manual_seed(0),
                        dense_gradients=gradients)
    for record in update.layers:
        before, after = masks[record.name], update.masks[record.name]
        assert int(after.sum()) == int(before.sum()) == record.active
        assert record.dropped == record.regrown == round(0.3 * record.active)
        assert int((before & ~after).sum()) == record.changed == int((after & ~before).sum())
        assert record.density == pytest.approx(int(before.sum()) / before.numel())


def test_drop_fraction_zero_changes_nothing_and_draws_nothing():
    weight, mask = torch.randn(6, 5), torch.rand(6, 5) < 0.5
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    update = dst_update({"w": weight}, {"w": mask}, method="set", drop_fraction=0.0, generator=generator)
    assert torch.equal(update.masks["w"], mask)
    assert (update.dropped, update.regrown, update.churn) == (0, 0, 0.0)
    assert torch.equal(generator.get_state(), state)


def test_drop_fraction_rounds_to_the_nearest_count_free_of_float_error():
    mask = torch.zeros(200, dtype=torch.bool)
    mask[:100] = True
    weight = torch.arange(1.0, 201.0)
    assert set_update(weight, mask, 0.29, seed=0).dropped == 29  # 0.29 * 100 = 28.999999999999996
    assert set_update(weight, mask, 0.004, seed=0).dropped == 0
    assert set_update(weight, mask, 1.0, seed=0).dropped == 100


# --- one update: which weights ---------------------------------------------------------------------


def test_drop_removes_exactly_the_smallest_magnitude_active_weights():
    weight = torch.tensor([[0.5, -0.1, 0.3, 0.2], [0.9, -0.3, 0.7, 0.0], [0.01, 0.02, 5.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    # Gradient only on positions inactive before, so regrowth cannot hide which weights were dropped.
    gradient = (~mask).float()
    update = rigl(weight, mask, gradient, drop_fraction=3 / 7)
    dropped = mask & ~update.masks["w"]
    # 0.1 and 0.2 go, then the tie at 0.3 drops the later position (1, 1) and keeps (0, 2).
    assert dropped.nonzero().tolist() == [[0, 1], [0, 3], [1, 1]]


def test_an_inactive_position_is_never_counted_as_a_kept_weight_however_large():
    weight = torch.tensor([10.0, 0.1, 0.2, 0.3, 0.0, 0.0])
    mask = torch.tensor([0, 1, 1, 1, 0, 0], dtype=torch.bool)
    update = rigl(weight, mask, torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 1.0]), drop_fraction=2 / 3)
    assert update.masks["w"].tolist() == [False, False, False, True, True, True]


def test_equal_magnitudes_drop_the_later_positions():
    weight = torch.ones(10)
    mask = torch.tensor([1] * 6 + [0] * 4, dtype=torch.bool)
    update = rigl(weight, mask, (~mask).float(), drop_fraction=0.5)
    assert (mask & ~update.masks["w"]).nonzero().squeeze(1).tolist() == [3, 4, 5]


def test_rigl_regrows_exactly_where_the_dense_gradient_is_largest():
    weight = torch.tensor([[0.9, 0.8, 0.0, 0.0], [0.7, 0.05, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    mask = weight != 0
    gradient = torch.tensor([
        [9.0, 9.0, 0.3, -0.8],  # active, kept weights: their gradient must not matter
        [9.0, 0.1, 0.2, 0.0],
        [-0.6, 0.6, 0.5, 0.1],
    ])
    update = rigl(weight, mask, gradient, drop_fraction=0.5)  # 4 active: drop 2 (0.05, 0.7)
    # Candidates: everything but the kept 0.9 and 0.8. Largest |grad|: 9.0 at the just-dropped
    # (1, 0), then 0.8 at (0, 3); the 0.6 tie is never reached.
    assert update.masks["w"].nonzero().tolist() == [[0, 0], [0, 1], [0, 3], [1, 0]]
    assert (update.masks["w"] & ~mask).nonzero().tolist() == [[0, 3]]


def test_rigl_gradient_ties_regrow_the_earlier_position():
    weight = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    mask = weight != 0
    gradient = torch.tensor([0.0, 0.2, 0.5, 0.2, 0.5])
    update = rigl(weight, mask, gradient, drop_fraction=1.0)
    assert update.masks["w"].tolist() == [False, False, True, False, False]


def test_churn_counts_regrown_positions_that_were_active_before_the_drop():
    weight = torch.tensor([0.9, 0.8, 0.1, 0.2, 0.0, 0.0, 0.0, 0.0])
    mask = weight != 0
    gradient = torch.tensor([0.0, 0.0, 0.0, 5.0, 4.0, 1.0, 0.0, 0.0])
    update = rigl(weight, mask, gradient, drop_fraction=0.5)  # drop 0.1 and 0.2; regrow (3) and (4)
    (record,) = update.layers
    assert (record.dropped, record.regrown, record.reactivated, record.changed) == (2, 2, 1, 1)
    assert record.churn == update.churn == 0.5
    assert update.masks["w"].nonzero().squeeze(1).tolist() == [0, 1, 3, 4]
    assert update.kept_masks["w"].nonzero().squeeze(1).tolist() == [0, 1]
    # (3) was dropped and regrown at once: as in RigL (reinit_when_same=False), it keeps its value.
    assert update.surviving("w").nonzero().squeeze(1).tolist() == [0, 1, 3]


def test_set_regrows_only_outside_the_kept_weights_and_is_reproducible_by_seed():
    weight = torch.randn(40, 30)
    mask = torch.rand(40, 30, generator=torch.Generator().manual_seed(1)) < 0.2
    first, again, other = (set_update(weight, mask, 0.4, seed) for seed in (7, 7, 8))
    assert torch.equal(first.masks["w"], again.masks["w"])
    assert not torch.equal(first.masks["w"], other.masks["w"])
    active = int(mask.sum())
    largest_active = weight.abs().masked_fill(~mask, -1.0).flatten().argsort(descending=True)[: active - first.dropped]
    for update in (first, other):
        assert update.masks["w"].flatten()[largest_active].all()
        assert int(update.masks["w"].sum()) == active


def test_set_regrowth_is_uniform_over_the_positions_outside_the_kept_set():
    weight = torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    mask = weight != 0  # 6 active: keep the 3 largest, regrow 3 among the 7 others
    generator = torch.Generator().manual_seed(0)
    draws = 1500
    counts = torch.zeros(10)
    for _ in range(draws):
        update = dst_update({"w": weight}, {"w": mask}, method="set", drop_fraction=0.5, generator=generator)
        counts += update.masks["w"].float()
    assert counts[:3].tolist() == [draws] * 3
    assert ((counts[3:] / draws) - 3 / 7).abs().max() < 0.05


def test_the_update_leaves_its_inputs_untouched():
    weight, mask = torch.randn(5, 5), torch.rand(5, 5) < 0.5
    weight_before, mask_before = weight.clone(), mask.clone()
    update = set_update(weight, mask, 0.5, seed=0)
    assert torch.equal(weight, weight_before) and torch.equal(mask, mask_before)
    assert torch.equal(update.previous_masks["w"], mask)


# --- pushing an update into a model ------------------------------------------------------------


def train_masked(layer: nn.Linear, mask: torch.Tensor, optimizer: torch.optim.Optimizer, steps: int) -> None:
    """A few real steps; gradients are left dense so every moment entry becomes non-zero."""
    for _ in range(steps):
        optimizer.zero_grad()
        layer(torch.randn(16, layer.in_features)).pow(2).mean().backward()
        optimizer.step()
        with torch.no_grad():
            layer.weight.mul_(mask)


@pytest.mark.parametrize(
    ("make_optimizer", "moment_keys"),
    [
        (lambda params: torch.optim.Adam(params, lr=1e-2), ("exp_avg", "exp_avg_sq")),
        (lambda params: torch.optim.AdamW(params, lr=1e-2, amsgrad=True), ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
        (lambda params: torch.optim.SGD(params, lr=1e-2, momentum=0.9), ("momentum_buffer",)),
    ],
)
def test_regrown_weights_and_their_moments_start_at_zero_after_a_real_training_history(make_optimizer, moment_keys):
    torch.manual_seed(0)
    layer, target = nn.Linear(12, 10), nn.Linear(12, 10)
    mask = torch.rand(10, 12) < 0.3
    optimizer = make_optimizer(layer.parameters())
    train_masked(layer, mask, optimizer, steps=5)
    with torch.no_grad():
        target.weight.copy_(layer.weight + 0.01 * mask)
    gradient = torch.randn(10, 12)
    update = rigl(layer.weight, mask, gradient, drop_fraction=0.5)
    new_mask, unchanged = update.masks["w"], update.surviving("w")
    regrown, dropped = new_mask & ~mask, mask & ~new_mask
    state_before = {key: optimizer.state[layer.weight][key].clone() for key in moment_keys}
    weight_before, target_before = layer.weight.detach().clone(), target.weight.detach().clone()
    assert regrown.any() and dropped.any()
    assert all((state_before[key][regrown] != 0).all() for key in moment_keys)

    apply_mask_update({"w": layer.weight}, update, [optimizer], target_weights={"w": target.weight})

    for key in moment_keys:
        moment = optimizer.state[layer.weight][key]
        assert (moment[regrown] == 0).all() and (moment[dropped] == 0).all()
        assert torch.equal(moment[unchanged], state_before[key][unchanged])
    assert (layer.weight[~unchanged] == 0).all() and (target.weight[~unchanged] == 0).all()
    assert torch.equal(layer.weight[unchanged], weight_before[unchanged])
    churned = new_mask & mask & ~update.kept_masks["w"]  # dropped and regrown at once: kept as it was
    assert torch.equal(churned & unchanged, churned)
    assert torch.equal(layer.weight[churned], weight_before[churned])
    assert torch.equal(target.weight[unchanged], target_before[unchanged])


def test_applying_a_no_op_update_changes_nothing():
    torch.manual_seed(0)
    layer = nn.Linear(6, 4)
    mask = torch.rand(4, 6) < 0.5
    optimizer = torch.optim.Adam(layer.parameters())
    train_masked(layer, mask, optimizer, steps=2)
    weight, moments = layer.weight.detach().clone(), optimizer.state[layer.weight]["exp_avg"].clone()
    update = set_update(layer.weight, mask, 0.0, seed=0)
    apply_mask_update({"w": layer.weight}, update, [optimizer])
    assert torch.equal(layer.weight, weight * mask)
    assert torch.equal(optimizer.state[layer.weight]["exp_avg"], moments * mask)


def test_dense_gradients_reach_masked_weights_and_leave_grad_fields_alone():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight[0, 0] = 0.0  # a masked weight
    inputs = torch.randn(8, 3)
    gradients = dense_gradients(layer(inputs).sum(), {"w": layer.weight})
    assert layer.weight.grad is None
    assert torch.allclose(gradients["w"], inputs.sum(0).expand(2, 3))


# --- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "snip"}, r"method='snip' is not a dynamic sparse training method; allowed: \['set', 'rigl'\]"),
        ({"drop_fraction": 1.5}, r"drop_fraction=1.5 must be in \[0, 1\]"),
        ({"drop_fraction": -0.1}, r"drop_fraction=-0.1 must be in \[0, 1\]"),
        ({"drop_fraction": float("nan")}, r"drop_fraction=nan must be a finite number in \[0, 1\]"),
        ({"drop_fraction": True}, r"drop_fraction=True must be a finite number"),
        ({"method": "rigl", "dense_gradients": None}, "method='rigl' needs dense_gradients"),
        ({"method": "set", "generator": None}, "method='set' needs a generator"),
        ({"weights": {"w": torch.zeros(3, 4)}}, r"weights\['w'\] has shape \(3, 4\), but the mask has shape \(4, 3\)"),
        ({"weights": {"v": torch.zeros(4, 3)}}, r"weights has no entry for layer 'w'"),
        ({"method": "rigl", "dense_gradients": {"w": torch.zeros(12)}}, r"dense_gradients\['w'\] has shape \(12,\)"),
        ({"weights": {"w": torch.full((4, 3), float("nan"))}}, r"weights\['w'\] has non-finite values .* at active"),
        ({"masks": {"w": torch.ones(4, 3)}}, r"masks\['w'\] has dtype torch.float32; masks must be torch.bool"),
    ],
)
def test_bad_update_inputs_raise_a_value_error_naming_the_setting(options, message):
    arguments = {
        "weights": {"w": torch.randn(4, 3)}, "masks": {"w": torch.arange(12).reshape(4, 3) % 2 == 0}, "method": "set",
        "drop_fraction": 0.3, "generator": torch.Generator(), "dense_gradients": {"w": torch.randn(4, 3)},
    }
    arguments.update(options)
    with pytest.raises(ValueError, match=message):
        dst_update(arguments.pop("weights"), arguments.pop("masks"), **arguments)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"step": -1}, "step=-1 must be an integer >= 0"),
        ({"end_step": 0}, "end_step=0 must be an integer >= 1"),
        ({"initial": 1.2}, r"initial=1.2 must be in \[0, 1\]"),
        ({"step": 1.5}, "step=1.5 must be an integer >= 0"),
    ],
)
def test_bad_schedule_settings_raise_a_value_error_naming_the_setting(options, message):
    with pytest.raises(ValueError, match=message):
        cosine_drop_fraction(**{"step": 0, "end_step": 100, **options})


def test_bad_update_intervals_are_rejected():
    with pytest.raises(ValueError, match="update_interval=0 must be an integer >= 1"):
        is_dst_update_step(10, update_interval=0, end_step=100)


def test_target_weights_must_match_the_update():
    update = set_update(torch.randn(4, 3), torch.rand(4, 3) < 0.5, 0.5, seed=0)
    weight = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"target_weights has layer 'v', which the update does not have"):
        apply_mask_update({"w": weight}, update, target_weights={"v": torch.zeros(4, 3)})
    with pytest.raises(ValueError, match=r"target_weights\['w'\] has shape \(3, 4\)"):
        apply_mask_update({"w": weight}, update, target_weights={"w": torch.zeros(3, 4)})
    with pytest.raises(ValueError, match=r"parameters has no entry for layer 'w'"):
        apply_mask_update({}, update)


# --- properties -------------------------------------------------------------------------------------


layer_shapes = st.tuples(st.integers(1, 12), st.integers(1, 12))


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(layer_shapes, min_size=1, max_size=3),
    density=st.floats(0.0, 1.0),
    drop_fraction=st.floats(0.0, 1.0),
    method=st.sampled_from(["set", "rigl"]),
    seed=st.integers(0, 2**31),
)
def test_any_update_keeps_shapes_and_counts_and_is_deterministic_given_a_seed(
    shapes, density, drop_fraction, method, seed
):
    source = torch.Generator().manual_seed(seed)
    masks = {f"layer{i}": torch.rand(shape, generator=source) < density for i, shape in enumerate(shapes)}
    weights = {name: torch.randn(mask.shape, generator=source) for name, mask in masks.items()}
    gradients = {name: torch.randn(mask.shape, generator=source) for name, mask in masks.items()}

    def run():
        return dst_update(weights, masks, method=method, drop_fraction=drop_fraction,
                          generator=torch.Generator().manual_seed(seed), dense_gradients=gradients)

    update, again = run(), run()
    for record in update.layers:
        before, after = masks[record.name], update.masks[record.name]
        assert after.dtype == torch.bool and after.shape == before.shape
        assert int(after.sum()) == int(before.sum())
        active = int(before.sum())  # JaxPruner's count: keep round((1 - f) n), drop the rest
        assert record.dropped == record.regrown == active - round((1 - drop_fraction) * active)
        assert int((before & ~after).sum()) == record.changed
        assert 0.0 <= record.churn <= 1.0
        assert torch.equal(after, again.masks[record.name])


def test_a_layer_whose_drop_is_all_regrown_changes_nothing():
    """RigL on a small output layer where the dropped weights have the largest gradients: no reset."""
    torch.manual_seed(0)
    layer = nn.Linear(16, 1)
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, :8] = True
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    train_masked(layer, mask, optimizer, steps=5)
    gradient = torch.zeros(1, 16)
    gradient[0, :8] = 1.0  # only active positions have gradient: whatever is dropped is regrown
    state_before = {key: optimizer.state[layer.weight][key].clone() for key in ("exp_avg", "exp_avg_sq")}
    weight_before = layer.weight.detach().clone()
    update = rigl(layer.weight, mask, gradient, drop_fraction=0.5)
    assert update.churn == 1.0 and torch.equal(update.masks["w"], mask)

    apply_mask_update({"w": layer.weight}, update, [optimizer])

    assert torch.equal(layer.weight, weight_before)
    for key, moment in state_before.items():  # active positions keep their moments, inactive ones stay at 0
        assert torch.equal(optimizer.state[layer.weight][key], moment * mask)


@pytest.mark.parametrize("active", [1, 3, 7, 10, 29, 100, 257])
@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.1, 0.25, 0.29, 0.5, 1.0])
def test_drop_count_is_jaxpruners(active, fraction):
    mask = torch.zeros(1, 300, dtype=torch.bool)
    mask[0, :active] = True
    weight = torch.randn(1, 300)
    update = dst_update({"w": weight}, {"w": mask}, method="set", drop_fraction=fraction,
                        generator=torch.Generator().manual_seed(0))
    assert update.dropped == active - round(active * (1 - fraction))
