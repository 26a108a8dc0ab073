"""``TarMlpPolicy`` and its kin: each algorithm's own policy, pruned and revived when it is built.

``import sb3_tar`` registers the alias ``"TarMlpPolicy"`` for SAC, TD3, DDPG, TQC, CrossQ, PPO, A2C,
DQN, QR-DQN and MaskablePPO, ``"TarMultiInputPolicy"`` for those of them that have a
``MultiInputPolicy`` (all but CrossQ), and ``"TarMlpLstmPolicy"`` / ``"TarMultiInputLstmPolicy"``
for RecurrentPPO (its ``MlpLstmPolicy`` / ``MultiInputLstmPolicy``: the MLPs after the LSTMs are
pruned, the LSTMs stay dense). Each class subclasses that algorithm's own policy, so every policy
option keeps working; the sparsity settings are extra keyword arguments (``policy_kwargs``), and
every other unknown keyword is an option of the criterion. ``"TarCnnPolicy"`` (RecurrentPPO:
``"TarCnnLstmPolicy"``) is registered only to say that image policies are not supported.

While a fresh model builds its policy (``_build``, run from the constructor), each network
(``sb3_tar.sb3.networks``) is pruned and revived on its own and the masks become persistent
buffers (so ``save``/``load`` keep them). When the constructor returns, the weights and targets are
masked and the optimizers get the step hooks that keep the masks through training
(``sb3_tar.sb3.masking``): only then is the optimizer final, since ``RecurrentActorCriticPolicy``
builds its LSTMs after ``_build`` and replaces the optimizer ``_build`` made.

SB3's ``Algo.load`` and ``BasePolicy.load`` build the policy and then load its saved state dict.
There the policy is built with placeholder masks, without scoring (SynFlow at width 1024 takes
seconds per network), and the masks come from the state dict. Every state dict loaded into the
policy (``Algo.load``, ``model.set_parameters`` with or without ``exact_match``,
``policy.load_state_dict``, ``BasePolicy.load``) is checked before any tensor is copied
(``sb3_tar.sb3.agent.check_loaded_masks``), and the masks are attached again after it.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import torch
from gymnasium import spaces
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
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BaseModel, BasePolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.dqn.policies import MultiInputPolicy as DQNMultiInputPolicy
from stable_baselines3.sac.policies import MultiInputPolicy as SACMultiInputPolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import MultiInputPolicy as TD3MultiInputPolicy
from stable_baselines3.td3.policies import TD3Policy

from sb3_tar.engine import prunable_layers
from sb3_tar.sb3.agent import (
    MaskMismatchError,
    SparseAgent,
    check_loaded_masks,
    draw_masks,
    find_networks,
    mask_seed_for,
    placeholder_agent,
)
from sb3_tar.engine.compressed import dense_of
from sb3_tar.sb3.kernels import (DEFAULT_KERNEL, apply_kernels, check_kernel, densify, is_compressed, layer_kernels,
                                 register_layouts)
from sb3_tar.sb3.load_guard import guard_sub_module_loads
from sb3_tar.sb3.masking import WeightMasks
from sb3_tar.settings import SparsitySettings

ALIAS = "TarMlpPolicy"
MULTI_INPUT_ALIAS = "TarMultiInputPolicy"
CNN_ALIAS = "TarCnnPolicy"
LSTM_ALIAS = "TarMlpLstmPolicy"
MULTI_INPUT_LSTM_ALIAS = "TarMultiInputLstmPolicy"
CNN_LSTM_ALIAS = "TarCnnLstmPolicy"

# SB3's own functions, recognised on the call stack by identity (not by name). RecurrentPPO and
# MaskablePPO build their policies in their own ``_setup_model``.
_ALGORITHM_SETUPS = (OffPolicyAlgorithm._setup_model.__code__, OnPolicyAlgorithm._setup_model.__code__,
                     RecurrentPPO._setup_model.__code__, MaskablePPO._setup_model.__code__)
_LOADERS = (BaseAlgorithm.load.__func__.__code__, BaseModel.load.__func__.__code__)


def _who_builds() -> tuple[BaseAlgorithm | None, bool]:
    """The algorithm whose ``_setup_model`` is building the policy (if any), and whether SB3's ``load`` is.

    SB3 builds a policy from its spaces, learning-rate schedule and ``policy_kwargs`` only: it never
    tells the policy its model's seed, nor that a saved state dict will overwrite it right away.
    Both are read from the call stack, where SB3's ``OffPolicyAlgorithm._setup_model`` or
    ``OnPolicyAlgorithm._setup_model`` (or RecurrentPPO's or MaskablePPO's own; its ``self`` is the
    algorithm) and ``BaseAlgorithm.load`` / ``BaseModel.load`` are recognised by their code objects.
    A policy built by hand finds neither.
    """
    algorithm, loading = None, False
    frame = sys._getframe(1)
    try:
        while frame is not None:
            if frame.f_code in _ALGORITHM_SETUPS and algorithm is None:
                algorithm = frame.f_locals.get("self")
            elif frame.f_code in _LOADERS:
                loading = True
                break
            frame = frame.f_back
    finally:
        del frame
    return algorithm, loading


def _expected_policy(algorithm: BaseAlgorithm, alias: str) -> type[BasePolicy] | None:
    table = TAR_POLICY_ALIASES[alias]
    return next((table[base] for base in type(algorithm).__mro__ if base in table), None)


def _aliases_of(algorithm: BaseAlgorithm | None) -> list[str]:
    """The sparse policy aliases ``algorithm`` takes (all of them for ``None``)."""
    return [alias for alias in TAR_POLICY_ALIASES
            if algorithm is None or _expected_policy(algorithm, alias) is not None]


def _check_algorithm(policy_class: type, algorithm: BaseAlgorithm | None, loading: bool) -> None:
    """Refuse a sparse policy of one algorithm in another (e.g. ``TD3.load`` of a saved SAC model)."""
    alias = policy_class.alias
    expected = _expected_policy(algorithm, alias) if algorithm is not None else None
    if algorithm is not None and expected is None:
        algo = type(algorithm).__name__
        supported = ", ".join(a.__name__ for a in TAR_POLICY_ALIASES[alias])
        own = _aliases_of(algorithm)
        instead = f"; {algo} takes policy={' or '.join(repr(a) for a in own)}" if own else ""
        raise ValueError(f"{algo} has no {alias}; {alias} is registered for {supported}{instead}")
    if expected is None or issubclass(policy_class, expected):
        return
    algo = type(algorithm).__name__
    owners = [a.__name__ for a, policy in TAR_POLICY_ALIASES[alias].items() if issubclass(policy_class, policy)]
    of_owner = f" ({' or '.join(owners)}'s {alias})" if owners else ""
    if loading:
        loaders = " or ".join(f"{owner}.load" for owner in owners) or "the algorithm that saved it"
        raise ValueError(
            f"{algo}.load: the saved model's policy is {policy_class.__name__}{of_owner}, but {algo} needs "
            f"{expected.__name__}: the model was not saved by {algo}; load it with {loaders}"
        )
    raise ValueError(
        f"{algo} cannot train a {policy_class.__name__}{of_owner}; pass policy={alias!r}, which is "
        f"{expected.__name__} for {algo}"
    )


class TarPolicy:
    """Mixin that makes an SB3 policy sparse; put it before the dense policy class.

    Which networks are pruned, and which of ``actor_sparsity`` / ``critic_sparsity`` each takes, is
    defined in ``sb3_tar.sb3.networks``: SAC/TD3/DDPG/TQC/CrossQ's actor and each Q-network,
    PPO/A2C/MaskablePPO/RecurrentPPO's actor (policy trunk + action head) and critic (value trunk +
    value head), DQN/QR-DQN's Q-network (a critic). The features extractor and RecurrentPPO's LSTMs
    are never pruned.

    :param sparsity: final fraction of zero weights in each network, in [0, 1); required unless
        both ``actor_sparsity`` and ``critic_sparsity`` are given (DQN, QR-DQN: ``critic_sparsity``).
    :param actor_sparsity: the actor's sparsity (overrides ``sparsity``).
    :param critic_sparsity: each Q-network's sparsity (overrides ``sparsity``).
    :param criterion: ``magnitude`` (default), ``random``, ``erk``, ``synflow`` or a registered name.
    :param recovery_ratio: revival budget as a fraction of each network's weights (default 0.01: TAR,
        with its connectivity repair, so no network is left disconnected at any size; 0 is static
        pruning, which refuses a network it disconnects unless ``allow_empty_layers``).
    :param allocation: ``topology`` (TAR, default) or ``uniform`` (Uniform Revival).
    :param budget: ``reserve`` (default: end exactly at the sparsity) or ``extra``.
    :param allow_empty_layers: train even if a layer keeps no weight after revival (default: refuse).
    :param kwargs: the dense policy's arguments; any other keyword is a criterion option
        (``scope`` for magnitude, ``iterations`` for synflow).

    The masks are drawn from the model's seed (``mask_seed``): the actor from
    ``derive_seed(seed, 0)``, Q-network ``i`` from ``derive_seed(seed, 1 + i)``. A model without a
    seed gets a fresh one from the operating system's entropy (see ``mask_seed_for``); a policy
    built by hand, outside an algorithm, uses the seed of torch's global generator.

    :raises ValueError: for a bad setting, an action space that is not a ``Box`` (off-policy
        actor-critic policies), or a policy of another algorithm (``TD3.load`` of a SAC model),
        before anything is built.
    """

    alias = ALIAS
    # SAC/TD3/DDPG/TQC/CrossQ need a Box; PPO/A2C take any, DQN/QR-DQN check their Discrete themselves.
    needs_box_actions = True
    masks: WeightMasks
    masks_before_revival: WeightMasks
    mask_seed: torch.Tensor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        algorithm, loading = _who_builds()
        _check_algorithm(type(self), algorithm, loading)
        dense_class = self._dense_policy_class()
        observation_space = kwargs.get("observation_space", args[0] if args else None)
        if (isinstance(observation_space, spaces.Dict) and "MultiInput" not in dense_class.__name__
                and "features_extractor_class" not in kwargs):
            # SB3 catches this mistake by the string "MlpPolicy"; the sparse alias must catch it too.
            raise ValueError(f"You must use `{self.alias.replace('Mlp', 'MultiInput')}` when working with dict "
                             f"observation space, not {self.alias}")
        dense_arguments = inspect.signature(dense_class.__init__).parameters
        sparsity = {name: kwargs.pop(name) for name in list(kwargs) if name not in dense_arguments}
        self.kernel = check_kernel(sparsity.pop("kernel", DEFAULT_KERNEL), self.alias)
        self.sparsity_settings = SparsitySettings.from_kwargs(
            sparsity, owner=self.alias, other_arguments=(dense_class.__name__, [n for n in dense_arguments if n != "self"]))
        action_space = kwargs.get("action_space", args[1] if len(args) > 1 else None)
        if self.needs_box_actions and not isinstance(action_space, spaces.Box):
            raise ValueError(
                f"{self.alias} needs a continuous action space (gymnasium.spaces.Box), as {dense_class.__name__} does; "
                f"got action_space={action_space!r}. For discrete actions use an algorithm that supports them"
            )
        # SB3 loads the saved masks right after building the policy: no need to draw any.
        self._masks_pending = loading
        self._seed = mask_seed_for(algorithm.seed) if algorithm is not None else torch.initial_seed() % 2**63
        super().__init__(*args, **kwargs)
        if not self._masks_pending:
            # Hook the optimizer the policy keeps: RecurrentActorCriticPolicy replaces _build's after it.
            self._apply_kernel()
            self.sparse_agent().enforce()
        networks = find_networks(self)
        guarded = [name for network in networks for layer in prunable_layers(network.module)
                   for name in ([network.weight_name(layer.name)]
                                + ([network.target_weight_name(layer.name)] if network.target is not None else []))]
        guard_sub_module_loads(self, guarded, self._check_state_dict, lambda: self.sparse_agent().enforce())

    @classmethod
    def _dense_policy_class(cls) -> type[BasePolicy]:
        return next(base for base in cls.__mro__ if issubclass(base, BasePolicy) and not issubclass(base, TarPolicy))

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)  # type: ignore[misc]
        if self._masks_pending:
            agent = placeholder_agent(self, self.sparsity_settings)
        else:
            agent = draw_masks(self, self.sparsity_settings, self._seed)
        self.masks = agent.masks
        self.masks_before_revival = agent.masks_before_revival
        self.register_buffer("mask_seed", torch.tensor(agent.seed, dtype=torch.int64))  # type: ignore[attr-defined]

    def sparse_agent(self) -> SparseAgent:
        """The policy's sparse networks and their masks.

        :raises ValueError: if the policy was built by SB3's ``load`` and its state dict never loaded.
        """
        if self._masks_pending:
            raise ValueError(
                f"this {type(self).__name__} was built to be loaded (by SB3's load), but no state dict with its "
                "masks has been loaded into it yet"
            )
        return SparseAgent(find_networks(self), self.masks, self.masks_before_revival, self.sparsity_settings,
                           int(self.mask_seed))

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load weights and masks after checking them together; then attach the masks again.

        :raises MaskMismatchError: (a ``ValueError``) before anything is copied, naming the weight
            and what is wrong, if the weights and masks the policy would hold do not belong together
            (see ``sb3_tar.sb3.agent.check_loaded_masks``).
        """
        state_dict = self._dense_layout(state_dict)
        self._check_state_dict(state_dict)
        networks = find_networks(self)
        if is_compressed(networks):
            densify(self, networks, self.masks)  # loads into the canonical dense layout; the kernel is applied again below
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)  # type: ignore[misc]
        self._masks_pending = False
        self._apply_kernel()
        self.sparse_agent().enforce()
        return result

    def _apply_kernel(self) -> None:
        """Compress the layers the ``kernel`` setting picks (their optimizers follow); ``enforce`` then masks the rest.

        A compressed layer keeps only its kept positions, so it needs no zeroing first.
        """
        networks = find_networks(self)
        chosen = layer_kernels(networks, self.masks, self.kernel, self.device)  # type: ignore[attr-defined]
        if "sparse" in chosen.values():
            apply_kernels(self, networks, self.masks, chosen)
        register_layouts(find_networks(self), self.masks)

    def _dense_layout(self, state_dict: Any) -> Any:
        """``state_dict`` with every compressed layer's ``values`` (saved with ``kernel="sparse"``) as its dense weight."""
        if not any(isinstance(key, str) and key.endswith(".values") for key in state_dict):
            return state_dict
        converted = dict(state_dict)
        for network in find_networks(self):
            for layer in prunable_layers(network.module):
                name = network.weight_name(layer.name)
                copies = [name] + ([network.target_weight_name(layer.name)] if network.target is not None else [])
                mask = converted.get(f"masks.{name}", self.masks[name])
                for copy in copies:
                    values_key = copy.removesuffix(".weight") + ".values"
                    if values_key in converted and copy not in converted:
                        values = converted.pop(values_key)
                        kept = int(mask.count_nonzero())
                        if not isinstance(values, torch.Tensor) or values.shape != (kept,):
                            found = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
                            raise MaskMismatchError(f"loading a {type(self).__name__}: {values_key} is {found}, but "
                                                    f"the mask of {name} keeps {kept} values")
                        converted[copy] = dense_of(values, mask)
        return converted

    def _check_state_dict(self, state_dict: Any) -> None:
        """Check the weights and masks the policy would hold after loading ``state_dict`` (what it lacks stays)."""
        source = f"loading a {type(self).__name__}"
        networks = find_networks(self)
        layers = [(network, layer.name) for network in networks for layer in prunable_layers(network.module)]
        mask_keys = [f"{group}.{network.weight_name(layer)}" for group in ("masks", "masks_before_revival")
                     for network, layer in layers]
        missing = [key for key in mask_keys if key not in state_dict]
        if self._masks_pending and missing:
            raise MaskMismatchError(
                f"{source}: the state dict has no {missing[0]} ({len(missing)} mask(s) missing); a {self.alias} loads "
                "only from a state dict that carries its masks, as sb3-tar saves them"
            )

        def incoming(key: str, current: torch.Tensor) -> torch.Tensor | None:
            value = state_dict.get(key, current)
            if not isinstance(value, torch.Tensor) or value.shape != current.shape:
                return None  # torch's own load_state_dict reports it
            return value

        masks, before, weights, targets = {}, {}, {}, {}
        for network, layer in layers:
            name = network.weight_name(layer)
            masks[name] = incoming(f"masks.{name}", self.masks[name])
            before[name] = incoming(f"masks_before_revival.{name}", self.masks_before_revival[name])
            weights[name] = incoming(name, self._current_weight(name))
            if network.target is not None:
                target = network.target_weight_name(layer)
                targets[name] = incoming(target, self._current_weight(target))
        if any(value is None for group in (masks, before, weights, targets) for value in group.values()):
            return
        if "masks.updates" in state_dict:
            moved = int(state_dict["masks.updates"]) > 0
        elif len(missing) < len(mask_keys):
            moved = None  # saved before sb3-tar counted mask updates: whether DST moved them is unknown
        else:
            moved = int(self.masks.updates) > 0
        check_loaded_masks(networks, self.sparsity_settings, masks, before, weights, targets, masks_moved=moved,
                           source=source)

    def _current_weight(self, name: str) -> torch.Tensor:
        """The dense weight ``name`` (``"actor.mu.weight"``) as the policy holds it now, in either kernel."""
        return self.get_submodule(name.removesuffix(".weight")).weight  # type: ignore[attr-defined]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        return {**data, **self.sparsity_settings.as_kwargs(), "kernel": self.kernel}


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
        algorithm, _ = _who_builds()
        algo = type(algorithm).__name__ if algorithm is not None else "this algorithm"
        aliases = _aliases_of(algorithm)
        raise ValueError(
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
