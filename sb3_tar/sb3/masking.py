"""The one mechanism that keeps masked weights at exactly 0.0 through training: an optimizer step hook.

``enforce_masks`` registers one hook on each optimizer's ``step`` (``Optimizer.register_step_post_hook``:
per optimizer, never process-wide). After every step it multiplies, in one ``torch._foreach_mul_``,
that optimizer's masked weights and their per-element optimizer state (Adam's ``exp_avg`` and
``exp_avg_sq``, AMSGrad's maximum, SGD's momentum, ...) by the mask. So after every gradient step a masked weight is exactly 0.0 whatever the update rule (weight decay
included), and its moments are exactly 0, so nothing stale can ever revive it. For element-wise
optimizers (Adam, AdamW, SGD, RMSprop, ...) the kept weights train exactly as they would in the
sparse network; the forward and backward passes never see a mask.

Why not mask the gradients before the step instead: that leaves masked moments at exactly 0
*during* Adam's update, and ``sqrt(0)`` is about 5x slower than ``sqrt(x)`` on torch's CPU kernel,
which made a SAC gradient step ~4 % slower; zeroing after the step costs ~1 %.

A hook touches only the weights its optimizer owns: SAC computes the actor's actions before the
critic step and backpropagates through them after it, so re-masking the actor from the critic
optimizer's hook would break autograd. Target networks are masked when the masks are attached;
Polyak averaging (``(1 - tau) * 0 + tau * 0``) keeps their zeros exactly from then on.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from sb3_tar.engine.errors import UserError
from sb3_tar.engine.masking import masked_tensors, multiply_masks


class WeightMasks(nn.Module):
    """Masks as persistent bool buffers, each under the qualified name of the weight it masks.

    Registered on a policy while it is built, the masks are saved and loaded with it
    (``masks.actor.latent_pi.0.weight`` masks ``actor.latent_pi.0.weight``) and move with it
    between devices. ``True`` = kept.

    :param masks: weight name -> bool mask of the weight's shape.
    :param count_updates: keep a persistent count of the masks replaced by ``set`` since they were
        drawn (buffer ``updates``): 0 means the masks are the drawn ones (static sparse training),
        more means dynamic sparse training moved them. A state dict saved without the count (before
        it existed) loads with the current one.
    :param copy: hold copies of the masks; ``False`` takes the given bool tensors themselves (freshly
        drawn masks nothing else holds: a copy of each costs a pass over a dense-sized mask).
    """

    def __init__(self, masks: Mapping[str, torch.Tensor], count_updates: bool = False, copy: bool = True) -> None:
        super().__init__()
        self._names = list(masks)
        for name, mask in masks.items():
            *path, leaf = name.split(".")
            node: nn.Module = self
            for part in path:
                if part not in node._modules:
                    node.add_module(part, nn.Module())
                node = node._modules[part]
            mask = mask.detach().to(torch.bool)
            node.register_buffer(leaf, mask.clone() if copy else mask)
        if count_updates:
            self.register_buffer("updates", torch.zeros((), dtype=torch.int64))
        # Bumped whenever the mask tensors may have changed (device or dtype move, state-dict load,
        # ``set``), so step hooks know when to refresh their multipliers.
        self.version = 0
        self.register_load_state_dict_post_hook(WeightMasks._changed)

    def _changed(self, *_: object) -> None:
        self.version += 1

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        if "updates" in self._buffers and prefix + "updates" not in state_dict:
            state_dict[prefix + "updates"] = self.updates.clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __repr__(self) -> str:
        kept = sum(int(mask.count_nonzero()) for _, mask in self.items())
        total = sum(mask.numel() for _, mask in self.items())
        return f"{type(self).__name__}({len(self)} masks, {kept}/{total} weights kept)"

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        result = super()._apply(fn, recurse)
        self._changed()
        return result

    def names(self) -> list[str]:
        return list(self._names)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.get_buffer(name)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __len__(self) -> int:
        return len(self._names)

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        return ((name, self[name]) for name in self._names)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.items())

    @torch.no_grad()
    def set(self, name: str, mask: torch.Tensor) -> None:
        """Replace one mask in place (dynamic sparse training); the step hooks follow at once."""
        self[name].copy_(mask)
        if "updates" in self._buffers:
            self.updates += 1
        self._changed()


class MaskEnforcement:
    """The step hook of one optimizer: after each step, mask its weights and their optimizer state.

    What one step multiplies (``sb3_tar.engine.masking.masked_tensors``: the weights, their moments
    and the masks in their dtype) is listed once and listed again when anything it was listed from
    changes: a mask (``set``, a state-dict load, a device move or an in-place edit), the optimizer's
    state (a weight's first state, a loaded state dict, a state entry or moment replaced, a cleared
    state) or the weights' device or dtype.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, weights: Sequence[torch.Tensor], masks: WeightMasks,
                 names: Sequence[str]) -> None:
        # Weak: the optimizer holds this hook, and the registry below holds it by the optimizer, so a
        # strong reference back would keep every optimizer (and its model's weights) alive forever.
        self._optimizer = weakref.ref(optimizer)
        self.weights = list(weights)
        self.masks = masks
        self.names = list(names)
        self._loads = 0
        self._listed_for: tuple[object, ...] | None = None
        self._listed: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        self._mask_tensors: list[torch.Tensor] = []
        self._handles = [optimizer.register_step_post_hook(self._mask_after_step),
                         optimizer.register_load_state_dict_post_hook(self._state_loaded)]

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        optimizer = self._optimizer()
        if optimizer is None:
            raise RuntimeError("the optimizer of these mask hooks was freed")
        return optimizer

    def _state_loaded(self, *_: object) -> None:
        self._loads += 1

    def _listing_source(self) -> tuple[object, ...]:
        """What the listing depends on. The listing holds the moments it found, so their ids stay theirs."""
        state, first = self.optimizer.state, self.weights[0]
        return (self.masks.version, self._loads, first.device, first.dtype,
                tuple(mask._version for mask in self._mask_tensors),
                tuple(None if (entry := state.get(weight)) is None else tuple(map(id, entry.values()))
                      for weight in self.weights))

    def masked(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The tensors each step multiplies and their multipliers (a float multiply is ~6x faster than a bool one)."""
        source = self._listing_source()
        if source != self._listed_for:
            self._mask_tensors = [self.masks[name] for name in self.names]
            self._listed = masked_tensors(self.weights, self._mask_tensors, optimizers=[self.optimizer])
            self._listed_for = self._listing_source()
        return self._listed

    @torch.no_grad()
    def _mask_after_step(self, *_: object) -> None:
        torch._foreach_mul_(*self.masked())

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


_ENFORCEMENTS: weakref.WeakKeyDictionary[torch.optim.Optimizer, MaskEnforcement] = weakref.WeakKeyDictionary()


def _owned_parameters(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def enforce_masks(
    optimizer: torch.optim.Optimizer,
    weights: Mapping[str, torch.Tensor],
    masks: WeightMasks,
    targets: Mapping[str, torch.Tensor] | None = None,
) -> MaskEnforcement:
    """Make ``masks`` hold for the ``weights`` of ``optimizer`` through every step from now on.

    Zeroes the masked weights, their optimizer state and the target weights now, then registers the
    step hook. Calling it again for the same optimizer replaces its hook (never stacks them).

    :param optimizer: the optimizer that owns every weight in ``weights``.
    :param weights: mask name -> the weight it masks.
    :param masks: the masks, by name.
    :param targets: mask name -> the weight's copy in a target network, if it has one.
    :raises ValueError: if a weight is not the optimizer's or has no mask of its shape.
    """
    if not weights:
        raise UserError("enforce_masks needs at least one weight to mask")
    owned = _owned_parameters(optimizer)
    for name, weight in weights.items():
        if id(weight) not in owned:
            raise UserError(f"weight {name!r} is not optimised by this optimizer; its hooks may only mask its own weights")
        if name not in masks or tuple(masks[name].shape) != tuple(weight.shape):
            raise UserError(f"weight {name!r} of shape {tuple(weight.shape)} has no mask of that shape")
    names = list(weights)
    multiply_masks([weights[name] for name in names], [masks[name] for name in names], optimizers=[optimizer],
                   targets=[(targets or {}).get(name) for name in names])
    previous = _ENFORCEMENTS.pop(optimizer, None)
    if previous is not None:
        previous.remove()
    enforcement = MaskEnforcement(optimizer, [weights[name] for name in names], masks, names)
    _ENFORCEMENTS[optimizer] = enforcement
    return enforcement


def release_masks(optimizer: torch.optim.Optimizer) -> None:
    """Remove the mask hooks of ``optimizer``, if any (its masked weights were compressed: nothing is left to mask)."""
    enforcement = _ENFORCEMENTS.pop(optimizer, None)
    if enforcement is not None:
        enforcement.remove()


def enforcement_of(optimizer: torch.optim.Optimizer) -> MaskEnforcement | None:
    """The mask hooks registered on ``optimizer``, if any."""
    return _ENFORCEMENTS.get(optimizer)
