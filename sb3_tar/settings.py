"""The sparsity settings of a whole agent, as ``TarMlpPolicy`` and ``TARCallback`` take them.

One flat set of names (``sparsity``, ``actor_sparsity``, ``critic_sparsity``, ``criterion``,
``recovery_ratio``, ``allocation``, ``budget``, ``allow_empty_layers`` and the criterion's
options) becomes one engine ``PruningSettings`` per role, validated up front with the engine's
errors. Unknown names are refused first, so a misspelt ``sparsty`` is named as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sb3_tar.engine import PruningSettings, available_criteria, criterion_options, get_criterion
from sb3_tar.engine.criteria import all_criterion_options
from sb3_tar.engine.errors import UserError
from sb3_tar.engine.validation import did_you_mean, plain_number

# The two roles a network plays, each with its own sparsity (SB3's actor; every critic or Q-network).
ACTOR = "actor"
CRITIC = "critic"

SETTING_NAMES = ("sparsity", "actor_sparsity", "critic_sparsity", "criterion", "recovery_ratio", "allocation", "budget",
                 "allow_empty_layers")
# What "Tar" means when only a sparsity is given: TAR at the tuned files' ratio (0 is static pruning, said explicitly).
DEFAULT_RECOVERY_RATIO = 0.01
# Criterion options that differ per network; sb3-tar sets them itself for each network it prunes.
PER_NETWORK_OPTIONS = ("forward", "input_width")


@dataclass(frozen=True)
class SparsitySettings:
    """How every network of an agent is pruned and revived.

    :param sparsity: final fraction of zero weights in each network, in [0, 1).
    :param actor_sparsity: the actor's sparsity, overriding ``sparsity``.
    :param critic_sparsity: each Q-network's sparsity, overriding ``sparsity``.
    :param criterion: static pruning criterion (``magnitude``, ``random``, ``erk``, ``synflow``, ...).
    :param recovery_ratio: revival budget as a fraction of each network's prunable weights (default
        0.01, the tuned files' value: TAR; 0 is static pruning).
    :param allocation: ``topology`` (TAR) or ``uniform`` (Uniform Revival).
    :param budget: ``reserve`` (end exactly at the sparsity) or ``extra`` (revive on top).
    :param criterion_options: the criterion's options, e.g. ``scope`` or ``iterations``.
    :param allow_empty_layers: train a network even if a layer keeps no weight after revival
        (a disconnected network, e.g. a static baseline at very high sparsity); by default such
        settings are refused when the masks are drawn.
    :param owner: who takes the settings, for error messages (``"TarMlpPolicy"``, ``"TARCallback"``).
    :param other_arguments: ``(class name, argument names)`` the owner also takes (the dense
        policy's), named in the error for an unknown setting.
    :raises ValueError: naming the setting, the value and what is allowed.

    NumPy scalars (``np.float32(0.8)``, ``np.int64(3)``) are taken as the Python numbers they hold.
    """

    sparsity: float | None = None
    actor_sparsity: float | None = None
    critic_sparsity: float | None = None
    criterion: str = "magnitude"
    recovery_ratio: float | None = None
    allocation: str = "topology"
    budget: str = "reserve"
    criterion_options: dict[str, Any] = field(default_factory=dict)
    allow_empty_layers: bool = False
    owner: str = field(default="sb3-tar", compare=False)
    other_arguments: tuple[str, Sequence[str]] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_recovery_ratio_given", self.recovery_ratio is not None)
        if self.recovery_ratio is None:
            object.__setattr__(self, "recovery_ratio", DEFAULT_RECOVERY_RATIO)
        for name in ("sparsity", "actor_sparsity", "critic_sparsity", "recovery_ratio"):
            value = plain_number(getattr(self, name))
            # -0.0 is 0.0 (one run, one id: "s0", never "s-0")
            object.__setattr__(self, name, 0.0 if isinstance(value, float) and value == 0 else value)
        object.__setattr__(self, "criterion_options",
                           {name: plain_number(value) for name, value in self.criterion_options.items()})
        known_criterion = isinstance(self.criterion, str) and self.criterion in available_criteria()
        # A misspelt criterion has no options to check against: names no criterion takes are still unknown.
        allowed = (criterion_options(self.criterion) if known_criterion
                   else all_criterion_options())
        options = sorted(set(allowed) - set(PER_NETWORK_OPTIONS))
        unknown = sorted(set(self.criterion_options) - set(allowed), key=str)
        if unknown:
            owner_class, owner_arguments = self.other_arguments or ("", ())
            whose = f"criterion={self.criterion!r}" if known_criterion else "any criterion"
            raise UserError(
                f"{self.owner} got unknown setting(s) {unknown}"
                f"{did_you_mean(unknown, [*SETTING_NAMES, *options, *owner_arguments])}: not one of "
                f"{list(SETTING_NAMES)}, nor an option of {whose} ({options or 'none'})"
                + (f", nor an argument of {owner_class}" if owner_class else "")
            )
        get_criterion(self.criterion)
        derived = sorted(set(self.criterion_options) & set(PER_NETWORK_OPTIONS))
        if derived:
            raise UserError(
                f"{self.owner} sets criterion option(s) {derived} itself, for each network it prunes; remove them"
            )
        if self.sparsity is None and self.actor_sparsity is None and self.critic_sparsity is None:
            raise UserError(
                f"{self.owner} needs a sparsity: set sparsity=<fraction of zero weights in [0, 1)>, "
                "or both actor_sparsity and critic_sparsity (DQN, QR-DQN: critic_sparsity alone)"
            )
        if self.sparsity is None and self.critic_sparsity is None:
            raise UserError(f"{self.owner}: actor_sparsity={self.actor_sparsity!r} alone leaves the critic without a "
                            "sparsity: set sparsity or critic_sparsity too")
        if not isinstance(self.allow_empty_layers, bool):
            raise UserError(f"allow_empty_layers={self.allow_empty_layers!r} must be True or False")
        # Built once, here: every network of every build then takes its role's settings as they are. A role
        # without a sparsity (the actor, given critic_sparsity alone) is refused when a network asks for it.
        object.__setattr__(self, "_by_role", {role: self._pruning_settings(role) for role in (ACTOR, CRITIC)
                                              if self.sparsity_setting(role)[1] is not None})

    @property
    def recovery_ratio_given(self) -> bool:
        """Whether ``recovery_ratio`` was set, rather than left at the default (TAR's 0.01)."""
        return self._recovery_ratio_given

    def sparsity_setting(self, role: str) -> tuple[str, float]:
        """The setting that gives a role its sparsity and its value: ``("critic_sparsity", 0.9)``."""
        specific = self.actor_sparsity if role == ACTOR else self.critic_sparsity
        if specific is None:
            return "sparsity", self.sparsity
        return f"{role}_sparsity", specific

    def for_role(self, role: str) -> PruningSettings:
        """The engine's settings for the actor (``role="actor"``) or for each Q-network (``"critic"``).

        :raises ValueError: if no setting gives the role a sparsity (an actor, with critic_sparsity alone).
        """
        if role not in self._by_role:
            raise UserError(f"{self.owner} gives the {role} no sparsity (critic_sparsity alone is for models "
                            "without an actor, DQN and QR-DQN): set sparsity or actor_sparsity too")
        return self._by_role[role]

    def _pruning_settings(self, role: str) -> PruningSettings:
        setting, value = self.sparsity_setting(role)
        try:
            return PruningSettings(value, self.criterion, self.recovery_ratio, self.allocation, self.budget,
                                   dict(self.criterion_options))
        except ValueError as error:
            # The engine names its argument "sparsity"; name the setting the user wrote instead.
            message = str(error).replace(f"sparsity={value!r}", f"{setting}={value!r}", 1)
            if not self._recovery_ratio_given and "recovery_ratio=" in message:
                message += (f" (recovery_ratio={DEFAULT_RECOVERY_RATIO} is the default, TAR: set recovery_ratio=0 for "
                            "static pruning, a smaller ratio, or budget='extra')")
            raise UserError(message) from None

    def as_kwargs(self) -> dict[str, Any]:
        """The settings as keyword arguments (what a user writes in ``policy_kwargs``)."""
        kwargs = {name: getattr(self, name) for name in SETTING_NAMES}
        return {**kwargs, **self.criterion_options}

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any], owner: str = "sb3-tar",
                    other_arguments: tuple[str, Sequence[str]] | None = None) -> SparsitySettings:
        """Settings from flat keyword arguments: every name not in ``SETTING_NAMES`` is a criterion option."""
        settings = {name: kwargs[name] for name in SETTING_NAMES if name in kwargs}
        options = {name: value for name, value in kwargs.items() if name not in SETTING_NAMES}
        return cls(**settings, criterion_options=options, owner=owner, other_arguments=other_arguments)
