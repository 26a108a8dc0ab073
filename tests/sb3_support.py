"""Shared helpers of the SB3 integration tests: tiny models on Pendulum-v1 / CartPole-v1 and the mask invariants."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import QRDQN, TQC, CrossQ
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

import sb3_tar
from sb3_tar.engine import prunable_layers
from sb3_tar.engine.compressed import CompressedLinear
from sb3_tar.engine.masking import moment_tensors
from sb3_tar.sb3.agent import SparseAgent

ALL_ALGOS = [SAC, TD3, DDPG, TQC, CrossQ]
KERNEL = "dense"  # the kernel of every Tar model built here; conftest's policy_kernel sets it per test
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
    kwargs = {"net_arch": [32, 32] if net_arch is None else net_arch, **with_kernel(policy, policy_kwargs)}
    return algo(policy, env, seed=seed, learning_starts=LEARNING_STARTS, batch_size=32, policy_kwargs=kwargs,
                device="cpu")


def with_kernel(policy: str, policy_kwargs: dict) -> dict:
    """``policy_kwargs`` with the test's kernel, for a sparse policy given a sparsity."""
    sparse = policy.startswith("Tar") and any(key.endswith("sparsity") for key in policy_kwargs)
    return {"kernel": KERNEL, **policy_kwargs} if sparse else dict(policy_kwargs)


def kept_count(agent: SparseAgent, network) -> tuple[int, int]:
    """``(kept, total)`` prunable weights of one network, from its masks."""
    masks = [agent.masks[network.weight_name(name)] for name in agent.layer_names(network)]
    return sum(int(mask.sum()) for mask in masks), sum(mask.numel() for mask in masks)


def all_weights(agent: SparseAgent, network, target: bool = False) -> dict:
    """Mask name -> the dense weight of every layer (a compressed layer's as a dense copy), online or target."""
    module = network.target if target else network.module
    if module is None:
        return {}
    return {network.weight_name(layer.name): layer.weight for layer in prunable_layers(module)}


def assert_masks_hold(agent: SparseAgent, networks=None) -> None:
    """Every masked weight is 0.0 in the network and its target, and so are its Adam moments; a compressed layer
    holds exactly its mask's kept weights, as do its target copy and its moments."""
    for network in networks or agent.networks:
        for copy, weights in (("online", all_weights(agent, network)), ("target", all_weights(agent, network, True))):
            for name, weight in weights.items():
                masked = ~agent.masks[name]
                assert torch.all(weight.detach()[masked] == 0.0), f"{copy} {name} has a non-zero masked weight"
        for module in filter(None, (network.module, network.target)):
            for layer in prunable_layers(module):
                if isinstance(layer.module, CompressedLinear):
                    mask = agent.masks[network.weight_name(layer.name)]
                    assert layer.module.kept == int(mask.count_nonzero()), f"{layer.name} holds other weights"
                    assert torch.equal(layer.module.mask(), mask.to(layer.module.values.device))
                    state = network.optimizer.state.get(layer.module.values, {})
                    assert all(value.shape in ((), layer.module.values.shape) for value in state.values()
                               if isinstance(value, torch.Tensor)), f"{layer.name}: a moment of another shape"
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
        nonzero = sum(int(w.count_nonzero()) for w in all_weights(agent, network).values())
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
            for name, target in all_weights(self.agent, network, target=True).items():
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
    kwargs = {"net_arch": [32, 32] if net_arch is None else net_arch, **with_kernel(policy, policy_kwargs)}
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


def dense_state(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``policy.state_dict()`` with each compressed layer's ``values`` as its dense ``weight``, whichever the kernel."""
    state = dict(policy.state_dict())
    for name, module in policy.named_modules():
        if isinstance(module, CompressedLinear):
            state.pop(f"{name}.values")
            state[f"{name}.weight"] = module.dense_weight()
    return state
