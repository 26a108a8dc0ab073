"""Which networks of an SB3 policy are pruned, each as one ``SparseNetwork``.

Each *network* is pruned on its own (its own sparsity, its own random stream). A network's
prunable layers are the ``nn.Linear`` layers of its MLP; the features extractor is not pruned
(for ``MlpPolicy`` it is a parameter-free ``nn.Flatten``, for ``MultiInputPolicy`` a
``CombinedExtractor`` of flattens). Three families of SB3 policies:

- off-policy actor-critic (SAC, TD3, DDPG, TQC, CrossQ): ``policy.actor`` is the actor (role
  ``actor``, stream 0), each Q-network of ``policy.critic.q_networks`` is one critic network
  (``qf0``, ``qf1``, ...: role ``critic``, stream ``1 + i``), targets take their online mask;
- on-policy actor-critic (PPO, A2C: ``ActorCriticPolicy``; MaskablePPO; RecurrentPPO): the actor is
  ``mlp_extractor.policy_net`` + ``action_net`` (role ``actor``, stream 0), the critic is
  ``mlp_extractor.value_net`` + ``value_net`` (role ``critic``, stream 1). SB3's ``MlpExtractor``
  has no shared layers (``net_arch=[64, 64]`` builds two separate [64, 64] trunks), so the two
  networks never share a weight; one optimizer owns both. RecurrentPPO's ``MlpExtractor`` reads the
  LSTM's output, so its networks are ``lstm_hidden_size`` wide at the input (SynFlow's all-ones
  input takes the first layer's ``in_features``, which is that width); its LSTMs (and the
  ``critic`` linear layer that replaces the critic's LSTM with ``enable_critic_lstm=False``) are,
  like a features extractor, not pruned;
- value-based (DQN, QR-DQN): the Q-network ``q_net`` (QR-DQN: ``quantile_net``; role ``critic``,
  stream 1), with its target network taking its mask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from sb3_tar.engine.errors import UserError
from sb3_tar.engine.layers import LINEAR_LAYERS
from sb3_tar.settings import ACTOR, CRITIC


@dataclass(frozen=True)
class SparseNetwork:
    """One network of a policy and everything that must follow its mask.

    :param name: ``"actor"``; ``"qf0"``, ``"qf1"``, ... for the Q-networks of an off-policy critic
        (SB3's module names); ``"critic"`` for an on-policy value network; ``"q_net"`` (DQN) or
        ``"quantile_net"`` (QR-DQN) for a value-based policy's Q-network.
    :param role: ``"actor"`` or ``"critic"``: which of ``actor_sparsity`` / ``critic_sparsity`` applies.
    :param index: the network's random stream: 0 for the actor, ``1 + i`` for critic network ``i``.
    :param module: the module whose ``nn.Linear`` layers are pruned.
    :param prefix: qualified name of ``module`` in the policy, with a trailing dot: a layer's mask
        is stored under ``prefix + "<layer>.weight"``, the weight's own name in the policy.
    :param optimizer: the optimizer that owns the module's weights.
    :param target: the same network in the target network (Polyak copy), or ``None``.
    :param target_prefix: qualified name of ``target`` in the policy, with a trailing dot (``""``
        without a target): a layer's copy in the target is ``target_prefix + "<layer>.weight"``.
    :param forward: ``forward(module, inputs) -> outputs`` for criteria that run the network
        (SynFlow), where ``module(inputs)`` is not the network's function.
    :param producers: layer name (inside ``module``) -> the layer whose outputs it reads (``None``:
        the network's input), where the layers are not a plain chain (SAC's actor heads); ``None``:
        each layer reads the one before it. TAR's connectivity repair reads it.
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
    producers: Mapping[str, str | None] | None = None

    def weight_name(self, layer: str) -> str:
        """The policy-qualified name of layer ``layer`` (``"latent_pi.0.weight"`` -> ``"actor.latent_pi.0.weight"``)."""
        return self.prefix + layer

    def target_weight_name(self, layer: str) -> str:
        """The policy-qualified name of layer ``layer``'s copy in the target network (``"critic_target.qf0.0.weight"``)."""
        if self.target is None:
            raise UserError(f"the {self.name} network has no target network")
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
        view = nn.ModuleDict(heads)
        return SparseNetwork(ACTOR, ACTOR, 0, view, names[id(actor)] + ".", actor.optimizer,
                             forward=stochastic_actor_forward, producers=_stochastic_actor_producers(view))
    # A deterministic actor (TD3, DDPG): the whole MLP is ``mu``.
    target = actor_target.mu if actor_target is not None else None
    return SparseNetwork(ACTOR, ACTOR, 0, actor.mu, names[id(actor.mu)] + ".", actor.optimizer, target=target,
                         target_prefix=names[id(target)] + "." if target is not None else "")


def _stochastic_actor_producers(view: nn.ModuleDict) -> dict[str, str | None]:
    """``latent_pi`` is a chain; every head (``mu`` is ``Linear`` + ``Hardtanh`` with gSDE) reads its last
    layer, or the features if it has none."""
    def linear_layers(part: str) -> list[str]:
        return [f"{part}.{name}.weight" if name else f"{part}.weight" for name, module in view[part].named_modules()
                if isinstance(module, LINEAR_LAYERS)]

    trunk = linear_layers("latent_pi")
    producers: dict[str, str | None] = dict(zip(trunk, [None, *trunk[:-1]]))
    for head in view:
        if head != "latent_pi":
            layers = linear_layers(head)
            producers.update(zip(layers, [trunk[-1] if trunk else None, *layers[:-1]]))
    return producers


def sequential_forward(view: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """An on-policy network: its MLP trunk (``mlp_extractor.<trunk>``), then its head."""
    trunk, head = view.values()
    return head(next(iter(trunk.values()))(inputs))


def _on_policy_network(policy: nn.Module, name: str, role: str, index: int, trunk: str, head: str) -> SparseNetwork:
    # A view holding the trunk and head under their attribute paths in the policy gives every
    # layer its qualified name in the policy (prefix ""), e.g. "mlp_extractor.policy_net.0.weight".
    view = nn.ModuleDict({
        "mlp_extractor": nn.ModuleDict({trunk: getattr(policy.mlp_extractor, trunk)}),
        head: getattr(policy, head),
    })
    return SparseNetwork(name, role, index, view, "", policy.optimizer, forward=sequential_forward)


def _value_based_network(policy: nn.Module, names: dict[int, str], online: str, target: str) -> SparseNetwork:
    network, target_network = getattr(policy, online), getattr(policy, target)
    # DQN's QNetwork keeps its MLP as q_net.q_net, QR-DQN's QuantileNetwork as quantile_net.quantile_net.
    mlp, target_mlp = getattr(network, online), getattr(target_network, online)
    return SparseNetwork(online, CRITIC, 1, mlp, names[id(mlp)] + ".", policy.optimizer, target=target_mlp,
                         target_prefix=names[id(target_mlp)] + ".")


SUPPORTED = ("the MLP and MultiInput policies of SAC, TD3, DDPG, TQC, CrossQ, PPO, A2C, DQN, QR-DQN and MaskablePPO, "
             "and the MlpLstm and MultiInputLstm policies of RecurrentPPO")


def find_networks(policy: nn.Module) -> list[SparseNetwork]:
    """The sparse networks of an SB3 policy, actor first (see the module's docstring for which).

    :raises ValueError: for a policy of none of the three families.
    """
    names = _qualified_names(policy)
    if hasattr(policy, "mlp_extractor") and hasattr(policy, "action_net") and hasattr(policy, "value_net"):
        return [_on_policy_network(policy, ACTOR, ACTOR, 0, "policy_net", "action_net"),
                _on_policy_network(policy, CRITIC, CRITIC, 1, "value_net", "value_net")]
    for online, target in (("q_net", "q_net_target"), ("quantile_net", "quantile_net_target")):
        if isinstance(getattr(policy, online, None), nn.Module) and hasattr(policy, target):
            return [_value_based_network(policy, names, online, target)]
    critic = getattr(policy, "critic", None)
    if not hasattr(policy, "actor") or not hasattr(critic, "q_networks"):
        raise UserError(
            f"policy: a {type(policy).__name__} has none of the networks sb3-tar prunes (an actor and critic "
            f"Q-networks, an mlp_extractor with action and value heads, or a Q-network); sb3-tar prunes {SUPPORTED}"
        )
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
