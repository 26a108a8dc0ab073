"""Iterative Synaptic Flow pruning (Tanaka et al. 2020): data-free, and it avoids layer collapse."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from sb3_tar.engine.criteria import PruningTarget, register_criterion
from sb3_tar.engine.errors import UserError
from sb3_tar.engine.topk import split_flat, top_k_mask
from sb3_tar.engine.validation import check_integer

Forward = Callable[[nn.Module, torch.Tensor], object]

# Output squashes that saturate: with |W| and an all-ones input the pre-activation is large, their
# derivative is exactly 0 in float64, and every score would be 0 (TD3's tanh actor, gSDE's Hardtanh).
BOUNDED_SQUASHES = (nn.Tanh, nn.Hardtanh, nn.Sigmoid, nn.Hardsigmoid, nn.Softsign, nn.LogSigmoid)


def _without_bounded_squashes(network: nn.Module) -> None:
    """Replace every bounded squash of ``network`` by the identity, in place (on SynFlow's copy)."""
    for name, module in list(network.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, BOUNDED_SQUASHES):
                setattr(module, child_name, nn.Identity())


def _sum_outputs(output: object) -> torch.Tensor:
    """``R``: the sum of every output, so a network with several heads counts all of them."""
    if isinstance(output, torch.Tensor):
        return output.sum()
    if isinstance(output, Mapping):
        return sum(_sum_outputs(value) for value in output.values())
    if isinstance(output, Sequence):
        return sum(_sum_outputs(value) for value in output)
    raise TypeError(f"synflow: cannot sum a network output of type {type(output).__name__}")


def check_synflow_options(*, iterations: int = 100, input_width: int | None = None,
                           forward: Forward | None = None) -> None:
    check_integer("synflow option iterations", iterations)
    if input_width is not None:
        check_integer("synflow option input_width", input_width)
    if forward is not None and not callable(forward):
        raise UserError(f"synflow option forward={forward!r} must be a function forward(network, ones) or None")


@register_criterion("synflow", check_synflow_options)
def synflow(
    target: PruningTarget,
    *,
    iterations: int = 100,
    input_width: int | None = None,
    forward: Forward | None = None,
) -> list[torch.Tensor]:
    """Score ``|w * dR/dw|`` on absolute weights and an all-ones input; prune on an exponential schedule.

    Works on a float64 copy of the network, so the real weights are never touched. SynFlow is
    defined for positively homogeneous activations (ReLU, identity): bounded output squashes
    (``BOUNDED_SQUASHES``: Tanh, Hardtanh, Sigmoid, ...) are scored as the identity, since a
    saturated squash has derivative 0 and would zero every score.

    :param iterations: pruning rounds; round ``k`` keeps ``density ** (k / iterations)``.
    :param input_width: width of the all-ones input; default: ``in_features`` of the first layer.
    :param forward: ``forward(network, ones) -> outputs`` for networks whose ``forward`` is not a
        plain function of one input (for example an SB3 actor: its heads' outputs are summed).
    """
    check_synflow_options(iterations=iterations, input_width=input_width, forward=forward)
    shadow = copy.deepcopy(target.network).to("cpu", torch.float64).eval()
    _without_bounded_squashes(shadow)
    for parameter in shadow.parameters():
        parameter.requires_grad_(False)
        parameter.abs_()
    weights = [shadow.get_parameter(layer.name) for layer in target.layers]
    # One flat buffer behind all prunable weights: pruning a round is one indexed write.
    flat_weights = torch.cat([weight.flatten() for weight in weights])
    offset = 0
    for weight in weights:
        weight.data = flat_weights[offset:offset + weight.numel()].view_as(weight)
        weight.requires_grad_(True)
        offset += weight.numel()
    ones = torch.ones(1, input_width or target.layers[0].in_features, dtype=torch.float64)
    run = forward or (lambda network, inputs: network(inputs))

    # Indices of surviving weights, ascending: ranking only survivors keeps each round cheap,
    # and ascending order keeps ties broken by position.
    alive = torch.arange(target.total)
    final_density = target.kept / target.total
    for round_index in range(1, iterations + 1):
        gradients = torch.autograd.grad(_sum_outputs(run(shadow, ones)), weights, allow_unused=True)
        flat_scores = torch.cat([
            (weight.detach() * gradient).abs().flatten() if gradient is not None else torch.zeros(weight.numel())
            for weight, gradient in zip(weights, gradients)
        ])
        last_round = round_index == iterations
        kept = target.kept if last_round else round(target.total * final_density ** (round_index / iterations))
        survives = top_k_mask(flat_scores[alive], kept)
        if not last_round:
            with torch.no_grad():
                flat_weights[alive[~survives]] = 0.0
        alive = alive[survives]
    flat_mask = torch.zeros(target.total, dtype=torch.bool)
    flat_mask[alive] = True
    return split_flat(flat_mask, [layer.weight.shape for layer in target.layers])
