"""Which networks of an SB3 off-policy policy are pruned: the actor and every Q-network.

Each *network* is pruned on its own (its own sparsity, its own random stream). A network's
prunable layers are the ``nn.Linear`` layers of its MLP; the features extractor is not pruned
(for ``MlpPolicy`` it is a parameter-free ``nn.Flatten``). Works for the policies of SAC, TD3,
DDPG, TQC and CrossQ: all of them have ``policy.actor`` and ``policy.critic.q_networks``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

ACTOR = "actor"
CRITIC = "critic"


@dataclass(frozen=True)
class SparseNetwork:
    """One network of a policy and everything that must follow its mask.

    :param name: ``"actor"``, or ``"qf0"``, ``"qf1"``, ... for the Q-networks (SB3's module names).
    :param role: ``"actor"`` or ``"critic"``: which of ``actor_sparsity`` / ``critic_sparsity`` applies.
    :param index: the network's random stream: 0 for the actor, ``1 + i`` for Q-network ``i``.
    :param module: the module whose ``nn.Linear`` layers are pruned.
    :param prefix: qualified name of ``module`` in the policy, with a trailing dot: a layer's mask
        is stored under ``prefix + "<layer>.weight"``, the weight's own name in the policy.
    :param optimizer: the optimizer that owns the module's weights.
    :param target: the same network in the target network (Polyak copy), or ``None``.
    :param target_prefix: qualified name of ``target`` in the policy, with a trailing dot (``""``
        without a target): a layer's copy in the target is ``target_prefix + "<layer>.weight"``.
    :param forward: ``forward(module, inputs) -> outputs`` for criteria that run the network
        (SynFlow), where ``module(inputs)`` is not the network's function.
    """

    name: str
    role: str
    index: int
    module: nn.Module
    prefix: str
    optimizer: torch.optim.Optimizer
    target: nn.Module | None = None
    target_prefix: str = ""
    forward: Callable[[nn.Module, torch.Tensor], object] | None = None

    def weight_name(self, layer: str) -> str:
        """The policy-qualified name of layer ``layer`` (``"latent_pi.0.weight"`` -> ``"actor.latent_pi.0.weight"``)."""
        return self.prefix + layer

    def target_weight_name(self, layer: str) -> str:
        """The policy-qualified name of layer ``layer``'s copy in the target network (``"critic_target.qf0.0.weight"``)."""
        if self.target is None:
            raise ValueError(f"the {self.name} network has no target network")
        return self.target_prefix + layer


def stochastic_actor_forward(heads: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """SAC/TQC/CrossQ actor: ``latent_pi`` then every head (``mu``, and ``log_std`` unless gSDE)."""
    latent = heads["latent_pi"](inputs)
    return [head(latent) for name, head in heads.items() if name != "latent_pi"]


def _qualified_names(policy: nn.Module) -> dict[int, str]:
    return {id(module): name for name, module in policy.named_modules()}


def _actor_network(policy: nn.Module, names: dict[int, str]) -> SparseNetwork:
    actor = policy.actor
    actor_target = getattr(policy, "actor_target", None)
    if hasattr(actor, "latent_pi"):
        # A stochastic actor: the MLP is latent_pi plus its heads. A view that holds them under
        # the actor's own attribute names gives every layer its qualified name in the actor.
        heads = {"latent_pi": actor.latent_pi, "mu": actor.mu}
        if isinstance(actor.log_std, nn.Module):  # with gSDE log_std is a parameter, not a layer
            heads["log_std"] = actor.log_std
        return SparseNetwork(ACTOR, ACTOR, 0, nn.ModuleDict(heads), names[id(actor)] + ".", actor.optimizer,
                             forward=stochastic_actor_forward)
    # A deterministic actor (TD3, DDPG): the whole MLP is ``mu``.
    target = actor_target.mu if actor_target is not None else None
    return SparseNetwork(ACTOR, ACTOR, 0, actor.mu, names[id(actor.mu)] + ".", actor.optimizer, target=target,
                         target_prefix=names[id(target)] + "." if target is not None else "")


def find_networks(policy: nn.Module) -> list[SparseNetwork]:
    """The actor, then each Q-network of the critic ensemble, of an SB3 off-policy policy.

    :raises ValueError: for a policy without ``actor`` and ``critic.q_networks`` (not an
        off-policy actor-critic MLP policy).
    """
    critic = getattr(policy, "critic", None)
    if not hasattr(policy, "actor") or not hasattr(critic, "q_networks"):
        raise ValueError(
            f"policy: a {type(policy).__name__} has no actor and critic Q-networks; sb3-tar prunes the MLP "
            "policies of SAC, TD3, DDPG, TQC and CrossQ"
        )
    names = _qualified_names(policy)
    critic_target = getattr(policy, "critic_target", None)
    networks = [_actor_network(policy, names)]
    for index, q_network in enumerate(critic.q_networks):
        name = names[id(q_network)].rsplit(".", 1)[-1]
        target = critic_target.q_networks[index] if critic_target is not None else None
        networks.append(SparseNetwork(
            name, CRITIC, 1 + index, q_network, names[id(q_network)] + ".", critic.optimizer, target=target,
            target_prefix=names[id(target)] + "." if target is not None else "",
        ))
    return networks
