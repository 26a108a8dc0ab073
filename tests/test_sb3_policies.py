"""TarMlpPolicy: a drop-in sparse MlpPolicy for SAC, TD3, DDPG, TQC and CrossQ.

Each test body runs for every algorithm. The models are tiny (Pendulum-v1, [32, 32] networks) and
learn for a few hundred steps; what is checked is exact (counts, zeros, bits), not statistical.
"""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sb3_support import (
    ALL_ALGOS,
    ENV_ID,
    StepChecker,
    StepCounter,
    all_weights,
    assert_masks_hold,
    assert_sparsity,
    kept_count,
    make_model,
)
from sb3_contrib.common.torch_layers import BatchRenorm
from stable_baselines3.common.utils import polyak_update
from torch import nn

import sb3_tar
from sb3_tar import derive_seed, prune_and_revive
from sb3_tar.engine.compressed import CompressedLinear
from sb3_tar.sb3.masking import enforcement_of
from sb3_tar.sb3.normalisation import _detach_constant_features

# Every test here runs with the masked dense layers and with the compressed ones (kernel='sparse').
pytestmark = pytest.mark.both_kernels

LEARN_STEPS = 150  # 100 gradient steps after learning_starts=50


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_tar_mlp_policy_is_the_algorithms_own_mlp_policy_made_sparse(algo):
    policy_class = algo.policy_aliases["TarMlpPolicy"]
    assert issubclass(policy_class, algo.policy_aliases["MlpPolicy"])
    model = make_model(algo, sparsity=0.5)
    assert isinstance(model.policy, policy_class)


@pytest.mark.parametrize("algo", ALL_ALGOS)
@pytest.mark.parametrize("criterion", ["magnitude", "random", "erk", "synflow"])
def test_each_network_is_pruned_on_its_own_to_its_sparsity_when_built(algo, criterion):
    options = {"iterations": 5} if criterion == "synflow" else {}
    model = make_model(algo, actor_sparsity=0.6, critic_sparsity=0.85, criterion=criterion, recovery_ratio=0.02,
                       **options)
    agent = sb3_tar.sparse_agent(model)
    n_critics = model.policy.critic.n_critics
    assert [network.name for network in agent.networks] == ["actor"] + [f"qf{i}" for i in range(n_critics)]
    assert_sparsity(agent, actor=0.6, critic=0.85)
    assert_masks_hold(agent)  # before the first step: weights and targets already carry the mask
    for network, plan in zip(agent.networks, agent.plans().values()):
        assert plan.revived - plan.repaired == min(round(0.02 * plan.total), plan.kept)
        assert all(layer.kept_after > 0 for layer in plan.layers), f"{network.name}: a layer lost every weight"


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_masks_hold_after_every_gradient_step(algo):
    model = make_model(algo, sparsity=0.8, recovery_ratio=0.01)
    checker = StepChecker(model)
    model.learn(LEARN_STEPS)
    assert checker.steps >= LEARN_STEPS - 50  # every critic (and actor) step was checked
    agent = sb3_tar.sparse_agent(model)
    assert_masks_hold(agent)
    assert_sparsity(agent, 0.8, 0.8)
    for network in agent.networks:  # the masked weights really were trained against: kept ones moved
        first = agent.layer_names(network)[0]
        trained = network.module.get_submodule(first.removesuffix(".weight"))
        state = network.optimizer.state[trained.values if isinstance(trained, CompressedLinear) else trained.weight]
        assert int(state["step"]) > 0


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_masks_hold_with_weight_decay_and_every_other_policy_option(algo):
    options = {"net_arch": {"pi": [24], "qf": [40, 16]}, "activation_fn": nn.Tanh, "n_critics": 3,
               "optimizer_class": torch.optim.AdamW, "optimizer_kwargs": {"weight_decay": 0.1}}
    # Layerwise: one global threshold would leave the 24-input heads without a weight (refused).
    model = make_model(algo, sparsity=0.7, scope="layerwise", **options)
    checker = StepChecker(model)
    model.learn(LEARN_STEPS)
    agent = sb3_tar.sparse_agent(model)
    assert len(agent.networks) == 1 + 3
    assert [w.shape[0] for w in all_weights(agent, agent.networks[1]).values()][:2] == [40, 16]
    assert checker.steps > 0
    assert_sparsity(agent, 0.7, 0.7)
    assert_masks_hold(agent)


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_the_forward_pass_carries_no_mask(algo, policy_kernel):
    model = make_model(algo, sparsity=0.8)
    dense = make_model(algo, "MlpPolicy")
    policy = model.policy
    # No hook on any layer; CrossQ's BatchRenorm layers carry only the constant-unit guard (sb3_tar.sb3.normalisation).
    assert all(not module._forward_hooks for module in policy.modules())
    assert all(list(module._forward_pre_hooks.values()) == [_detach_constant_features]
               for module in policy.modules() if module._forward_pre_hooks)
    assert all(isinstance(module, BatchRenorm) for module in policy.modules() if module._forward_pre_hooks)
    # The weights keep the names SB3 expects (a compressed layer's kept weights are "values", its weight in the dense
    # layout the policy loads and checks in): a dense policy with the same weights predicts the same.
    state = policy.state_dict()
    if policy_kernel == "sparse":
        assert not any(name.endswith(".weight") for name in state if not name.startswith("masks"))
        state = policy._dense_layout(state)
    dense_names = set(dense.policy.state_dict())
    assert dense_names <= set(state)
    assert {name.split(".")[0] for name in set(state) - dense_names} == {"masks", "masks_before_revival", "mask_seed"}
    dense.policy.load_state_dict({name: value for name, value in state.items() if name in dense_names})
    observations = np.random.default_rng(0).uniform(-1, 1, (16, 3)).astype(np.float32)
    # Exactly with the masked dense layers; to float rounding with compressed ones (another summation order).
    tolerance = 0.0 if policy_kernel == "dense" else 1e-5
    np.testing.assert_allclose(model.predict(observations, deterministic=True)[0],
                               dense.predict(observations, deterministic=True)[0], rtol=0, atol=tolerance)


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_save_then_load_restores_the_exact_masks_and_keeps_enforcing_them(algo, tmp_path):
    model = make_model(algo, sparsity=0.75, criterion="random", recovery_ratio=0.01)
    model.learn(LEARN_STEPS)
    saved = {name: mask.clone() for name, mask in sb3_tar.sparse_agent(model).masks.items()}
    model.save(tmp_path / "model.zip")

    with torch.random.fork_rng():  # a different global seed: the rebuild draws other masks, the load restores
        torch.manual_seed(123)
        loaded = algo.load(tmp_path / "model.zip", env=gym.make(ENV_ID), device="cpu")
    agent = sb3_tar.sparse_agent(loaded)
    assert agent.masks.names() == list(saved)
    assert all(torch.equal(agent.masks[name], mask) for name, mask in saved.items())
    assert all(torch.equal(a, b) for a, b in zip(model.policy.state_dict().values(), loaded.policy.state_dict().values()))
    checker = StepChecker(loaded)
    loaded.learn(100, reset_num_timesteps=False)
    assert checker.steps > 0
    assert_masks_hold(agent)
    assert_sparsity(agent, 0.75, 0.75)


def test_saved_models_load_and_predict_with_only_the_package_installed(tmp_path):
    """Every algorithm's model, loaded in a fresh interpreter that never imports sb3_tar itself."""
    expected, lines = {}, ["import sys", "import numpy as np"]
    for algo in ALL_ALGOS:
        model = make_model(algo, sparsity=0.8, criterion="erk", recovery_ratio=0.01)
        model.save(tmp_path / f"{algo.__name__}.zip")
        expected[algo.__name__] = model.predict(np.ones(3, dtype=np.float32), deterministic=True)[0]
        module = "sb3_contrib" if algo.__name__ in ("TQC", "CrossQ") else "stable_baselines3"
        lines += [
            f"from {module} import {algo.__name__}",
            f"model = {algo.__name__}.load(sys.argv[1] + '/{algo.__name__}.zip', device='cpu')",
            f"print('{algo.__name__}', type(model.policy).__module__, "
            "model.predict(np.ones(3, dtype=np.float32), deterministic=True)[0].tolist())",
        ]
    result = subprocess.run([sys.executable, "-c", "\n".join(lines), str(tmp_path)], capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = {line.split()[0]: line.split(maxsplit=2)[1:] for line in result.stdout.strip().splitlines()}
    assert set(printed) == set(expected)
    for name, (policy_module, prediction) in printed.items():
        assert policy_module == "sb3_tar.sb3.policies"
        assert np.array_equal(np.array(eval(prediction), dtype=np.float32), expected[name]), name


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_same_seed_gives_the_same_masks_and_a_bit_identical_first_1000_steps(algo):
    runs = []
    for _ in range(2):
        model = make_model(algo, seed=7, net_arch=[16, 16], sparsity=0.8, criterion="random", recovery_ratio=0.02)
        model.learn(1000)
        runs.append(model)
    first, second = (run.policy.state_dict() for run in runs)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first), "the two runs differ"
    assert torch.equal(torch.tensor(runs[0].replay_buffer.rewards), torch.tensor(runs[1].replay_buffer.rewards))


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_masks_are_drawn_from_the_model_seed_one_stream_per_network(algo):
    model = make_model(algo, seed=11, sparsity=0.9, criterion="random", n_critics=2)
    agent = sb3_tar.sparse_agent(model)
    assert agent.seed == 11 and int(model.policy.mask_seed) == 11
    for network in agent.networks:  # each network reproduces with the engine from its own stream
        assert agent.plan(network).seed == derive_seed(11, network.index)
        plan = prune_and_revive(network.module, sparsity=0.9, criterion="random", recovery_ratio=0.01,
                                seed=derive_seed(11, network.index), producers=network.producers)
        assert all(torch.equal(agent.masks[network.weight_name(name)], mask) for name, mask in plan.masks.items())
    # Independent streams: two Q-networks of one shape get different random masks ...
    qf0, qf1 = agent.networks[1:]
    first_layer = agent.layer_names(qf0)[0]
    assert not torch.equal(agent.masks[qf0.weight_name(first_layer)], agent.masks[qf1.weight_name(first_layer)])
    # ... and another model seed gives other masks.
    other = sb3_tar.sparse_agent(make_model(algo, seed=12, sparsity=0.9, criterion="random", n_critics=2))
    assert all(not torch.equal(other.masks[name], mask) for name, mask in agent.masks.items() if mask.numel() > 64)


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_unseeded_models_draw_their_masks_from_fresh_recorded_seeds(algo):
    first, second = (sb3_tar.sparse_agent(make_model(algo, seed=None, sparsity=0.9, criterion="random"))
                     for _ in range(2))
    assert first.seed != second.seed  # not one seed shared by every unseeded model of a process
    assert any(not torch.equal(first.masks[name], second.masks[name]) for name in first.masks.names())
    for network in first.networks:  # the recorded seed redraws the masks
        plan = prune_and_revive(network.module, sparsity=0.9, criterion="random", recovery_ratio=0.01,
                                seed=derive_seed(first.seed, network.index), producers=network.producers)
        assert all(torch.equal(first.masks[network.weight_name(name)], mask) for name, mask in plan.masks.items())


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_a_sparse_agent_prints_one_line_per_network(algo):
    model = make_model(algo, sparsity=0.8, recovery_ratio=0.02)
    agent = sb3_tar.sparse_agent(model)
    lines = repr(agent).splitlines()
    assert len(lines) == 1 + len(agent.networks)
    assert lines[0].startswith("SparseAgent(criterion='magnitude', recovery_ratio=0.02")
    for line, (name, plan) in zip(lines[1:], agent.plans().items()):
        assert line.split() == [f"{name}:", f"{plan.kept}/{plan.total}", "weights", "kept,", "sparsity",
                                f"{plan.sparsity:.4f},", str(plan.revived), "revived"]
    assert "WeightMasks(" in repr(model.policy) and "tensor" not in repr(model.policy)


# (policy_kwargs, the error message a user sees)
BAD_SETTINGS = {
    "sparsity-out-of-range": ({"sparsity": 1.0}, "sparsity=1.0 must be in [0, 1)"),
    "sparsity-as-string": ({"sparsity": "0.8"}, "sparsity='0.8' must be a finite number"),
    "actor-sparsity": ({"sparsity": 0.5, "actor_sparsity": -0.1}, "actor_sparsity=-0.1 must be in [0, 1)"),
    "critic-sparsity-too-high-for-reserve": (
        {"sparsity": 0.5, "critic_sparsity": 0.995, "recovery_ratio": 0.01},
        "recovery_ratio=0.01 is too large for critic_sparsity=0.995"),
    "no-sparsity": ({}, "TarMlpPolicy needs a sparsity"),
    "actor-sparsity-alone": ({"actor_sparsity": 0.5},
                             "actor_sparsity=0.5 alone leaves the critic without a sparsity: set sparsity or "
                             "critic_sparsity too"),
    "critic-sparsity-alone": ({"critic_sparsity": 0.5},
                              "TarMlpPolicy gives the actor no sparsity (critic_sparsity alone is for models without "
                              "an actor, DQN and QR-DQN): set sparsity or actor_sparsity too"),
    "unknown-criterion": ({"sparsity": 0.5, "criterion": "magnitud"}, "criterion='magnitud' is not a registered"),
    "misspelt-option": ({"sparsity": 0.5, "scpoe": "global"}, "unknown setting(s) ['scpoe']"),
    "bad-option-value": ({"sparsity": 0.5, "scope": "local"}, "scope='local' is not a distribution of kept weights"),
    "per-network-option": ({"sparsity": 0.5, "criterion": "synflow", "input_width": 4}, "['input_width'] itself"),
    "allocation": ({"sparsity": 0.5, "allocation": "even"}, "allocation='even' is not a revival allocation"),
    "budget": ({"sparsity": 0.5, "budget": "spare"}, "budget='spare' is not a revival budget mode"),
}


@pytest.mark.parametrize("algo", ALL_ALGOS)
@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_a_bad_setting_raises_the_engines_error_when_the_model_is_built(algo, case):
    policy_kwargs, message = BAD_SETTINGS[case]
    env = StepCounter(gym.make(ENV_ID))
    with pytest.raises(ValueError) as error:
        make_model(algo, env=env, **policy_kwargs)
    assert message in str(error.value)
    assert env.steps == 0


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_synflow_scores_every_head_of_the_actor(algo):
    model = make_model(algo, sparsity=0.9, criterion="synflow", iterations=10)
    plan = sb3_tar.sparse_agent(model).plans()["actor"]
    # Without the heads summed, a head outside ``forward`` would score 0 and be pruned away entirely.
    assert all(layer.kept_before > 0 for layer in plan.layers), [layer.as_dict() for layer in plan.layers]


def test_crossq_keeps_its_own_adam_betas():
    model = make_model(ALL_ALGOS[4], sparsity=0.5)
    assert model.actor.optimizer.defaults["betas"] == (0.5, 0.999)
    assert model.policy.optimizer_kwargs == {"betas": (0.5, 0.999)}


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_polyak_averaging_keeps_the_targets_zeros(algo):
    model = make_model(algo, sparsity=0.8)
    agent = sb3_tar.sparse_agent(model)
    networks = [network for network in agent.networks if network.target is not None]
    assert bool(networks) == (algo.__name__ != "CrossQ")  # CrossQ has no target networks
    for network in networks:
        weights, targets = agent.weights(network), agent.target_weights(network)
        with torch.no_grad():  # move every kept weight, as training does
            for name, weight in weights.items():
                weight.add_(torch.randn_like(weight) * agent.masks[name])
        polyak_update(weights.values(), targets.values(), 0.5)
        assert all(torch.any(target != 0) for target in targets.values())
        assert_masks_hold(agent, [network])


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_masks_live_on_the_device_of_the_module(algo, device):
    model = algo("TarMlpPolicy", ENV_ID, seed=0, learning_starts=50, batch_size=32, device=device,
                 policy_kwargs={"net_arch": [32, 32], "sparsity": 0.8})
    agent = sb3_tar.sparse_agent(model)
    for network in agent.networks:
        for name, weight in agent.weights(network).items():
            assert agent.masks[name].device == weight.device
    model.learn(LEARN_STEPS)
    enforcement = enforcement_of(model.actor.optimizer)
    tensors, multipliers = enforcement.masked()
    assert all(multiplier.device == tensor.device and multiplier.dtype == tensor.dtype
               for tensor, multiplier in zip(tensors, multipliers))
    assert_masks_hold(agent)


@settings(max_examples=8, deadline=None)
@given(
    algo=st.sampled_from(ALL_ALGOS),
    hidden=st.lists(st.integers(4, 40), min_size=1, max_size=3),
    sparsity=st.floats(0.0, 0.95),
    recovery_ratio=st.sampled_from([0.0, 0.005, 0.01, 0.02]),
    criterion=st.sampled_from(["magnitude", "random", "erk"]),
)
def test_any_architecture_and_sparsity_keep_exact_counts_and_zeros_through_training(
    algo, hidden, sparsity, recovery_ratio, criterion
):
    if sparsity + recovery_ratio >= 1.0:
        recovery_ratio = 0.0
    # Tiny layers at high sparsity may keep no weight: allowed here, the counts must hold all the same.
    model = make_model(algo, net_arch=hidden, sparsity=sparsity, criterion=criterion, recovery_ratio=recovery_ratio,
                       allow_empty_layers=True)
    checker = StepChecker(model)
    model.learn(80)
    agent = sb3_tar.sparse_agent(model)
    assert checker.steps > 0
    assert_sparsity(agent, sparsity, sparsity)
    assert_masks_hold(agent)
    for network in agent.networks:
        kept, total = kept_count(agent, network)
        plan = agent.plan(network)
        assert abs((1 - (kept - plan.repaired) / total) - sparsity) <= 0.5 / total + 1e-12
        if recovery_ratio > 0:  # TAR: every unit has an input, every layer a weight
            assert all(layer.isolated_outputs_after == 0 and layer.kept_after > 0 for layer in plan.layers)
