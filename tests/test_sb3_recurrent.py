"""sb3-contrib's PPO variants: RecurrentPPO's ``TarMlpLstmPolicy`` and MaskablePPO's ``TarMlpPolicy``.

Both prune exactly PPO's two networks (policy trunk + action head, value trunk + value head); in
RecurrentPPO those MLPs read the LSTM's output and the LSTMs stay dense. The same guarantees as for
PPO, one test body per guarantee, run for MaskablePPO and for each of RecurrentPPO's three critic
layouts (its own LSTM, a linear layer instead, the actor's LSTM shared). Tiny models (CartPole-v1,
[32, 32] networks, LSTMs of 16 units, rollouts of 32 steps).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO, RecurrentPPO
from sb3_contrib.common.wrappers import ActionMasker
from sb3_support import DictObservations, StepChecker, StepCounter, assert_masks_hold, assert_moments_masked, assert_sparsity
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import KVWriter, Logger

import sb3_tar
from sb3_tar.sb3.dst_callback import planned_gradient_steps
from sb3_tar.sb3.policies import TAR_PPO_VARIANT_POLICIES

ENV_ID = "CartPole-v1"
LSTM_UNITS = 16
N_STEPS, BATCH_SIZE, N_EPOCHS = 32, 16, 2
MINIBATCH_STEPS = N_EPOCHS * N_STEPS // BATCH_SIZE  # optimizer steps per rollout
LEARN_STEPS = 3 * N_STEPS

# (algorithm, policy keyword arguments that select the layout)
CASES = {
    "RecurrentPPO": (RecurrentPPO, {}),
    "RecurrentPPO-critic-linear": (RecurrentPPO, {"enable_critic_lstm": False}),
    "RecurrentPPO-shared-lstm": (RecurrentPPO, {"shared_lstm": True, "enable_critic_lstm": False}),
    "MaskablePPO": (MaskablePPO, {}),
}
ALIAS = {RecurrentPPO: "TarMlpLstmPolicy", MaskablePPO: "TarMlpPolicy"}
MULTI_INPUT_ALIAS = {RecurrentPPO: "TarMultiInputLstmPolicy", MaskablePPO: "TarMultiInputPolicy"}
DENSE = {RecurrentPPO: "MlpLstmPolicy", MaskablePPO: "MlpPolicy"}
LAYERS = {
    "actor": ["mlp_extractor.policy_net.0.weight", "mlp_extractor.policy_net.2.weight", "action_net.weight"],
    "critic": ["mlp_extractor.value_net.0.weight", "mlp_extractor.value_net.2.weight", "value_net.weight"],
}
# At sparsity 0.9 with recovery_ratio 0.02: (kept, total, revived) per network. RecurrentPPO's MLPs
# read the 16-unit LSTM output (16*32 + 32*32 + 32*out), MaskablePPO's the 4 observations.
COUNTS = {
    RecurrentPPO: {"actor": (160, 1600, 32), "critic": (157, 1568, 31)},
    MaskablePPO: {"actor": (122, 1216, 24), "critic": (118, 1184, 24)},
}


class AllActionsAllowed(ActionMasker):
    """MaskablePPO needs an ``action_masks()`` method; every action is allowed."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env, lambda env: np.ones(env.action_space.n, dtype=bool))


def make_env(algo: type[BaseAlgorithm], env: gym.Env | None = None) -> gym.Env:
    env = gym.make(ENV_ID) if env is None else env
    return AllActionsAllowed(env) if algo is MaskablePPO else env


def make(case: str, policy: str | None = None, *, seed: int | None = 0, env: gym.Env | None = None,
         **policy_kwargs: object) -> BaseAlgorithm:
    """A small model of ``case``: [32, 32] networks (16-unit LSTMs), rollouts of 32, minibatches of 16, 2 epochs."""
    algo, layout = CASES[case]
    kwargs = {"net_arch": [32, 32], **layout, **policy_kwargs}
    if algo is RecurrentPPO:
        kwargs["lstm_hidden_size"] = LSTM_UNITS
    return algo(ALIAS[algo] if policy is None else policy, make_env(algo, env), seed=seed, n_steps=N_STEPS,
                batch_size=BATCH_SIZE, n_epochs=N_EPOCHS, policy_kwargs=kwargs, device="cpu")


def dense_parts(model: BaseAlgorithm) -> dict[str, torch.nn.Module]:
    """The modules between the features extractor and the MLPs, which are never pruned."""
    parts = {name: getattr(model.policy, name, None) for name in ("lstm_actor", "lstm_critic", "critic")}
    return {name: module for name, module in parts.items() if isinstance(module, torch.nn.Module)}


def recurrent(cases: list[str]) -> list[str]:
    return [case for case in cases if CASES[case][0] is RecurrentPPO]


ALL_CASES = list(CASES)
ALGOS = [RecurrentPPO, MaskablePPO]


@pytest.mark.parametrize("algo", ALGOS)
def test_the_tar_policy_is_the_algorithms_own_policy_made_sparse(algo):
    multi_input_dense = DENSE[algo].replace("Mlp", "MultiInput")
    for alias, dense in ((ALIAS[algo], DENSE[algo]), (MULTI_INPUT_ALIAS[algo], multi_input_dense)):
        assert algo.policy_aliases[alias] is TAR_PPO_VARIANT_POLICIES[alias][algo]
        assert issubclass(algo.policy_aliases[alias], algo.policy_aliases[dense])


@pytest.mark.parametrize("case", ALL_CASES)
def test_each_network_keeps_its_exact_count_at_sparsity_0_9_with_revival(case):
    algo = CASES[case][0]
    model = make(case, sparsity=0.9, recovery_ratio=0.02)
    agent = sb3_tar.sparse_agent(model)
    assert [network.name for network in agent.networks] == ["actor", "critic"]
    plans = agent.plans()
    for network in agent.networks:
        assert list(agent.weights(network)) == LAYERS[network.name]
        plan = plans[network.name]
        assert (plan.kept - plan.repaired, plan.total, plan.revived - plan.repaired) == COUNTS[algo][network.name]
    assert_sparsity(agent, 0.9, 0.9)
    assert_masks_hold(agent)
    assert all(name.startswith(("mlp_extractor.", "action_net.", "value_net.")) for name in agent.masks.names())


@pytest.mark.parametrize("case", recurrent(ALL_CASES))
def test_synflow_scores_the_mlps_from_an_input_as_wide_as_the_lstm(case):
    model = make(case, sparsity=0.9, recovery_ratio=0.02, criterion="synflow", iterations=5)
    agent = sb3_tar.sparse_agent(model)
    for network in agent.networks:
        first = agent.masks[LAYERS[network.name][0]]
        assert first.shape == (32, LSTM_UNITS)
        plan = agent.plan(network)
        assert plan.kept - plan.repaired == COUNTS[RecurrentPPO][network.name][0]
    assert_masks_hold(agent)


@pytest.mark.parametrize("case", ALL_CASES)
def test_masks_hold_after_every_minibatch_step_of_every_epoch(case):
    model = make(case, sparsity=0.9, recovery_ratio=0.02, criterion="random")
    checker = StepChecker(model)
    model.learn(LEARN_STEPS)
    assert checker.steps == 3 * MINIBATCH_STEPS
    agent = sb3_tar.sparse_agent(model)
    assert_masks_hold(agent)
    assert_moments_masked(agent)
    assert_sparsity(agent, 0.9, 0.9)


@pytest.mark.parametrize("case", recurrent(ALL_CASES))
def test_the_lstms_stay_dense_and_train(case):
    model = make(case, sparsity=0.9, recovery_ratio=0.02)
    parts = dense_parts(model)
    expected = {"RecurrentPPO": {"lstm_actor", "lstm_critic"}, "RecurrentPPO-critic-linear": {"lstm_actor", "critic"},
                "RecurrentPPO-shared-lstm": {"lstm_actor"}}
    assert set(parts) == expected[case]
    before = {f"{part}.{name}": weight.detach().clone()
              for part, module in parts.items() for name, weight in module.named_parameters()}
    model.learn(LEARN_STEPS)
    after = {f"{part}.{name}": weight for part, module in parts.items() for name, weight in module.named_parameters()}
    agent = sb3_tar.sparse_agent(model)
    assert not any(name.startswith(tuple(parts)) for name in agent.masks.names())
    for name, weight in after.items():
        assert int(weight.count_nonzero()) == weight.numel(), f"{name} has zeros"
    # The critic's own LSTM or linear layer trains too; a shared LSTM trains by the actor's loss.
    assert all(not torch.equal(before[name], weight) for name, weight in after.items() if name.endswith("weight_ih_l0")
               or name == "critic.weight")


@pytest.mark.parametrize("case", ALL_CASES)
def test_save_load_resume_keeps_the_exact_masks(case, tmp_path):
    algo = CASES[case][0]
    model = make(case, sparsity=0.9, recovery_ratio=0.02, criterion="random")
    model.learn(LEARN_STEPS)
    saved = {name: mask.clone() for name, mask in sb3_tar.sparse_agent(model).masks.items()}
    model.save(tmp_path / "model.zip")
    with torch.random.fork_rng():
        torch.manual_seed(123)
        loaded = algo.load(tmp_path / "model.zip", env=make_env(algo), device="cpu")
    agent = sb3_tar.sparse_agent(loaded)
    assert agent.masks.names() == list(saved)
    assert all(torch.equal(agent.masks[name], mask) for name, mask in saved.items())
    checker = StepChecker(loaded)
    loaded.learn(LEARN_STEPS, reset_num_timesteps=False)
    assert checker.steps == 3 * MINIBATCH_STEPS
    assert_masks_hold(agent)
    assert_moments_masked(agent)
    assert_sparsity(agent, 0.9, 0.9)


@pytest.mark.parametrize("case", ["RecurrentPPO", "MaskablePPO"])
@pytest.mark.parametrize("tamper", ["weight", "mask"])
def test_a_file_with_a_tampered_mask_or_masked_weight_is_refused(case, tamper, tmp_path):
    algo = CASES[case][0]
    model = make(case, sparsity=0.9, recovery_ratio=0.02, criterion="random")
    agent = sb3_tar.sparse_agent(model)
    name = LAYERS["critic"][1]
    with torch.no_grad():
        if tamper == "weight":
            model.policy.get_parameter(name)[~agent.masks[name]] = 1.0
        else:
            agent.masks[name][~agent.masks[name].clone()] = True  # keeps every weight of the layer
    model.save(tmp_path / "model.zip")
    message = rf"of {name} .*non-zero where the mask" if tamper == "weight" else rf"{name} keeps \d+ weights"
    with pytest.raises(sb3_tar.MaskMismatchError, match=message):
        algo.load(tmp_path / "model.zip", device="cpu")


@pytest.mark.parametrize("case", ["RecurrentPPO", "MaskablePPO"])
def test_same_seed_gives_the_same_masks_and_the_same_run(case):
    runs = [make(case, sparsity=0.9, recovery_ratio=0.02, criterion="random").learn(LEARN_STEPS) for _ in range(2)]
    first, second = (run.policy.state_dict() for run in runs)
    assert list(first) == list(second)
    for name in first:
        assert torch.equal(first[name], second[name]), name
    other = make(case, seed=1, sparsity=0.9, recovery_ratio=0.02, criterion="random")
    assert any(not torch.equal(first[f"masks.{name}"], mask) for name, mask in sb3_tar.sparse_agent(other).masks.items())


@pytest.mark.parametrize("case", ["RecurrentPPO", "MaskablePPO"])
def test_a_bad_setting_is_refused_before_any_environment_step(case):
    env = StepCounter(gym.make(ENV_ID))
    with pytest.raises(ValueError, match=r"sparsity=1\.5"):
        make(case, env=env, sparsity=1.5)
    assert env.steps == 0


@pytest.mark.parametrize("case", ["RecurrentPPO", "MaskablePPO"])
def test_global_magnitude_pruning_of_the_tiny_action_head_is_refused_as_for_ppo(case):
    # Both keep PPO's orthogonal init: action_net gain 0.01, so global magnitude pruning keeps none of it.
    with pytest.raises(ValueError, match=r"no kept weight in action_net\.weight.*scope='layerwise'"):
        make(case, sparsity=0.5, recovery_ratio=0.0)
    make(case, sparsity=0.5, recovery_ratio=0.0, scope="layerwise")
    make(case, sparsity=0.5)  # the default, TAR, reconnects the head


@pytest.mark.parametrize(("algo", "alias", "supported"), [
    (RecurrentPPO, "TarCnnLstmPolicy", "'TarMlpLstmPolicy' or 'TarMultiInputLstmPolicy'"),
    (MaskablePPO, "TarCnnPolicy", "'TarMlpPolicy' or 'TarMultiInputPolicy'"),
])
def test_the_cnn_policy_is_refused_saying_what_is_supported(algo, alias, supported):
    env = StepCounter(gym.make(ENV_ID))
    with pytest.raises(ValueError, match=rf"{alias} is not supported.*{algo.__name__} supports policy={supported}"):
        algo(alias, make_env(algo, env), device="cpu", policy_kwargs={"sparsity": 0.8})
    assert env.steps == 0


def test_a_policy_of_another_ppo_variant_is_refused_naming_the_right_alias():
    with pytest.raises(ValueError, match=r"RecurrentPPO has no TarMlpPolicy.*RecurrentPPO takes "
                                         r"policy='TarMlpLstmPolicy' or 'TarMultiInputLstmPolicy'"):
        RecurrentPPO(sb3_tar.TarActorCriticPolicy, ENV_ID, device="cpu", policy_kwargs={"sparsity": 0.8})
    with pytest.raises(ValueError, match=r"MaskablePPO cannot train a TarActorCriticPolicy.*"
                                         r"TarMaskableActorCriticPolicy for MaskablePPO"):
        MaskablePPO(sb3_tar.TarActorCriticPolicy, make_env(MaskablePPO), device="cpu", policy_kwargs={"sparsity": 0.8})
    with pytest.raises(ValueError, match="TarMlpLstmPolicy unknown"):
        PPO("TarMlpLstmPolicy", ENV_ID, device="cpu")


@pytest.mark.parametrize("algo", ALGOS)
def test_the_multi_input_policy_prunes_the_mlps_but_not_the_features_extractor(algo, tmp_path):
    case = algo.__name__
    env = DictObservations(gym.make(ENV_ID))
    model = make(case, MULTI_INPUT_ALIAS[algo], env=env, actor_sparsity=0.6, critic_sparsity=0.8,
                 recovery_ratio=0.02)
    assert isinstance(model.policy, algo.policy_aliases[MULTI_INPUT_ALIAS[algo].replace("Tar", "")])
    agent = sb3_tar.sparse_agent(model)
    assert [list(agent.weights(network)) for network in agent.networks] == [LAYERS["actor"], LAYERS["critic"]]
    assert_sparsity(agent, actor=0.6, critic=0.8)
    checker = StepChecker(model)
    model.learn(LEARN_STEPS)
    assert checker.steps == 3 * MINIBATCH_STEPS
    assert_masks_hold(agent)
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", device="cpu")
    assert all(torch.equal(sb3_tar.sparse_agent(loaded).masks[name], mask) for name, mask in agent.masks.items())


@pytest.mark.parametrize("case", ALL_CASES)
def test_tar_callback_sparsifies_a_dense_model_like_the_policy_does(case):
    algo = CASES[case][0]
    dense = make(case, DENSE[algo])
    dense.learn(LEARN_STEPS, callback=sb3_tar.TARCallback(sparsity=0.9, recovery_ratio=0.02, criterion="random"))
    sparse = make(case, sparsity=0.9, recovery_ratio=0.02, criterion="random")
    callback_agent, policy_agent = sb3_tar.sparse_agent(dense), sb3_tar.sparse_agent(sparse)
    assert [n.name for n in callback_agent.networks] == ["actor", "critic"]
    assert callback_agent.masks.names() == policy_agent.masks.names()
    assert all(torch.equal(callback_agent.masks[name], policy_agent.masks[name]) for name in policy_agent.masks.names())
    assert_masks_hold(callback_agent)
    assert_moments_masked(callback_agent)
    assert_sparsity(callback_agent, 0.9, 0.9)
    assert all(int(w.count_nonzero()) == w.numel() for part in dense_parts(dense).values() for w in part.parameters())


class Records(KVWriter):
    """Everything SB3's logger writes, dump by dump."""

    def __init__(self) -> None:
        self.dumps: list[dict[str, object]] = []

    def write(self, key_values, key_excluded, step=0) -> None:
        self.dumps.append({"step": step, **key_values})


@pytest.mark.parametrize("case", ["RecurrentPPO", "MaskablePPO"])
def test_the_log_callback_logs_the_topology_and_checks_the_masks_at_every_rollout_end(case):
    model = make(case, sparsity=0.9, recovery_ratio=0.02, criterion="random")
    records = Records()
    model.set_logger(Logger(folder=None, output_formats=[records]))
    model.learn(LEARN_STEPS, callback=sb3_tar.SparsityLogCallback(), log_interval=1)
    start = records.dumps[0]
    for network, plan in sb3_tar.sparse_agent(model).plans().items():
        assert start[f"sparsity/{network}/sparsity"] == pytest.approx(plan.sparsity)
        assert plan.sparsity == pytest.approx(0.9 - plan.repaired / plan.total, abs=1e-3)
        assert start[f"sparsity/{network}/revived"] == plan.revived > 0
        for layer in plan.layers:
            assert start[f"sparsity/{network}/density/{layer.name.removesuffix('.weight')}"] == layer.density_after
    assert {key.split("/")[1] for key in start if key.startswith("sparsity/")} == {"actor", "critic"}
    assert not any("lstm" in key for key in start if key.startswith("sparsity/"))
    agent = sb3_tar.sparse_agent(model)
    name = agent.masks.names()[0]
    with torch.no_grad():
        model.policy.get_parameter(name)[~agent.masks[name]] = 1.0
    with pytest.raises(sb3_tar.MaskDriftError):
        model.learn(N_STEPS, callback=sb3_tar.SparsityLogCallback(), reset_num_timesteps=False)


@pytest.mark.parametrize("case", ["RecurrentPPO", "MaskablePPO"])
@pytest.mark.parametrize("method", ["set", "rigl"])
def test_dst_moves_the_masks_at_minibatch_steps_and_leaves_the_lstms_dense(case, method):
    model = make(case, sparsity=0.9, recovery_ratio=0.02, criterion="random")
    assert planned_gradient_steps(model, LEARN_STEPS) == 3 * MINIBATCH_STEPS
    lstm = {name: weight.detach().clone() for name, weight in model.policy.named_parameters()
            if name.startswith("lstm_")}
    callback = sb3_tar.DSTCallback(method, update_interval=5, end_fraction=1.0)
    checker = StepChecker(model)
    model.learn(LEARN_STEPS, callback=callback)
    assert callback.gradient_steps == checker.steps == 3 * MINIBATCH_STEPS
    assert [(r["gradient_step"], r["network"]) for r in callback.history] == [
        (step, network) for step in (5, 10) for network in ("critic", "actor")]
    agent = sb3_tar.sparse_agent(model)
    assert int(agent.masks.updates) > 0
    assert not any(name.startswith("lstm_") for name in agent.masks.names())
    assert all(int(model.policy.get_parameter(name).count_nonzero()) == w.numel() for name, w in lstm.items())
    assert_masks_hold(agent)
    assert_moments_masked(agent)
    assert_sparsity(agent, 0.9, 0.9)
