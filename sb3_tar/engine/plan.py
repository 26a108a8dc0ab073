"""``prune_and_revive``: static pruning, then one Topology-Aware Revival, as one call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from sb3_tar.engine.criteria import PruningTarget, get_criterion
from sb3_tar.engine.layers import prunable_layers
from sb3_tar.engine.masking import multiply_masks
from sb3_tar.engine.revival import (
    connectivity_floor,
    coverage_probability,
    revive_in_layers,
    revive_uniformly,
    topology_budgets,
)
from sb3_tar.engine.seeding import check_seed, generator_for, seed_from_global_state
from sb3_tar.engine.settings import PruningSettings

CRITERION_STREAM = 0
REVIVAL_STREAM = 1


@dataclass(frozen=True)
class LayerTopology:
    """One layer's bipartite graph before and after revival."""

    name: str
    in_features: int
    out_features: int
    kept_before: int
    floor: int
    revived: int
    isolated_inputs_before: int
    isolated_outputs_before: int
    isolated_inputs_after: int
    isolated_outputs_after: int

    @property
    def size(self) -> int:
        return self.in_features * self.out_features

    @property
    def kept_after(self) -> int:
        return self.kept_before + self.revived

    @property
    def deficit(self) -> int:
        """Edges short of the connectivity floor after static pruning."""
        return max(0, self.floor - self.kept_before)

    @property
    def density_before(self) -> float:
        return self.kept_before / self.size

    @property
    def density_after(self) -> float:
        return self.kept_after / self.size

    @property
    def coverage(self) -> float | None:
        """Chance that revival hit one given pruned connection that later matters (k = 1).

        ``None`` for a layer with nothing pruned: there is nothing to cover.
        """
        pruned = self.size - self.kept_before
        return coverage_probability(pruned, 1, self.revived) if pruned else None

    def as_dict(self) -> dict[str, object]:
        names = ("name", "in_features", "out_features", "size", "kept_before", "floor", "deficit", "revived",
                 "kept_after", "density_before", "density_after", "isolated_inputs_before",
                 "isolated_outputs_before", "isolated_inputs_after", "isolated_outputs_after", "coverage")
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True)
class RevivalPlan:
    """The masks to train with, and how they came about.

    :param masks: qualified weight name -> bool mask (``True`` = kept), after revival.
    :param masks_before_revival: the static masks at the pre-revival sparsity.
    :param layers: per-layer topology records, in module order.
    :param settings: the validated settings.
    :param seed: the seed the masks were drawn with (drawn from torch's generator if none was given).
    """

    masks: dict[str, torch.Tensor]
    masks_before_revival: dict[str, torch.Tensor]
    layers: list[LayerTopology]
    settings: PruningSettings
    seed: int

    @property
    def total(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def kept(self) -> int:
        return sum(layer.kept_after for layer in self.layers)

    @property
    def revived(self) -> int:
        return sum(layer.revived for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Fraction of prunable weights that are masked, after revival."""
        return 1.0 - self.kept / self.total


def isolated_units(mask: torch.Tensor) -> tuple[int, int]:
    """Input units with no kept edge (all-zero columns) and output units with none (all-zero rows)."""
    return int((~mask.any(dim=0)).sum()), int((~mask.any(dim=1)).sum())


def _check_finite(network: nn.Module, names: list[str]) -> None:
    for name in names:
        if not torch.isfinite(network.get_parameter(name)).all():
            raise ValueError(f"network: weight {name!r} has non-finite values (nan or inf); cannot rank it for pruning")


def prune_and_revive(
    network: nn.Module,
    *,
    sparsity: float,
    criterion: str = "magnitude",
    recovery_ratio: float = 0.0,
    allocation: str = "topology",
    budget: str = "reserve",
    seed: int | None = None,
    **criterion_options: object,
) -> RevivalPlan:
    """Masks for the ``nn.Linear`` weights of ``network``: static pruning, then one revival.

    The network's weights are left unchanged; call ``apply_masks`` to zero the masked ones.

    :param network: the module to prune (one actor or one Q-network).
    :param sparsity: final fraction of zero weights, in [0, 1).
    :param criterion: ``magnitude``, ``random``, ``erk``, ``synflow`` or a registered name.
    :param recovery_ratio: revival budget as a fraction of all prunable weights.
    :param allocation: ``topology`` (TAR) or ``uniform`` (Uniform Revival).
    :param budget: ``reserve`` (end exactly at ``sparsity``) or ``extra`` (revive on top).
    :param seed: non-negative integer; ``None`` draws one from torch's global generator.
    :param criterion_options: options of the criterion, e.g. ``scope="layerwise"``, ``iterations=100``.
    """
    settings = PruningSettings(sparsity, criterion, recovery_ratio, allocation, budget, dict(criterion_options))
    check_seed(seed)
    layers = prunable_layers(network)
    _check_finite(network, [layer.name for layer in layers])
    seed = seed_from_global_state() if seed is None else seed

    total = sum(layer.size for layer in layers)
    kept, revival_budget = settings.kept_counts(total)
    target = PruningTarget(network, layers, kept, generator_for(seed, CRITERION_STREAM))
    static_masks = get_criterion(criterion)(target, **criterion_options)
    if sum(int(mask.sum()) for mask in static_masks) != kept:
        raise RuntimeError(f"criterion {criterion!r} returned masks that do not keep exactly {kept} weights")

    revival_generator = generator_for(seed, REVIVAL_STREAM)
    floors = [connectivity_floor(layer.in_features, layer.out_features) for layer in layers]
    if allocation == "topology":
        kept_per_layer = [int(mask.sum()) for mask in static_masks]
        budgets = topology_budgets(kept_per_layer, [layer.size for layer in layers], floors, revival_budget)
        final_masks = revive_in_layers(static_masks, budgets, revival_generator)
    else:
        final_masks = revive_uniformly(static_masks, revival_budget, revival_generator)

    records = [
        LayerTopology(
            layer.name, layer.in_features, layer.out_features, int(before.sum()), floor,
            int(after.sum()) - int(before.sum()), *isolated_units(before), *isolated_units(after),
        )
        for layer, floor, before, after in zip(layers, floors, static_masks, final_masks)
    ]
    device_of = {layer.name: layer.weight.device for layer in layers}
    return RevivalPlan(
        masks={layer.name: mask.to(device_of[layer.name]) for layer, mask in zip(layers, final_masks)},
        masks_before_revival={layer.name: mask.to(device_of[layer.name]) for layer, mask in zip(layers, static_masks)},
        layers=records,
        settings=settings,
        seed=seed,
    )


def apply_masks(network: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the masked weights of ``network`` in place (idempotent)."""
    multiply_masks([network.get_parameter(name) for name in masks], list(masks.values()))
