"""Iterative Synaptic Flow pruning (Tanaka et al. 2020): data-free, and it avoids layer collapse."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from sb3_tar.engine.criteria import PruningTarget, global_top_k, register_criterion

Forward = Callable[[nn.Module, torch.Tensor], object]


def _sum_outputs(output: object) -> torch.Tensor:
    """``R``: the sum of every output, so a network with several heads counts all of them."""
    if isinstance(output, torch.Tensor):
        return output.sum()
    if isinstance(output, Mapping):
        return sum(_sum_outputs(value) for value in output.values())
    if isinstance(output, Sequence):
        return sum(_sum_outputs(value) for value in output)
    raise TypeError(f"synflow: cannot sum a network output of type {type(output).__name__}")


@register_criterion("synflow")
def synflow(
    target: PruningTarget,
    *,
    iterations: int = 100,
    input_width: int | None = None,
    forward: Forward | None = None,
) -> list[torch.Tensor]:
    """Score ``|w * dR/dw|`` on absolute weights and an all-ones input; prune on an exponential schedule.

    Works on a float64 copy of the network, so the real weights are never touched.

    :param iterations: pruning rounds; round ``k`` keeps ``density ** (k / iterations)``.
    :param input_width: width of the all-ones input; default: ``in_features`` of the first layer.
    :param forward: ``forward(network, ones) -> outputs`` for networks whose ``forward`` is not a
        plain function of one input (for example an SB3 actor: its heads' outputs are summed).
    """
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"synflow option iterations={iterations!r} must be an integer >= 1")
    shadow = copy.deepcopy(target.network).to("cpu", torch.float64).eval()
    for parameter in shadow.parameters():
        parameter.requires_grad_(False)
        parameter.abs_()
    weights = [shadow.get_parameter(layer.name) for layer in target.layers]
    absolute_weights = [weight.clone() for weight in weights]
    for weight in weights:
        weight.requires_grad_(True)
    ones = torch.ones(1, input_width or target.layers[0].in_features, dtype=torch.float64)
    run = forward or (lambda network, inputs: network(inputs))

    masks = [torch.ones_like(weight, dtype=torch.bool) for weight in weights]
    final_density = target.kept / target.total
    for round_index in range(1, iterations + 1):
        with torch.no_grad():
            for weight, absolute, mask in zip(weights, absolute_weights, masks):
                weight.copy_(absolute * mask)
        gradients = torch.autograd.grad(_sum_outputs(run(shadow, ones)), weights, allow_unused=True)
        scores = [
            torch.where(mask, (weight * gradient).abs(), -1.0) if gradient is not None else torch.where(mask, 0.0, -1.0)
            for weight, gradient, mask in zip(weights, gradients, masks)
        ]
        kept = target.kept if round_index == iterations else round(target.total * final_density ** (round_index / iterations))
        masks = global_top_k([score.detach() for score in scores], kept)
    return masks
