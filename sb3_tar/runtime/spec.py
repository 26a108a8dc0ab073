"""What an exported actor computes, as plain tensors: observation in, deterministic action out.

An ``ActorSpec`` holds no SB3 object. Its ``layers`` run in order on the flattened float32
observation; the last layer's output is mapped to the environment's action bounds, as SB3's
``BasePolicy.predict`` does: rescaled from [-1, 1] for a squashing policy, clipped otherwise; for a
discrete action space, the action is the index of the largest output (logits or Q-values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sb3_tar.engine.errors import UserError

# Activation name -> (module class, the constructor options recorded in the file).
ACTIVATIONS: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "relu": (nn.ReLU, ()),
    "tanh": (nn.Tanh, ()),
    "sigmoid": (nn.Sigmoid, ()),
    "elu": (nn.ELU, ("alpha",)),
    "celu": (nn.CELU, ("alpha",)),
    "selu": (nn.SELU, ()),
    "leaky_relu": (nn.LeakyReLU, ("negative_slope",)),
    "silu": (nn.SiLU, ()),
    "mish": (nn.Mish, ()),
    "gelu": (nn.GELU, ("approximate",)),
    "softplus": (nn.Softplus, ("beta", "threshold")),
    "softsign": (nn.Softsign, ()),
    # Also nn.ReLU6 (a Hardtanh from 0 to 6) and the clip of gSDE's mean (``clip_mean``).
    "hardtanh": (nn.Hardtanh, ("min_val", "max_val")),
}
ACTION_BOUNDS = ("rescale", "clip", "argmax", "categorical")
DISCRETE_BOUNDS = ("argmax", "categorical")  # a discrete action: an int64 index


@dataclass(frozen=True)
class Linear:
    """A fully connected layer ``y = x W^T + b`` whose pruned weights are exactly 0.0.

    :param weight: ``(out_features, in_features)`` float32; 0.0 wherever ``mask`` is False.
    :param mask: ``(out_features, in_features)`` bool: the kept weights (all True for a dense layer).
    :param bias: ``(out_features,)`` float32, or ``None`` for a layer without bias.
    :param name: the layer's name in the model it came from (``"actor.latent_pi.0"``), for reports.
    """

    weight: torch.Tensor
    mask: torch.Tensor
    bias: torch.Tensor | None
    name: str = ""

    def __post_init__(self) -> None:
        if self.weight.dim() != 2 or self.mask.shape != self.weight.shape:
            raise UserError(f"layer {self.name!r}: weight {tuple(self.weight.shape)} and mask "
                            f"{tuple(self.mask.shape)} must be matrices of one shape")
        if self.bias is not None and self.bias.shape != (self.weight.shape[0],):
            raise UserError(f"layer {self.name!r}: bias {tuple(self.bias.shape)} must have "
                            f"{self.weight.shape[0]} entries")
        for part, tensor in (("weight", self.weight), ("bias", self.bias)):
            if tensor is not None and not bool(torch.isfinite(tensor).all()):
                raise UserError(f"layer {self.name!r}: its {part} holds nan or inf (a diverged model?); an actor "
                                "whose weights are not finite computes no action")
        pruned_nonzero = int(self.weight[~self.mask].count_nonzero())
        if pruned_nonzero:
            raise UserError(f"layer {self.name!r}: {pruned_nonzero} weights are non-zero where the mask prunes "
                            "them; an exported layer keeps exactly its masked weights")

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def kept(self) -> int:
        """Number of kept weights."""
        return int(self.mask.sum())

    @property
    def density(self) -> float:
        """Fraction of the weights that are kept."""
        return self.kept / self.mask.numel()


@dataclass(frozen=True)
class Activation:
    """An element-wise function, by name (``ACTIVATIONS``) with its options (``{"alpha": 1.0}``)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in ACTIVATIONS:
            raise UserError(f"activation {self.name!r} is not supported; supported: {sorted(ACTIVATIONS)}")
        expected = set(ACTIVATIONS[self.name][1])
        if set(self.options) != expected:
            raise UserError(f"activation {self.name!r} takes the options {sorted(expected)}, "
                            f"got {sorted(self.options)}")

    def module(self) -> nn.Module:
        """A fresh ``nn.Module`` computing this activation."""
        return ACTIVATIONS[self.name][0](**self.options)


@dataclass(frozen=True)
class Normalization:
    """A per-feature normalization in evaluation mode: ``(x - mean) / std * scale + shift``.

    CrossQ's ``BatchRenorm`` layers at inference, with ``std = sqrt(running_var + eps)``
    computed once in float32 exactly as SB3 does it each call; ``scale`` and ``shift`` are the
    affine parameters (``None`` without them).
    """

    mean: torch.Tensor
    std: torch.Tensor
    scale: torch.Tensor | None
    shift: torch.Tensor | None
    name: str = ""

    @property
    def features(self) -> int:
        return self.mean.shape[0]


Layer = Linear | Activation | Normalization


@dataclass(frozen=True)
class ActorSpec:
    """Everything an exported actor computes.

    :param observation_shape: the shape of one observation (the batch dimension comes first).
    :param observation_divisor: ``255.0`` for image observations SB3 divides by 255, else ``None``.
    :param layers: what runs on the flattened float32 observation, in order (the squash included).
    :param action_shape: the shape of one action (``()`` for a discrete action).
    :param action_low: the action space's lower bounds, float32, ``action_shape`` (discrete: 0).
    :param action_high: the upper bounds (discrete: the last action's index).
    :param action_bounds: ``"rescale"``: ``low + 0.5 * (a + 1) * (high - low)`` (a squashing
        policy's output in [-1, 1]); ``"clip"``: ``a`` clipped to ``[low, high]``; ``"argmax"``: the
        index (int64) of the largest of the last layer's ``high + 1`` outputs, a discrete action;
        ``"categorical"``: the index of the largest probability of the categorical distribution
        whose logits those outputs are, computed as torch's ``Categorical`` computes it (SB3's mode
        for PPO and A2C), so logits equal to within float32 rounding break their tie as SB3 does.
    :param action_groups: for ``"argmax"``: the last layer's outputs are this many groups of
        ``high + 1`` action values, averaged per action before the argmax (QR-DQN's quantiles); 1
        otherwise.
    :param metadata: where it came from (algorithm, policy, versions), for people; never read back
        into the computation.
    """

    observation_shape: tuple[int, ...]
    observation_divisor: float | None
    layers: tuple[Layer, ...]
    action_shape: tuple[int, ...]
    action_low: torch.Tensor
    action_high: torch.Tensor
    action_bounds: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    action_groups: int = 1

    def __post_init__(self) -> None:
        if self.action_bounds not in ACTION_BOUNDS:
            raise UserError(f"action_bounds={self.action_bounds!r} must be one of {list(ACTION_BOUNDS)}")
        for bound in (self.action_low, self.action_high):
            if tuple(bound.shape) != tuple(self.action_shape):
                raise UserError(f"action bounds of shape {tuple(bound.shape)} do not match the action shape "
                                f"{tuple(self.action_shape)}")
        if self.action_bounds in DISCRETE_BOUNDS and tuple(self.action_shape) != ():
            raise UserError(f"action_bounds={self.action_bounds!r} picks one discrete action: action_shape must be "
                            f"(), not {tuple(self.action_shape)}")
        if self.action_groups != 1 and self.action_bounds != "argmax":
            raise UserError(f"action_groups={self.action_groups!r} averages discrete action values: it needs "
                            "action_bounds='argmax'")
        if not isinstance(self.action_groups, int) or self.action_groups < 1:
            raise UserError(f"action_groups={self.action_groups!r} must be an integer >= 1")
        linear = self.linear_layers()
        if self.action_bounds in DISCRETE_BOUNDS and linear:
            actions = int(self.action_high) + 1
            if linear[-1].out_features != self.action_groups * actions:
                raise UserError(f"action_bounds={self.action_bounds!r} over {actions} actions"
                                + (f" in {self.action_groups} groups" if self.action_groups > 1 else "")
                                + f", but the last layer {linear[-1].name!r} has {linear[-1].out_features} outputs")

    def linear_layers(self) -> list[Linear]:
        return [layer for layer in self.layers if isinstance(layer, Linear)]

    @property
    def kept(self) -> int:
        """Kept weights over all linear layers."""
        return sum(layer.kept for layer in self.linear_layers())

    @property
    def total(self) -> int:
        """Weights of the same layers if they were dense."""
        return sum(layer.mask.numel() for layer in self.linear_layers())
