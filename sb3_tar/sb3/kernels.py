"""Which layers of a sparse policy train in compressed form (``kernel="sparse"``), and the swap itself.

A TAR or static mask is frozen after revival, so a masked layer can store and train only its kept
weights (``sb3_tar.engine.compressed.CompressedLinear``): forward, input gradient, weight gradient
and optimizer moments on kept weights only, targets and Polyak averaging on the kept values.
``benchmarks/results/train_steps.md`` measured it against the masked dense layers.

Dense is the canonical layout. A policy is built, loaded and checked with dense layers; the
kernel is applied afterwards (``apply_kernels``), and a load first turns the policy dense again
(``densify``), so a model saved with one kernel loads with the other. Optimizer moments follow
the weights both ways, also when a saved optimizer state of the other layout is loaded.

The ``kernel`` setting:

- ``"auto"`` (the default): per layer, compressed where ``benchmarks/results/train_kernel_layers.md``
  measured it faster than dense with a margin (``AUTO_RULE``); dense elsewhere, and always dense on
  a GPU;
- ``"dense"``: masked dense layers, masks kept by the step hooks;
- ``"sparse"``: every masked layer compressed (CPU only: torch's CSR kernels with ``reduce`` are).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sb3_tar.engine.compressed import CompressedLinear, compress_linear_layers, dense_of, values_of
from sb3_tar.engine.errors import UserError
from sb3_tar.engine.layers import prunable_layers
from sb3_tar.sb3.networks import SparseNetwork

# (at least this many weights, at most this density) -> compressed, from benchmarks/results/
# train_kernel_layers.md (one layer's forward, backward and Adam step, batch 256, one thread): at
# density 0.2 compressed layers took 0.82-1.06x the dense one, so no tier reaches it; below 256 rows
# or columns (17- and 64-row heads) they were slower at every density.
AUTO_RULE = ((1024 * 256, 0.15), (256 * 256, 0.10))
AUTO_MIN_SIDE = 256


def choose_kernel(kernel: str, mask: torch.Tensor, device: torch.device) -> str:
    """``"dense"`` or ``"sparse"`` for one masked layer under the ``kernel`` setting."""
    if kernel != "auto":
        return kernel
    if torch.device(device).type != "cpu" or min(mask.shape) < AUTO_MIN_SIDE:
        return "dense"
    density = int(mask.count_nonzero()) / mask.numel()
    return "sparse" if any(mask.numel() >= weights and density <= most for weights, most in AUTO_RULE) else "dense"


def layer_kernels(networks: list[SparseNetwork], masks: Mapping[str, torch.Tensor], kernel: str,
                  device: torch.device) -> dict[str, str]:
    """Mask name -> ``"dense"`` or ``"sparse"``, for every masked layer of ``networks``.

    :raises ValueError: for ``kernel="sparse"`` on a device other than the CPU.
    """
    if kernel == "sparse" and torch.device(device).type != "cpu":
        raise UserError(f"kernel='sparse' runs on the CPU only (torch's CSR kernels with reduce); the policy is on "
                        f"{device}: use kernel='dense' or 'auto' (dense there)")
    return {network.weight_name(layer.name): choose_kernel(kernel, masks[network.weight_name(layer.name)], device)
            for network in networks for layer in prunable_layers(network.module)}


def _replace_parameters(optimizer: torch.optim.Optimizer, replaced: Mapping[int, tuple[nn.Parameter, Any]]) -> None:
    """Put each new parameter where its old one was in ``optimizer``, converting its per-element state.

    :param replaced: ``id(old parameter)`` -> ``(new parameter, convert)``; ``convert`` turns a
        tensor of the old parameter's shape into one of the new's (an Adam moment).
    """
    for group in optimizer.param_groups:
        for index, parameter in enumerate(group["params"]):
            if id(parameter) not in replaced:
                continue
            new, convert = replaced[id(parameter)]
            group["params"][index] = new
            state = optimizer.state.pop(parameter, None)
            if state is not None:
                optimizer.state[new] = {key: convert(value) if isinstance(value, torch.Tensor)
                                        and value.shape == parameter.shape and value.dim() > 0 else value
                                        for key, value in state.items()}


def _swap(policy: nn.Module, names: Mapping[str, torch.Tensor], compress: bool,
          indices_of: Mapping[str, str] | None = None) -> dict:
    """Swap the named layers of ``policy`` (qualified weight names) to the other layout; returns id(old) -> (new, convert).

    The names are the policy's own: a network's module may be a view (SAC's actor heads), and a
    layer must be replaced where the policy holds it. ``indices_of`` names, per layer, a compressed
    layer of the same mask whose index tensors it shares.
    """
    replaced: dict[int, tuple[nn.Parameter, Any]] = {}
    for name, mask in names.items():
        module_name = name.removesuffix(".weight")
        layer = policy.get_submodule(module_name)
        if compress and isinstance(layer, nn.Linear):
            old = layer.weight
            lender = (indices_of or {}).get(name)
            compress_linear_layers(policy, {name: mask},
                                   {name: policy.get_submodule(lender.removesuffix(".weight"))} if lender else None)
            new = policy.get_submodule(module_name).values
            replaced[id(old)] = (new, lambda tensor, mask=mask: values_of(tensor, mask))
        elif not compress and isinstance(layer, CompressedLinear):
            dense = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                              device=layer.values.device, dtype=layer.values.dtype)
            with torch.no_grad():
                dense.weight.copy_(layer.dense_weight())
            if layer.bias is not None:
                dense.bias = layer.bias  # the same parameter: its optimizer keeps owning it
            parent_name, _, child = module_name.rpartition(".")
            policy.get_submodule(parent_name).register_module(child, dense)
            replaced[id(layer.values)] = (dense.weight, lambda tensor, mask=mask: dense_of(tensor, mask))
    return replaced


def _apply(policy: nn.Module, networks: list[SparseNetwork], masks: Mapping[str, torch.Tensor],
           chosen: Mapping[str, str], compress: bool) -> None:
    for network in networks:
        layers = [layer.name for layer in prunable_layers(network.module)
                  if (chosen.get(network.weight_name(layer.name)) == "sparse") == compress]
        if not layers:
            continue
        names = {network.weight_name(layer): masks[network.weight_name(layer)].detach() for layer in layers}
        _replace_parameters(network.optimizer, _swap(policy, names, compress))
        if network.target is not None:  # the target's copy shares the online layer's indices
            _swap(policy, {network.target_weight_name(layer): masks[network.weight_name(layer)].detach()
                           for layer in layers}, compress,
                  {network.target_weight_name(layer): network.weight_name(layer) for layer in layers})


def apply_kernels(policy: nn.Module, networks: list[SparseNetwork], masks: Mapping[str, torch.Tensor],
                  chosen: Mapping[str, str]) -> None:
    """Compress the layers ``chosen`` marks ``"sparse"`` (and their target copies); their optimizer follows."""
    _apply(policy, networks, masks, chosen, compress=True)


def densify(policy: nn.Module, networks: list[SparseNetwork], masks: Mapping[str, torch.Tensor]) -> None:
    """Turn every compressed layer (and target copy) back into ``nn.Linear``; its optimizer follows."""
    _apply(policy, networks, masks, {}, compress=False)


def is_compressed(networks: list[SparseNetwork]) -> bool:
    """Whether any layer of ``networks`` is compressed."""
    return any(isinstance(layer.module, CompressedLinear) for network in networks
               for layer in prunable_layers(network.module))


def convert_optimizer_state(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
    """A saved optimizer state dict in this optimizer's layout: moments saved for the other kernel are converted.

    Registered as the optimizer's load pre-hook, so a model saved with ``kernel="dense"`` loads with
    ``"sparse"`` (a moment of the dense weight's shape keeps its kept entries) and the other way
    round (kept entries scattered into a dense moment, 0.0 elsewhere).
    """
    layouts = getattr(optimizer, "_sb3_tar_layouts", {})
    if not layouts:
        return state_dict
    parameters = [parameter for group in optimizer.param_groups for parameter in group["params"]]
    state = dict(state_dict.get("state", {}))
    for index, entry in state.items():
        if not isinstance(index, int) or index >= len(parameters) or id(parameters[index]) not in layouts:
            continue
        mask = layouts[id(parameters[index])]
        shape = parameters[index].shape
        converted = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != shape:
                if value.shape == mask.shape and shape == (int(mask.count_nonzero()),):
                    value = values_of(value, mask)
                elif value.dim() == 1 and value.numel() == int(mask.count_nonzero()) and shape == mask.shape:
                    value = dense_of(value, mask)
            converted[key] = value
        state[index] = converted
    return {**state_dict, "state": state}


def register_layouts(networks: list[SparseNetwork], masks: Mapping[str, torch.Tensor]) -> None:
    """Tell each network's optimizer which of its parameters are masked weights (either layout), for loading."""
    layouts: dict[int, tuple[torch.optim.Optimizer, dict[int, torch.Tensor]]] = {}
    for network in networks:
        _, found = layouts.setdefault(id(network.optimizer), (network.optimizer, {}))
        for layer in prunable_layers(network.module):
            module = layer.module
            parameter = module.values if isinstance(module, CompressedLinear) else module.weight
            found[id(parameter)] = masks[network.weight_name(layer.name)].detach()
    for optimizer, found in layouts.values():
        if not hasattr(optimizer, "_sb3_tar_layouts"):
            optimizer.register_load_state_dict_pre_hook(convert_optimizer_state)
        optimizer._sb3_tar_layouts = found  # type: ignore[attr-defined]
