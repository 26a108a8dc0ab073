"""From an SB3 model to an ``ActorSpec``: the deterministic actor with its kept weights only.

What ``model.predict(obs, deterministic=True)`` computes, layer by layer:

- the observation as float32 (divided by 255 for image observations, as SB3's ``preprocess_obs``
  does), flattened (``MlpPolicy``'s ``FlattenExtractor``);
- SAC, TQC and CrossQ: ``latent_pi`` (CrossQ's ``BatchRenorm`` layers in evaluation mode), ``mu``
  (with gSDE's ``clip_mean`` Hardtanh when present), then ``tanh``: the mode of the squashed
  Gaussian; the ``log_std`` head is not exported, a deterministic action does not use it;
- TD3 and DDPG: ``mu``, whose last layer is already a ``tanh``;
- PPO and A2C: ``mlp_extractor.policy_net`` then ``action_net``: for continuous actions the
  Gaussian's mean (with gSDE's ``squash_output``: then ``tanh``), for discrete ones the logits; the
  value network is not exported;
- DQN: the Q-network ``q_net.q_net`` (its target is not exported); QR-DQN: ``quantile_net.quantile_net``,
  whose quantiles are averaged per action;
- the action mapped to the action space's bounds as ``BasePolicy.predict`` does: rescaled from
  [-1, 1] for a squashing policy (the off-policy five, gSDE with ``squash_output``), clipped otherwise;
  a discrete action is the index of the largest categorical probability (PPO, A2C: as SB3's mode ranks
  them) or Q-value (DQN; QR-DQN: mean of the quantiles).

Kept weights are those of the model's masks (``sparse_agent(model)``: ``TarMlpPolicy``,
``TARCallback`` and ``DSTCallback`` models); a model without masks exports dense. Observation
normalization by a ``VecNormalize`` wrapper is not part of the model and is not exported: apply
its statistics to the observations first.
"""

from __future__ import annotations

import math
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution, StateDependentNoiseDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn

from sb3_tar.engine.errors import UserError
from sb3_tar.engine.layers import LINEAR_LAYERS
from sb3_tar.runtime.fileformat import write_actor
from sb3_tar.runtime.spec import ACTIVATIONS, Activation, ActorSpec, Layer, Linear, Normalization

_ACTIVATION_NAMES = {cls: name for name, (cls, _) in ACTIVATIONS.items()}
_SKIPPED = (nn.Identity, nn.Dropout)  # identity functions at inference
EXPORTED = "SAC, TD3, DDPG, TQC, CrossQ, PPO, A2C, TRPO, DQN and QR-DQN"


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _kept_masks(model: Any) -> dict[str, torch.Tensor]:
    """Weight name -> mask, for a model sb3-tar sparsified; empty for a dense model."""
    from sb3_tar.sb3.agent import sparse_agent

    try:
        agent = sparse_agent(model)
    except ValueError:
        return {}
    return {name: agent.masks[name] for name in agent.masks.names()}


class _Collector:
    def __init__(self, policy: nn.Module, masks: dict[str, torch.Tensor]) -> None:
        self.names = {id(module): name for name, module in policy.named_modules()}
        self.masks = masks
        self.layers: list[Layer] = []

    def add(self, module: nn.Module) -> None:
        name = self.names.get(id(module), type(module).__name__)
        if isinstance(module, nn.Sequential):
            for child in module:
                self.add(child)
        elif isinstance(module, LINEAR_LAYERS):
            self.layers.append(self._linear(module, name))
        elif isinstance(module, nn.Hardtanh):  # nn.ReLU6 too
            self.layers.append(Activation("hardtanh", {"min_val": float(module.min_val),
                                                       "max_val": float(module.max_val)}))
        elif type(module) in _ACTIVATION_NAMES:
            activation = _ACTIVATION_NAMES[type(module)]
            self.layers.append(Activation(activation, {option: getattr(module, option)
                                                       for option in ACTIVATIONS[activation][1]}))
        elif _is_batch_renorm(module):
            self.layers.append(_normalization(module, name))
        elif not isinstance(module, _SKIPPED):
            raise UserError(
                f"model: the actor's layer {name} ({type(module).__name__}) cannot be exported; supported: nn.Linear, "
                f"sb3-contrib's BatchRenorm, nn.Identity/nn.Dropout and the activations {sorted(ACTIVATIONS)}"
            )

    def _linear(self, module: nn.Module, name: str) -> Linear:
        weight = module.weight.detach().cpu().to(torch.float32).clone()
        mask = self.masks.get(f"{name}.weight")
        mask = torch.ones_like(weight, dtype=torch.bool) if mask is None else mask.detach().cpu().to(torch.bool)
        pruned_nonzero = int(weight[~mask].count_nonzero())
        if pruned_nonzero:
            raise UserError(
                f"model: {pruned_nonzero} weights of {name}.weight are non-zero where its mask prunes them, so its "
                "weights are not the sparse network the masks describe (was it trained further without its masks?)"
            )
        bias = None if module.bias is None else module.bias.detach().cpu().to(torch.float32).clone()
        return Linear(weight, mask, bias, name)


def _is_batch_renorm(module: nn.Module) -> bool:
    try:
        from sb3_contrib.common.torch_layers import BatchRenorm
    except ImportError:
        return False
    return isinstance(module, BatchRenorm)


def _normalization(module: nn.Module, name: str) -> Normalization:
    """A BatchRenorm layer in evaluation mode (running statistics), as SB3 computes it."""
    mean = module.ra_mean.detach().cpu().to(torch.float32).clone()
    std = (module.ra_var.detach().cpu().to(torch.float32) + module.eps).sqrt()
    scale = module.scale.detach().cpu().to(torch.float32).clone() if module.affine else None
    shift = module.bias.detach().cpu().to(torch.float32).clone() if module.affine else None
    return Normalization(mean, std, scale, shift, name)


def _squashed(distribution: Any) -> bool:
    """Whether the distribution's mode is ``tanh`` of its mean (SAC's squashed Gaussian; gSDE with a bijector)."""
    return isinstance(distribution, SquashedDiagGaussianDistribution) or (
        isinstance(distribution, StateDependentNoiseDistribution) and distribution.bijector is not None)


def _actor_path(policy: nn.Module) -> tuple[nn.Module, list[nn.Module], bool, str, int]:
    """The actor's features extractor, the modules its deterministic action runs through, whether a ``tanh``
    follows them, that action as the file's metadata names it, and the groups its values come in (QR-DQN's
    quantiles; else 1)."""
    if isinstance(policy, ActorCriticPolicy):
        if getattr(policy, "lstm_actor", None) is not None:
            raise UserError(f"model: a {type(policy).__name__} acts through an LSTM whose state carries over from "
                            "step to step; sb3-tar exports feed-forward actors only")
        squashed = _squashed(policy.action_dist)
        action = "argmax(softmax(logits))" if isinstance(policy.action_space, spaces.Discrete) else "mean"
        return (policy.pi_features_extractor, [policy.mlp_extractor.policy_net, policy.action_net], squashed,
                "tanh(mean)" if squashed else action, 1)
    if hasattr(policy, "quantile_net"):  # QR-DQN: the greedy action of its quantiles' means
        network = policy.quantile_net
        return (network.features_extractor, [network.quantile_net], False, "argmax(mean of quantiles)",
                network.n_quantiles)
    if hasattr(policy, "q_net") and hasattr(policy.q_net, "q_net"):  # DQN: the greedy action of its Q-network
        return policy.q_net.features_extractor, [policy.q_net.q_net], False, "argmax(q_values)", 1
    actor = getattr(policy, "actor", None)
    if actor is None or not hasattr(actor, "mu"):
        raise UserError(f"model: a {type(policy).__name__} has no deterministic actor to export; sb3-tar exports the "
                        f"actors of {EXPORTED}")
    if hasattr(actor, "latent_pi"):  # SAC, TQC, CrossQ: the mode of a squashed Gaussian is tanh(mu)
        squashed = _squashed(actor.action_dist)
        return actor.features_extractor, [actor.latent_pi, actor.mu], squashed, "tanh(mu)" if squashed else "mu", 1
    return actor.features_extractor, [actor.mu], False, "mu", 1  # TD3, DDPG: mu ends with its own tanh


def observation_normalization(normalizer: Any, observation_space: spaces.Box) -> list[Layer]:
    """A ``VecNormalize``'s observation statistics as layers: ``clip((x - mean) / sqrt(var + eps), -c, c)``.

    A model trained behind ``VecNormalize`` acts on normalized observations; these layers put the
    same statistics (frozen, as at evaluation) in front of the exported actor, so it acts on raw ones.
    """
    if not getattr(normalizer, "norm_obs", False):
        return []
    statistics = normalizer.obs_rms
    if not hasattr(statistics, "mean"):
        raise UserError("the VecNormalize normalizes dict observations; the exported actor takes Box observations")
    mean = torch.as_tensor(statistics.mean, dtype=torch.float64).reshape(-1)
    if mean.numel() != math.prod(observation_space.shape):
        raise UserError(f"the VecNormalize statistics hold {mean.numel()} features, but the model's observations "
                        f"have shape {observation_space.shape}: they belong to another environment")
    std = torch.sqrt(torch.as_tensor(statistics.var, dtype=torch.float64).reshape(-1) + normalizer.epsilon)
    clip = float(normalizer.clip_obs)
    return [Normalization(mean.float(), std.float(), None, None, "observation normalization (VecNormalize)"),
            Activation("hardtanh", {"min_val": -clip, "max_val": clip})]


def actor_spec(model: Any, normalizer: Any = None) -> ActorSpec:
    """The deterministic actor of an SB3 model (SAC, TD3, DDPG, TQC, CrossQ, PPO, A2C, TRPO, DQN, QR-DQN), kept
    weights only.

    :param model: an SB3 algorithm (or its policy) with an ``MlpPolicy`` or ``TarMlpPolicy``, sparse
        (``TarMlpPolicy``, ``TARCallback``, ``DSTCallback``) or dense.
    :param normalizer: a ``VecNormalize`` (or its saved ``vecnormalize.pkl`` loaded) whose observation
        statistics the actor applies first (default: the model's own environment's, if it has one).
    :raises ValueError: naming what cannot be exported (observation or action space, features
        extractor, a layer type, a recurrent actor), or a weight that is non-zero where its mask prunes it.
    """
    policy = getattr(model, "policy", model)
    extractor, modules, squashed, action, groups = _actor_path(policy)
    observation_space, action_space = policy.observation_space, policy.action_space
    if not isinstance(observation_space, spaces.Box):
        raise UserError(f"model: observation space {observation_space} is not a Box; the exported actor takes Box "
                        "observations (dict and discrete observations are not supported)")
    if not isinstance(action_space, (spaces.Box, spaces.Discrete)):
        raise UserError(f"model: action space {action_space} is neither a Box nor a Discrete; the exported actor "
                        "returns a continuous action or one discrete action")
    if not isinstance(extractor, (FlattenExtractor, nn.Flatten)):
        raise UserError(f"model: the actor's features extractor is a {type(extractor).__name__}; the exported actor "
                        "supports MlpPolicy's FlattenExtractor only")

    collector = _Collector(policy, _kept_masks(model))
    if normalizer is None and hasattr(model, "get_vec_normalize_env"):
        normalizer = model.get_vec_normalize_env()
    if normalizer is not None:
        if policy.normalize_images and is_image_space(observation_space):
            raise UserError("model: a VecNormalize in front of image observations is not supported by the exported "
                            "actor")
        collector.layers.extend(observation_normalization(normalizer, observation_space))
    for module in modules:
        collector.add(module)
    if squashed:
        collector.layers.append(Activation("tanh"))

    divisor = 255.0 if policy.normalize_images and is_image_space(observation_space) else None
    if isinstance(action_space, spaces.Discrete):
        # PPO and A2C rank their categorical distribution's probabilities, as SB3's mode does; DQN its values
        bounds, shape = ("categorical" if isinstance(policy, ActorCriticPolicy) else "argmax"), ()
        # an index from 0 whatever the space's start, as SB3's predict returns it
        low, high = torch.tensor(0.0), torch.tensor(float(action_space.n - 1))
    else:
        bounds, shape = "rescale" if policy.squash_output else "clip", tuple(action_space.shape)
        low = torch.as_tensor(action_space.low, dtype=torch.float32).reshape(shape)
        high = torch.as_tensor(action_space.high, dtype=torch.float32).reshape(shape)
    algorithm = model if hasattr(model, "policy") else None
    linear = [layer for layer in collector.layers if isinstance(layer, Linear)]
    metadata = {
        "algorithm": type(algorithm).__name__ if algorithm is not None else None,
        "policy": type(policy).__name__,
        "deterministic_action": action,
        "action_bounds": bounds,
        "kept_weights": sum(layer.kept for layer in linear),
        "weights": sum(layer.mask.numel() for layer in linear),
        "observation_dtype": str(observation_space.dtype),
        "versions": {package: _package_version(package)
                     for package in ("sb3-tar", "stable-baselines3", "sb3-contrib", "torch")},
    }
    return ActorSpec(
        observation_shape=tuple(observation_space.shape),
        observation_divisor=divisor,
        layers=tuple(collector.layers),
        action_shape=shape,
        action_low=low,
        action_high=high,
        action_bounds=bounds,
        metadata=metadata,
        action_groups=groups,
    )


def export_actor(model: Any, path: str | Path, normalizer: Any = None) -> Path:
    """Write the model's deterministic actor to ``path``: kept weights only, in a compact encoding.

    Load it with ``sb3_tar.runtime.load_actor(path)`` (torch only). Its actions equal
    ``model.predict(obs, deterministic=True)``; for a model trained behind ``VecNormalize``, those
    of ``predict`` on the normalized observations, from raw ones (``normalizer``: see ``actor_spec``).

    :param model: an SB3 algorithm (or its policy): SAC, TD3, DDPG, TQC, CrossQ, PPO, A2C, TRPO, DQN or
        QR-DQN; sparse or dense.
    :param path: the file to write (parent folders are created).
    :param normalizer: a ``VecNormalize`` whose observation statistics the actor applies first.
    :return: the path written.
    """
    return write_actor(actor_spec(model, normalizer), path)
