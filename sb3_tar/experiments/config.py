"""One run configuration: everything that determines a training run, checked before any work.

Every result of the project travels from a ``RunConfig`` to a result folder through
``sb3_tar.experiments.pipeline.run_training``: ``sb3-tar train``, every sweep run and the variant
files for rl-zoo3 all build their hyperparameters with ``run_hyperparams`` (the tuned entry, the
overrides, then ``zoo_entries.method_entry``). Algorithms and methods: ``algorithms``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sb3_tar.engine.criteria import all_criterion_options
from sb3_tar.engine.errors import UserError
from sb3_tar.engine.settings import DEFAULT_KERNEL, check_kernel
from sb3_tar.engine.validation import check_integer, closest, is_finite_number, is_int, plain_number
from sb3_tar.experiments.algorithms import (
    ALGORITHMS,
    DYNAMIC_METHODS,
    METHODS,
    ON_POLICY_ALGORITHMS,
    STATIC_METHODS,
    VALUE_BASED_ALGORITHMS,
    algorithm_name,
    algorithm_parameters,
    check_env,
    default_net_arch,
    dense_policy,
)
from sb3_tar.experiments.zoo_entries import (
    ZOO_KEYS,
    ZooExpression,
    file_sparsity,
    hidden_widths,
    method_entry,
    tuned_entry,
    zoo_policy_kwargs,
)
from sb3_tar.settings import SETTING_NAMES, SparsitySettings

# Set by the run configuration itself: a hyperparameter override may not set them.
RESERVED = {"policy": "method", "env": "env", "seed": "seed", "device": "device", "n_timesteps": "n_timesteps",
            "tensorboard_log": "--tensorboard", "verbose": "the run's log",
            "callback": "method"}  # set and rigl train with sb3-tar's DST callback, the others with none
DEVICES = ("auto", "cpu", "cuda", "mps")
DST_OPTIONS = ("update_interval", "drop_fraction", "end_fraction", "total_gradient_steps")


# Value checks of the hyperparameters a tuned entry commonly sets (everything else goes to the
# algorithm, which checks it when the model is built, still before any environment step).
def _check_hyperparam(algo: str, key: str, value: Any) -> None:
    setting = f"hyperparam {key}"
    if isinstance(value, float) and not math.isfinite(value):  # nan or inf: no hyperparameter means either
        raise UserError(f"{setting}={value!r} must be a finite number")
    if key in ("batch_size", "buffer_size", "gradient_steps", "n_envs", "policy_delay", "n_steps", "n_epochs",
               "target_update_interval"):
        minimum = {"gradient_steps": -1, "batch_size": 2 if algo in ("ppo", "ppo_lstm") else 1}.get(key, 1)
        check_integer(setting, value, minimum)  # PPO normalizes advantages over a minibatch: one sample is refused
    elif key == "learning_starts":
        check_integer(setting, value, 0)
    elif key in ("gamma", "tau", "target_policy_noise", "target_noise_clip", "noise_std", "gae_lambda",
                 "exploration_fraction", "exploration_initial_eps", "exploration_final_eps", "vf_coef"):
        unit = key not in ("target_policy_noise", "target_noise_clip", "noise_std", "vf_coef")
        if not is_finite_number(value) or value < 0 or (unit and value > 1):
            raise UserError(f"{setting}={value!r} must be a finite number {'in [0, 1]' if unit else '>= 0'}")
    elif key == "max_grad_norm":
        if not is_finite_number(value) or value <= 0:
            raise UserError(f"{setting}={value!r} must be a positive number")
    elif key == "ent_coef" and algo in ON_POLICY_ALGORITHMS:  # SAC's may be 'auto'; SAC checks it itself
        if not is_finite_number(value) or value < 0:
            raise UserError(f"{setting}={value!r} must be a finite number >= 0")
    elif key in ("learning_rate", "clip_range", "clip_range_vf"):
        if key == "clip_range_vf" and value is None:
            return
        if isinstance(value, str):
            schedule, _, initial = value.partition("_")
            ok = schedule == "lin" and is_finite_number(_float_or_none(initial)) and float(initial) > 0
        else:
            ok = is_finite_number(value) and value > 0
        if not ok:
            raise UserError(f"{setting}={value!r} must be a positive number or 'lin_<initial value>'")
    elif key == "train_freq":
        ok = is_int(value) and value >= 1
        ok = ok or (isinstance(value, (list, tuple)) and len(value) == 2 and is_int(value[0]) and value[0] >= 1
                    and value[1] in ("step", "episode"))
        if not ok:
            raise UserError(f"{setting}={value!r} must be an integer >= 1 or [n, 'step' | 'episode']")
    elif key == "noise_type" and value not in ("normal", "ornstein-uhlenbeck"):
        raise UserError(f"{setting}={value!r} is not a noise type; allowed: ['normal', 'ornstein-uhlenbeck']")


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class RunConfig:
    """One training run: everything that determines it.

    :param algo: ``sac``, ``td3``, ``ddpg``, ``tqc``, ``crossq`` (continuous actions), ``ppo``, ``a2c``,
        ``ppo_lstm`` (continuous or discrete) or ``dqn``, ``qrdqn`` (discrete).
    :param env: a registered Gymnasium environment id whose actions the algorithm trains on.
    :param method: ``dense``, ``static``, ``tar``, ``uniform``, ``set`` or ``rigl``.
    :param sparsity: the sparse settings (``None``: the tuned file's, for a sparse method). For
        ``set``/``rigl`` its ``criterion`` is the initial mask's (default ERK) and its
        ``recovery_ratio`` must be 0.
    :param dst: ``DSTCallback`` options (``update_interval``, ``drop_fraction``, ``end_fraction``).
    :param net_arch: hidden widths of every network: the actor and each Q-network; PPO/A2C's actor and
        critic, each its own trunk; DQN's Q-network (``None``: the file's, else ``default_net_arch``).
    :param seed: the run's seed (environment, weights, masks).
    :param n_timesteps: the step budget (``None``: the file's).
    :param eval_freq: environment steps between evaluations (``None``: a tenth of the budget).
    :param eval_episodes: episodes per evaluation.
    :param checkpoint_freq: environment steps between checkpoints (``None``: ``eval_freq``).
    :param hyperparams: overrides of the tuned entry (``batch_size``, ``gamma``, ...).
    :param device: ``auto``, ``cpu``, ``cuda`` (or ``cuda:N``) or ``mps``.
    :param kernel: how the sparse policy's masked layers train (``auto``, ``dense`` or ``sparse``, see
        ``sb3_tar.sb3.kernels``). Like ``device`` it changes the cost, not the function (up to float
        rounding), so it is not part of the run id. Dense and dynamic methods train dense layers.
    """

    algo: str = "sac"
    env: str = "Pendulum-v1"
    method: str = "tar"
    sparsity: SparsitySettings | None = None
    dst: dict[str, Any] = field(default_factory=dict, hash=False)
    net_arch: tuple[int, ...] | None = None
    seed: int = 0
    n_timesteps: int | None = None
    eval_freq: int | None = None
    eval_episodes: int = 5
    checkpoint_freq: int | None = None
    hyperparams: dict[str, Any] = field(default_factory=dict, hash=False)
    device: str = "auto"
    kernel: str = DEFAULT_KERNEL

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise UserError(f"algo={self.algo!r} is not supported; allowed: {list(ALGORITHMS)}")
        if self.method not in METHODS:
            raise UserError(f"method={self.method!r} is not a method; allowed: {list(METHODS)}")
        check_env(self.env, self.algo)
        # NumPy integers are kept as the Python ints they hold, so the config writes as JSON.
        for setting, minimum, optional in (("seed", 0, False), ("n_timesteps", 1, True), ("eval_freq", 1, True),
                                           ("checkpoint_freq", 1, True), ("eval_episodes", 1, False)):
            value = getattr(self, setting)
            if value is not None or not optional:
                object.__setattr__(self, setting, check_integer(setting, value, minimum))
        if self.net_arch is not None:
            if not isinstance(self.net_arch, (list, tuple)) or not self.net_arch or not all(
                    is_int(width) and width >= 1 for width in self.net_arch):
                raise UserError(f"net_arch={self.net_arch!r} must be one or more layer widths >= 1")
            object.__setattr__(self, "net_arch", tuple(int(width) for width in self.net_arch))
        if not isinstance(self.device, str) or self.device.split(":")[0] not in DEVICES:
            raise UserError(f"device={self.device!r} is not a torch device; allowed: {list(DEVICES)} (or 'cuda:N')")
        check_kernel(self.kernel, "run configuration")
        if self.kernel == "sparse" and self.method not in STATIC_METHODS:
            raise UserError(f"kernel='sparse' compresses frozen masks; method={self.method!r} trains "
                            f"{'dense networks' if self.method == 'dense' else 'masks that change (dynamic sparse training)'}"
                            f": use kernel='auto' or 'dense'")
        self._check_sparsity()
        self._check_dst()
        self._check_hyperparams()
        self._check_learning_starts()

    def _check_sparsity(self) -> None:
        settings = self.sparsity
        if self.method == "dense":
            if settings is not None:
                raise UserError("method='dense' trains no sparse network: leave the sparsity settings out")
            return
        if settings is None:
            return
        if not isinstance(settings, SparsitySettings):
            raise UserError(f"sparsity must be a SparsitySettings, got {type(settings).__name__}")
        if self.method in ("static", *DYNAMIC_METHODS) and not settings.recovery_ratio_given:
            # The policy's default (TAR's 0.01) is not what these methods train: they revive nothing.
            settings = dataclasses.replace(settings, recovery_ratio=0.0)
            object.__setattr__(self, "sparsity", settings)
        if self.method in ("static", *DYNAMIC_METHODS) and settings.recovery_ratio != 0:
            raise UserError(f"method={self.method!r} revives nothing, but recovery_ratio={settings.recovery_ratio!r}; "
                            "use method='tar' (or 'uniform') to revive")
        if self.method in ("tar", "uniform") and settings.recovery_ratio == 0:
            raise UserError(f"method={self.method!r} revives weights: recovery_ratio must be > 0 "
                            "(recovery_ratio=0 is method='static')")
        if self.algo in VALUE_BASED_ALGORITHMS and settings.actor_sparsity is not None:
            raise UserError(f"actor_sparsity={settings.actor_sparsity!r} does not apply: algo={self.algo!r} has no "
                            "actor; its Q-network takes sparsity or critic_sparsity")
        if self.algo not in VALUE_BASED_ALGORITHMS and settings.sparsity is None and settings.actor_sparsity is None:
            raise UserError(f"critic_sparsity={settings.critic_sparsity!r} alone leaves the actor of algo={self.algo!r} "
                            "without a sparsity: set sparsity or actor_sparsity too")
        expected = {"tar": "topology", "uniform": "uniform"}.get(self.method)
        if expected is not None and settings.allocation != expected:
            raise UserError(f"method={self.method!r} uses allocation={expected!r}, not {settings.allocation!r}")

    def _check_dst(self) -> None:
        if not isinstance(self.dst, Mapping):
            raise UserError(f"dst={self.dst!r} must be a mapping of DST options; allowed: {list(DST_OPTIONS)}")
        object.__setattr__(self, "dst", {key: plain_number(value) for key, value in self.dst.items()})
        if self.dst and self.method not in DYNAMIC_METHODS:
            raise UserError(f"dst options {sorted(self.dst)} apply only to methods {list(DYNAMIC_METHODS)}, "
                            f"not method={self.method!r}")
        unknown = sorted(set(self.dst) - set(DST_OPTIONS), key=str)
        if unknown:
            raise UserError(f"dst has unknown option(s) {unknown}; allowed: {list(DST_OPTIONS)}")
        if self.dst:  # the callback's own checks, now rather than in every run of a sweep
            from sb3_tar.sb3.dst_callback import DSTCallback

            try:
                DSTCallback(self.method, sparsity=0.5, **self.dst)
            except ValueError as error:
                raise UserError(f"dst option {error}") from None

    def _check_learning_starts(self) -> None:
        """An off-policy run whose budget ends before ``learning_starts`` would report the untrained policy's return."""
        default = algorithm_parameters(self.algo).get("learning_starts")
        if default is None:
            return
        entry = {**self.tuned()[0], **self.hyperparams}
        starts = entry.get("learning_starts", default)
        if int(starts) >= self.budget():
            source = "hyperparams" if "learning_starts" in self.hyperparams else (
                self.tuned()[1] if "learning_starts" in entry else f"{algorithm_name(self.algo)}'s default")
            raise UserError(f"learning_starts={starts} (from {source}) >= n_timesteps={self.budget()}: the run would "
                            f"take no gradient step and report the untrained policy's return; lower it "
                            f"(sb3-tar train --hyperparam learning_starts=N, N < {self.budget()}) or raise the budget "
                            f"(--timesteps)")

    def _check_hyperparams(self) -> None:
        if not isinstance(self.hyperparams, Mapping):
            raise UserError(f"hyperparams={self.hyperparams!r} must be a mapping of hyperparameter overrides "
                            "(e.g. {batch_size: 64})")
        object.__setattr__(self, "hyperparams", {key: plain_number(value) for key, value in self.hyperparams.items()})
        allowed = set(algorithm_parameters(self.algo)) | set(ZOO_KEYS)
        for key, value in self.hyperparams.items():
            if key in RESERVED:
                raise UserError(f"hyperparam {key} is set by the run's own setting {RESERVED[key]!r}; use that")
            if key not in allowed:
                close = closest(key, sorted(allowed))
                hint = f"; did you mean {close!r}?" if close else ""
                raise UserError(f"hyperparam {key!r} is not an argument of {algorithm_name(self.algo)} nor an rl-zoo3 "
                                f"key{hint} (allowed: {sorted(allowed)})")
            _check_hyperparam(self.algo, key, value)
        if "policy_kwargs" in self.hyperparams:
            given = zoo_policy_kwargs({"policy_kwargs": self.hyperparams["policy_kwargs"]})
            owned = sorted(set(given) & {*SETTING_NAMES, *all_criterion_options(), "net_arch"}, key=str)
            if owned:
                raise UserError(f"hyperparam policy_kwargs sets {owned}, which the run sets itself: use the run's own "
                                "settings (sb3-tar train --sparsity, --criterion, --recovery-ratio, ..., --net-arch; "
                                "a sweep's grid); policy_kwargs may set the policy's other options (activation_fn, "
                                "log_std_init, ...)")
            activation = given.get("activation_fn")
            if isinstance(activation, str) and not isinstance(activation, ZooExpression):
                raise UserError(f"hyperparam policy_kwargs activation_fn={activation!r} is a string; give the torch "
                                "class as code, which rl-zoo3 evaluates: policy_kwargs=\"dict(activation_fn=nn.Tanh)\" "
                                "(or nn.ReLU, nn.ELU, ...)")

    # -- resolution against the tuned files -------------------------------------------------------

    def tuned(self) -> tuple[dict[str, Any], str]:
        return tuned_entry(self.algo, self.env)

    def sparsity_settings(self) -> SparsitySettings | None:
        """The sparse settings the run trains with: this config's, else the tuned file's for the method."""
        if self.method == "dense":
            return None
        if self.sparsity is not None:
            return self.sparsity
        from_file = file_sparsity(self.tuned()[0])
        needed = {"critic_sparsity"} if self.algo in VALUE_BASED_ALGORITHMS else {"actor_sparsity", "critic_sparsity"}
        if "sparsity" not in from_file and not needed <= set(from_file):
            raise UserError(f"method={self.method!r} needs a sparsity, and {self.tuned()[1]} sets none: "
                            "give one (e.g. --sparsity 0.9)")
        if self.method == "static" or self.method in DYNAMIC_METHODS:
            from_file["recovery_ratio"] = 0.0
        if self.method in DYNAMIC_METHODS:
            from_file["criterion"] = "erk"
            from_file = {k: v for k, v in from_file.items() if k not in all_criterion_options()}
        if self.method == "uniform":
            from_file["allocation"] = "uniform"
        return SparsitySettings.from_kwargs(from_file, owner=f"{self.tuned()[1]} (method={self.method!r})")

    def budget(self) -> int:
        return int(self.n_timesteps if self.n_timesteps is not None else float(self.tuned()[0]["n_timesteps"]))

    def resolved_eval_freq(self) -> int:
        return self.eval_freq if self.eval_freq is not None else max(1, self.budget() // 10)

    def resolved_checkpoint_freq(self) -> int:
        return self.checkpoint_freq if self.checkpoint_freq is not None else self.resolved_eval_freq()

    def resolved_net_arch(self) -> list[int]:
        """The hidden widths of the networks (of the actor's, if the tuned entry gives PPO's two different ones)."""
        if self.net_arch is not None:
            return list(self.net_arch)
        net_arch = zoo_policy_kwargs(self.tuned()[0]).get("net_arch")
        return default_net_arch(self.algo) if net_arch is None else hidden_widths(net_arch, self.tuned()[1])

    def policy_net_arch(self) -> list[int] | dict[str, list[int]]:
        """The policy's ``net_arch``: this config's widths, else the tuned entry's as written, else the default."""
        if self.net_arch is not None:
            return list(self.net_arch)
        net_arch = zoo_policy_kwargs(self.tuned()[0]).get("net_arch")
        if net_arch is None:
            return default_net_arch(self.algo)
        hidden_widths(net_arch, self.tuned()[1])  # a net_arch the run could not name is refused here
        return copy.deepcopy(net_arch)

    @property
    def run_id(self) -> str:
        """A readable folder name that differs for every distinct run, e.g. ``sac-HalfCheetah-v4-tar-magnitude-s0.9-rr0.02-w256-seed0``."""
        parts = [self.algo, self.env, self.method]
        settings = self.sparsity_settings()
        if settings is not None:
            if self.method in STATIC_METHODS or settings.criterion != "erk":
                parts.append(settings.criterion)
            parts += [f"{letter}{value:g}" for letter, value in (
                ("s", settings.sparsity), ("a", settings.actor_sparsity), ("c", settings.critic_sparsity))
                if value is not None]
            if self.method in ("tar", "uniform"):
                parts.append(f"rr{settings.recovery_ratio:g}")
            if settings.budget != "reserve":
                parts.append(settings.budget)
            parts += [f"{key}{value}" for key, value in sorted(settings.criterion_options.items())]
        widths = self.resolved_net_arch()
        if len(widths) == 1:
            parts.append(f"w{widths[0]}d1")  # one hidden layer: not the [w, w] of a plain "w{w}"
        else:
            parts.append(f"w{widths[0]}" if widths == [widths[0]] * 2 else "w" + "x".join(map(str, widths)))
        parts.append(f"seed{self.seed}")
        return "-".join(parts)

    @property
    def label(self) -> str:
        """The method as figures and tables show it, e.g. ``TAR (magnitude)``."""
        names = {"dense": "Dense", "static": "Original", "tar": "TAR", "uniform": "Uniform revival",
                 "set": "SET", "rigl": "RigL"}
        settings = self.sparsity_settings()
        if self.method in STATIC_METHODS and settings is not None:
            return f"{names[self.method]} ({settings.criterion})"
        return names[self.method]

    def summary(self) -> dict[str, Any]:
        """The flat fields a report groups runs by (algo, env, method, criterion, sparsity, rr, width, seed)."""
        settings = self.sparsity_settings()
        widths = self.resolved_net_arch()
        return {
            "algo": self.algo, "env": self.env, "method": self.method,
            "criterion": settings.criterion if settings is not None and self.method in STATIC_METHODS else None,
            "sparsity": 0.0 if settings is None else (settings.sparsity if settings.sparsity is not None
                                                       else settings.critic_sparsity),
            "recovery_ratio": 0.0 if settings is None else settings.recovery_ratio,
            "width": widths[0], "depth": len(widths), "seed": self.seed, "n_timesteps": self.budget(),
            "eval_freq": self.resolved_eval_freq(), "eval_episodes": self.eval_episodes,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON/YAML-ready); ``RunConfig.from_dict`` reads it back."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["sparsity"] = None if self.sparsity is None else self.sparsity.as_kwargs()
        data["net_arch"] = None if self.net_arch is None else list(self.net_arch)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """A config from ``to_dict``'s data.

        :raises ValueError: for an unknown key or a bad value, naming it.
        """
        if not isinstance(data, Mapping):
            raise UserError(f"a run configuration is a mapping of settings (as result.json's 'config'), not "
                            f"{type(data).__name__} {data!r:.80}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names, key=str)
        if unknown:
            raise UserError(f"run configuration has unknown key(s) {unknown}; allowed: {sorted(names)}")
        data = dict(data)
        if data.get("sparsity") is not None:
            if not isinstance(data["sparsity"], Mapping):
                raise UserError(f"run configuration sparsity={data['sparsity']!r} must be a mapping of sparsity "
                                f"settings (e.g. {{sparsity: 0.9, recovery_ratio: 0.01}}); allowed names: "
                                f"{list(SETTING_NAMES)} and the criterion's options")
            data["sparsity"] = SparsitySettings.from_kwargs(dict(data["sparsity"]), owner="run configuration")
        return cls(**data)


def run_hyperparams(config: RunConfig) -> dict[str, Any]:
    """The zoo entry ``config`` trains with: the tuned entry, the overrides, then the method on top."""
    entry = {**config.tuned()[0], **copy.deepcopy(config.hyperparams), "n_timesteps": config.budget()}
    return method_entry(entry, config.method, config.sparsity_settings(), net_arch=config.policy_net_arch(),
                        dst=config.dst, policy=dense_policy(config.algo), kernel=config.kernel)
