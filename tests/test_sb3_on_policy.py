"""TarMlpPolicy for PPO, A2C, DQN and QR-DQN; TarMultiInputPolicy for every algorithm with a MultiInputPolicy.

The same guarantees as for the off-policy actor-critics, one test body per guarantee, run for every
algorithm: exact per-network counts, masked weights 0.0 after every gradient step (PPO's minibatch
epochs and DQN's target included), optimizer state zeroed, save/load/resume, same seed same run,
bad settings refused before any environment step. Tiny models (CartPole-v1, [32, 32] networks).
"""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from sb3_contrib import QRDQN, TQC
from sb3_support import (
    DISCRETE_ENV_ID,
    NEW_ALGOS,
    PPO_MINIBATCH_STEPS,
    DictObservations,
    StepChecker,
    StepCounter,
    assert_masks_hold,
    assert_moments_masked,
    all_weights,
    assert_sparsity,
    make_any_model,
)
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback

import sb3_tar
from sb3_tar.sb3.dst_callback import planned_gradient_steps
from sb3_tar.sb3.policies import TAR_MULTI_INPUT_POLICIES, TAR_POLICIES

# Every test here runs with the masked dense layers and with the compressed ones (kernel='sparse').
pytestmark = pytest.mark.both_kernels

NETWORKS = {PPO: ["actor", "critic"], A2C: ["actor", "critic"], DQN: ["q_net"], QRDQN: ["quantile_net"]}
LAYERS = {
    "actor": ["mlp_extractor.policy_net.0.weight", "mlp_extractor.policy_net.2.weight", "action_net.weight"],
    "critic": ["mlp_extractor.value_net.0.weight", "mlp_extractor.value_net.2.weight", "value_net.weight"],
    "q_net": ["q_net.q_net.0.weight", "q_net.q_net.2.weight", "q_net.q_net.4.weight"],
    "quantile_net": ["quantile_net.quantile_net.0.weight", "quantile_net.quantile_net.2.weight",
                     "quantile_net.quantile_net.4.weight"],
}
LEARN_STEPS = 192  # PPO: 3 rollouts of 64 (24 minibatch steps); A2C: 24 steps; DQN: 142 steps


@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_tar_mlp_policy_is_the_algorithms_own_mlp_policy_made_sparse(algo):
    policy_class = algo.policy_aliases["TarMlpPolicy"]
    assert issubclass(policy_class, algo.policy_aliases["MlpPolicy"])
    assert isinstance(make_any_model(algo, sparsity=0.5, criterion="erk").policy, policy_class)


@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_each_network_has_its_own_mask_and_its_own_exact_count(algo):
    actor = {} if algo in (DQN, QRDQN) else {"actor_sparsity": 0.6}  # a Q-network only: critic_sparsity alone
    model = make_any_model(algo, **actor, critic_sparsity=0.85, recovery_ratio=0.02)
    agent = sb3_tar.sparse_agent(model)
    assert [network.name for network in agent.networks] == NETWORKS[algo]
    for network in agent.networks:
        assert list(all_weights(agent, network)) == LAYERS[network.name]
    assert_sparsity(agent, actor=0.6, critic=0.85)
    assert_masks_hold(agent)
    assert not any(name.startswith(("features_extractor", "pi_features", "vf_features")) for name in agent.masks.names())
    for plan in agent.plans().values():
        assert plan.revived - plan.repaired == min(round(0.02 * plan.total), plan.kept)


@pytest.mark.parametrize("algo", [DQN, QRDQN])  # PPO and A2C have no target network
def test_a_value_based_target_network_takes_its_q_networks_mask(algo):
    agent = sb3_tar.sparse_agent(make_any_model(algo, sparsity=0.8, criterion="random"))
    (network,) = agent.networks
    targets = agent.target_weights(network)
    assert list(targets) == list(agent.weights(network))
    assert all(torch.all(weight[~agent.masks[name]] == 0) for name, weight in targets.items())


@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_masks_hold_after_every_gradient_step_of_every_network_and_target(algo):
    model = make_any_model(algo, sparsity=0.8, criterion="random", recovery_ratio=0.05)
    checker = StepChecker(model)
    model.learn(LEARN_STEPS)
    expected_steps = {PPO: 3 * PPO_MINIBATCH_STEPS, A2C: LEARN_STEPS // 8, DQN: LEARN_STEPS - 50, QRDQN: LEARN_STEPS - 50}
    assert checker.steps == expected_steps[algo]  # PPO: every minibatch of every epoch
    agent = sb3_tar.sparse_agent(model)
    assert_masks_hold(agent)
    assert_moments_masked(agent)
    assert_sparsity(agent, 0.8, 0.8)


def test_ppo_on_a_continuous_action_space_keeps_its_masks_and_leaves_log_std_dense():
    model = make_any_model(PPO, env="Pendulum-v1", sparsity=0.7, criterion="erk")
    checker = StepChecker(model)
    model.learn(128)
    assert checker.steps == 2 * PPO_MINIBATCH_STEPS
    agent = sb3_tar.sparse_agent(model)
    assert "log_std" not in agent.masks.names()
    assert_masks_hold(agent)
    assert_sparsity(agent, 0.7, 0.7)


@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_save_load_resume_keeps_the_exact_masks(algo, tmp_path):
    model = make_any_model(algo, sparsity=0.75, criterion="random", recovery_ratio=0.01)
    model.learn(LEARN_STEPS)
    saved = {name: mask.clone() for name, mask in sb3_tar.sparse_agent(model).masks.items()}
    model.save(tmp_path / "model.zip")
    with torch.random.fork_rng():
        torch.manual_seed(123)
        loaded = algo.load(tmp_path / "model.zip", env=gym.make(DISCRETE_ENV_ID), device="cpu")
    agent = sb3_tar.sparse_agent(loaded)
    assert agent.masks.names() == list(saved)
    assert all(torch.equal(agent.masks[name], mask) for name, mask in saved.items())
    checker = StepChecker(loaded)
    loaded.learn(LEARN_STEPS, reset_num_timesteps=False)
    assert checker.steps > 0
    assert_masks_hold(agent)
    assert_moments_masked(agent)
    assert_sparsity(agent, 0.75, 0.75)


@pytest.mark.dense_kernel_only("a compressed layer has no masked position to set")
@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_a_file_whose_masked_weight_is_non_zero_is_refused(algo, tmp_path):
    model = make_any_model(algo, sparsity=0.8, criterion="random")
    agent = sb3_tar.sparse_agent(model)
    name = agent.masks.names()[0]
    with torch.no_grad():
        model.policy.get_parameter(name)[~agent.masks[name]] = 1.0
    model.save(tmp_path / "model.zip")
    with pytest.raises(sb3_tar.MaskMismatchError, match=rf"of {name} .*non-zero where the mask"):
        algo.load(tmp_path / "model.zip", device="cpu")


@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_same_seed_gives_the_same_masks_and_the_same_run(algo):
    runs = []
    for _ in range(2):  # built and trained one after the other: SB3 seeds the global generators when built
        model = make_any_model(algo, sparsity=0.8, criterion="random")
        runs.append(model.learn(LEARN_STEPS))
    first, second = runs
    for (name, a), (_, b) in zip(first.policy.state_dict().items(), second.policy.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_a_bad_setting_is_refused_before_any_environment_step(algo):
    env = StepCounter(gym.make(DISCRETE_ENV_ID))
    with pytest.raises(ValueError, match=r"sparsity=1\.5"):
        make_any_model(algo, env=env, sparsity=1.5)
    assert env.steps == 0


def test_global_magnitude_pruning_of_ppos_tiny_action_head_is_refused_naming_the_remedies():
    # SB3's orthogonal init gives action_net gain 0.01: static global magnitude pruning keeps none of it.
    with pytest.raises(ValueError, match=r"no kept weight in action_net\.weight.*scope='layerwise'"):
        make_any_model(PPO, sparsity=0.5, recovery_ratio=0.0)
    for remedy in ({}, {"recovery_ratio": 0.0, "scope": "layerwise"}, {"recovery_ratio": 0.0, "criterion": "erk"}):
        make_any_model(PPO, sparsity=0.5, **remedy)  # {}: the default, TAR, reconnects the head


@pytest.mark.parametrize("algo", sorted(TAR_POLICIES, key=lambda a: a.__name__))
def test_tar_cnn_policy_is_refused_saying_what_is_supported(algo):
    env = StepCounter(gym.make(DISCRETE_ENV_ID if algo in NEW_ALGOS else "Pendulum-v1"))
    supported = "'TarMlpPolicy' or 'TarMultiInputPolicy'" if algo in TAR_MULTI_INPUT_POLICIES else "'TarMlpPolicy'"
    with pytest.raises(ValueError, match=rf"TarCnnPolicy is not supported.*{algo.__name__} supports "
                                         rf"policy={supported}"):
        algo("TarCnnPolicy", env, device="cpu", policy_kwargs={"sparsity": 0.8})
    assert env.steps == 0


MULTI_INPUT_ALGOS = [SAC, TD3, DDPG, TQC, PPO, A2C, DQN, QRDQN]


@pytest.mark.parametrize("algo", MULTI_INPUT_ALGOS)
def test_tar_multi_input_policy_prunes_the_mlps_but_not_the_features_extractor(algo, tmp_path):
    assert set(TAR_MULTI_INPUT_POLICIES) == set(MULTI_INPUT_ALGOS)
    env = DictObservations(gym.make(DISCRETE_ENV_ID if algo in NEW_ALGOS else "Pendulum-v1"))
    actor = {} if algo in (DQN, QRDQN) else {"actor_sparsity": 0.6}  # a Q-network only: critic_sparsity alone
    model = make_any_model(algo, "TarMultiInputPolicy", env=env, **actor, critic_sparsity=0.8, recovery_ratio=0.05)
    assert isinstance(model.policy, algo.policy_aliases["MultiInputPolicy"])
    agent = sb3_tar.sparse_agent(model)
    assert not any("features_extractor" in name for name in agent.masks.names())
    assert_sparsity(agent, actor=0.6, critic=0.8)
    checker = StepChecker(model)
    model.learn(LEARN_STEPS)
    assert checker.steps > 0
    assert_masks_hold(agent)
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", device="cpu")
    assert all(torch.equal(sb3_tar.sparse_agent(loaded).masks[name], mask) for name, mask in agent.masks.items())


@pytest.mark.parametrize("algo", [DQN, QRDQN])
def test_actor_sparsity_on_a_model_without_an_actor_is_refused_naming_what_applies(algo):
    message = r"actor_sparsity=0\.5 does not apply: .* has no actor .* set sparsity or critic_sparsity"
    env = StepCounter(gym.make(DISCRETE_ENV_ID))
    with pytest.raises(ValueError, match=message):
        make_any_model(algo, env=env, sparsity=0.8, actor_sparsity=0.5)
    dense = make_any_model(algo, "MlpPolicy", env=env)
    with pytest.raises(ValueError, match=message):
        dense.learn(LEARN_STEPS, callback=sb3_tar.TARCallback(sparsity=0.8, actor_sparsity=0.5))
    assert env.steps == 0
    # what applies: critic_sparsity, with sparsity or alone
    for settings in ({"sparsity": 0.8, "critic_sparsity": 0.6}, {"critic_sparsity": 0.6}):
        agent = sb3_tar.sparse_agent(make_any_model(algo, env=env, **settings))
        assert [network.role for network in agent.networks] == ["critic"]
        assert_sparsity(agent, actor=0.0, critic=0.6)
    assert env.steps == 0


@pytest.mark.parametrize("algo", NEW_ALGOS)
def test_tar_callback_sparsifies_a_dense_model_like_the_policy_does(algo):
    dense = make_any_model(algo, "MlpPolicy")
    dense.learn(LEARN_STEPS, callback=sb3_tar.TARCallback(sparsity=0.8, criterion="random"))
    sparse = make_any_model(algo, sparsity=0.8, criterion="random")
    callback_agent, policy_agent = sb3_tar.sparse_agent(dense), sb3_tar.sparse_agent(sparse)
    assert [n.name for n in callback_agent.networks] == NETWORKS[algo]
    assert all(torch.equal(callback_agent.masks[name], policy_agent.masks[name]) for name in policy_agent.masks.names())
    assert_masks_hold(callback_agent)
    assert_moments_masked(callback_agent)


class Rollouts(BaseCallback):
    def __init__(self) -> None:
        super().__init__()
        self.ends = 0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.ends += 1


@pytest.mark.dense_kernel_only("a compressed layer has no masked position to set")
def test_the_log_callback_checks_the_masks_at_every_on_policy_rollout_end():
    model = make_any_model(PPO, sparsity=0.8, criterion="random")
    model.learn(64)
    agent = sb3_tar.sparse_agent(model)
    name = agent.masks.names()[0]
    with torch.no_grad():
        model.policy.get_parameter(name)[~agent.masks[name]] = 1.0
    with pytest.raises(sb3_tar.MaskDriftError):
        model.learn(64, callback=sb3_tar.SparsityLogCallback(), reset_num_timesteps=False)


@pytest.mark.dense_kernel_only("SET and RigL move masks: compressed layers refuse them")
@pytest.mark.parametrize("method", ["set", "rigl"])
def test_dst_update_interval_counts_ppos_minibatch_steps_across_epochs_and_rollouts(method):
    model = make_any_model(PPO, sparsity=0.8, criterion="random")
    assert planned_gradient_steps(model, 192) == 3 * PPO_MINIBATCH_STEPS
    callback = sb3_tar.DSTCallback(method, update_interval=5, end_fraction=1.0)
    checker = StepChecker(model)
    model.learn(192, callback=callback)
    assert callback.gradient_steps == checker.steps == 3 * PPO_MINIBATCH_STEPS
    # Updates are due after 5, 10, 15 and 20 completed minibatch steps (below the end step 24),
    # the actor's and the critic's on the same step.
    assert [(r["gradient_step"], r["network"]) for r in callback.history] == [
        (step, network) for step in (5, 10, 15, 20) for network in ("critic", "actor")]
    agent = sb3_tar.sparse_agent(model)
    assert_masks_hold(agent)
    assert_moments_masked(agent)
    assert_sparsity(agent, 0.8, 0.8)


@pytest.mark.dense_kernel_only("SET and RigL move masks: compressed layers refuse them")
def test_dst_on_dqn_updates_the_q_network_and_its_target():
    model = make_any_model(DQN, sparsity=0.8, criterion="random")
    callback = sb3_tar.DSTCallback("set", update_interval=20, end_fraction=1.0)
    model.learn(LEARN_STEPS, callback=callback)
    assert {r["network"] for r in callback.history} == {"q_net"}
    assert_masks_hold(sb3_tar.sparse_agent(model))


def test_trpo_has_no_tar_policy_its_actor_is_not_trained_by_an_optimizer():
    from sb3_contrib import TRPO

    with pytest.raises(ValueError, match="TarMlpPolicy unknown"):
        TRPO("TarMlpPolicy", DISCRETE_ENV_ID, device="cpu")
