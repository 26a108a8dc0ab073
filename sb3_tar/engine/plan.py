"""``prune_and_revive``: static pruning, then one Topology-Aware Revival, as one call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from sb3_tar.engine.criteria import PruningTarget, get_criterion
from sb3_tar.engine.errors import UserError
from sb3_tar.engine.layers import prunable_layers
from sb3_tar.engine.masking import any_kept, multiply_masks
from sb3_tar.engine.revival import (
    chain_producers,
    connect_isolated_units,
    connectivity_floor,
    coverage_probability,
    revive_in_layers,
    revive_uniformly,
    topology_budgets,
)
from sb3_tar.engine.seeding import generator_for, seed_from_global_state
from sb3_tar.engine.settings import PruningSettings
from sb3_tar.engine.validation import check_seed

CRITERION_STREAM = 0
REVIVAL_STREAM = 1
REPAIR_STREAM = 2


@dataclass(frozen=True)
class LayerTopology:
    """One layer's bipartite graph before and after revival.

    ``revived`` counts every weight revival turned on, the ``repaired`` ones (TAR's connectivity
    repair, beyond the budget) included.
    """

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
    repaired: int = 0

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
                 "isolated_outputs_before", "isolated_inputs_after", "isolated_outputs_after", "repaired", "coverage")
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
    def repaired(self) -> int:
        """Weights TAR's connectivity repair added beyond the revival budget."""
        return sum(layer.repaired for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Fraction of prunable weights that are masked, after revival."""
        return 1.0 - self.kept / self.total


def isolated_units(mask: torch.Tensor) -> tuple[int, int]:
    """Input units with no kept edge (all-zero columns) and output units with none (all-zero rows)."""
    return int((~any_kept(mask, dim=0)).count_nonzero()), int((~any_kept(mask, dim=1)).count_nonzero())


def layer_producers(names: list[str], producers: Mapping[str, str | None] | None) -> list[int | None]:
    """Per layer (by index), the layer whose outputs it reads; ``None`` for the network's input.

    :param names: the prunable layers' names, in module order.
    :param producers: layer name -> the name of the layer it reads, or ``None``; ``None`` (the
        default) is a plain MLP: each layer reads the one before it.
    :raises ValueError: for a name that is not a layer, or a producer that is not an earlier layer.
    """
    if producers is None:
        return chain_producers(len(names))
    unknown = sorted(set(producers) - set(names))
    if unknown or set(names) - set(producers):
        raise UserError(f"producers must name every layer of the network once: got {sorted(producers)}, the layers "
                        f"are {names}")
    index = {name: position for position, name in enumerate(names)}
    resolved = []
    for position, name in enumerate(names):
        producer = producers[name]
        if producer is not None and index.get(producer, position) >= position:
            raise UserError(f"producers: layer {name!r} reads {producer!r}, which is not an earlier layer of {names}")
        resolved.append(None if producer is None else index[producer])
    return resolved


def _check_finite(network: nn.Module, names: list[str]) -> None:
    for name in names:
        weight = network.get_submodule(name.removesuffix(".weight")).weight.detach()  # a compressed layer's: a copy
        # A finite sum (one pass, no temporary) rules out nan and inf; only a non-finite one is looked at.
        if not torch.isfinite(weight.sum()) and not torch.isfinite(weight).all():
            raise UserError(f"network: weight {name!r} has non-finite values (nan or inf); cannot rank it for pruning")


def prune_and_revive(
    network: nn.Module,
    *,
    sparsity: float,
    criterion: str = "magnitude",
    recovery_ratio: float = 0.0,
    allocation: str = "topology",
    budget: str = "reserve",
    seed: int | None = None,
    producers: Mapping[str, str | None] | None = None,
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
    :param producers: layer name -> the layer whose outputs it reads (``None``: the network's
        input), for networks that are not a plain chain (SAC's actor: ``mu`` and ``log_std`` both
        read the last ``latent_pi`` layer); default: each layer reads the one before it.
    :param criterion_options: options of the criterion, e.g. ``scope="layerwise"``, ``iterations=100``.
    """
    settings = PruningSettings(sparsity, criterion, recovery_ratio, allocation, budget, dict(criterion_options))
    return plan_masks(network, settings, seed=seed, producers=producers)


def plan_masks(network: nn.Module, settings: PruningSettings, *, seed: int | None = None,
               producers: Mapping[str, str | None] | None = None) -> RevivalPlan:
    """``prune_and_revive`` with its settings already made (and checked): a policy's per-network ``PruningSettings``."""
    criterion, criterion_options = settings.criterion, settings.criterion_options
    check_seed(seed)
    layers = prunable_layers(network)
    reads = layer_producers([layer.name for layer in layers], producers)
    _check_finite(network, [layer.name for layer in layers])
    seed = seed_from_global_state() if seed is None else seed

    total = sum(layer.size for layer in layers)
    kept, revival_budget = settings.kept_counts(total)
    target = PruningTarget(network, layers, kept, generator_for(seed, CRITERION_STREAM))
    static_masks = get_criterion(criterion)(target, **criterion_options)
    static_kept = [int(mask.count_nonzero()) for mask in static_masks]
    if sum(static_kept) != kept:
        raise RuntimeError(f"criterion {criterion!r} returned masks that do not keep exactly {kept} weights")

    revival_generator = generator_for(seed, REVIVAL_STREAM)
    floors = [connectivity_floor(layer.in_features, layer.out_features) for layer in layers]
    budgets = layer_budgets(settings, static_masks)
    if budgets is not None:
        final_masks = revive_in_layers(static_masks, budgets, revival_generator)
    else:
        final_masks = revive_uniformly(static_masks, revival_budget, revival_generator)
    repaired = [0] * len(layers)
    if repairs_connectivity(settings):
        final_masks, repaired = connect_isolated_units(final_masks, reads, generator_for(seed, REPAIR_STREAM))

    records = [
        LayerTopology(
            layer.name, layer.in_features, layer.out_features, before_kept, floor,
            int(after.count_nonzero()) - before_kept, *isolated_units(before), *isolated_units(after), added,
        )
        for layer, floor, before, before_kept, after, added in zip(layers, floors, static_masks, static_kept, final_masks,
                                                                   repaired)
    ]
    device_of = {layer.name: layer.weight.device for layer in layers}
    return RevivalPlan(
        masks={layer.name: mask.to(device_of[layer.name]) for layer, mask in zip(layers, final_masks)},
        masks_before_revival={layer.name: mask.to(device_of[layer.name]) for layer, mask in zip(layers, static_masks)},
        layers=records,
        settings=settings,
        seed=seed,
    )


def layer_budgets(settings: PruningSettings, static_masks: list[torch.Tensor]) -> list[int] | None:
    """Each layer's TAR revival budget for these static masks (before the repair); ``None`` for uniform revival."""
    if settings.allocation != "topology":
        return None
    sizes = [mask.numel() for mask in static_masks]
    _, revival_budget = settings.kept_counts(sum(sizes))
    floors = [connectivity_floor(mask.shape[1], mask.shape[0]) for mask in static_masks]
    return topology_budgets([int(mask.count_nonzero()) for mask in static_masks], sizes, floors, revival_budget)


def repairs_connectivity(settings: PruningSettings) -> bool:
    """Whether TAR's connectivity repair runs: topology allocation with a revival (never for static pruning)."""
    return settings.allocation == "topology" and settings.recovery_ratio > 0


def apply_masks(network: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the masked weights of ``network`` in place (idempotent)."""
    multiply_masks([network.get_parameter(name) for name in masks], list(masks.values()))
