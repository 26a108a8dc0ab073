"""Bad input gets a ValueError naming the setting, the value and the allowed values, before any work."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sb3_tar import PruningSettings, prune_and_revive, register_criterion
from sb3_tar.engine.criteria import select


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sparsity": 1.0}, r"sparsity=1.0 must be in \[0, 1\)"),
        ({"sparsity": -0.1}, r"sparsity=-0.1 must be in \[0, 1\)"),
        ({"sparsity": float("nan")}, "sparsity=nan must be a finite number"),
        ({"sparsity": "0.5"}, "sparsity='0.5' must be a finite number"),
        ({"sparsity": 0.5, "recovery_ratio": -0.01}, "recovery_ratio=-0.01 must be >= 0"),
        ({"sparsity": 0.95, "recovery_ratio": 0.05}, "recovery_ratio=0.05 is too large for sparsity=0.95"),
        ({"sparsity": 0.1, "recovery_ratio": 0.2, "budget": "extra"}, "recovery_ratio=0.2 is too large"),
        ({"sparsity": 0.5, "criterion": "snip"}, r"criterion='snip' is not a registered criterion; allowed: \["),
        ({"sparsity": 0.5, "allocation": "greedy"}, r"allocation='greedy' .* allowed: \['topology', 'uniform'\]"),
        ({"sparsity": 0.5, "budget": "borrow"}, r"budget='borrow' .* allowed: \['reserve', 'extra'\]"),
        ({"sparsity": 0.5, "scope": "local"}, r"scope='local' .* allowed: \['global', 'layerwise', 'erk'\]"),
        ({"sparsity": 0.5, "criterion": "erk", "scope": "global"}, r"criterion='erk' got unknown option\(s\) \['scope'\]"),
        ({"sparsity": 0.5, "criterion": "synflow", "iterations": 0}, "iterations=0 must be an integer >= 1"),
        ({"sparsity": 0.5, "seed": -1}, "seed=-1 must be a non-negative integer"),
    ],
)
def test_bad_settings_raise_a_value_error_naming_the_setting(settings, message, small_net):
    with pytest.raises(ValueError, match=message):
        prune_and_revive(small_net, **settings)


def test_a_network_without_linear_layers_is_rejected():
    with pytest.raises(ValueError, match="without nn.Linear layers"):
        prune_and_revive(nn.Sequential(nn.ReLU()), sparsity=0.5)


def test_non_finite_weights_are_rejected_before_pruning(small_net):
    with torch.no_grad():
        small_net[2].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="'2.weight' has non-finite values"):
        prune_and_revive(small_net, sparsity=0.5)


def test_a_user_criterion_registered_by_name_is_used_with_its_options(small_net):
    @register_criterion("test_reverse_magnitude")
    def reverse_magnitude(target, *, flip: bool = True):
        return select(target, [-w.abs() if flip else w.abs() for w in target.cpu_weights()], "global")

    plan = prune_and_revive(small_net, sparsity=0.5, criterion="test_reverse_magnitude", flip=True, seed=0)
    weight = small_net[0].weight.abs()
    assert weight[plan.masks["0.weight"]].max() <= weight[~plan.masks["0.weight"]].max()
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['scope'\]; its options are \['flip'\]"):
        prune_and_revive(small_net, sparsity=0.5, criterion="test_reverse_magnitude", scope="global")
    with pytest.raises(ValueError, match="already registered"):
        register_criterion("test_reverse_magnitude")(reverse_magnitude)


def test_a_user_criterions_option_check_refuses_a_bad_value_before_any_pruning(small_net):
    calls = []

    def check_noise(*, noise: float = 0.01) -> None:
        if noise < 0:
            raise ValueError(f"noise={noise!r} must be >= 0")

    @register_criterion("test_checked_noise", check_options=check_noise)
    def noisy(target, *, noise: float = 0.01):
        calls.append(noise)
        return select(target, target.cpu_weights(), "global", absolute=True)

    with pytest.raises(ValueError, match="noise=-1 must be >= 0"):
        PruningSettings(0.5, criterion="test_checked_noise", criterion_options={"noise": -1})
    with pytest.raises(ValueError, match="noise=-1 must be >= 0"):
        prune_and_revive(small_net, sparsity=0.5, criterion="test_checked_noise", noise=-1)
    assert calls == []
    prune_and_revive(small_net, sparsity=0.5, criterion="test_checked_noise", noise=0.5)
    assert calls == [0.5]


def test_a_criterion_that_miscounts_is_caught(small_net):
    @register_criterion("test_keep_everything")
    def keep_everything(target):
        return [torch.ones_like(w, dtype=torch.bool) for w in target.cpu_weights()]

    with pytest.raises(RuntimeError, match="do not keep exactly"):
        prune_and_revive(small_net, sparsity=0.5, criterion="test_keep_everything")
