"""Loading never trusts the masks it finds, and never prunes again.

Every path that puts weights into a ``TarMlpPolicy`` model (``Algo.load``, ``set_parameters`` with
or without ``exact_match``, ``policy.load_state_dict``, ``BasePolicy.load``) checks the weights and
masks together before copying anything, and the loaded masks are the saved ones, not redrawn.
Each test body runs for every algorithm (SAC, TD3, DDPG, TQC, CrossQ) where it applies.
"""

from __future__ import annotations

import re

import gymnasium as gym
import pytest
import torch
from sb3_contrib import CrossQ
from sb3_support import (
    ALL_ALGOS,
    ENV_ID,
    NEW_ALGOS,
    StepChecker,
    assert_masks_hold,
    assert_sparsity,
    make_any_model,
    make_model,
)
from stable_baselines3.common.save_util import load_from_zip_file, save_to_zip_file

import sb3_tar
from sb3_tar import DSTCallback, TARCallback
from sb3_tar.sb3 import tar_policy as tar_policy_module
from sb3_tar.sb3.masking import enforcement_of


ALGOS_WITH_TARGETS = [algo for algo in ALL_ALGOS if algo is not CrossQ]


def first_weight(model) -> str:
    """The name of the actor's first prunable weight (``actor.latent_pi.0.weight``, ``actor.mu.0.weight``)."""
    return sb3_tar.sparse_agent(model).masks.names()[0]


def a_pruned_position(state: dict, name: str) -> tuple[int, int]:
    return tuple(int(i) for i in (~state[f"masks.{name}"]).nonzero()[0])


def a_kept_nonzero_position(state: dict, name: str) -> tuple[int, int]:
    return tuple(int(i) for i in (state[f"masks.{name}"] & (state[name] != 0)).nonzero()[0])


def set_a_mask_bit_on_a_pruned_weight(state: dict, model) -> tuple[str, str]:
    name = first_weight(model)
    state[f"masks.{name}"][a_pruned_position(state, name)] = True
    return name, "keeps"


def clear_a_mask_bit_on_a_kept_weight(state: dict, model) -> tuple[str, str]:
    name = first_weight(model)
    state[f"masks.{name}"][a_kept_nonzero_position(state, name)] = False
    return name, "(is|are) non-zero where the mask"


def make_every_mask_all_true(state: dict, model) -> tuple[str, str]:
    for key in [key for key in state if key.startswith("masks.") and key != "masks.updates"]:
        state[key] = torch.ones_like(state[key])
    return first_weight(model), "keeps"


def add_a_static_bit_that_revival_pruned(state: dict, model) -> tuple[str, str]:
    name = first_weight(model)
    state[f"masks_before_revival.{name}"][a_pruned_position(state, name)] = True
    return name, "kept in its static mask"


# How a saved file can be wrong: (tamper(policy state dict, model) -> (the weight the error names, what it says))
TAMPERINGS = {
    "mask-bit-set-on-a-pruned-weight": set_a_mask_bit_on_a_pruned_weight,
    "mask-bit-cleared-on-a-kept-weight": clear_a_mask_bit_on_a_kept_weight,
    "all-true-masks": make_every_mask_all_true,
    "static-mask-not-inside-the-mask": add_a_static_bit_that_revival_pruned,
}


def saved_model(algo, tmp_path, **settings):
    model = make_model(algo, **{"sparsity": 0.8, "recovery_ratio": 0.02, "criterion": "erk", **settings})
    model.save(tmp_path / "model.zip")
    return model


def tampered_file(tmp_path, tamper, model) -> tuple[object, str, str]:
    data, params, variables = load_from_zip_file(tmp_path / "model.zip", device="cpu")
    name, problem = tamper(params["policy"], model)
    path = tmp_path / "tampered.zip"
    save_to_zip_file(path, data=data, params=params, pytorch_variables=variables)
    return path, name, problem


@pytest.mark.parametrize("algo", ALL_ALGOS)
@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_a_file_whose_masks_do_not_fit_is_refused_naming_the_weight(algo, case, tmp_path):
    model = saved_model(algo, tmp_path)
    path, name, problem = tampered_file(tmp_path, TAMPERINGS[case], model)
    with pytest.raises(ValueError, match=rf"{re.escape(name)}.*{problem}|{problem}.*{re.escape(name)}") as error:
        algo.load(path, env=gym.make(ENV_ID), device="cpu")
    assert str(error.value).startswith("loading a Tar")


@pytest.mark.parametrize("algo", ALGOS_WITH_TARGETS)
def test_a_target_network_with_a_non_zero_masked_weight_is_refused(algo, tmp_path):
    model = saved_model(algo, tmp_path)
    agent = sb3_tar.sparse_agent(model)
    critic = agent.networks[1]
    layer = agent.layer_names(critic)[0]
    name, target = critic.weight_name(layer), critic.target_weight_name(layer)

    def tamper(state, _):
        state[target][~state[f"masks.{name}"]] = 0.5
        return target, "non-zero"

    path, _, _ = tampered_file(tmp_path, tamper, model)
    with pytest.raises(ValueError, match=rf"weights of {re.escape(target)} \(the target network's copy of "
                                         rf"{re.escape(name)}\) are non-zero"):
        algo.load(path, device="cpu")


LOAD_PATHS = ["algo.load", "set_parameters", "set_parameters-not-exact", "policy.load_state_dict", "BasePolicy.load"]


def load_by(path_kind: str, algo, model, tmp_path, tamper) -> None:
    """Put a tampered copy of ``model``'s own weights into a model by one of SB3's load paths."""
    if path_kind == "algo.load":
        path, _, _ = tampered_file(tmp_path, tamper, model)
        algo.load(path, device="cpu")
    elif path_kind.startswith("set_parameters"):
        params = model.get_parameters()  # the policy's own tensors: tamper with copies
        params["policy"] = {key: value.clone() for key, value in params["policy"].items()}
        tamper(params["policy"], model)
        if path_kind == "set_parameters":
            model.set_parameters(params, exact_match=True, device="cpu")
        else:
            model.set_parameters({"policy": params["policy"]}, exact_match=False, device="cpu")
    elif path_kind == "policy.load_state_dict":
        state = {key: value.clone() for key, value in model.policy.state_dict().items()}
        tamper(state, model)
        model.policy.load_state_dict(state)
    else:
        model.policy.save(tmp_path / "policy.pt")
        saved = torch.load(tmp_path / "policy.pt", weights_only=False)
        tamper(saved["state_dict"], model)
        torch.save(saved, tmp_path / "policy.pt")
        type(model.policy).load(tmp_path / "policy.pt", device="cpu")


@pytest.mark.parametrize("algo", ALL_ALGOS)
@pytest.mark.parametrize("path_kind", LOAD_PATHS)
def test_every_load_path_checks_the_masks_before_copying_anything(algo, path_kind, tmp_path):
    model = saved_model(algo, tmp_path)
    before = {key: value.clone() for key, value in model.policy.state_dict().items()}
    with pytest.raises(ValueError, match=rf"{re.escape(first_weight(model))} is non-zero where the mask"):
        load_by(path_kind, algo, model, tmp_path, clear_a_mask_bit_on_a_kept_weight)
    after = model.policy.state_dict()
    assert all(torch.equal(after[key], value) for key, value in before.items()), "a refused load changed the model"


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_dense_weights_set_into_a_sparse_model_are_refused_and_change_nothing(algo):
    sparse = make_model(algo, sparsity=0.8, recovery_ratio=0.02, criterion="erk")
    dense = make_model(algo, "MlpPolicy", seed=1)
    before = {key: value.clone() for key, value in sparse.policy.state_dict().items()}
    with pytest.raises(ValueError, match="are non-zero where the mask of actor"):
        sparse.set_parameters(dense.get_parameters(), exact_match=False, device="cpu")
    assert all(torch.equal(sparse.policy.state_dict()[key], value) for key, value in before.items())
    assert_masks_hold(sb3_tar.sparse_agent(sparse))


@pytest.mark.parametrize("algo", ALL_ALGOS)
@pytest.mark.parametrize("exact_match", [True, False])
def test_a_models_own_parameters_set_back_keep_its_masks_and_one_hook_per_optimizer(algo, exact_match):
    model = make_model(algo, sparsity=0.8, recovery_ratio=0.02, criterion="erk")
    model.learn(80)
    masks = {name: mask.clone() for name, mask in sb3_tar.sparse_agent(model).masks.items()}
    model.set_parameters(model.get_parameters(), exact_match=exact_match, device="cpu")
    agent = sb3_tar.sparse_agent(model)
    assert all(torch.equal(agent.masks[name], mask) for name, mask in masks.items())
    for network in agent.networks:
        assert enforcement_of(network.optimizer) is not None
        assert len(network.optimizer._optimizer_step_post_hooks) == 1
    checker = StepChecker(model)
    model.learn(60, reset_num_timesteps=False)
    assert checker.steps > 0
    assert_masks_hold(agent)


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_loading_takes_the_saved_masks_without_pruning_again(algo, tmp_path, monkeypatch):
    model = saved_model(algo, tmp_path, criterion="synflow", iterations=5)
    model.policy.save(tmp_path / "policy.pt")
    monkeypatch.setattr(tar_policy_module, "draw_masks", lambda *args: pytest.fail("the load pruned again"))
    for loaded in (algo.load(tmp_path / "model.zip", device="cpu").policy,
                   type(model.policy).load(tmp_path / "policy.pt", device="cpu")):
        expected = model.policy.state_dict()
        assert all(torch.equal(loaded.state_dict()[key], value) for key, value in expected.items())
        agent = sb3_tar.sparse_agent(loaded)
        assert agent.seed == int(model.policy.mask_seed)
        assert_masks_hold(agent)
        assert all(enforcement_of(network.optimizer) is not None for network in agent.networks)


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_a_fresh_model_is_sparse_right_after_construction(algo):
    model = make_model(algo, sparsity=0.8, recovery_ratio=0.02, criterion="erk")
    agent = sb3_tar.sparse_agent(model)
    assert_sparsity(agent, 0.8, 0.8)
    assert_masks_hold(agent)
    for network in agent.networks:
        nonzero = sum(int(weight.count_nonzero()) for weight in agent.weights(network).values())
        total = sum(weight.numel() for weight in agent.weights(network).values())
        assert nonzero <= round(0.2 * total) + agent.plan(network).repaired


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_a_file_without_masks_is_refused_by_a_tar_policy(algo, tmp_path):
    make_model(algo, "MlpPolicy").save(tmp_path / "dense.zip")
    data, _, _ = load_from_zip_file(tmp_path / "dense.zip", device="cpu")
    policy_class = algo.policy_aliases["TarMlpPolicy"]
    with pytest.raises(ValueError, match=r"the state dict has no masks\.actor\..*carries its masks"):
        algo.load(tmp_path / "dense.zip", device="cpu", custom_objects={
            "policy_class": policy_class, "policy_kwargs": {**data["policy_kwargs"], "sparsity": 0.8}})


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_a_file_saved_before_mask_updates_were_counted_still_loads(algo, tmp_path):
    model = saved_model(algo, tmp_path)
    data, params, variables = load_from_zip_file(tmp_path / "model.zip", device="cpu")
    del params["policy"]["masks.updates"]
    save_to_zip_file(tmp_path / "old.zip", data=data, params=params, pytorch_variables=variables)
    loaded = algo.load(tmp_path / "old.zip", device="cpu")
    assert all(torch.equal(loaded.policy.state_dict()[key], value) for key, value in model.policy.state_dict().items())


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_masks_moved_by_dynamic_sparse_training_save_load_and_resume(algo, tmp_path):
    model = make_model(algo, sparsity=0.8, criterion="erk")
    callback = DSTCallback("set", update_interval=10, total_gradient_steps=100)
    model.learn(120, callback=callback)
    assert callback.history
    agent = sb3_tar.sparse_agent(model)
    assert any(not torch.equal(agent.masks[name], agent.masks_before_revival[name]) for name in agent.masks.names())
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", env=gym.make(ENV_ID), device="cpu")
    assert all(torch.equal(loaded.policy.masks[name], mask) for name, mask in agent.masks.items())
    loaded.learn(60, callback=DSTCallback("set", update_interval=10, total_gradient_steps=100),
                 reset_num_timesteps=False)
    assert_masks_hold(sb3_tar.sparse_agent(loaded))


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_resuming_the_callback_checks_the_masks_stored_on_the_model(algo, tmp_path):
    model = make_model(algo, "MlpPolicy")
    model.learn(60, callback=TARCallback(0.8, recovery_ratio=0.02))
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", env=gym.make(ENV_ID), device="cpu")
    name = next(iter(loaded.sb3_tar_state["masks"]))
    mask, weight = loaded.sb3_tar_state["masks"][name], loaded.policy.get_parameter(name)
    mask[tuple(int(i) for i in (mask & (weight.detach() != 0)).nonzero()[0])] = False
    with pytest.raises(ValueError, match=rf"the masks stored on the model \(sb3_tar_state\): 1 weight of "
                                         rf"{re.escape(name)} is non-zero"):
        loaded.learn(60, callback=TARCallback(0.8, recovery_ratio=0.02), reset_num_timesteps=False)
    assert loaded.policy.get_parameter(name).count_nonzero() == weight.count_nonzero()  # nothing was zeroed


def test_a_callback_model_whose_masks_moved_by_dynamic_sparse_training_resumes(tmp_path):
    model = make_model(ALL_ALGOS[0], "MlpPolicy")
    model.learn(120, callback=DSTCallback("set", sparsity=0.8, update_interval=10, total_gradient_steps=100))
    model.save(tmp_path / "model.zip")
    loaded = ALL_ALGOS[0].load(tmp_path / "model.zip", env=gym.make(ENV_ID), device="cpu")
    loaded.learn(60, callback=DSTCallback("set", sparsity=0.8, update_interval=10, total_gradient_steps=100),
                 reset_num_timesteps=False)
    assert_masks_hold(sb3_tar.sparse_agent(loaded))


# A part of each policy that holds masked weights (and, where there is one, its target copy).
SUB_MODULES = {"SAC": ["actor", "critic", "critic_target.qf0"], "TD3": ["actor.mu", "actor_target", "critic"],
               "DDPG": ["actor", "critic_target"], "TQC": ["actor.latent_pi", "critic"], "CrossQ": ["actor", "critic"],
               "PPO": ["mlp_extractor", "action_net"], "A2C": ["mlp_extractor.value_net"], "DQN": ["q_net", "q_net_target"],
               "QRDQN": ["quantile_net"]}


@pytest.mark.parametrize("algo", [*ALL_ALGOS, *NEW_ALGOS], ids=lambda algo: algo.__name__)
def test_a_load_into_a_part_of_the_policy_checks_the_masks_as_the_policy_does(algo):
    model = make_any_model(algo, sparsity=0.8)
    agent = sb3_tar.sparse_agent(model)
    for path in SUB_MODULES[algo.__name__]:
        module = model.policy.get_submodule(path)
        saved = {key: value.clone() for key, value in module.state_dict().items()}
        with pytest.raises(sb3_tar.MaskMismatchError, match=rf"loading a Tar\w+: .* non-zero where the mask of "):
            module.load_state_dict({key: torch.rand_like(value) if value.is_floating_point() else value
                                    for key, value in saved.items()})
        assert all(torch.equal(module.state_dict()[key], value) for key, value in saved.items())  # nothing copied
        module.load_state_dict(saved)  # its own weights load, and the masks still hold
    assert_masks_hold(agent)
    model.learn(100)
    assert_masks_hold(sb3_tar.sparse_agent(model))
