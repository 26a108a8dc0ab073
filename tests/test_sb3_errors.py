"""Every bad input gets a clear error before anything runs, naming the setting and what is allowed.

Each case checks the message and that nothing ran or was written: no environment step, no file.
Each test body runs for every algorithm (SAC, TD3, DDPG, TQC, CrossQ) where it applies.
"""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import TQC, CrossQ
from sb3_support import ALL_ALGOS, ENV_ID, StepCounter, assert_masks_hold, kept_count, make_model
from stable_baselines3 import DDPG, SAC, TD3

import sb3_tar
from sb3_tar import PruningSettings, TARCallback, prune_and_revive, topology_report
from sb3_tar.sb3.policies import TAR_POLICIES


def refused(algo, tmp_path, message: str, *, env_id: str = ENV_ID, policy: str = "TarMlpPolicy",
            callback=None, **policy_kwargs) -> str:
    """Build (and, with a callback, start training) a model that must be refused; nothing may run or be written."""
    env = StepCounter(gym.make(env_id))
    with pytest.raises((ValueError, AssertionError)) as error:
        model = algo(policy, env, seed=0, learning_starts=10, batch_size=16, device="cpu",
                     tensorboard_log=None if callback else str(tmp_path / "logs"),
                     policy_kwargs={"net_arch": [32, 32], **policy_kwargs})
        model.learn(20, callback=callback)
    assert re.search(message, str(error.value)), str(error.value)
    assert env.steps == 0, "the environment was stepped"
    assert list(tmp_path.iterdir()) == [], "a file was written"
    return str(error.value)


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_a_misspelt_setting_is_named_before_anything_else(algo, tmp_path):
    message = refused(algo, tmp_path, r"TarMlpPolicy got unknown setting\(s\) \['sparsty'\] \(did you mean "
                                      r"'sparsity'\?\): not one of \['sparsity', ", sparsty=0.8)
    assert "needs a sparsity" not in message


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_a_misspelt_policy_argument_is_named_with_its_likely_meaning(algo, tmp_path):
    dense = algo.policy_aliases["MlpPolicy"].__name__
    refused(algo, tmp_path, rf"unknown setting\(s\) \['activation_fun'\] \(did you mean 'activation_fn'\?\).*"
                            rf"nor an argument of {dense}", sparsity=0.8, activation_fun=torch.nn.Tanh)


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_a_misspelt_callback_setting_is_named_when_the_callback_is_created(algo, tmp_path):
    with pytest.raises(ValueError, match=r"TARCallback got unknown setting\(s\) \['sparsty'\] \(did you mean "
                                         r"'sparsity'\?\)"):
        TARCallback(sparsty=0.8)
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['seeds'\] \(did you mean 'seed'\?\)"):
        TARCallback(0.8, seeds=3)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sparsity": 0.8, "scope": "bogus"}, r"scope='bogus' is not a distribution of kept weights over layers; allowed: \['global', 'layerwise', 'erk'\]"),
        ({"sparsity": 0.8, "criterion": "synflow", "iterations": 0}, "synflow option iterations=0 must be an integer >= 1"),
        ({"sparsity": 0.8, "criterion": "synflow", "iterations": True}, "iterations=True must be an integer >= 1"),
        ({"sparsity": 0.8, "criterion": ["magnitude"]}, r"criterion=\['magnitude'\] is not a registered criterion"),
        # Both misspelt: the unknown name comes first, checked against every criterion's options.
        ({"sparsty": 0.8, "criterion": "magnitud"},
         r"unknown setting\(s\) \['sparsty'\] \(did you mean 'sparsity'\?\).*nor an option of any criterion"),
    ],
)
def test_a_bad_option_value_or_criterion_is_refused_when_the_callback_is_created(settings, message):
    with pytest.raises(ValueError, match=message):
        TARCallback(**settings)


NUMPY_SETTINGS = {
    "float32": {"sparsity": np.float32(0.75), "recovery_ratio": np.float32(0.02)},
    "float64": {"sparsity": np.float64(0.75), "recovery_ratio": np.float64(0.02)},
    "per-role": {"actor_sparsity": np.float32(0.75), "critic_sparsity": np.float64(0.75),
                 "recovery_ratio": np.float32(0.02)},
    "integer-option": {"sparsity": np.float32(0.75), "criterion": "synflow", "iterations": np.int64(3)},
}


@pytest.mark.parametrize("algo", ALL_ALGOS)
@pytest.mark.parametrize("case", sorted(NUMPY_SETTINGS))
def test_numpy_scalars_are_numbers_and_give_the_same_masks_as_python_numbers(algo, case):
    settings = NUMPY_SETTINGS[case]
    python = {name: value.item() if isinstance(value, np.generic) else value for name, value in settings.items()}
    from_numpy, from_python = (sb3_tar.sparse_agent(make_model(algo, **kwargs)) for kwargs in (settings, python))
    assert all(torch.equal(from_numpy.masks[name], mask) for name, mask in from_python.masks.items())
    assert [kept_count(from_numpy, n) for n in from_numpy.networks] == [
        kept_count(from_python, n) for n in from_python.networks]
    assert not any(isinstance(value, np.generic) for value in from_numpy.settings.as_kwargs().values())


def test_numpy_scalars_are_numbers_for_the_engine_and_the_callback(small_net):
    settings = PruningSettings(np.float32(0.5), recovery_ratio=np.float64(0.01))
    assert settings.kept_counts(1000) == PruningSettings(0.5, recovery_ratio=0.01).kept_counts(1000)
    assert type(settings.sparsity) is float
    plan = prune_and_revive(small_net, sparsity=np.float32(0.5), recovery_ratio=np.float32(0.01), seed=0)
    assert plan.masks.keys() == prune_and_revive(small_net, sparsity=0.5, recovery_ratio=0.01, seed=0).masks.keys()
    callback = TARCallback(np.float32(0.8), recovery_ratio=np.float64(0.01), seed=np.int64(3))
    assert callback.seed == 3 and type(callback.seed) is int
    with pytest.raises(ValueError, match="sparsity=np.True_ must be a finite number"):
        PruningSettings(np.bool_(True))
    with pytest.raises(ValueError, match=r"sparsity=nan must be a finite number"):
        TARCallback(np.float32("nan"))


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_a_discrete_action_space_is_refused_with_the_allowed_space(algo, tmp_path):
    # SB3 checks the space before the policy is built, with the same message for its dense MlpPolicy.
    refused(algo, tmp_path, r"only supports .*Box.* but Discrete\(2\) was provided", env_id="CartPole-v1",
            sparsity=0.8)
    # Built on its own, the policy refuses it too, instead of building a policy that cannot act.
    policy_class = algo.policy_aliases["TarMlpPolicy"]
    with pytest.raises(ValueError, match=r"TarMlpPolicy needs a continuous action space \(gymnasium.spaces.Box\).*"
                                         r"action_space=Discrete\(2\)"):
        policy_class(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), lambda _: 1e-3, sparsity=0.8)


# Static pruning (recovery_ratio=0, said explicitly) that empties a layer.
EMPTY_LAYER_SETTINGS = {
    "extreme-sparsity": ({"sparsity": 0.9999, "recovery_ratio": 0.0}, r"sparsity=0\.9999"),
    "critic-sparsity": ({"sparsity": 0.5, "critic_sparsity": 0.9999, "recovery_ratio": 0.0}, r"critic_sparsity=0\.9999"),
    "one-unit": ({"sparsity": 0.8, "net_arch": [1], "recovery_ratio": 0.0}, r"sparsity=0\.8"),
}


@pytest.mark.parametrize("algo", ALL_ALGOS)
@pytest.mark.parametrize("case", sorted(EMPTY_LAYER_SETTINGS))
def test_settings_that_leave_a_layer_without_weights_are_refused_naming_network_and_layer(algo, case, tmp_path):
    settings, setting = EMPTY_LAYER_SETTINGS[case]
    refused(algo, tmp_path, rf"TarMlpPolicy: {setting} \(criterion='magnitude'\) leaves the (actor|qf\d) network with "
                            r"no kept weight in (actor|critic)\.\S+\.weight \(\d+ in x \d+ out\).*disconnected.*"
                            r"allow_empty_layers=True", **settings)


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_the_callback_refuses_a_layer_without_weights_before_the_first_step(algo, tmp_path):
    refused(algo, tmp_path, r"TARCallback: sparsity=0\.9999 .* leaves the actor network with no kept weight in actor\.",
            policy="MlpPolicy", callback=TARCallback(0.9999, recovery_ratio=0.0))


DISCONNECTING_SETTINGS = {
    "high-sparsity": {"sparsity": 0.98},
    "critic-sparsity": {"sparsity": 0.5, "critic_sparsity": 0.98},
    "one-unit": {"sparsity": 0.8, "net_arch": [1]},
    "two-units": {"sparsity": 0.9, "net_arch": [2, 2]},
}


@pytest.mark.parametrize("algo", ALL_ALGOS)
@pytest.mark.parametrize("case", sorted(DISCONNECTING_SETTINGS))
def test_settings_that_disconnect_static_pruning_are_connected_by_the_default_tar(algo, case):
    agent = sb3_tar.sparse_agent(make_model(algo, **DISCONNECTING_SETTINGS[case]))
    for network, plan in agent.plans().items():
        assert plan.settings.recovery_ratio == 0.01
        assert all(layer.kept_after > 0 and layer.isolated_outputs_after == 0 for layer in plan.layers), network
    assert_masks_hold(agent)


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_a_layer_that_revival_restores_is_accepted_and_the_report_shows_it(algo, tmp_path):
    refused(algo, tmp_path, r"no kept weight", sparsity=0.92, recovery_ratio=0.0)  # static pruning empties a layer ...
    model = make_model(algo, sparsity=0.9, recovery_ratio=0.02)  # ... that TAR gives weights back (same static mask)
    plans = sb3_tar.sparse_agent(model).plans()
    restored = [layer for plan in plans.values() for layer in topology_report(plan)["layers"]
                if layer["kept_before"] == 0]
    assert restored and all(layer["revived"] > 0 and layer["kept_after"] > 0 for layer in restored)
    assert_masks_hold(sb3_tar.sparse_agent(model))


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_empty_layers_can_be_allowed_explicitly_and_are_reported(algo):
    model = make_model(algo, sparsity=0.92, recovery_ratio=0.0, allow_empty_layers=True)
    plans = sb3_tar.sparse_agent(model).plans()
    assert any(layer.kept_after == 0 for plan in plans.values() for layer in plan.layers)
    assert model.policy.sparsity_settings.allow_empty_layers is True


def test_a_sparsity_that_leaves_no_room_for_the_default_revival_names_the_default():
    with pytest.raises(ValueError, match=r"recovery_ratio=0\.01 is too large for sparsity=0\.995.*recovery_ratio=0\.01 is "
                                         r"the default, TAR: set recovery_ratio=0 for static pruning"):
        make_model(SAC, sparsity=0.995)
    with pytest.raises(ValueError, match=r"too large for sparsity=0\.995: with budget='reserve'[^(]*$"):
        make_model(SAC, sparsity=0.995, recovery_ratio=0.01)


OTHER_ALGORITHM = {SAC: TD3, TD3: SAC, DDPG: TQC, TQC: CrossQ, CrossQ: SAC}


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_loading_a_model_with_another_algorithm_names_both(algo, tmp_path):
    make_model(algo, sparsity=0.8, criterion="erk").save(tmp_path / "model.zip")
    other = OTHER_ALGORITHM[algo]
    saved_policy = TAR_POLICIES[algo].__name__
    with pytest.raises(ValueError, match=rf"{other.__name__}\.load: the saved model's policy is {saved_policy} "
                                         rf"\(.*{algo.__name__}.*'s TarMlpPolicy\), but {other.__name__} needs "
                                         rf"{TAR_POLICIES[other].__name__}.*load it with .*{algo.__name__}\.load"):
        other.load(tmp_path / "model.zip", device="cpu")
    assert [path.name for path in tmp_path.iterdir()] == ["model.zip"]


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_a_tar_policy_class_of_another_algorithm_is_refused_when_built(algo, tmp_path):
    other = OTHER_ALGORITHM[algo]
    env = StepCounter(gym.make(ENV_ID))
    with pytest.raises(ValueError, match=rf"{other.__name__} cannot train a {TAR_POLICIES[algo].__name__}.*"
                                         rf"pass policy='TarMlpPolicy'"):
        other(TAR_POLICIES[algo], env, device="cpu", policy_kwargs={"sparsity": 0.8})
    assert env.steps == 0


@pytest.mark.parametrize("algo", ["PPO", "A2C", "DQN", "SAC", "TD3", "DDPG"])
def test_a_dict_observation_space_with_the_mlp_alias_gets_sb3s_hint_for_the_multi_input_alias(algo):
    """SB3 names MultiInputPolicy when "MlpPolicy" meets a Dict space; "TarMlpPolicy" names its own counterpart."""
    from stable_baselines3 import A2C, DQN, PPO
    from stable_baselines3.common.envs import BitFlippingEnv

    algorithm = {"PPO": PPO, "A2C": A2C, "DQN": DQN, "SAC": SAC, "TD3": TD3, "DDPG": DDPG}[algo]
    continuous = algo in ("SAC", "TD3", "DDPG")
    with pytest.raises(ValueError, match="You must use `TarMultiInputPolicy` when working with dict observation "
                                         "space, not TarMlpPolicy"):
        algorithm("TarMlpPolicy", BitFlippingEnv(n_bits=4, continuous=continuous), policy_kwargs={"sparsity": 0.5})
