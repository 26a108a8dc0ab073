"""``TarMlpPolicy``: each algorithm's own MLP policy, pruned and revived when it is built.

``import sb3_tar`` registers the alias ``"TarMlpPolicy"`` for SAC, TD3, DDPG, TQC and CrossQ. Each
class subclasses that algorithm's ``MlpPolicy``, so every policy option keeps working; the sparsity
settings are extra keyword arguments (``policy_kwargs``), and every other unknown keyword is an
option of the criterion.

While the policy is built (``_build``, which SB3 runs from the constructor and again in
``Algo.load``), the actor and each Q-network are pruned and revived on their own, the masks become
persistent buffers (so ``save``/``load`` keep them), the weights and targets are masked, and the
optimizers get the step hooks that keep the masks through training (``sb3_tar.sb3.masking``).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from sb3_contrib import TQC, CrossQ
from sb3_contrib.crossq.policies import CrossQPolicy
from sb3_contrib.tqc.policies import TQCPolicy
from stable_baselines3 import DDPG, SAC, TD3
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy

from sb3_tar.sb3.agent import SparseAgent, draw_masks, find_networks, model_seed_or_torch_seed
from sb3_tar.sb3.masking import WeightMasks
from sb3_tar.sb3.settings import SparsitySettings

ALIAS = "TarMlpPolicy"


class TarPolicy:
    """Mixin that makes an SB3 off-policy MLP policy sparse; put it before the dense policy class.

    :param sparsity: final fraction of zero weights in each network, in [0, 1); required unless
        both ``actor_sparsity`` and ``critic_sparsity`` are given.
    :param actor_sparsity: the actor's sparsity (overrides ``sparsity``).
    :param critic_sparsity: each Q-network's sparsity (overrides ``sparsity``).
    :param criterion: ``magnitude`` (default), ``random``, ``erk``, ``synflow`` or a registered name.
    :param recovery_ratio: revival budget as a fraction of each network's weights (default 0).
    :param allocation: ``topology`` (TAR, default) or ``uniform`` (Uniform Revival).
    :param budget: ``reserve`` (default: end exactly at the sparsity) or ``extra``.
    :param kwargs: the dense policy's arguments; any other keyword is a criterion option
        (``scope`` for magnitude, ``iterations`` for synflow).

    The masks are drawn from the model's seed (see ``model_seed_or_torch_seed``): the actor from
    ``derive_seed(seed, 0)``, Q-network ``i`` from ``derive_seed(seed, 1 + i)``.
    """

    masks: WeightMasks
    masks_before_revival: WeightMasks
    mask_seed: torch.Tensor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        dense_arguments = inspect.signature(self._dense_policy_class().__init__).parameters
        sparsity = {name: kwargs.pop(name) for name in list(kwargs) if name not in dense_arguments}
        self.sparsity_settings = SparsitySettings.from_kwargs(sparsity, owner=ALIAS)
        super().__init__(*args, **kwargs)

    @classmethod
    def _dense_policy_class(cls) -> type[BasePolicy]:
        mro = cls.__mro__
        return mro[mro.index(TarPolicy) + 1]

    def _build(self, lr_schedule: Schedule) -> None:
        seed = model_seed_or_torch_seed(None)
        super()._build(lr_schedule)  # type: ignore[misc]
        agent = draw_masks(self, self.sparsity_settings, seed)
        self.masks = agent.masks
        self.masks_before_revival = agent.masks_before_revival
        self.register_buffer("mask_seed", torch.tensor(seed, dtype=torch.int64))  # type: ignore[attr-defined]
        agent.enforce()

    def sparse_agent(self) -> SparseAgent:
        """The policy's sparse networks and their masks."""
        return SparseAgent(find_networks(self), self.masks, self.masks_before_revival, self.sparsity_settings,
                           int(self.mask_seed))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        return {**data, **self.sparsity_settings.as_kwargs()}


class TarSACPolicy(TarPolicy, SACPolicy):
    """SAC's ``MlpPolicy`` with a sparse actor and Q-networks (alias ``"TarMlpPolicy"``)."""


class TarTD3Policy(TarPolicy, TD3Policy):
    """TD3's and DDPG's ``MlpPolicy`` with a sparse actor, Q-networks and targets (alias ``"TarMlpPolicy"``)."""


class TarTQCPolicy(TarPolicy, TQCPolicy):
    """TQC's ``MlpPolicy`` with a sparse actor and quantile Q-networks (alias ``"TarMlpPolicy"``)."""


class TarCrossQPolicy(TarPolicy, CrossQPolicy):
    """CrossQ's ``MlpPolicy`` with a sparse actor and Q-networks (alias ``"TarMlpPolicy"``)."""


TAR_POLICIES = {SAC: TarSACPolicy, TD3: TarTD3Policy, DDPG: TarTD3Policy, TQC: TarTQCPolicy, CrossQ: TarCrossQPolicy}


def register_policies() -> None:
    """Register ``"TarMlpPolicy"`` in each supported algorithm's ``policy_aliases``."""
    for algorithm, policy in TAR_POLICIES.items():
        algorithm.policy_aliases[ALIAS] = policy


__all__ = ["ALIAS", "TAR_POLICIES", "TarCrossQPolicy", "TarPolicy", "TarSACPolicy",
           "TarTD3Policy", "TarTQCPolicy", "register_policies"]
