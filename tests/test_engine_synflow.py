"""SynFlow on networks that end in a bounded squash (TD3's tanh actor, gSDE's Hardtanh on SAC's mean).

SynFlow scores ``|w * dR/dw|`` on absolute weights and an all-ones input, so pre-activations are
large; a saturated squash has derivative exactly 0 there and would zero every score, and exact top-k
would then keep weights by position only (the first layers whole, the output layer none). Bounded
squashes are scored as the identity instead: the ranking is that of the same network without them.
"""

from __future__ import annotations

import pytest
import torch
from sb3_contrib import TQC
from sb3_support import dense_state
from stable_baselines3 import DDPG, SAC, TD3
from torch import nn

import sb3_tar
from sb3_tar import prune_and_revive
from sb3_tar.engine.synflow import BOUNDED_SQUASHES

SQUASHES = {
    "tanh": nn.Tanh,
    "hardtanh": lambda: nn.Hardtanh(-2.0, 2.0),
    "sigmoid": nn.Sigmoid,
    "hardsigmoid": nn.Hardsigmoid,
    "softsign": nn.Softsign,
    "logsigmoid": nn.LogSigmoid,
}


def hopper_sized_actor(squash: nn.Module) -> nn.Sequential:
    """The reproduction of issue 9: a 17-256-256-6 actor with a squashed output."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(17, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 6), squash)


def kept_per_layer(plan: sb3_tar.RevivalPlan) -> list[int]:
    return [layer.kept_after for layer in plan.layers]


def test_every_bounded_squash_class_is_covered_by_these_tests():
    assert {type(factory()) for factory in SQUASHES.values()} == set(BOUNDED_SQUASHES)


def test_synflow_keeps_weights_in_every_layer_of_a_tanh_actor():
    """It used to keep 4352/4352, 2790/65536 and 0/1536: the output layer collapsed."""
    plan = prune_and_revive(hopper_sized_actor(nn.Tanh()), sparsity=0.9, criterion="synflow", seed=0, iterations=10)
    assert all(kept > 0 for kept in kept_per_layer(plan)), kept_per_layer(plan)
    assert plan.layers[0].kept_after < plan.layers[0].size  # not a ranking by position (first layer whole)
    assert sum(kept_per_layer(plan)) == round(0.1 * plan.total)


@pytest.mark.parametrize("squash", sorted(SQUASHES))
def test_synflow_ranks_a_squashed_network_as_the_same_network_without_the_squash(squash):
    squashed = hopper_sized_actor(SQUASHES[squash]())
    squash_module = squashed[-1]
    before = {name: tensor.clone() for name, tensor in squashed.state_dict().items()}
    bare = nn.Sequential(*list(squashed)[:-1])  # the same modules, so the same weights
    with_squash = prune_and_revive(squashed, sparsity=0.9, criterion="synflow", seed=0, iterations=10)
    without = prune_and_revive(bare, sparsity=0.9, criterion="synflow", seed=0, iterations=10)
    assert list(with_squash.masks) == list(without.masks)
    for name in without.masks:
        assert torch.equal(with_squash.masks[name], without.masks[name]), name
    # Only SynFlow's float64 copy loses its squash: the network keeps it, and its exact weights.
    assert squashed[-1] is squash_module
    assert all(torch.equal(tensor, before[name]) for name, tensor in squashed.state_dict().items())


def test_a_nested_squash_is_scored_as_the_identity_too():
    """SB3 puts gSDE's Hardtanh inside the actor's ``mu`` head: a squash deep in the module tree."""
    torch.manual_seed(0)
    nested = nn.Sequential(nn.Linear(17, 64), nn.ReLU(), nn.Sequential(nn.Linear(64, 6), nn.Hardtanh(-2.0, 2.0)))
    bare = nn.Sequential(nested[0], nested[1], nn.Sequential(nested[2][0]))
    with_squash = prune_and_revive(nested, sparsity=0.9, criterion="synflow", seed=0, iterations=10)
    without = prune_and_revive(bare, sparsity=0.9, criterion="synflow", seed=0, iterations=10)
    assert all(torch.equal(with_squash.masks[name], without.masks[name]) for name in without.masks)
    assert with_squash.layers[-1].kept_after > 0
    assert isinstance(nested[2][1], nn.Hardtanh)


# --- through SB3: the actors whose output is squashed -----------------------------------------------

SB3_CASES = {
    "td3": (TD3, {}),  # actor.mu ends in nn.Tanh
    "ddpg": (DDPG, {}),  # the same actor as TD3
    "sac-gsde": (SAC, {"use_sde": True}),  # gSDE: actor.mu = Sequential(Linear, Hardtanh)
    "tqc-gsde": (TQC, {"use_sde": True}),
}
# At width 64 Pendulum's one-action tanh does not saturate to an exact 0 (its derivative is a common
# factor of every score, so the ranking was already right); at width 256 it does. gSDE's Hardtanh has
# derivative exactly 0 beyond its clip at either width.
WIDTHS = [64, 256]


def synflow_model(algo, policy: str, width: int, **algo_kwargs):
    policy_kwargs = {"net_arch": [width, width]}
    if policy == "TarMlpPolicy":
        policy_kwargs.update(sparsity=0.9, criterion="synflow", iterations=10)
    return algo(policy, "Pendulum-v1", seed=0, device="cpu", policy_kwargs=policy_kwargs, **algo_kwargs)


def squashes(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, BOUNDED_SQUASHES)]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", sorted(SB3_CASES))
def test_synflow_keeps_every_layer_of_every_network_and_the_real_weights_of_an_sb3_agent(case, width):
    algo, algo_kwargs = SB3_CASES[case]
    sparse = synflow_model(algo, "TarMlpPolicy", width, **algo_kwargs)
    for network, plan in sb3_tar.sparse_agent(sparse).plans().items():
        kept = {layer.name: layer.kept_before for layer in plan.layers}
        assert all(count > 0 for count in kept.values()), f"{network}: {kept}"
        assert plan.kept == round(0.1 * plan.total) + plan.repaired, network
    # The same seed builds the same dense weights: the sparse policy differs from them only by its
    # zeros, and keeps its squash modules (in the actor and in TD3's actor target).
    dense = synflow_model(algo, "MlpPolicy", width, **algo_kwargs)
    masks = sb3_tar.sparse_agent(sparse).masks
    sparse_state = dense_state(sparse.policy)
    for name, dense_value in dense.policy.state_dict().items():
        online = name.replace("actor_target.", "actor.").replace("critic_target.", "critic.")  # targets share
        expected = dense_value * masks[online] if online in masks else dense_value
        assert torch.equal(sparse_state[name], expected), name
    assert [type(m) for m in squashes(sparse.policy)] == [type(m) for m in squashes(dense.policy)]
    assert isinstance(sparse.policy.actor.mu[-1], (nn.Tanh, nn.Hardtanh))
