"""CrossQ's BatchRenorm stays finite when a sparse layer feeds it a constant unit."""

from __future__ import annotations

import pytest
import torch
from sb3_contrib import CrossQ
from sb3_contrib.common.torch_layers import BatchRenorm1d

import sb3_tar
from sb3_tar.sb3.normalisation import guard_constant_units


def renorm_after_warm_up() -> BatchRenorm1d:
    generator = torch.Generator().manual_seed(0)
    layer = BatchRenorm1d(3, warmup_steps=1)
    layer.train()
    layer(torch.randn(8, 3, generator=generator))
    layer(torch.randn(8, 3, generator=generator))  # past the warm-up: the running statistics take part
    return layer


def test_a_constant_feature_makes_plain_batch_renorm_nan_and_the_guard_finite():
    features = torch.randn(8, 3)
    features[:, 1] = 0.5  # a unit without inputs: its bias only
    for guarded in (False, True):
        layer = renorm_after_warm_up()
        if guarded:
            guard_constant_units(layer)
        inputs = features.clone().requires_grad_()
        output = layer(inputs)
        output.pow(2).sum().backward()
        finite = bool(torch.isfinite(inputs.grad).all())
        assert finite == guarded
        if guarded:  # the guard changes no forward value, and the constant feature's gradient is 0
            assert torch.equal(output, renorm_after_warm_up()(features))
            assert torch.all(inputs.grad[:, 1] == 0) and torch.all(inputs.grad[:, [0, 2]] != 0)


def test_the_guard_is_registered_once():
    layer = BatchRenorm1d(3)
    guard_constant_units(layer)
    guard_constant_units(layer)
    assert len(layer._forward_pre_hooks) == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("settings", [{"recovery_ratio": 0.0, "allow_empty_layers": True}, {}],
                         ids=["static", "default-tar"])
def test_crossq_trains_past_the_batch_renorm_warm_up_without_nan(settings, seed):
    model = CrossQ("TarMlpPolicy", "Pendulum-v1", learning_starts=100, batch_size=32, seed=seed, device="cpu",
                   policy_kwargs={"net_arch": [32], "sparsity": 0.9, "criterion": "random", "renorm_warmup_steps": 1,
                                  **settings})
    plans = sb3_tar.sparse_agent(model).plans().values()
    if not settings:  # TAR's repair leaves no unit without an input; static pruning does
        assert all(layer.isolated_outputs_after == 0 for plan in plans for layer in plan.layers)
    else:
        assert any(layer.isolated_outputs_after > 0 for plan in plans for layer in plan.layers)
    model.learn(300)
    assert all(torch.isfinite(parameter).all() for parameter in model.policy.parameters())
