"""``TarMlpPolicy`` and its kin: each algorithm's own policy with the ``TarPolicy`` mixin, and their aliases.

``import sb3_tar`` registers the alias ``"TarMlpPolicy"`` for SAC, TD3, DDPG, TQC, CrossQ, PPO, A2C,
DQN, QR-DQN and MaskablePPO, ``"TarMultiInputPolicy"`` for those of them that have a
``MultiInputPolicy`` (all but CrossQ), and ``"TarMlpLstmPolicy"`` / ``"TarMultiInputLstmPolicy"``
for RecurrentPPO (its ``MlpLstmPolicy`` / ``MultiInputLstmPolicy``: the MLPs after the LSTMs are
pruned, the LSTMs stay dense). ``"TarCnnPolicy"`` (RecurrentPPO: ``"TarCnnLstmPolicy"``) is
registered only to say that image policies are not supported. What the mixin does when a policy is
built and loaded: ``sb3_tar.sb3.tar_policy``.

The classes live here, by these names, for good: a saved model records its policy class by module
and name.
"""

from __future__ import annotations

from typing import Any

from sb3_contrib import QRDQN, TQC, CrossQ, MaskablePPO, RecurrentPPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy, MaskableMultiInputActorCriticPolicy
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy, RecurrentMultiInputActorCriticPolicy
from sb3_contrib.crossq.policies import CrossQPolicy
from sb3_contrib.qrdqn.policies import MultiInputPolicy as QRDQNMultiInputPolicy
from sb3_contrib.qrdqn.policies import QRDQNPolicy
from sb3_contrib.tqc.policies import MultiInputPolicy as TQCMultiInputPolicy
from sb3_contrib.tqc.policies import TQCPolicy
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy, MultiInputActorCriticPolicy
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.dqn.policies import MultiInputPolicy as DQNMultiInputPolicy
from stable_baselines3.sac.policies import MultiInputPolicy as SACMultiInputPolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import MultiInputPolicy as TD3MultiInputPolicy
from stable_baselines3.td3.policies import TD3Policy

from sb3_tar.engine.errors import UserError
from sb3_tar.sb3.call_stack import who_builds
from sb3_tar.sb3.tar_policy import (
    ALIAS,
    CNN_ALIAS,
    CNN_LSTM_ALIAS,
    LSTM_ALIAS,
    MULTI_INPUT_ALIAS,
    MULTI_INPUT_LSTM_ALIAS,
    TarPolicy,
)


def _expected_policy(algorithm: BaseAlgorithm, alias: str) -> type[BasePolicy] | None:
    table = TAR_POLICY_ALIASES[alias]
    return next((table[base] for base in type(algorithm).__mro__ if base in table), None)


def aliases_of(algorithm: BaseAlgorithm | None) -> list[str]:
    """The sparse policy aliases ``algorithm`` takes (all of them for ``None``)."""
    return [alias for alias in TAR_POLICY_ALIASES
            if algorithm is None or _expected_policy(algorithm, alias) is not None]


def check_algorithm(policy_class: type, algorithm: BaseAlgorithm | None, loading: bool) -> None:
    """Refuse a sparse policy of one algorithm in another (e.g. ``TD3.load`` of a saved SAC model)."""
    alias = policy_class.alias
    expected = _expected_policy(algorithm, alias) if algorithm is not None else None
    if algorithm is not None and expected is None:
        algo = type(algorithm).__name__
        supported = ", ".join(a.__name__ for a in TAR_POLICY_ALIASES[alias])
        own = aliases_of(algorithm)
        instead = f"; {algo} takes policy={' or '.join(repr(a) for a in own)}" if own else ""
        raise UserError(f"{algo} has no {alias}; {alias} is registered for {supported}{instead}")
    if expected is None or issubclass(policy_class, expected):
        return
    algo = type(algorithm).__name__
    owners = [a.__name__ for a, policy in TAR_POLICY_ALIASES[alias].items() if issubclass(policy_class, policy)]
    of_owner = f" ({' or '.join(owners)}'s {alias})" if owners else ""
    if loading:
        loaders = " or ".join(f"{owner}.load" for owner in owners) or "the algorithm that saved it"
        raise UserError(
            f"{algo}.load: the saved model's policy is {policy_class.__name__}{of_owner}, but {algo} needs "
            f"{expected.__name__}: the model was not saved by {algo}; load it with {loaders}"
        )
    raise UserError(
        f"{algo} cannot train a {policy_class.__name__}{of_owner}; pass policy={alias!r}, which is "
        f"{expected.__name__} for {algo}"
    )


class TarSACPolicy(TarPolicy, SACPolicy):
    """SAC's ``MlpPolicy`` with a sparse actor and Q-networks (alias ``"TarMlpPolicy"``)."""


class TarTD3Policy(TarPolicy, TD3Policy):
    """TD3's and DDPG's ``MlpPolicy`` with a sparse actor, Q-networks and targets (alias ``"TarMlpPolicy"``)."""


class TarTQCPolicy(TarPolicy, TQCPolicy):
    """TQC's ``MlpPolicy`` with a sparse actor and quantile Q-networks (alias ``"TarMlpPolicy"``)."""


class TarCrossQPolicy(TarPolicy, CrossQPolicy):
    """CrossQ's ``MlpPolicy`` with a sparse actor and Q-networks (alias ``"TarMlpPolicy"``)."""


class TarActorCriticPolicy(TarPolicy, ActorCriticPolicy):
    """PPO's and A2C's ``MlpPolicy`` with a sparse actor and critic (alias ``"TarMlpPolicy"``)."""

    needs_box_actions = False


class TarDQNPolicy(TarPolicy, DQNPolicy):
    """DQN's ``MlpPolicy`` with a sparse Q-network and target (alias ``"TarMlpPolicy"``)."""

    needs_box_actions = False


class TarQRDQNPolicy(TarPolicy, QRDQNPolicy):
    """QR-DQN's ``MlpPolicy`` with a sparse quantile network and target (alias ``"TarMlpPolicy"``)."""

    needs_box_actions = False


class TarSACMultiInputPolicy(TarPolicy, SACMultiInputPolicy):
    """SAC's ``MultiInputPolicy`` (dict observations) with a sparse actor and Q-networks (alias ``"TarMultiInputPolicy"``)."""

    alias = MULTI_INPUT_ALIAS


class TarTD3MultiInputPolicy(TarPolicy, TD3MultiInputPolicy):
    """TD3's and DDPG's ``MultiInputPolicy`` with a sparse actor, Q-networks and targets (alias ``"TarMultiInputPolicy"``)."""

    alias = MULTI_INPUT_ALIAS


class TarTQCMultiInputPolicy(TarPolicy, TQCMultiInputPolicy):
    """TQC's ``MultiInputPolicy`` with a sparse actor and quantile Q-networks (alias ``"TarMultiInputPolicy"``)."""

    alias = MULTI_INPUT_ALIAS


class TarMultiInputActorCriticPolicy(TarPolicy, MultiInputActorCriticPolicy):
    """PPO's and A2C's ``MultiInputPolicy`` with a sparse actor and critic (alias ``"TarMultiInputPolicy"``)."""

    alias = MULTI_INPUT_ALIAS
    needs_box_actions = False


class TarDQNMultiInputPolicy(TarPolicy, DQNMultiInputPolicy):
    """DQN's ``MultiInputPolicy`` with a sparse Q-network and target (alias ``"TarMultiInputPolicy"``)."""

    alias = MULTI_INPUT_ALIAS
    needs_box_actions = False


class TarQRDQNMultiInputPolicy(TarPolicy, QRDQNMultiInputPolicy):
    """QR-DQN's ``MultiInputPolicy`` with a sparse quantile network and target (alias ``"TarMultiInputPolicy"``)."""

    alias = MULTI_INPUT_ALIAS
    needs_box_actions = False


class TarMaskableActorCriticPolicy(TarPolicy, MaskableActorCriticPolicy):
    """MaskablePPO's ``MlpPolicy`` with a sparse actor and critic (alias ``"TarMlpPolicy"``)."""

    needs_box_actions = False


class TarMaskableMultiInputActorCriticPolicy(TarPolicy, MaskableMultiInputActorCriticPolicy):
    """MaskablePPO's ``MultiInputPolicy`` with a sparse actor and critic (alias ``"TarMultiInputPolicy"``)."""

    alias = MULTI_INPUT_ALIAS
    needs_box_actions = False


class TarRecurrentActorCriticPolicy(TarPolicy, RecurrentActorCriticPolicy):
    """RecurrentPPO's ``MlpLstmPolicy`` with sparse actor and critic MLPs, dense LSTMs (alias ``"TarMlpLstmPolicy"``).

    The pruned networks are PPO's (``mlp_extractor.policy_net`` + ``action_net``,
    ``mlp_extractor.value_net`` + ``value_net``), whose input is the LSTM's output
    (``lstm_hidden_size`` wide). ``lstm_actor``, ``lstm_critic`` and, with
    ``enable_critic_lstm=False``, the ``critic`` linear layer that stands in for the critic's LSTM
    are not pruned.
    """

    alias = LSTM_ALIAS
    needs_box_actions = False


class TarRecurrentMultiInputActorCriticPolicy(TarPolicy, RecurrentMultiInputActorCriticPolicy):
    """RecurrentPPO's ``MultiInputLstmPolicy`` with sparse actor and critic MLPs (alias ``"TarMultiInputLstmPolicy"``)."""

    alias = MULTI_INPUT_LSTM_ALIAS
    needs_box_actions = False


class TarCnnPolicy(BasePolicy):
    """Registered as ``"TarCnnPolicy"`` only to refuse it clearly: image (CNN) policies are not supported."""

    alias = CNN_ALIAS

    def __new__(cls, *args: Any, **kwargs: Any) -> TarCnnPolicy:
        algorithm, _ = who_builds()
        algo = type(algorithm).__name__ if algorithm is not None else "this algorithm"
        aliases = aliases_of(algorithm)
        raise UserError(
            f"{cls.alias} is not supported: sb3-tar prunes MLP networks, not convolutional features extractors. "
            f"{algo} supports policy={' or '.join(repr(a) for a in aliases)}; for image observations train a dense "
            f"{cls.alias.removeprefix('Tar')!r}, or flatten the observations and use {aliases[0]!r}"
        )


class TarCnnLstmPolicy(TarCnnPolicy):
    """Registered as RecurrentPPO's ``"TarCnnLstmPolicy"`` only to refuse it clearly, as ``TarCnnPolicy``."""

    alias = CNN_LSTM_ALIAS


TAR_POLICIES = {SAC: TarSACPolicy, TD3: TarTD3Policy, DDPG: TarTD3Policy, TQC: TarTQCPolicy, CrossQ: TarCrossQPolicy,
                PPO: TarActorCriticPolicy, A2C: TarActorCriticPolicy, DQN: TarDQNPolicy, QRDQN: TarQRDQNPolicy}
TAR_MULTI_INPUT_POLICIES = {
    SAC: TarSACMultiInputPolicy, TD3: TarTD3MultiInputPolicy, DDPG: TarTD3MultiInputPolicy, TQC: TarTQCMultiInputPolicy,
    PPO: TarMultiInputActorCriticPolicy, A2C: TarMultiInputActorCriticPolicy, DQN: TarDQNMultiInputPolicy,
    QRDQN: TarQRDQNMultiInputPolicy,
}
# sb3-contrib's PPO variants, alias -> algorithm -> policy: MaskablePPO takes PPO's two aliases,
# RecurrentPPO its own LSTM ones (its dense policies are "MlpLstmPolicy" and "MultiInputLstmPolicy").
TAR_PPO_VARIANT_POLICIES = {
    ALIAS: {MaskablePPO: TarMaskableActorCriticPolicy},
    MULTI_INPUT_ALIAS: {MaskablePPO: TarMaskableMultiInputActorCriticPolicy},
    LSTM_ALIAS: {RecurrentPPO: TarRecurrentActorCriticPolicy},
    MULTI_INPUT_LSTM_ALIAS: {RecurrentPPO: TarRecurrentMultiInputActorCriticPolicy},
}
# Every registered alias -> algorithm -> its sparse policy.
TAR_POLICY_ALIASES = {
    ALIAS: {**TAR_POLICIES, **TAR_PPO_VARIANT_POLICIES[ALIAS]},
    MULTI_INPUT_ALIAS: {**TAR_MULTI_INPUT_POLICIES, **TAR_PPO_VARIANT_POLICIES[MULTI_INPUT_ALIAS]},
    LSTM_ALIAS: TAR_PPO_VARIANT_POLICIES[LSTM_ALIAS],
    MULTI_INPUT_LSTM_ALIAS: TAR_PPO_VARIANT_POLICIES[MULTI_INPUT_LSTM_ALIAS],
}
# The refusing image aliases, one per MLP alias.
_CNN_REFUSALS = {ALIAS: (CNN_ALIAS, TarCnnPolicy), LSTM_ALIAS: (CNN_LSTM_ALIAS, TarCnnLstmPolicy)}


def register_policies() -> None:
    """Register every alias of ``TAR_POLICY_ALIASES`` in each algorithm's ``policy_aliases``.

    The refusing ``"TarCnnPolicy"`` goes with ``"TarMlpPolicy"``, ``"TarCnnLstmPolicy"`` with ``"TarMlpLstmPolicy"``.
    """
    for alias, table in TAR_POLICY_ALIASES.items():
        for algorithm, policy in table.items():
            algorithm.policy_aliases[alias] = policy
    for alias, (cnn_alias, refusal) in _CNN_REFUSALS.items():
        for algorithm in TAR_POLICY_ALIASES[alias]:
            algorithm.policy_aliases[cnn_alias] = refusal


__all__ = ["ALIAS", "CNN_ALIAS", "CNN_LSTM_ALIAS", "LSTM_ALIAS", "MULTI_INPUT_ALIAS", "MULTI_INPUT_LSTM_ALIAS",
           "TAR_MULTI_INPUT_POLICIES", "TAR_POLICIES", "TAR_POLICY_ALIASES", "TAR_PPO_VARIANT_POLICIES",
           "TarActorCriticPolicy", "TarCnnLstmPolicy", "TarCnnPolicy", "TarCrossQPolicy", "TarDQNMultiInputPolicy",
           "TarDQNPolicy", "TarMaskableActorCriticPolicy", "TarMaskableMultiInputActorCriticPolicy",
           "TarMultiInputActorCriticPolicy", "TarPolicy", "TarQRDQNMultiInputPolicy", "TarQRDQNPolicy",
           "TarRecurrentActorCriticPolicy", "TarRecurrentMultiInputActorCriticPolicy", "TarSACMultiInputPolicy",
           "TarSACPolicy", "TarTD3MultiInputPolicy", "TarTD3Policy", "TarTQCMultiInputPolicy", "TarTQCPolicy",
           "register_policies"]
