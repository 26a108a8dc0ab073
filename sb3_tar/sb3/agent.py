"""A sparse agent: its networks, their masks, and how the masks were drawn.

Masks are drawn once per network with the engine (``plan_masks``, the core of ``prune_and_revive``),
each network from its own random stream ``derive_seed(seed, network.index)``. A ``SparseAgent`` is
what the policy, the callback, the logger and the command line share, wherever the masks are stored:

- ``TarMlpPolicy`` stores them as persistent buffers of the policy (``policy.masks``,
  ``policy.masks_before_revival``, ``policy.mask_seed``), saved and loaded with its weights;
- ``TARCallback`` stores them on the model (``model.sb3_tar_state``, CPU tensors), which SB3 saves
  with the model's other attributes, so resuming with the callback finds them.

Masks that come from a file are never trusted: ``check_loaded_masks`` refuses masks and weights
that no agent with the saved settings could hold (a masked weight that is not 0.0, a wrong kept
count, a static mask that revival shrank).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sb3_tar.engine import (
    LayerTopology,
    RevivalPlan,
    connectivity_floor,
    criterion_options,
    derive_seed,
    prunable_layers,
)
from sb3_tar.engine.compressed import CompressedLinear
from sb3_tar.engine.errors import UserError
from sb3_tar.engine.plan import isolated_units, layer_budgets, layer_producers, plan_masks, repairs_connectivity
from sb3_tar.engine.revival import repair_bounds
from sb3_tar.sb3.masking import WeightMasks, enforce_masks, release_masks
from sb3_tar.sb3.networks import SparseNetwork, find_networks
from sb3_tar.sb3.normalisation import guard_constant_units
from sb3_tar.settings import ACTOR, SparsitySettings

STATE_ATTRIBUTE = "sb3_tar_state"


class MaskMismatchError(UserError, RuntimeError):
    """Weights and masks that do not belong together (a masked weight not 0.0, a wrong kept count, ...).

    A ``ValueError`` (the input is wrong) that is also a ``RuntimeError`` only so that SB3's
    ``Algo.load`` passes it on unchanged: it re-raises a ``RuntimeError`` from ``set_parameters``
    as it is, but turns any ``ValueError`` into a ``KeyError('policy.optimizer')`` while retrying
    an old DQN file format.
    """


def mask_seed_for(model_seed: int | None) -> int:
    """The seed a model's masks are drawn from: the model's ``seed``, or a fresh one if it has none.

    A seeded model draws its masks from its seed, so the same seed gives the same masks. An
    unseeded model (``seed=None``) gets a fresh seed from the operating system's entropy, so two
    unseeded models never share their masks; the seed is recorded (``policy.mask_seed``,
    ``SparseAgent.seed``), so the masks can still be redrawn.
    """
    return secrets.randbits(63) if model_seed is None else int(model_seed) % 2**63


@dataclass(frozen=True)
class SparseAgent:
    """The sparse networks of one model and their masks.

    :param networks: the actor, then each Q-network.
    :param masks: weight name (qualified in the policy) -> mask after revival (what training keeps).
    :param masks_before_revival: weight name -> static mask before revival.
    :param settings: the settings the masks were drawn with.
    :param seed: the agent's seed; network ``n`` drew from ``derive_seed(seed, n.index)``.
    """

    networks: list[SparseNetwork]
    masks: WeightMasks
    masks_before_revival: Mapping[str, torch.Tensor]
    settings: SparsitySettings
    seed: int

    def summary(self) -> str:
        """One line for the settings, then one per network: kept/total weights, sparsity, revived."""
        settings = self.settings
        lines = [f"SparseAgent(criterion={settings.criterion!r}, recovery_ratio={settings.recovery_ratio!r}, "
                 f"allocation={settings.allocation!r}, budget={settings.budget!r}, seed={self.seed})"]
        for name, plan in self.plans().items():
            lines.append(f"  {name}: {plan.kept}/{plan.total} weights kept, sparsity {plan.sparsity:.4f}, "
                         f"{plan.revived} revived")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def layer_names(self, network: SparseNetwork) -> list[str]:
        """The network's prunable weights, by their name inside the network, in module order."""
        return [layer.name for layer in prunable_layers(network.module)]

    def weights(self, network: SparseNetwork) -> dict[str, torch.Tensor]:
        """Mask name -> the masked weight, for one network's dense layers (a compressed layer has no pruned weight)."""
        return {network.weight_name(layer.name): layer.module.weight for layer in prunable_layers(network.module)
                if not isinstance(layer.module, CompressedLinear)}

    def target_weights(self, network: SparseNetwork) -> dict[str, torch.Tensor]:
        """Mask name -> the weight's copy in the target network, for its dense layers (empty without a target)."""
        if network.target is None:
            return {}
        return {network.weight_name(layer.name): layer.module.weight for layer in prunable_layers(network.target)
                if not isinstance(layer.module, CompressedLinear)}

    def enforce(self) -> None:
        """Attach the masks: zero the masked weights, targets and moments now, and hook every optimizer.

        Normalisation layers (CrossQ's BatchRenorm) are made safe for the constant units a mask can leave.
        """
        for network in self.networks:
            guard_constant_units(network.module)
        by_optimizer: dict[int, tuple[torch.optim.Optimizer, dict[str, torch.Tensor], dict[str, torch.Tensor]]] = {}
        for network in self.networks:
            optimizer, weights, targets = by_optimizer.setdefault(id(network.optimizer), (network.optimizer, {}, {}))
            weights.update(self.weights(network))
            targets.update(self.target_weights(network))
        for optimizer, weights, targets in by_optimizer.values():
            if weights:
                enforce_masks(optimizer, weights, self.masks, targets)
            else:
                release_masks(optimizer)  # every layer it masked is compressed now: nothing is left to mask

    def plan(self, network: SparseNetwork) -> RevivalPlan:
        """The network's masks and per-layer topology, as the engine reports them."""
        layers, masks, before = [], {}, {}
        settings = self.settings.for_role(network.role)
        names = self.layer_names(network)
        for name in names:
            masks[name] = self.masks[network.weight_name(name)]
            before[name] = self.masks_before_revival[network.weight_name(name)].to(masks[name].device)
        budgets = layer_budgets(settings, list(before.values())) if repairs_connectivity(settings) else None
        for index, name in enumerate(names):
            out_features, in_features = masks[name].shape
            revived = int(masks[name].count_nonzero()) - int(before[name].count_nonzero())
            layers.append(LayerTopology(
                name, in_features, out_features, int(before[name].count_nonzero()), connectivity_floor(in_features, out_features),
                revived, *isolated_units(before[name]), *isolated_units(masks[name]),
                max(0, revived - budgets[index]) if budgets is not None else 0,
            ))
        return RevivalPlan(masks, before, layers, settings, derive_seed(self.seed, network.index))

    def plans(self) -> dict[str, RevivalPlan]:
        """Network name -> its ``RevivalPlan`` (for ``topology_report``, ``format_topology_table``, ``plot_topology``)."""
        return {network.name: self.plan(network) for network in self.networks}

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the agent's masks, as plain data with CPU tensors."""
        return {
            "settings": self.settings.as_kwargs(),
            "seed": self.seed,
            "masks": {name: mask.cpu() for name, mask in self.masks.items()},
            "masks_before_revival": {name: mask.cpu() for name, mask in self.masks_before_revival.items()},
        }


def draw_masks(policy: nn.Module, settings: SparsitySettings, seed: int) -> SparseAgent:
    """Prune and revive every network of ``policy`` on its own; nothing is applied yet.

    :param policy: an SB3 off-policy MLP policy, freshly built.
    :param settings: the agent's settings.
    :param seed: the agent's seed; the actor draws from ``derive_seed(seed, 0)``, Q-network ``i`` from
        ``derive_seed(seed, 1 + i)``.
    """
    networks = find_networks(policy)
    if settings.actor_sparsity is not None and all(network.role != ACTOR for network in networks):
        raise UserError(
            f"{settings.owner}: actor_sparsity={settings.actor_sparsity!r} does not apply: {type(policy).__name__} has "
            f"no actor (its {' and '.join(network.name for network in networks)} takes critic_sparsity); "
            "set sparsity or critic_sparsity"
        )
    masks, before = {}, {}
    for network in networks:
        pruning = settings.for_role(network.role)  # handed to the engine as it is
        if network.forward is not None and "forward" in criterion_options(pruning.criterion):
            pruning = dataclasses.replace(pruning, criterion_options={**pruning.criterion_options,
                                                                      "forward": network.forward})
        plan = plan_masks(network.module, pruning, seed=derive_seed(seed, network.index), producers=network.producers)
        if not settings.allow_empty_layers:
            _refuse_empty_layers(network, plan, settings)
        masks.update({network.weight_name(name): mask for name, mask in plan.masks.items()})
        before.update({network.weight_name(name): mask for name, mask in plan.masks_before_revival.items()})
    # The drawn masks belong to this agent alone; a layer that revival left as pruning drew it shares its tensor.
    before = {name: mask.clone() if mask is masks[name] else mask for name, mask in before.items()}
    return SparseAgent(networks, WeightMasks(masks, count_updates=True, copy=False), WeightMasks(before, copy=False),
                       settings, seed)


def _refuse_empty_layers(network: SparseNetwork, plan: RevivalPlan, settings: SparsitySettings) -> None:
    empty = [layer for layer in plan.layers if layer.kept_after == 0]
    if not empty:
        return
    setting, value = settings.sparsity_setting(network.role)
    layers = ", ".join(f"{network.weight_name(layer.name)} ({layer.in_features} in x {layer.out_features} out)"
                       for layer in empty)
    revival = " and revival does not restore it" if settings.recovery_ratio else ""
    scope = ""
    if settings.criterion == "magnitude" and settings.criterion_options.get("scope", "global") == "global":
        # PPO/A2C's orthogonal init gives action_net gain 0.01: global magnitude keeps none of it.
        scope = (", use scope='layerwise' or 'erk' (global magnitude pruning empties a layer initialised with small "
                 "weights)")
    raise UserError(
        f"{settings.owner}: {setting}={value!r} (criterion={settings.criterion!r}) leaves the {network.name} network "
        f"with no kept weight in {layers}{revival}, so the network would be disconnected; lower {setting}, widen "
        f"net_arch, raise recovery_ratio{scope}, or set allow_empty_layers=True to train it as it is"
    )


def placeholder_agent(policy: nn.Module, settings: SparsitySettings) -> SparseAgent:
    """All-kept masks of the right names and shapes, for a policy whose real masks are about to be loaded.

    Cheap (no scoring): SB3's ``load`` builds the policy and then loads its saved state dict,
    which overwrites every mask.
    """
    networks = find_networks(policy)
    masks = {network.weight_name(layer.name): torch.ones(layer.weight.shape, dtype=torch.bool)
             for network in networks for layer in prunable_layers(network.module)}
    return SparseAgent(networks, WeightMasks(masks, count_updates=True), WeightMasks(masks), settings, 0)


def agent_from_state(policy: nn.Module, state: Mapping[str, Any], device: torch.device | str) -> SparseAgent:
    """The agent that ``SparseAgent.state()`` describes, on ``policy``'s networks, masks on ``device``."""
    networks = find_networks(policy)
    expected = {n.weight_name(layer.name): tuple(layer.weight.shape)
                for n in networks for layer in prunable_layers(n.module)}
    stored = {name: tuple(mask.shape) for name, mask in state["masks"].items()}
    if stored != expected:
        raise UserError(
            f"the stored masks do not fit this policy: stored {stored}, the policy's weights are {expected}"
        )
    settings = SparsitySettings.from_kwargs(dict(state["settings"]))
    return SparseAgent(networks, WeightMasks(state["masks"]).to(device),
                       WeightMasks(state["masks_before_revival"]).to(device), settings, int(state["seed"]))


def _weights(count: int) -> str:
    return f"{count} weight" if count == 1 else f"{count} weights"


def _describe(settings: SparsitySettings, role: str) -> str:
    setting, value = settings.sparsity_setting(role)
    return (f"{setting}={value!r}, recovery_ratio={settings.recovery_ratio!r}, allocation={settings.allocation!r}, "
            f"budget={settings.budget!r}")


@torch.no_grad()
def check_loaded_masks(
    networks: list[SparseNetwork],
    settings: SparsitySettings,
    masks: Mapping[str, torch.Tensor],
    masks_before_revival: Mapping[str, torch.Tensor],
    weights: Mapping[str, torch.Tensor],
    target_weights: Mapping[str, torch.Tensor],
    *,
    masks_moved: bool | None,
    source: str,
) -> None:
    """Refuse masks and weights that no sparse agent with ``settings`` could hold.

    For each network: every masked weight is 0.0, in the network and in its target; the static
    masks keep exactly what the settings give before revival (``PruningSettings.kept_counts``),
    and the masks exactly that plus the revived; revival never shrank a layer. If the masks are the
    drawn ones (``masks_moved=False``), revival only added weights (``masks_before_revival`` is a
    subset of ``masks``) and, with ``allocation="topology"``, each layer got exactly its TAR budget.

    :param networks: the agent's networks.
    :param settings: the settings the masks were drawn with.
    :param masks: weight name -> mask after revival (what training keeps).
    :param masks_before_revival: weight name -> static mask.
    :param weights: weight name -> the weight.
    :param target_weights: weight name -> the weight's copy in its target network (names of
        networks with a target only).
    :param masks_moved: ``False`` for masks as drawn, ``True`` after dynamic sparse training moved
        them within their layers, ``None`` if unknown (both are accepted).
    :param source: where the masks come from, for the error message.
    :raises MaskMismatchError: (a ``ValueError``) naming the weight (or network), what was found and
        what was expected.
    """
    for network in networks:
        names = [network.weight_name(layer.name) for layer in prunable_layers(network.module)]
        mask = {name: masks[name].to(torch.bool) for name in names}
        before = {name: masks_before_revival[name].to(device=mask[name].device, dtype=torch.bool) for name in names}
        for name in names:
            copies = [(name, weights[name])]
            if network.target is not None:
                copies.append((network.target_weight_name(name.removeprefix(network.prefix)), target_weights[name]))
            for copy_name, weight in copies:
                if not torch.isfinite(weight.sum()) and not torch.isfinite(weight).all():
                    raise MaskMismatchError(f"{source}: {copy_name} holds nan or inf (a diverged model?); sb3-tar "
                                            "loads only finite weights")
                nonzero = int(((weight.detach() != 0) & ~mask[name].to(weight.device)).count_nonzero())
                if nonzero:
                    where = "" if copy_name == name else f" (the target network's copy of {name})"
                    where += " is" if nonzero == 1 else " are"
                    raise MaskMismatchError(
                        f"{source}: {_weights(nonzero)} of {copy_name}{where} non-zero where the mask of {name} "
                        "prunes them; a sparse model's pruned weights are exactly 0.0, so these weights and masks do "
                        "not belong together"
                    )
        if masks_moved is False:
            for name in names:
                lost = int((before[name] & ~mask[name]).count_nonzero())
                if lost:
                    raise MaskMismatchError(
                        f"{source}: {_weights(lost)} of {name} kept in its static mask (masks_before_revival) "
                        f"{'is' if lost == 1 else 'are'} pruned in its mask; revival only adds weights to the static mask"
                    )
        kept_before = [int(before[name].count_nonzero()) for name in names]
        kept_after = [int(mask[name].count_nonzero()) for name in names]
        for name, kept, was in zip(names, kept_after, kept_before):
            if kept < was:
                raise MaskMismatchError(f"{source}: {name} keeps {kept} weights after revival but {was} before it; "
                                 "revival only adds weights")
        total = sum(mask[name].numel() for name in names)
        pruning = settings.for_role(network.role)
        static, revived = pruning.kept_counts(total)
        # TAR's connectivity repair adds up to one weight per unit the static masks left unconnected.
        bounds = ([0] * len(names) if not repairs_connectivity(pruning) else
                  repair_bounds([before[name] for name in names],
                                layer_producers([name.removeprefix(network.prefix) for name in names], network.producers)))
        if sum(kept_before) != static:
            raise MaskMismatchError(
                f"{source}: the static masks (masks_before_revival) of the {network.name} network keep "
                f"{sum(kept_before)} weights, but its settings ({_describe(settings, network.role)}) keep {static} "
                "before revival"
            )
        if masks_moved is False and pruning.allocation == "topology":
            budgets = layer_budgets(pruning, [before[name] for name in names])
            for name, kept, was, budget, bound in zip(names, kept_after, kept_before, budgets, bounds):
                if not was + budget <= kept <= was + budget + bound:
                    repair = f" (and its connectivity repair at most {bound})" if bound else ""
                    raise MaskMismatchError(
                        f"{source}: {name} keeps {kept} weights, but its static mask keeps {was} and TAR revives "
                        f"{budget} there{repair} ({_describe(settings, network.role)})"
                    )
        if not static + revived <= sum(kept_after) <= static + revived + sum(bounds):
            layers = ", ".join(f"{name}: {kept}" for name, kept in zip(names, kept_after))
            repair = f", plus at most {sum(bounds)} by its connectivity repair" if sum(bounds) else ""
            raise MaskMismatchError(
                f"{source}: the {network.name} network keeps {sum(kept_after)} weights ({layers}), but its settings "
                f"({_describe(settings, network.role)}) keep {static + revived} ({static} static + {revived} revived"
                f"{repair})"
            )


def check_agent(agent: SparseAgent, *, masks_moved: bool | None, source: str) -> None:
    """``check_loaded_masks`` for an agent's own masks and weights."""
    weights: dict[str, torch.Tensor] = {}
    targets: dict[str, torch.Tensor] = {}
    for network in agent.networks:
        weights.update(agent.weights(network))
        targets.update(agent.target_weights(network))
    check_loaded_masks(agent.networks, agent.settings, agent.masks.as_dict(), agent.masks_before_revival, weights,
                       targets, masks_moved=masks_moved, source=source)


def sparse_agent(model: Any) -> SparseAgent:
    """The sparse agent of an SB3 model trained with ``TarMlpPolicy`` or ``TARCallback``.

    :param model: an SB3 algorithm (or its policy).
    :raises ValueError: if the model has no sb3-tar masks.
    """
    policy = getattr(model, "policy", model)
    agent = getattr(policy, "sparse_agent", None)
    if callable(agent):
        return agent()
    state = getattr(model, STATE_ATTRIBUTE, None)
    if state is not None:
        return agent_from_state(policy, state, policy.device)
    raise UserError(
        f"model: this {type(model).__name__} has no sb3-tar masks; train it with policy='TarMlpPolicy' "
        "or with callback=sb3_tar.TARCallback(...)"
    )
