"""Multiplying masks into a network: the one place that decides what a mask zeroes.

A masked position is zero in three places that must agree: the weight, its optimizer state
(Adam's moments, SGD's momentum, ...) and its copy in a target network. Pruning, the step hooks
that keep masks through training and the SET/RigL updates all go through ``masked_tensors`` (what
to multiply by what): the step hooks multiply by cached float masks (one ``torch._foreach_mul_``),
a one-off ``multiply_masks`` selects with the bool masks (no float copy of each mask to allocate).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sb3_tar.engine.errors import UserError

# Per-element optimizer state that torch initialises to zero, so a masked (or newly grown) position
# is reset to that initial state. Adam/AdamW/NAdam/RAdam: exp_avg, exp_avg_sq (and max_exp_avg_sq
# with amsgrad); Adamax: exp_inf; SGD and RMSprop: momentum_buffer; RMSprop: square_avg, grad_avg.
# Other per-element state (for example Rprop's step sizes) does not start at zero and is left alone.
# Exception: SB3's RMSpropTFLike starts ``square_avg`` at one, so a weight SET/RigL regrows gets 0
# there (a larger first step) instead of its optimizer's initial value.
MOMENT_STATE_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "exp_inf", "momentum_buffer", "square_avg", "grad_avg")


def moment_tensors(optimizer: torch.optim.Optimizer, parameter: torch.Tensor) -> list[torch.Tensor]:
    """The optimizer's zero-initialised per-element state of ``parameter`` (Adam's moments, momentum, ...)."""
    state = optimizer.state.get(parameter) or {}
    return [moment for key in MOMENT_STATE_KEYS
            if isinstance(moment := state.get(key), torch.Tensor) and moment.shape == parameter.shape]


def any_kept(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """``mask.any(dim)``; a bool mask is read as bytes: torch's bool reduction is ~30x slower than ``amax``."""
    if mask.dtype != torch.bool:
        return mask.any(dim=dim)
    return mask.view(torch.uint8).amax(dim=dim).bool()


def masked_tensors(
    weights: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    *,
    optimizers: Sequence[torch.optim.Optimizer] = (),
    targets: Sequence[torch.Tensor | None] = (),
    as_bool: bool = False,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every tensor a mask zeroes and the multiplier for each, in the tensor's dtype and device.

    :param weights: the masked weights.
    :param masks: one mask (bool or 0/1 float) per weight, of its shape.
    :param optimizers: optimizers whose per-element state of these weights is masked too (an
        optimizer without state for a weight is skipped).
    :param targets: per weight, its copy in a target network, or ``None``; empty: no targets.
    :param as_bool: give each tensor its mask as bool (``True`` = kept) instead of a multiplier.
    :raises ValueError: if the lengths or a mask's shape do not match.
    """
    if len(masks) != len(weights) or (targets and len(targets) != len(weights)):
        raise UserError(f"masked_tensors needs one mask (and target) per weight: {len(weights)} weights, "
                        f"{len(masks)} masks, {len(targets)} targets")
    tensors: list[torch.Tensor] = []
    multipliers: list[torch.Tensor] = []
    converted: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}  # a weight, its moments, its target
    for index, (weight, mask) in enumerate(zip(weights, masks)):
        if tuple(mask.shape) != tuple(weight.shape):
            raise UserError(f"mask {index} of shape {tuple(mask.shape)} does not fit weight {index} of shape "
                            f"{tuple(weight.shape)}")
        copies = [weight, *(moment for optimizer in optimizers for moment in moment_tensors(optimizer, weight))]
        if targets and targets[index] is not None:
            copies.append(targets[index])
        for tensor in copies:
            dtype = torch.bool if as_bool else tensor.dtype
            key = (index, dtype, tensor.device)
            if key not in converted:
                converted[key] = mask.to(device=tensor.device, dtype=dtype)
            tensors.append(tensor)
            multipliers.append(converted[key])
    return tensors, multipliers


@torch.no_grad()
def multiply_masks(
    weights: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    *,
    optimizers: Sequence[torch.optim.Optimizer] = (),
    targets: Sequence[torch.Tensor | None] = (),
) -> None:
    """Zero the masked positions of ``weights``, of their state in ``optimizers`` and of ``targets``, in place.

    Idempotent. The arguments are ``masked_tensors``'. A masked non-finite value becomes 0 too.
    """
    tensors, keeps = masked_tensors(weights, masks, optimizers=optimizers, targets=targets, as_bool=True)
    for tensor, keep in zip(tensors, keeps):
        torch.where(keep, tensor, tensor.new_zeros(()), out=tensor)
