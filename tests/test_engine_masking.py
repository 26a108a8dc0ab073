"""multiply_masks: the one function that zeroes a mask's positions in weights, optimizer state and targets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sb3_tar.engine.masking import MOMENT_STATE_KEYS, masked_tensors, moment_tensors, multiply_masks


def trained(optimizer_class, **options):
    torch.manual_seed(0)
    layer = nn.Linear(5, 4)
    target = nn.Linear(5, 4)
    optimizer = optimizer_class(layer.parameters(), lr=0.1, **options)
    for _ in range(3):
        optimizer.zero_grad()
        layer(torch.randn(8, 5)).pow(2).sum().backward()
        optimizer.step()
    return layer, target, optimizer


@pytest.mark.parametrize("optimizer_class, options", [
    (torch.optim.Adam, {}), (torch.optim.Adam, {"amsgrad": True}), (torch.optim.AdamW, {}),
    (torch.optim.SGD, {"momentum": 0.9}), (torch.optim.RMSprop, {"momentum": 0.9, "centered": True}),
    (torch.optim.Adamax, {}),
])
def test_masked_positions_are_zero_in_the_weight_every_moment_and_the_target(optimizer_class, options):
    layer, target, optimizer = trained(optimizer_class, **options)
    mask = torch.rand(4, 5, generator=torch.Generator().manual_seed(1)) < 0.5
    moments = moment_tensors(optimizer, layer.weight)
    assert moments, "the optimizer keeps per-element state"
    kept = {"weight": layer.weight.detach().clone(), "target": target.weight.detach().clone(),
            "moments": [moment.clone() for moment in moments]}

    multiply_masks([layer.weight], [mask], optimizers=[optimizer], targets=[target.weight])

    assert torch.equal(layer.weight.detach(), kept["weight"] * mask)
    assert torch.equal(target.weight.detach(), kept["target"] * mask)
    for moment, before in zip(moment_tensors(optimizer, layer.weight), kept["moments"]):
        assert torch.equal(moment, before * mask)
    assert all(key in MOMENT_STATE_KEYS for key in optimizer.state[layer.weight] if key != "step"
               and optimizer.state[layer.weight][key].shape == layer.weight.shape)
    assert not torch.equal(layer.bias.detach(), torch.zeros(4)), "only the weights passed are masked"


@settings(max_examples=30, deadline=None)
@given(shapes=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=4),
       density=st.floats(0.0, 1.0), seed=st.integers(0, 2**31), with_targets=st.booleans())
def test_it_is_one_multiply_per_tensor_and_idempotent(shapes, density, seed, with_targets):
    source = torch.Generator().manual_seed(seed)
    weights = [torch.randn(shape, generator=source) for shape in shapes]
    masks = [torch.rand(shape, generator=source) < density for shape in shapes]
    targets = [torch.randn(shape, generator=source) if with_targets and i % 2 == 0 else None
               for i, shape in enumerate(shapes)] if with_targets else []
    expected = [weight * mask for weight, mask in zip(weights, masks)]
    tensors, multipliers = masked_tensors(weights, masks, targets=targets)
    assert len(tensors) == len(weights) + sum(target is not None for target in targets)
    assert all(m.dtype == t.dtype and m.shape == t.shape for t, m in zip(tensors, multipliers))
    multiply_masks(weights, masks, targets=targets)
    multiply_masks(weights, masks, targets=targets)
    assert all(torch.equal(weight, want) for weight, want in zip(weights, expected))
    assert all(target is None or not torch.any(target[~mask]) for target, mask in zip(targets, masks))


def test_mismatched_arguments_are_refused():
    with pytest.raises(ValueError, match="one mask"):
        multiply_masks([torch.ones(2, 2)], [])
    with pytest.raises(ValueError, match=r"mask 0 of shape \(2, 3\) does not fit weight 0 of shape \(2, 2\)"):
        multiply_masks([torch.ones(2, 2)], [torch.ones(2, 3, dtype=torch.bool)])


def test_the_step_hook_follows_a_loaded_optimizer_state_and_state_created_later():
    """The hook lists what it multiplies once; a loaded state dict or a weight's first state must renew the list."""
    from sb3_tar.sb3.masking import WeightMasks, enforce_masks

    torch.manual_seed(0)
    first, second = nn.Linear(5, 4), nn.Linear(4, 3)
    masks = WeightMasks({"first": torch.rand(4, 5) < 0.5, "second": torch.rand(3, 4) < 0.5})
    optimizer = torch.optim.Adam([first.weight, second.weight], lr=0.1)
    enforce_masks(optimizer, {"first": first.weight, "second": second.weight}, masks)

    def step(*layers):
        optimizer.zero_grad(set_to_none=True)
        sum(layer(torch.randn(2, layer.in_features)).pow(2).sum() for layer in layers).backward()
        optimizer.step()

    def assert_masked():
        for name, weight in (("first", first.weight), ("second", second.weight)):
            for tensor in (weight.detach(), *moment_tensors(optimizer, weight)):
                assert not torch.any(tensor[~masks[name]]), name

    step(first)  # only the first weight has a gradient: Adam creates no state for the second yet
    assert not moment_tensors(optimizer, second.weight)
    step(first, second)
    assert_masked()
    dense = torch.optim.Adam([nn.Parameter(torch.randn(4, 5)), nn.Parameter(torch.randn(3, 4))], lr=0.1)
    for parameter in (p for group in dense.param_groups for p in group["params"]):
        parameter.grad = torch.randn_like(parameter)
    dense.step()  # moments non-zero everywhere, masked positions included
    optimizer.load_state_dict(dense.state_dict())
    step(first, second)
    assert_masked()


def test_mask_hooks_do_not_keep_a_model_alive():
    """The hook registry is by optimizer; a hook holding its optimizer strongly would leak every model."""
    import gc
    import weakref

    from stable_baselines3 import PPO, SAC

    import sb3_tar  # noqa: F401  (registers TarMlpPolicy)

    for algo, env in ((SAC, "Pendulum-v1"), (PPO, "CartPole-v1")):
        model = algo("TarMlpPolicy", env, policy_kwargs={"net_arch": [8], "sparsity": 0.5, "criterion": "erk"},
                     device="cpu")
        optimizer = weakref.ref(model.policy.optimizer if algo is PPO else model.actor.optimizer)
        del model
        gc.collect()
        assert optimizer() is None, f"{algo.__name__}: the optimizer outlived its model"


@pytest.mark.parametrize("change", ["state cleared", "state entry replaced", "moment replaced", "mask edited in place"])
def test_the_step_hook_lists_again_whatever_it_multiplies_changed(change):
    """A reset optimizer state (a plasticity trick) or a mask edited in place must not leave stale tensors listed."""
    from sb3_tar.sb3.masking import WeightMasks, enforce_masks

    torch.manual_seed(0)
    layer = nn.Linear(6, 5)
    masks = WeightMasks({"weight": torch.rand(5, 6) < 0.5})
    optimizer = torch.optim.Adam([layer.weight], lr=0.1)
    enforce_masks(optimizer, {"weight": layer.weight}, masks)

    def step():
        optimizer.zero_grad()
        layer(torch.randn(4, 6)).pow(2).sum().backward()
        optimizer.step()

    step()
    state = optimizer.state[layer.weight]
    if change == "state cleared":
        optimizer.state.clear()
    elif change == "state entry replaced":
        optimizer.state[layer.weight] = {key: value.clone() + 1.0 for key, value in state.items()}
    elif change == "moment replaced":
        state["exp_avg"] = torch.ones_like(state["exp_avg"])
    else:
        masks["weight"].copy_(torch.rand(5, 6) < 0.5)
    step()
    step()
    kept = masks["weight"]
    for tensor in (layer.weight.detach(), *moment_tensors(optimizer, layer.weight)):
        assert not torch.any(tensor[~kept]), change
