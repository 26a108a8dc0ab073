"""TARCallback sparsifies a plain MlpPolicy model at training start; SparsityLogCallback logs and checks.

Each test body runs for every algorithm where it is about the algorithm (SAC, TD3, DDPG, TQC, CrossQ).
"""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import pytest
import torch
from sb3_support import ALL_ALGOS, ENV_ID, StepChecker, assert_masks_hold, assert_sparsity, make_model
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger

import sb3_tar
from sb3_tar import MaskDriftError, SparsityLogCallback, TARCallback
from sb3_tar.sb3 import callback as callback_module

LEARN_STEPS = 150


class CheckEveryStep(BaseCallback):
    """Attaches a ``StepChecker`` once the masks exist (after TARCallback's training start)."""

    def _on_training_start(self) -> None:
        self.checker = StepChecker(self.model)

    def _on_step(self) -> bool:
        return True


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_callback_sparsifies_a_dense_model_at_training_start_and_keeps_the_masks(algo):
    model = make_model(algo, "MlpPolicy")
    with pytest.raises(ValueError, match="no sb3-tar masks"):
        sb3_tar.sparse_agent(model)  # dense until training starts
    checks = CheckEveryStep()
    model.learn(LEARN_STEPS, callback=[TARCallback(actor_sparsity=0.7, critic_sparsity=0.9, recovery_ratio=0.01),
                                       checks])
    agent = sb3_tar.sparse_agent(model)
    assert checks.checker.steps > 0
    assert_sparsity(agent, actor=0.7, critic=0.9)
    assert_masks_hold(agent)


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_callback_and_policy_draw_the_same_masks_from_the_same_seed(algo):
    settings = {"sparsity": 0.8, "criterion": "erk", "recovery_ratio": 0.02}
    sparse = sb3_tar.sparse_agent(make_model(algo, seed=5, **settings))
    dense = make_model(algo, "MlpPolicy", seed=5)
    dense.learn(1, callback=TARCallback(**settings))
    from_callback = sb3_tar.sparse_agent(dense)
    assert from_callback.seed == sparse.seed == 5
    assert from_callback.masks.names() == sparse.masks.names()
    assert all(torch.equal(from_callback.masks[name], mask) for name, mask in sparse.masks.items())


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_resuming_with_the_callback_keeps_the_mask_instead_of_pruning_again(algo, tmp_path, monkeypatch):
    model = make_model(algo, "MlpPolicy")
    model.learn(LEARN_STEPS, callback=TARCallback(0.8, recovery_ratio=0.01))  # magnitude: depends on the weights
    masks = {name: mask.clone() for name, mask in sb3_tar.sparse_agent(model).masks.items()}
    model.save(tmp_path / "model.zip")

    loaded = algo.load(tmp_path / "model.zip", env=gym.make(ENV_ID), device="cpu")
    monkeypatch.setattr(callback_module, "draw_masks", lambda *args: pytest.fail("the callback pruned again"))
    checks = CheckEveryStep()
    loaded.learn(100, callback=[TARCallback(0.8, recovery_ratio=0.01), checks], reset_num_timesteps=False)
    agent = sb3_tar.sparse_agent(loaded)
    assert all(torch.equal(agent.masks[name], mask) for name, mask in masks.items())
    assert checks.checker.steps > 0
    assert_masks_hold(agent)


def test_resuming_with_other_settings_is_refused(tmp_path):
    model = make_model(SAC, "MlpPolicy")
    model.learn(60, callback=TARCallback(0.8))
    with pytest.raises(ValueError, match="resume it with the settings it was trained with"):
        model.learn(60, callback=TARCallback(0.5), reset_num_timesteps=False)


def test_learning_again_in_the_same_process_neither_prunes_again_nor_stacks_hooks():
    model = make_model(TD3, "MlpPolicy")
    callback = TARCallback(0.8)
    model.learn(LEARN_STEPS, callback=callback)
    masks = {name: mask.clone() for name, mask in sb3_tar.sparse_agent(model).masks.items()}
    model.learn(100, callback=callback, reset_num_timesteps=False)
    agent = sb3_tar.sparse_agent(model)
    assert all(torch.equal(agent.masks[name], mask) for name, mask in masks.items())
    assert len(model.actor.optimizer._optimizer_step_post_hooks) == 1
    assert_masks_hold(agent)


def test_callback_refuses_a_model_whose_policy_is_already_sparse():
    model = make_model(SAC, sparsity=0.8)
    with pytest.raises(ValueError, match="SparsityLogCallback"):
        model.learn(10, callback=TARCallback(0.8))


@pytest.mark.parametrize(("settings", "message"), [
    ({"sparsity": -0.5}, "sparsity=-0.5 must be in [0, 1)"),
    ({"sparsity": 0.8, "recovery_ratio": -0.01}, "recovery_ratio=-0.01 must be >= 0"),
    ({"sparsity": 0.8, "critic_sparsity": 2}, "critic_sparsity=2 must be in [0, 1)"),
    ({"sparsity": 0.8, "criterion": "synflow", "iteration": 3}, "unknown setting(s) ['iteration']"),
    ({"sparsity": 0.8, "seed": -1}, "seed=-1 must be a non-negative integer"),
    ({}, "TARCallback needs a sparsity"),
])
def test_callback_settings_are_checked_when_it_is_created(settings, message):
    with pytest.raises(ValueError) as error:
        TARCallback(**settings)
    assert message in str(error.value)


def test_callback_seed_overrides_the_model_seed():
    model = make_model(SAC, "MlpPolicy", seed=1)
    model.learn(1, callback=TARCallback(0.9, criterion="random", seed=42))
    assert sb3_tar.sparse_agent(model).seed == 42
    # A random mask depends on the seed only, not on the weights: the same as a model seeded 42.
    reference = sb3_tar.sparse_agent(make_model(SAC, seed=42, sparsity=0.9, criterion="random"))
    assert all(torch.equal(sb3_tar.sparse_agent(model).masks[name], mask) for name, mask in reference.masks.items())


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_callback_on_unseeded_models_draws_from_fresh_recorded_seeds(algo):
    agents = []
    for _ in range(2):
        model = make_model(algo, "MlpPolicy", seed=None)
        model.learn(1, callback=TARCallback(0.9, criterion="random"))
        agents.append(sb3_tar.sparse_agent(model))
        assert model.sb3_tar_state["seed"] == agents[-1].seed
    assert agents[0].seed != agents[1].seed
    assert any(not torch.equal(agents[0].masks[name], agents[1].masks[name]) for name in agents[0].masks.names())


class Records(KVWriter):
    """Everything SB3's logger writes, dump by dump."""

    def __init__(self) -> None:
        self.dumps: list[dict[str, object]] = []

    def write(self, key_values, key_excluded, step=0) -> None:
        self.dumps.append({"step": step, **key_values})


def logged(model) -> Records:
    records = Records()
    model.set_logger(Logger(folder=None, output_formats=[records]))
    return records


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_topology_is_logged_at_training_start_and_sparsity_checked_at_each_log_interval(algo):
    model = make_model(algo, sparsity=0.8, recovery_ratio=0.02)
    records = logged(model)
    model.learn(450, callback=SparsityLogCallback(), log_interval=1)  # Pendulum episodes: 200 steps, 2 dumps
    start, *intervals = records.dumps
    plans = sb3_tar.sparse_agent(model).plans()
    assert start["step"] == 0
    for network, plan in plans.items():
        assert start[f"sparsity/{network}/sparsity"] == pytest.approx(plan.sparsity)
        assert start[f"sparsity/{network}/revived"] == plan.revived > 0
        assert start[f"sparsity/{network}/floor_deficit"] == sum(layer.deficit for layer in plan.layers)
        assert start[f"sparsity/{network}/isolated_units"] == sum(
            layer.isolated_inputs_after + layer.isolated_outputs_after for layer in plan.layers)
        for layer in plan.layers:
            assert start[f"sparsity/{network}/density/{layer.name.removesuffix('.weight')}"] == layer.density_after
    assert [dump["step"] for dump in intervals] == [200, 400]
    for dump in intervals:
        for network, plan in plans.items():
            assert dump[f"sparsity/{network}/sparsity"] >= plan.sparsity  # measured: masked weights are 0.0


def test_the_tar_callback_logs_the_topology_too():
    model = make_model(TD3, "MlpPolicy")
    records = logged(model)
    model.learn(10, callback=TARCallback(0.6, recovery_ratio=0.01))
    actor = sb3_tar.sparse_agent(model).plans()["actor"]
    assert records.dumps[0]["sparsity/actor/sparsity"] == pytest.approx(actor.sparsity)
    assert actor.sparsity == pytest.approx(0.6 - actor.repaired / actor.total, abs=1e-3)


def test_a_masked_weight_changed_outside_training_is_caught_at_the_next_log_interval():
    model = make_model(SAC, sparsity=0.8)
    agent = sb3_tar.sparse_agent(model)
    network = agent.networks[1]
    name, target = next(iter(agent.target_weights(network).items()))
    with torch.no_grad():
        target[~agent.masks[name]] = 1.0  # e.g. a target network loaded from a dense checkpoint
    logged(model)
    with pytest.raises(MaskDriftError, match=f"masked weights of {name} \\(target network\\)"):
        model.learn(450, callback=SparsityLogCallback(), log_interval=1)


def test_the_log_callback_needs_an_sb3_tar_model():
    with pytest.raises(ValueError, match="no sb3-tar masks"):
        make_model(SAC, "MlpPolicy").learn(10, callback=SparsityLogCallback())


@pytest.mark.parametrize("algo", [SAC, TD3])
def test_a_tar_callback_model_keeps_its_masks_when_loaded_and_trained_without_the_callback(algo, tmp_path):
    model = make_model(algo, "MlpPolicy")
    model.learn(100, callback=TARCallback(0.8))
    model.save(tmp_path / "model.zip")
    # A fresh program that never imports sb3_tar: loading the file imports it, learn attaches the masks.
    code = f"""
import sys
import subprocess
import sys

import gymnasium as gym
import torch
from stable_baselines3 import {algo.__name__} as Algo
model = Algo.load({str(tmp_path / "model.zip")!r}, env=gym.make({ENV_ID!r}), device="cpu")
assert "sb3_tar" in sys.modules
masks = model.sb3_tar_state["masks"]
model.learn(300)
weights = dict(model.policy.named_parameters())
assert all(torch.all(weights[name].detach()[~mask] == 0) for name, mask in masks.items())
print("kept", sum(int(mask.sum()) for mask in masks.values()))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("kept ")


def test_stored_masks_that_do_not_fit_the_weights_are_refused_when_training_starts():
    model = make_model(SAC, "MlpPolicy")
    model.learn(60, callback=TARCallback(0.8))
    name, mask = next(iter(model.sb3_tar_state["masks"].items()))
    with torch.no_grad():
        model.policy.get_parameter(name)[~mask.to(model.device)] = 1.0  # e.g. dense weights loaded by hand
    with pytest.raises(sb3_tar.MaskMismatchError, match=r"the masks stored on the model \(sb3_tar_state\)"):
        model.learn(10)


def test_the_stored_mask_hook_wraps_sb3s_setup_learn_once():
    from importlib import metadata

    from stable_baselines3.common.base_class import BaseAlgorithm

    from sb3_tar.sb3.stored_masks import install

    install()
    install()
    wrapper = BaseAlgorithm._setup_learn
    assert wrapper._sb3_tar_attaches_stored_masks
    assert not getattr(wrapper.__wrapped__, "_sb3_tar_attaches_stored_masks", False)  # one wrapper, not two
    # Checked against this SB3: every algorithm's learn() runs BaseAlgorithm._setup_learn before its first step.
    assert metadata.version("stable-baselines3") == "2.9.2"
