"""``TarPolicy``: the mixin that makes an algorithm's own policy sparse (the classes are in ``policies``).

Each sparse policy subclasses its algorithm's own policy with this mixin first, so every policy
option keeps working; the sparsity settings are extra keyword arguments (``policy_kwargs``), and
every other unknown keyword is an option of the criterion.

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
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import Schedule

from sb3_tar.engine import prunable_layers
from sb3_tar.engine.compressed import dense_of
from sb3_tar.engine.errors import UserError
from sb3_tar.engine.settings import DEFAULT_KERNEL, check_kernel
from sb3_tar.sb3.agent import (
    MaskMismatchError,
    SparseAgent,
    check_loaded_masks,
    draw_masks,
    find_networks,
    mask_seed_for,
    placeholder_agent,
)
from sb3_tar.sb3.call_stack import who_builds
from sb3_tar.sb3.kernels import apply_kernels, densify, is_compressed, layer_kernels, register_layouts
from sb3_tar.sb3.load_guard import guard_sub_module_loads
from sb3_tar.sb3.masking import WeightMasks
from sb3_tar.settings import SparsitySettings

ALIAS = "TarMlpPolicy"
MULTI_INPUT_ALIAS = "TarMultiInputPolicy"
CNN_ALIAS = "TarCnnPolicy"
LSTM_ALIAS = "TarMlpLstmPolicy"
MULTI_INPUT_LSTM_ALIAS = "TarMultiInputLstmPolicy"
CNN_LSTM_ALIAS = "TarCnnLstmPolicy"


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
        from sb3_tar.sb3.policies import check_algorithm  # the alias tables list the classes built on this one

        algorithm, loading = who_builds()
        check_algorithm(type(self), algorithm, loading)
        dense_class = self._dense_policy_class()
        observation_space = kwargs.get("observation_space", args[0] if args else None)
        if (isinstance(observation_space, spaces.Dict) and "MultiInput" not in dense_class.__name__
                and "features_extractor_class" not in kwargs):
            # SB3 catches this mistake by the string "MlpPolicy"; the sparse alias must catch it too.
            raise UserError(f"You must use `{self.alias.replace('Mlp', 'MultiInput')}` when working with dict "
                            f"observation space, not {self.alias}")
        dense_arguments = inspect.signature(dense_class.__init__).parameters
        sparsity = {name: kwargs.pop(name) for name in list(kwargs) if name not in dense_arguments}
        self.kernel = check_kernel(sparsity.pop("kernel", DEFAULT_KERNEL), self.alias)
        self.sparsity_settings = SparsitySettings.from_kwargs(
            sparsity, owner=self.alias, other_arguments=(dense_class.__name__, [n for n in dense_arguments if n != "self"]))
        action_space = kwargs.get("action_space", args[1] if len(args) > 1 else None)
        if self.needs_box_actions and not isinstance(action_space, spaces.Box):
            raise UserError(
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
            raise UserError(
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
