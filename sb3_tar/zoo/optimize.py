"""rl-zoo3's ``-optimize`` for sb3-tar agents: each trial keeps the file's sparse settings.

rl-zoo3 2.9.2 builds a trial's model from the file's hyperparameters updated with the sampled ones
(``ExperimentManager.objective``: ``kwargs.update(sampled)``), and every off-policy sampler returns
a ``policy_kwargs`` of its own (``convert_offpolicy_params``: ``net_arch``, and ``activation_fn`` or
``n_quantiles`` where sampled). That replaces the whole ``policy_kwargs`` of a ``TarMlpPolicy``
file, sb3-tar settings included: unchanged, every trial stops with ``TarMlpPolicy needs a sparsity``.

``install_optimize_support`` (run by ``import sb3_tar.zoo``, so by ``--gym-packages sb3_tar.zoo``)
wraps the zoo's samplers so that a trial of a ``TarMlpPolicy`` file gets the sampled
``policy_kwargs`` *plus* the file's sb3-tar settings, and samples those written as a list:
``recovery_ratio: [0.0, 0.005, 0.01, 0.02]`` makes ``recovery_ratio`` an Optuna parameter
(``suggest_categorical``) of the study. The search space is checked before the first trial. Other
policies are left exactly as the zoo samples them; ``TARCallback``/``DSTCallback`` given with the
zoo's ``callback:`` key need none of this (the zoo builds them anew for every trial).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

from rl_zoo3 import hyperparams_opt
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.utils import ALGOS

from sb3_tar.engine.errors import UserError
from sb3_tar.sb3.policies import TarPolicy

# The sb3-tar settings of the study running in this thread (set per trial, read by the samplers).
_TRIAL_SETTINGS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "sb3_tar_trial_settings", default=None
)
_WRAPPED = "__sb3_tar_keeps_sparse_settings__"
# Optuna's categorical choices must be one of these.
CHOICE_TYPES = (type(None), bool, int, float, str)


def sparse_settings(algo: str, hyperparams: Mapping[str, Any]) -> dict[str, Any]:
    """The sb3-tar settings of a zoo entry: its ``policy_kwargs`` that the dense policy does not take.

    Empty unless the entry's policy is a ``TarMlpPolicy`` of ``algo``. Split exactly as
    ``TarMlpPolicy`` splits its keyword arguments.

    :param algo: the zoo's algorithm name (``"sac"``, ``"td3"``, ...).
    :param hyperparams: the entry, as the zoo has preprocessed it (``policy_kwargs`` a dict).
    """
    policy = hyperparams.get("policy")
    algorithm = ALGOS.get(algo)
    policy_class = algorithm.policy_aliases.get(policy) if isinstance(policy, str) and algorithm else policy
    if not (isinstance(policy_class, type) and issubclass(policy_class, TarPolicy)):
        return {}
    dense_arguments = inspect.signature(policy_class._dense_policy_class().__init__).parameters
    policy_kwargs = hyperparams.get("policy_kwargs") or {}
    return {name: value for name, value in policy_kwargs.items() if name not in dense_arguments}


def search_space(settings: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The settings written as a list (or tuple): setting -> its choices, checked for Optuna.

    :raises ValueError: for an empty list or a choice Optuna cannot store.
    """
    space = {}
    for name, value in settings.items():
        if not isinstance(value, (list, tuple)):
            continue
        choices = list(value)
        if not choices:
            raise UserError(f"-optimize: policy_kwargs {name}=[] has no value to sample; give at least one")
        for choice in choices:
            if not isinstance(choice, CHOICE_TYPES) or (isinstance(choice, float) and not math.isfinite(choice)):
                raise UserError(
                    f"-optimize: policy_kwargs {name}={value!r}: the choice {choice!r} cannot be sampled; "
                    "choices must be finite numbers, strings, booleans or None"
                )
        space[name] = choices
    return space


def _trial_settings(trial: Any, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The file's settings, each list replaced by the trial's choice from it."""
    space = search_space(settings)
    return {name: trial.suggest_categorical(name, space[name]) if name in space else value
            for name, value in settings.items()}


def _keeping_sparse_settings(sampler: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    @functools.wraps(sampler)
    def sample(trial: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        sampled = sampler(trial, *args, **kwargs)
        settings = _TRIAL_SETTINGS.get()
        if settings:
            chosen = _trial_settings(trial, settings)
            trial.set_user_attr("sb3_tar", chosen)
            # The sampled keys (net_arch, activation_fn, ...) are the dense policy's; the two never overlap.
            sampled["policy_kwargs"] = {**chosen, **sampled.get("policy_kwargs", {})}
        return sampled

    setattr(sample, _WRAPPED, True)
    return sample


def _objective_with_settings(objective: Callable[..., float]) -> Callable[..., float]:
    @functools.wraps(objective)
    def run(manager: ExperimentManager, trial: Any) -> float:
        # Set in the trial's own thread (Optuna runs n_jobs > 1 trials in worker threads).
        token = _TRIAL_SETTINGS.set(sparse_settings(manager.algo, manager._hyperparams))
        try:
            return objective(manager, trial)
        finally:
            _TRIAL_SETTINGS.reset(token)

    setattr(run, _WRAPPED, True)
    return run


def _study_checked_first(optimization: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(optimization)
    def run(manager: ExperimentManager) -> None:
        search_space(sparse_settings(manager.algo, manager._hyperparams))  # a bad space stops before any trial
        optimization(manager)

    setattr(run, _WRAPPED, True)
    return run


def install_optimize_support() -> None:
    """Make rl-zoo3's ``-optimize`` keep (and sample) sb3-tar settings; idempotent.

    Wraps ``ExperimentManager.objective`` and ``hyperparameters_optimization`` and every sampler of
    ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` (the zoo looks them up at each trial).
    """
    samplers = hyperparams_opt.HYPERPARAMS_SAMPLER
    for algo, sampler in samplers.items():
        if not getattr(sampler, _WRAPPED, False):
            samplers[algo] = _keeping_sparse_settings(sampler)
    if not getattr(ExperimentManager.objective, _WRAPPED, False):
        ExperimentManager.objective = _objective_with_settings(ExperimentManager.objective)
    if not getattr(ExperimentManager.hyperparameters_optimization, _WRAPPED, False):
        ExperimentManager.hyperparameters_optimization = _study_checked_first(
            ExperimentManager.hyperparameters_optimization)
