"""Dynamic sparse training (SET, RigL): *when* and *how* a mask changes during training.

The pieces are separate so any training loop can use them: ``cosine_drop_fraction`` and
``is_dst_update_step`` say when and how much, ``dst_update`` turns masks into new masks (masks in,
masks out, nothing mutated), and ``apply_mask_update`` pushes one update into a model's weights, its
optimizers' moments and its target networks.

Semantics (RigL, Evci et al. 2020, and JaxPruner), per layer with ``n`` active weights:

- ``k = n - round((1 - drop_fraction) * n)`` weights are dropped and ``k`` regrown, so the layer's
  active count never changes. This is JaxPruner's count (it keeps ``round(n * (1 - f))``); RigL's
  TF code truncates ``f * n`` instead (37 active weights at ``f = 0.1``: it drops 3, JaxPruner 4).
  The two differ by at most one weight per layer.
- Drop: the ``n - k`` active weights with the largest ``|w|`` are kept; among equal magnitudes the
  earlier position is kept and the later one dropped (exact top-k, never a threshold).
- Regrow: the candidates are all positions outside the kept set, *including the ``k`` just
  dropped*. SET picks ``k`` of them uniformly at random; RigL picks the ``k`` with the largest dense
  gradient magnitude (earlier position first on ties, e.g. among the zero gradients of dead units).
  Ties go to the earlier position in JaxPruner's top-k (a stable argsort) and in the
  ``tf.math.top_k`` of RigL's SAC code too; RigL's TF1 optimizers add 1e-5 noise to the drop scores
  instead. A dropped position that is regrown at once is "churn".
- Only positions that were inactive before the update start fresh: weight 0.0 and zeroed optimizer
  moments. A churned weight (dropped and regrown in the same update) keeps its value and moments,
  as RigL (``reinit_when_same=False``) and JaxPruner do: for it nothing changed.
- When (``is_dst_update_step``): after every ``update_interval`` gradient steps *applied*, never at
  step 0, while the drop fraction is positive. This is JaxPruner's ``PeriodicSchedule``, which
  tests the count of optimizer updates already applied, with ``update_start_step`` between 1 and
  ``update_interval``. RigL's SAC code (``rigl/rl/tfagents``) also updates at its step 0, right
  after the first gradient step, with the full initial drop fraction; that one extra update, on
  weights that have not been trained yet, is not reproduced.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from sb3_tar.engine.errors import UserError
from sb3_tar.engine.masking import multiply_masks
from sb3_tar.engine.topk import top_k_mask
from sb3_tar.engine.validation import check_fraction, check_integer

DST_METHODS = ("set", "rigl")

GrowScores = Callable[[str, torch.Tensor], torch.Tensor]
"""``grow_scores(layer name, flat mask) -> one float score per position``: the highest pruned positions grow."""


def random_growth(generator: torch.Generator) -> GrowScores:
    """SET's regrowth: uniform random keys (float64, so ties are practically impossible; top-k breaks any by position)."""
    def scores(name: str, flat_mask: torch.Tensor) -> torch.Tensor:
        keys = torch.rand(flat_mask.numel(), generator=generator, dtype=torch.float64, device=generator.device)
        return keys.to(flat_mask.device)
    return scores


def gradient_growth(dense_gradients: Mapping[str, torch.Tensor]) -> GrowScores:
    """RigL's regrowth: the magnitude of the loss's gradient with respect to the dense weight."""
    def scores(name: str, flat_mask: torch.Tensor) -> torch.Tensor:
        return dense_gradients[name].detach().to(flat_mask.device).reshape(-1).abs()
    return scores


def cosine_drop_fraction(step: int, *, initial: float = 0.1, end_step: int) -> float:
    """The fraction of active weights to replace at gradient step ``step``.

    ``initial / 2 * (1 + cos(pi * step / end_step))``: large early, when the topology is still poor,
    and decaying smoothly to 0 at ``end_step`` so the final topology gets time to train. 0 at and
    after ``end_step``.

    :param step: gradient steps applied so far, ``>= 0`` (JaxPruner evaluates its
        ``optax.cosine_decay_schedule`` at the same count).
    :param initial: the fraction at step 0, in [0, 1] (RigL's SAC setting: 0.1).
    :param end_step: the step from which the mask stops changing (``end_fraction`` times the planned
        gradient steps), ``>= 1``.
    """
    check_integer("step", step, 0)
    initial = check_fraction("initial", initial)
    check_integer("end_step", end_step, 1)
    if step >= end_step:
        return 0.0
    return initial / 2.0 * (1.0 + math.cos(math.pi * step / end_step))


def is_dst_update_step(step: int, *, update_interval: int, end_step: int) -> bool:
    """Whether the mask is updated after ``step`` applied gradient steps: every ``update_interval`` before ``end_step``.

    ``step`` counts the gradient steps already applied, as JaxPruner's ``PeriodicSchedule`` counts
    optimizer updates: the update at ``step = update_interval`` comes after that many steps, on the
    gradient of the next one. Step 0 is excluded (JaxPruner's ``update_start_step >= 1``): the
    initial mask has not been trained yet. At and after ``end_step`` the drop fraction is 0, so
    JaxPruner's inclusive end and this exclusive one update the same masks.
    """
    check_integer("step", step, 0)
    check_integer("update_interval", update_interval, 1)
    check_integer("end_step", end_step, 1)
    return 0 < step < end_step and step % update_interval == 0


@dataclass(frozen=True)
class DSTLayerUpdate:
    """What one update did to one layer.

    :param name: the layer's weight name, as in the masks mapping.
    :param size: weights in the layer.
    :param active: active weights, before and after alike.
    :param dropped: active weights dropped (``active - round((1 - drop_fraction) * active)``).
    :param regrown: positions regrown (always ``dropped``).
    :param reactivated: regrown positions that were dropped in this same update.
    """

    name: str
    size: int
    active: int
    dropped: int
    regrown: int
    reactivated: int

    @property
    def churn(self) -> float:
        """Fraction of regrown positions that were active before the update (0 when none regrown)."""
        return self.reactivated / self.regrown if self.regrown else 0.0

    @property
    def changed(self) -> int:
        """Positions that switched from active to inactive (as many switched the other way)."""
        return self.dropped - self.reactivated

    @property
    def density(self) -> float:
        return self.active / self.size

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def as_dict(self) -> dict[str, object]:
        names = ("name", "size", "active", "dropped", "regrown", "reactivated", "churn", "changed", "density",
                 "sparsity")
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True)
class DSTUpdate:
    """The result of one SET/RigL update of a set of masks.

    :param masks: layer name -> new bool mask (``True`` = active).
    :param previous_masks: layer name -> the mask before the update.
    :param kept_masks: layer name -> the positions that survived the drop (regrown ones excluded).
        A churned position is not in it, but it is active both before and after (see ``surviving``).
    :param layers: per-layer records, in the order of the masks mapping.
    :param method: ``"set"`` or ``"rigl"``.
    :param drop_fraction: the fraction used.
    """

    masks: dict[str, torch.Tensor]
    previous_masks: dict[str, torch.Tensor]
    kept_masks: dict[str, torch.Tensor]
    layers: list[DSTLayerUpdate]
    method: str
    drop_fraction: float

    @property
    def dropped(self) -> int:
        return sum(layer.dropped for layer in self.layers)

    @property
    def regrown(self) -> int:
        return sum(layer.regrown for layer in self.layers)

    @property
    def churn(self) -> float:
        """Fraction of all regrown positions that were active before the update."""
        regrown = self.regrown
        return sum(layer.reactivated for layer in self.layers) / regrown if regrown else 0.0

    def surviving(self, name: str) -> torch.Tensor:
        """Positions of layer ``name`` active before and after the update: their values and moments are kept.

        That is the drop's survivors plus the churned positions (dropped and regrown at once).
        """
        return self.masks[name] & self.previous_masks[name]


def _check_tensors(
    setting: str, tensors: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], *, ranked: bool
) -> None:
    for name, mask in masks.items():
        if name not in tensors:
            raise UserError(f"{setting} has no entry for layer {name!r}; it needs one for every mask: {list(masks)}")
        tensor = tensors[name]
        if tuple(tensor.shape) != tuple(mask.shape):
            raise UserError(
                f"{setting}[{name!r}] has shape {tuple(tensor.shape)}, but the mask has shape {tuple(mask.shape)}"
            )
        if ranked and not torch.isfinite(tensor).all():
            raise UserError(f"{setting}[{name!r}] has non-finite values (nan or inf); cannot rank it")


def dst_update(
    weights: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    *,
    method: str,
    drop_fraction: float,
    generator: torch.Generator | None = None,
    dense_gradients: Mapping[str, torch.Tensor] | None = None,
) -> DSTUpdate:
    """One SET or RigL update of every layer's mask; nothing is modified in place.

    See the module docstring for the exact semantics. Layers are processed in the order of
    ``masks``, and SET draws from ``generator`` in that order, so a seeded generator gives the same
    update every time.

    :param weights: layer name -> current weight (only ``|w|`` of active positions is read).
    :param masks: layer name -> bool mask of the same shape (``True`` = active).
    :param method: ``"set"`` (random regrowth) or ``"rigl"`` (regrowth by dense gradient magnitude).
    :param drop_fraction: fraction of each layer's active weights to replace, in [0, 1]; usually
        ``cosine_drop_fraction(step, ...)``.
    :param generator: the random stream of SET's regrowth (required for SET, unused by RigL).
    :param dense_gradients: layer name -> gradient of the loss with respect to the *dense* weight,
        masked positions included (required for RigL, unused by SET); see ``dense_gradients``.
    """
    if method not in DST_METHODS:
        raise UserError(f"method={method!r} is not a dynamic sparse training method; allowed: {list(DST_METHODS)}")
    drop_fraction = check_fraction("drop_fraction", drop_fraction)
    for name, mask in masks.items():
        if mask.dtype != torch.bool:
            raise UserError(f"masks[{name!r}] has dtype {mask.dtype}; masks must be torch.bool")
    _check_tensors("weights", weights, masks, ranked=False)
    # SET and RigL differ in one thing only: the score that picks the positions to regrow.
    if method == "rigl":
        if dense_gradients is None:
            raise UserError("method='rigl' needs dense_gradients (layer name -> dense gradient); got None")
        _check_tensors("dense_gradients", dense_gradients, masks, ranked=True)
        grow_scores = gradient_growth(dense_gradients)
    else:
        if generator is None:
            raise UserError("method='set' needs a generator (torch.Generator) for its random regrowth; got None")
        grow_scores = random_growth(generator)

    new_masks: dict[str, torch.Tensor] = {}
    kept_masks: dict[str, torch.Tensor] = {}
    records: list[DSTLayerUpdate] = []
    for name, mask in masks.items():
        flat_mask = mask.reshape(-1)
        active_positions = flat_mask.nonzero().squeeze(1)  # ascending, so top_k_mask's ties favour earlier positions
        active = active_positions.numel()
        count = active - round((1.0 - drop_fraction) * active)
        if count == 0:
            new_masks[name] = mask.clone()
            kept_masks[name] = mask.clone()
            records.append(DSTLayerUpdate(name, mask.numel(), active, 0, 0, 0))
            continue
        # Only active weights compete to stay: rank those alone, a fraction of the layer when sparse.
        magnitude = weights[name].detach().to(mask.device).reshape(-1)[active_positions].abs()
        if not torch.isfinite(magnitude).all():
            raise UserError(f"weights[{name!r}] has non-finite values (nan or inf) at active positions; cannot rank")
        kept = torch.zeros_like(flat_mask)
        kept[active_positions[top_k_mask(magnitude, active - count)]] = True
        grown = top_k_mask(grow_scores(name, flat_mask).masked_fill(kept, -math.inf), count)
        new_masks[name] = (kept | grown).reshape(mask.shape)
        kept_masks[name] = kept.reshape(mask.shape)
        reactivated = int(grown[active_positions].count_nonzero())
        records.append(DSTLayerUpdate(name, mask.numel(), active, count, count, reactivated))
    previous = {name: mask.clone() for name, mask in masks.items()}
    return DSTUpdate(new_masks, previous, kept_masks, records, method, drop_fraction)


def dense_gradients(loss: torch.Tensor, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Gradient of ``loss`` with respect to each weight, masked positions included: RigL's regrowth score.

    Uses ``torch.autograd.grad``, so the parameters' ``.grad`` fields and the optimizers are left
    untouched and the training step that follows sees nothing of this extra backward pass. Masked
    weights are zero but still in the graph, so their gradient is the true dense gradient, provided
    no hook masks gradients.
    """
    names = list(weights)
    gradients = torch.autograd.grad(loss, [weights[name] for name in names])
    return dict(zip(names, gradients))


@torch.no_grad()
def apply_mask_update(
    parameters: Mapping[str, torch.Tensor],
    update: DSTUpdate,
    optimizers: Sequence[torch.optim.Optimizer] = (),
    *,
    target_weights: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Push one update into a model: newly grown and dropped weights become 0.0, and so do their moments.

    Every position that is not active both before and after the update (``update.surviving``) is
    zeroed in the weight, in each optimizer's zero-initialised per-element state
    (``sb3_tar.engine.masking.MOMENT_STATE_KEYS``: Adam's ``exp_avg`` and ``exp_avg_sq``,
    ``max_exp_avg_sq``, SGD's ``momentum_buffer``, ...), and in the target weight, by
    ``sb3_tar.engine.masking.multiply_masks``. So a newly grown weight starts from 0.0 with
    fresh moments instead of stale ones (RLx2, rigl-torch and DS-TD3 leave Adam's moments stale),
    and a dropped weight leaves no moment behind that could revive it. Positions active before and
    after, churned ones included, are untouched.

    The masks themselves (mask buffers, step hooks) are the caller's to replace with ``update.masks``.

    :param parameters: layer name -> the trained weight, for every layer in ``update.masks``.
    :param update: the result of ``dst_update``.
    :param optimizers: optimizers that may hold state for these parameters (others are skipped).
    :param target_weights: layer name -> the same layer's weight in a target network (Polyak copy),
        which must follow the mask at once; layers absent here have no target.
    """
    _check_tensors("parameters", parameters, update.masks, ranked=False)
    if target_weights is not None:
        for name, weight in target_weights.items():
            if name not in update.masks:
                raise UserError(
                    f"target_weights has layer {name!r}, which the update does not have: {list(update.masks)}"
                )
            if tuple(weight.shape) != tuple(update.masks[name].shape):
                raise UserError(
                    f"target_weights[{name!r}] has shape {tuple(weight.shape)}, "
                    f"but the mask has shape {tuple(update.masks[name].shape)}"
                )
    names = list(update.masks)
    multiply_masks([parameters[name] for name in names], [update.surviving(name) for name in names],
                   optimizers=optimizers, targets=[(target_weights or {}).get(name) for name in names])
