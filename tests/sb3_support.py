"""Shared helpers of the SB3 integration tests: tiny models on Pendulum-v1 / CartPole-v1 and the mask invariants."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import QRDQN, TQC, CrossQ
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

import sb3_tar
from sb3_tar.engine.masking import moment_tensors
from sb3_tar.sb3.agent import SparseAgent

ALL_ALGOS = [SAC, TD3, DDPG, TQC, CrossQ]
ENV_ID = "Pendulum-v1"
LEARNING_STARTS = 50


class DictObservations(gym.ObservationWrapper):
    """A dict observation space: the first half of the observation and the second half."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        low, high, half = env.observation_space.low, env.observation_space.high, env.observation_space.shape[0] // 2
        self.half = half
        self.observation_space = gym.spaces.Dict({
            "first": gym.spaces.Box(low[:half], high[:half], dtype=np.float32),
            "second": gym.spaces.Box(low[half:], high[half:], dtype=np.float32),
        })

    def observation(self, observation):
        return {"first": observation[:self.half], "second": observation[self.half:]}


def make_model(algo: type[BaseAlgorithm], policy: str = "TarMlpPolicy", *, seed: int | None = 0,
               net_arch: list[int] | dict | None = None, env: object = ENV_ID, **policy_kwargs: object) -> BaseAlgorithm:
    """A small model: [32, 32] networks, batch 32, learning after 50 steps."""
    kwargs = {"net_arch": [32, 32] if net_arch is None else net_arch, **policy_kwargs}
    return algo(policy, env, seed=seed, learning_starts=LEARNING_STARTS, batch_size=32, policy_kwargs=kwargs,
                device="cpu")


def kept_count(agent: SparseAgent, network) -> tuple[int, int]:
    """``(kept, total)`` prunable weights of one network, from its masks."""
    masks = [agent.masks[name] for name in agent.weights(network)]
    return sum(int(mask.sum()) for mask in masks), sum(mask.numel() for mask in masks)


def assert_masks_hold(agent: SparseAgent, networks=None) -> None:
    """Every masked weight is 0.0 in the network and its target, and so are its Adam moments."""
    for network in networks or agent.networks:
        for copy, weights in (("online", agent.weights(network)), ("target", agent.target_weights(network))):
            for name, weight in weights.items():
                masked = ~agent.masks[name]
                assert torch.all(weight.detach()[masked] == 0.0), f"{copy} {name} has a non-zero masked weight"
        for name, weight in agent.weights(network).items():
            state = network.optimizer.state.get(weight, {})
            for moment in ("exp_avg", "exp_avg_sq"):
                if moment in state:
                    assert torch.all(state[moment][~agent.masks[name]] == 0.0), f"{name}: {moment} of masked weights"


def assert_sparsity(agent: SparseAgent, actor: float, critic: float) -> None:
    """Each network keeps exactly ``round((1 - sparsity) * weights)`` weights (plus any TAR's connectivity repair
    added), and its weights show it."""
    for network in agent.networks:
        sparsity = actor if network.role == "actor" else critic
        kept, total = kept_count(agent, network)
        repaired = agent.plan(network).repaired
        assert kept == round((1.0 - sparsity) * total) + repaired, f"{network.name}: kept {kept} of {total}"
        nonzero = sum(int(w.count_nonzero()) for w in agent.weights(network).values())
        assert nonzero <= kept


class StepChecker:
    """An optimizer step hook, registered after sb3-tar's, that checks the masks after every step."""

    def __init__(self, model: BaseAlgorithm) -> None:
        self.agent = sb3_tar.sparse_agent(model)
        self.steps = 0
        optimizers = {id(n.optimizer): n.optimizer for n in self.agent.networks}
        for optimizer in optimizers.values():
            optimizer.register_step_post_hook(self.check)

    def check(self, optimizer: torch.optim.Optimizer, *_: object) -> None:
        assert_masks_hold(self.agent, [n for n in self.agent.networks if n.optimizer is optimizer])
        # Targets are Polyak-updated between steps: the previous update is checked here.
        for network in self.agent.networks:
            for name, target in self.agent.target_weights(network).items():
                assert torch.all(target.detach()[~self.agent.masks[name]] == 0.0), f"target {name}"
        self.steps += 1


# PPO, A2C (one optimizer for actor and critic), DQN and QR-DQN (one Q-network and its target).
ON_POLICY_ALGOS = [PPO, A2C]
VALUE_BASED_ALGOS = [DQN, QRDQN]
NEW_ALGOS = ON_POLICY_ALGOS + VALUE_BASED_ALGOS
DISCRETE_ENV_ID = "CartPole-v1"
PPO_MINIBATCH_STEPS = 2 * 64 // 16  # n_epochs * n_steps / batch_size: gradient steps per PPO rollout
_SMALL = {
    PPO: {"n_steps": 64, "batch_size": 16, "n_epochs": 2},
    A2C: {"n_steps": 8},
    DQN: {"learning_starts": LEARNING_STARTS, "batch_size": 32, "target_update_interval": 10, "train_freq": 1},
    QRDQN: {"learning_starts": LEARNING_STARTS, "batch_size": 32, "target_update_interval": 10, "train_freq": 1},
}


def make_any_model(algo: type[BaseAlgorithm], policy: str = "TarMlpPolicy", *, seed: int | None = 0,
                   net_arch: list[int] | dict | None = None, env: object = None, **policy_kwargs: object) -> BaseAlgorithm:
    """A small model of any supported algorithm: [32, 32] networks, CartPole-v1 unless ``env`` says otherwise."""
    if algo not in _SMALL:
        return make_model(algo, policy, seed=seed, net_arch=net_arch, env=ENV_ID if env is None else env,
                          **policy_kwargs)
    kwargs = {"net_arch": [32, 32] if net_arch is None else net_arch, **policy_kwargs}
    return algo(policy, DISCRETE_ENV_ID if env is None else env, seed=seed, policy_kwargs=kwargs, device="cpu",
                **_SMALL[algo])


def assert_moments_masked(agent: SparseAgent) -> None:
    """Every per-element optimizer state (Adam's moments, RMSprop's square_avg, ...) is 0 where masked."""
    for network in agent.networks:
        for name, weight in agent.weights(network).items():
            for moment in moment_tensors(network.optimizer, weight):
                assert torch.all(moment[~agent.masks[name]] == 0.0), f"{name}: a moment of a masked weight"


class StepCounter(gym.Wrapper):
    """Counts environment steps: a test checks that a refused setting took none."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.steps = 0

    def step(self, action):
        self.steps += 1
        return super().step(action)
