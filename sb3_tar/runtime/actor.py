"""The deployed actor: an ``nn.Module`` from observations to actions, with torch alone.

``load_actor(path)`` reads an exported actor and returns a ``DeployedActor``. Its forward pass
computes what ``model.predict(obs, deterministic=True)`` computes, with two differences in form
only: it takes and returns batches of tensors, and each linear layer runs the kernel the
measured rule (``kernels.MEASURED_RULE``) picks for its size, density and the batch size:

- batch 1 runs on vectors, ``torch.addmv(bias, W, x)``, with ``W`` dense or CSR;
- larger batches run a dense layer batch-major, ``F.linear(X, W, bias)`` with ``X`` of shape
  ``(batch, features)`` (what ``nn.Linear`` does), and a CSR layer feature-major,
  ``torch.addmm(bias, W, X)`` with ``X`` of shape ``(features, batch)`` (torch's fast sparse
  product has the sparse matrix on the left). Activations are transposed only where the layout
  changes, so consecutive CSR layers pass their outputs on as they are.

The kernels picked for a batch size are computed once and cached. A layer keeps a dense copy of
its weights only if some batch size runs it dense, and a CSR copy only if some batch size runs
it as CSR (a fixed ``batch_size`` keeps just one).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sb3_tar.engine.errors import UserError
from sb3_tar.runtime.fileformat import read_actor
from sb3_tar.runtime.kernels import KERNELS, MEASURED_RULE, KernelRule
from sb3_tar.runtime.spec import DISCRETE_BOUNDS, Activation, ActorSpec, Linear, Normalization

KERNEL_CHOICES = ("auto", *KERNELS)
Step = Callable[[torch.Tensor], torch.Tensor]


def csr_weight(layer: Linear) -> torch.Tensor:
    """The layer's kept weights as a CSR matrix with int32 indices (MKL's sparse kernels use int32)."""
    rows = layer.mask.sum(dim=1)
    crow = torch.zeros(layer.out_features + 1, dtype=torch.int32)
    crow[1:] = rows.cumsum(0)
    columns = layer.mask.nonzero()[:, 1].to(torch.int32)
    with warnings.catch_warnings():  # "sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, columns, layer.weight[layer.mask].contiguous(), layer.weight.shape)


class LinearLayer(nn.Module):
    """One linear layer with the weights its kernels need."""

    def __init__(self, layer: Linear, kernels: set[str]) -> None:
        super().__init__()
        self.name, self.in_features, self.out_features, self.kept = (
            layer.name, layer.in_features, layer.out_features, layer.kept)
        self.has_bias = layer.bias is not None
        bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
        self.register_buffer("bias", bias.to(torch.float32).contiguous())
        self.register_buffer("dense_weight", layer.weight.contiguous() if "dense" in kernels else None)
        self.register_buffer("csr_weight", csr_weight(layer) if "csr" in kernels else None)

    def dense(self) -> torch.Tensor:
        """The weight matrix, dense (pruned weights 0.0), whichever copy the layer keeps."""
        return self.dense_weight if self.dense_weight is not None else self.csr_weight.to_dense()

    def weight(self, kernel: str) -> torch.Tensor:
        weight = self.dense_weight if kernel == "dense" else self.csr_weight
        if weight is None:
            raise RuntimeError(f"layer {self.name!r} was loaded without its {kernel} weights")
        return weight

    def step(self, kernel: str, vector: bool) -> Step:
        """The layer as a function: of a vector (batch 1), else of batch-major (dense) or feature-major
        (CSR) activations, which must be contiguous."""
        weight = self.weight(kernel)
        if vector:
            return partial(torch.addmv, self.bias, weight)
        if kernel == "csr":
            return partial(torch.addmm, self.bias.unsqueeze(1), weight)
        return lambda h: F.linear(h, weight, self.bias)


class NormalizationLayer(nn.Module):
    """``(x - mean) / std * scale + shift``, per feature (CrossQ's BatchRenorm at inference)."""

    def __init__(self, layer: Normalization) -> None:
        super().__init__()
        self.name = layer.name
        for key in ("mean", "std", "scale", "shift"):
            self.register_buffer(key, getattr(layer, key))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The normalization of batch-major activations."""
        return self.step(vector=True, feature_major=False)(x)

    def step(self, vector: bool, feature_major: bool) -> Step:
        """The normalization of a vector or of batch-major activations, or (``feature_major``) of
        ``(features, batch)`` ones."""
        shape = (-1, 1) if feature_major and not vector else (-1,)
        mean, std = self.mean.reshape(shape), self.std.reshape(shape)
        scale = None if self.scale is None else self.scale.reshape(shape)
        shift = None if self.shift is None else self.shift.reshape(shape)

        def normalize(h: torch.Tensor) -> torch.Tensor:
            h = (h - mean) / std
            if scale is not None:
                h = scale * h
            if shift is not None:
                h = h + shift
            return h

        return normalize


def _transposed(h: torch.Tensor) -> torch.Tensor:
    return h.t().contiguous()


class DeployedActor(nn.Module):
    """An exported actor: a batch of observations in, a batch of deterministic actions out.

    :param spec: what the actor computes (``read_actor(path)``).
    :param kernels: ``"auto"`` (each layer by the measured rule), ``"dense"`` or ``"csr"`` (every
        linear layer with that kernel).
    :param batch_size: the one batch size the actor will see, if known: each layer then keeps only
        the weights of its kernel at that size. Other batch sizes still work, with the kernels at hand.
    :param rule: the dense-or-CSR rule (default: the one measured for this package).
    """

    def __init__(self, spec: ActorSpec, kernels: str = "auto", batch_size: int | None = None,
                 rule: KernelRule = MEASURED_RULE) -> None:
        super().__init__()
        if kernels not in KERNEL_CHOICES:
            raise UserError(f"kernels={kernels!r} must be one of {list(KERNEL_CHOICES)}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise UserError(f"batch_size={batch_size!r} must be a positive integer or None")
        self.kernels, self.rule = kernels, rule
        self.metadata = dict(spec.metadata)
        self.observation_divisor, self.action_bounds = spec.observation_divisor, spec.action_bounds
        self.action_groups = spec.action_groups
        self.observation_shape = tuple(spec.observation_shape)
        self.action_shape = tuple(spec.action_shape)
        self._observation_size = 1
        for size in self.observation_shape:
            self._observation_size *= size
        self.layers = nn.ModuleList()
        for layer in spec.layers:
            if isinstance(layer, Linear):
                self.layers.append(LinearLayer(layer, self._kernels_to_keep(layer, batch_size)))
            elif isinstance(layer, Activation):
                self.layers.append(layer.module())
            else:
                self.layers.append(NormalizationLayer(layer))
        self.register_buffer("action_low", spec.action_low.to(torch.float32))
        self.register_buffer("action_high", spec.action_high.to(torch.float32))
        self._plans: dict[tuple[int, torch.device], list[Step]] = {}

    def linear_layers(self) -> list[LinearLayer]:
        return [layer for layer in self.layers if isinstance(layer, LinearLayer)]

    @property
    def kept(self) -> int:
        """Kept weights over all linear layers."""
        return sum(layer.kept for layer in self.linear_layers())

    @property
    def total(self) -> int:
        """Weights of the linear layers if they were dense."""
        return sum(layer.out_features * layer.in_features for layer in self.linear_layers())

    def _kernels_to_keep(self, layer: Linear, batch_size: int | None) -> set[str]:
        if self.kernels != "auto":
            return {self.kernels}
        if batch_size is not None:
            return {self.rule.kernel(layer.out_features, layer.in_features, layer.kept, batch_size)}
        return self.rule.possible_kernels(layer.out_features, layer.in_features, layer.kept)

    def kernel(self, layer: LinearLayer, batch: int, device: torch.device | None = None) -> str:
        """The kernel ``layer`` runs at batch size ``batch``."""
        if self.kernels != "auto":
            return self.kernels
        device = device if device is not None else layer.bias.device
        if device.type != "cpu":  # the rule was measured on a CPU
            wanted = "dense"
        else:
            wanted = self.rule.kernel(layer.out_features, layer.in_features, layer.kept, batch)
        if (layer.dense_weight if wanted == "dense" else layer.csr_weight) is None:
            return "csr" if wanted == "dense" else "dense"  # loaded for another batch size: the kernel at hand
        return wanted

    def _plan(self, batch: int, device: torch.device) -> list[Step]:
        vector = batch == 1
        steps: list[Step] = []
        feature_major = False  # the layout of the activations (batch > 1): (features, batch) or (batch, features)

        def layout(wanted: bool) -> None:
            nonlocal feature_major
            if not vector and wanted != feature_major:
                steps.append(_transposed)
                feature_major = wanted

        for layer in self.layers:
            if isinstance(layer, LinearLayer):
                kernel = self.kernel(layer, batch, device)
                layout(kernel == "csr")
                steps.append(layer.step(kernel, vector))
            elif isinstance(layer, NormalizationLayer):
                steps.append(layer.step(vector, feature_major))
            else:
                steps.append(layer.forward)
        layout(False)
        # forward, not the module's call: no hooks to run on the hot path
        steps.append(_ActionBounds(self.action_bounds, self.action_low, self.action_high, self.action_groups).forward)
        return steps

    def _apply(self, fn: Any, recurse: bool = True) -> DeployedActor:
        self._plans = {}  # the cached steps hold the old tensors
        return super()._apply(fn, recurse)

    def forward(self, observations: torch.Tensor | Sequence[Any]) -> torch.Tensor:
        """Actions ``(batch, *action_shape)`` for observations ``(batch, *observation_shape)``; int64
        indices ``(batch,)`` for a discrete action space.

        A single observation (no batch dimension) is a batch of one. Observations are converted to
        float32 (and divided by 255 for image observations) as SB3 does.
        """
        x = observations if isinstance(observations, torch.Tensor) else torch.as_tensor(observations)
        x = x.to(self.action_low.device).reshape(-1, self._observation_size)
        if x.dtype != torch.float32:
            x = x.float()
        if self.observation_divisor is not None:
            x = x / self.observation_divisor
        batch = x.shape[0]
        steps = self._plans.get((batch, x.device))
        if steps is None:
            steps = self._plans[(batch, x.device)] = self._plan(batch, x.device)
        h = x[0] if batch == 1 else x
        for step in steps:
            h = step(h)
        return h.reshape(batch, *self.action_shape)

    def as_sequential(self) -> nn.Sequential:
        """The same function as a plain dense ``nn.Sequential`` (batch-major ``nn.Linear`` layers).

        What ``torch.onnx.export`` and other tools that trace a module need; also the dense
        reference the benchmark compares against.
        """
        modules: list[nn.Module] = [nn.Flatten()]
        if self.observation_divisor is not None:
            modules.append(_Divide(self.observation_divisor))
        for layer in self.layers:
            if isinstance(layer, LinearLayer):
                linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.has_bias,
                                   device=layer.bias.device)
                with torch.no_grad():
                    linear.weight.copy_(layer.dense())
                    if layer.has_bias:
                        linear.bias.copy_(layer.bias)
                modules.append(linear.requires_grad_(False))
            else:
                modules.append(copy.deepcopy(layer))
        modules.append(_ActionBounds(self.action_bounds, self.action_low, self.action_high, self.action_groups))
        if len(self.action_shape) > 1:
            modules.append(nn.Unflatten(1, self.action_shape))
        elif not self.action_shape and self.action_bounds not in DISCRETE_BOUNDS:  # a scalar Box action: (batch,), as forward
            modules.append(nn.Flatten(0))
        return nn.Sequential(*modules).eval()

    def describe(self, batch_sizes: Sequence[int] = (1, 256)) -> str:
        """One line per linear layer: shape, kept weights, density and kernel at each batch size."""
        lines = [f"{'layer':<24} {'shape':>11} {'kept':>9} {'density':>8}  "
                 + "  ".join(f"batch {b}" for b in batch_sizes)]
        for layer in self.linear_layers():
            shape = f"{layer.out_features}x{layer.in_features}"
            density = layer.kept / (layer.out_features * layer.in_features)
            kernels = "  ".join(f"{self.kernel(layer, b):>{len(f'batch {b}')}}" for b in batch_sizes)
            lines.append(f"{layer.name:<24} {shape:>11} {layer.kept:>9} {density:>8.4f}  {kernels}")
        return "\n".join(lines)


class _Divide(nn.Module):
    def __init__(self, divisor: float) -> None:
        super().__init__()
        self.divisor = divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.divisor


class _ActionBounds(nn.Module):
    """The last layer's output as an action; batch-major, or one vector (a batch of one)."""

    def __init__(self, bounds: str, low: torch.Tensor, high: torch.Tensor, groups: int = 1) -> None:
        super().__init__()
        self.bounds, self.groups = bounds, groups
        self.actions = int(high) + 1 if bounds in DISCRETE_BOUNDS else None  # a Box's bounds may be infinite
        self.register_buffer("low", low.reshape(-1).clone())
        self.register_buffer("high", high.reshape(-1).clone())

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if self.bounds == "rescale":  # as SB3's unscale_action
            return self.low + 0.5 * (a + 1.0) * (self.high - self.low)
        if self.bounds == "clip":
            return torch.clamp(a, self.low, self.high)
        if self.groups > 1:  # QR-DQN: each action's value is the mean of its quantiles
            a = a.reshape(*a.shape[:-1], self.groups, self.actions).mean(dim=-2)
        if self.bounds == "categorical":  # torch's Categorical: the softmax of the logits less their logsumexp
            a = torch.softmax(a - a.logsumexp(dim=-1, keepdim=True), dim=-1)
        return a.argmax(dim=-1)


def load_actor(path: str | Path, kernels: str = "auto", batch_size: int | None = None) -> DeployedActor:
    """The actor exported to ``path``, ready to run (evaluation mode, no gradients needed).

    Imports torch only: neither Stable-Baselines3 nor gymnasium.

    :param path: a file written by ``sb3_tar.export.export_actor`` or ``sb3-tar export``.
    :param kernels: ``"auto"`` (dense or CSR per layer, by the measured rule), ``"dense"`` or ``"csr"``.
    :param batch_size: the batch size the actor will run at, if fixed (keeps one copy of each layer).
    """
    return DeployedActor(read_actor(path), kernels=kernels, batch_size=batch_size).eval()
