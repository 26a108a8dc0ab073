"""Batch renormalisation that a sparse network can feed a constant unit without producing NaN.

CrossQ normalises every hidden layer with sb3-contrib's ``BatchRenorm``. A unit a sparse layer
leaves without a varying input (no kept weight, or only dead inputs) is constant over the batch,
its batch variance is exactly 0, and once the warm-up ends BatchRenorm takes ``sqrt`` of it, whose
gradient at 0 is infinite: the backward pass turns it into NaN and every weight follows. Where a
feature is exactly constant over the batch its true gradient is zero (normalisation removes any
shift), so a forward pre-hook hands BatchRenorm that feature detached from the graph: the forward
values are unchanged and the backward pass yields 0 instead of NaN for it. During the warm-up
BatchRenorm adds ``eps`` first, so the hook returns at once and the training step pays nothing.
"""

from __future__ import annotations

import torch
from sb3_contrib.common.torch_layers import BatchRenorm
from torch import nn

_GUARDED = "_sb3_tar_constant_units_guarded"


def _detach_constant_features(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
    features = inputs[0]
    # Only past the warm-up does BatchRenorm take sqrt of the bare batch variance: nothing to do before.
    if (not module.training or module.steps <= module.warmup_steps or features.dim() != 2 or features.shape[0] < 2
            or not features.requires_grad):
        return None
    constant = features.var(dim=0) == 0
    if not bool(constant.any()):
        return None
    return (torch.where(constant, features.detach(), features), *inputs[1:])


def guard_constant_units(policy: nn.Module) -> None:
    """Make every ``BatchRenorm`` layer of ``policy`` safe for constant units (idempotent)."""
    for module in policy.modules():
        if isinstance(module, BatchRenorm) and not getattr(module, _GUARDED, False):
            module.register_forward_pre_hook(_detach_constant_features)
            setattr(module, _GUARDED, True)
