"""A sparse agent: its networks, their masks, and how the masks were drawn.

Masks are drawn once per network with the engine (``prune_and_revive``), each network from its own
random stream ``derive_seed(seed, network.index)``. A ``SparseAgent`` is what the policy, the
callback, the logger and the command line share, wherever the masks are stored:

- ``TarMlpPolicy`` stores them as persistent buffers of the policy (``policy.masks``,
  ``policy.masks_before_revival``, ``policy.mask_seed``), saved and loaded with its weights;
- ``TARCallback`` stores them on the model (``model.sb3_tar_state``, CPU tensors), which SB3 saves
  with the model's other attributes, so resuming with the callback finds them.
"""

from __future__ import annotations

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
    prune_and_revive,
)
from sb3_tar.sb3.masking import WeightMasks, enforce_masks
from sb3_tar.sb3.networks import SparseNetwork, find_networks
from sb3_tar.sb3.settings import SparsitySettings

STATE_ATTRIBUTE = "sb3_tar_state"


def model_seed_or_torch_seed(seed: int | None) -> int:
    """The seed masks are drawn from: ``seed``, or else the seed of torch's global generator.

    SB3 seeds torch's global generator with the model's ``seed`` right before it builds the
    policy, so inside a policy ``torch.initial_seed()`` is the model's seed. A model without a seed
    gets whatever torch was last seeded with (``torch.manual_seed``, or torch's fixed default seed
    in a fresh process): reproducible, but unseeded models built in one process share it.
    """
    return (torch.initial_seed() if seed is None else seed) % 2**63


def _isolated_units(mask: torch.Tensor) -> tuple[int, int]:
    return int((~mask.any(dim=0)).sum()), int((~mask.any(dim=1)).sum())


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

    def layer_names(self, network: SparseNetwork) -> list[str]:
        """The network's prunable weights, by their name inside the network, in module order."""
        return [layer.name for layer in prunable_layers(network.module)]

    def weights(self, network: SparseNetwork) -> dict[str, torch.Tensor]:
        """Mask name -> the masked weight, for one network."""
        return {network.weight_name(name): network.module.get_parameter(name) for name in self.layer_names(network)}

    def target_weights(self, network: SparseNetwork) -> dict[str, torch.Tensor]:
        """Mask name -> the weight's copy in the target network (empty without a target)."""
        if network.target is None:
            return {}
        return {network.weight_name(name): network.target.get_parameter(name) for name in self.layer_names(network)}

    def enforce(self) -> None:
        """Attach the masks: zero the masked weights, targets and moments now, and hook every optimizer."""
        by_optimizer: dict[int, tuple[torch.optim.Optimizer, dict[str, torch.Tensor], dict[str, torch.Tensor]]] = {}
        for network in self.networks:
            optimizer, weights, targets = by_optimizer.setdefault(id(network.optimizer), (network.optimizer, {}, {}))
            weights.update(self.weights(network))
            targets.update(self.target_weights(network))
        for optimizer, weights, targets in by_optimizer.values():
            enforce_masks(optimizer, weights, self.masks, targets)

    def plan(self, network: SparseNetwork) -> RevivalPlan:
        """The network's masks and per-layer topology, as the engine reports them."""
        layers, masks, before = [], {}, {}
        for name in self.layer_names(network):
            masks[name] = self.masks[network.weight_name(name)]
            before[name] = self.masks_before_revival[network.weight_name(name)].to(masks[name].device)
            out_features, in_features = masks[name].shape
            layers.append(LayerTopology(
                name, in_features, out_features, int(before[name].sum()), connectivity_floor(in_features, out_features),
                int(masks[name].sum()) - int(before[name].sum()), *_isolated_units(before[name]),
                *_isolated_units(masks[name]),
            ))
        return RevivalPlan(masks, before, layers, self.settings.for_role(network.role),
                           derive_seed(self.seed, network.index))

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
    masks, before = {}, {}
    for network in networks:
        pruning = settings.for_role(network.role)
        options = dict(pruning.criterion_options)
        if network.forward is not None and "forward" in criterion_options(pruning.criterion):
            options["forward"] = network.forward
        plan = prune_and_revive(
            network.module, sparsity=pruning.sparsity, criterion=pruning.criterion,
            recovery_ratio=pruning.recovery_ratio, allocation=pruning.allocation, budget=pruning.budget,
            seed=derive_seed(seed, network.index), **options,
        )
        masks.update({network.weight_name(name): mask for name, mask in plan.masks.items()})
        before.update({network.weight_name(name): mask for name, mask in plan.masks_before_revival.items()})
    return SparseAgent(networks, WeightMasks(masks), WeightMasks(before), settings, seed)


def agent_from_state(policy: nn.Module, state: Mapping[str, Any], device: torch.device | str) -> SparseAgent:
    """The agent that ``SparseAgent.state()`` describes, on ``policy``'s networks, masks on ``device``."""
    networks = find_networks(policy)
    expected = {n.weight_name(layer.name): tuple(layer.weight.shape)
                for n in networks for layer in prunable_layers(n.module)}
    stored = {name: tuple(mask.shape) for name, mask in state["masks"].items()}
    if stored != expected:
        raise ValueError(
            f"the stored masks do not fit this policy: stored {stored}, the policy's weights are {expected}"
        )
    settings = SparsitySettings.from_kwargs(dict(state["settings"]))
    return SparseAgent(networks, WeightMasks(state["masks"]).to(device),
                       WeightMasks(state["masks_before_revival"]).to(device), settings, int(state["seed"]))


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
    raise ValueError(
        f"model: this {type(model).__name__} has no sb3-tar masks; train it with policy='TarMlpPolicy' "
        "or with callback=sb3_tar.TARCallback(...)"
    )
