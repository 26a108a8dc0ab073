"""One run configuration, and the one function from a method to the hyperparameters it trains with.

Every result of the project travels from a ``RunConfig`` to a result folder through
``sb3_tar.experiments.pipeline.run_training``: ``sb3-tar train``, every sweep run and the variant
files for rl-zoo3 all build their hyperparameters with ``run_hyperparams``. The defaults for a task
are the project's tuned rl-zoo3 files (``sb3_tar/hyperparams/<algo>.yml``: the task's entry, else
the file's ``default`` entry), and ``BUILT_IN_DEFAULTS`` only for an algorithm without a file.

Methods (one vocabulary for train, sweeps and the variant files):

- ``dense``: SB3's ``MlpPolicy``, no pruning;
- ``static``: ``TarMlpPolicy`` with ``recovery_ratio=0`` (the paper's "Original");
- ``tar``: ``TarMlpPolicy`` with Topology-Aware Revival (``recovery_ratio > 0``, topology allocation);
- ``uniform``: the Uniform Revival ablation (``allocation="uniform"``);
- ``set``, ``rigl``: ``MlpPolicy`` with ``sb3_tar.DSTCallback`` (the criterion is the initial mask's).

Algorithms: the off-policy actor-critics (SAC, TD3, DDPG, TQC, CrossQ: continuous actions), the
on-policy actor-critics (PPO, A2C and RecurrentPPO, ``ppo_lstm``: continuous or discrete actions) and
the value-based ones (DQN, QR-DQN: discrete actions), by rl-zoo3's names. RecurrentPPO trains
``MlpLstmPolicy`` (dense) or ``TarMlpLstmPolicy``: the MLPs after its LSTMs are pruned.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import inspect
import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from sb3_tar.engine.settings import DEFAULT_KERNEL, check_integer, check_kernel, is_finite_number, plain_number
from sb3_tar.experiments.simulators import mujoco_warnings_to
from sb3_tar.settings import SETTING_NAMES, SparsitySettings

METHODS = ("dense", "static", "tar", "uniform", "set", "rigl")
STATIC_METHODS = ("static", "tar", "uniform")
DYNAMIC_METHODS = ("set", "rigl")
OFF_POLICY_ALGORITHMS = ("sac", "td3", "ddpg", "tqc", "crossq")
ON_POLICY_ALGORITHMS = ("ppo", "a2c", "ppo_lstm")
VALUE_BASED_ALGORITHMS = ("dqn", "qrdqn")
ALGORITHMS = (*OFF_POLICY_ALGORITHMS, *ON_POLICY_ALGORITHMS, *VALUE_BASED_ALGORITHMS)
# The action spaces each algorithm trains on (SB3's own requirement, checked when a run is configured).
ACTION_SPACES: dict[str, tuple[str, ...]] = {
    **{algo: ("Box",) for algo in OFF_POLICY_ALGORITHMS},
    **{algo: ("Box", "Discrete", "MultiDiscrete", "MultiBinary") for algo in ON_POLICY_ALGORITHMS},
    **{algo: ("Discrete",) for algo in VALUE_BASED_ALGORITHMS},
}
HYPERPARAMS_DIR = Path(__file__).resolve().parents[1] / "hyperparams"
# The paper's default sparse training, as the tuned files' ``default`` entries set it.
PAPER_SPARSITY = {"sparsity": 0.8, "criterion": "magnitude", "recovery_ratio": 0.01}
# For an algorithm without a tuned file: SB3's (sb3-contrib's) defaults, the paper's sparse training,
# and the exploration noise a deterministic actor needs (SB3's default is none). Without the sparse
# settings, `sb3-tar train --algo tqc` would have no sparsity to start from.
# Every algorithm has a tuned file or an entry here, never both (a test checks).
BUILT_IN_DEFAULTS: dict[str, dict[str, Any]] = {
    "tqc": {"n_timesteps": 1_000_000, "policy_kwargs": PAPER_SPARSITY},
    "crossq": {"n_timesteps": 1_000_000, "policy_kwargs": PAPER_SPARSITY},
    "ddpg": {"n_timesteps": 1_000_000, "noise_type": "normal", "noise_std": 0.1, "policy_kwargs": PAPER_SPARSITY},
    "qrdqn": {"n_timesteps": 1_000_000, "policy_kwargs": PAPER_SPARSITY},
}
# Hidden widths when neither the run nor its tuned entry sets them: the paper's for the off-policy
# actor-critics, SB3's own defaults (two layers of 64) for PPO, A2C, RecurrentPPO, DQN and QR-DQN. A list
# for the on-policy ones builds separate actor and critic trunks of those widths (``MlpExtractor`` shares none).
DEFAULT_NET_ARCH = [256, 256]
SB3_NET_ARCH = [64, 64]
# Keys of a zoo entry that are not arguments of the algorithm's constructor.
ZOO_KEYS = ("n_timesteps", "noise_type", "noise_std", "normalize", "n_envs", "env_wrapper", "vec_env_wrapper",
            "frame_stack", "monitor_kwargs", "env_kwargs", "callback")
# Set by the run configuration itself: a hyperparameter override may not set them.
RESERVED = {"policy": "method", "env": "env", "seed": "seed", "device": "device", "n_timesteps": "n_timesteps",
            "tensorboard_log": "--tensorboard", "verbose": "the run's log",
            "callback": "method"}  # set and rigl train with sb3-tar's DST callback, the others with none
DEVICES = ("auto", "cpu", "cuda", "mps")
DST_OPTIONS = ("update_interval", "drop_fraction", "end_fraction", "total_gradient_steps")
# The dense policy each algorithm trains (``dense``, ``set``, ``rigl``); the sparse one is its ``Tar`` twin.
DENSE_POLICIES = {"ppo_lstm": "MlpLstmPolicy"}
# Each algorithm's class name where it is not its rl-zoo3 name in capitals.
ALGORITHM_NAMES = {"crossq": "CrossQ", "ppo_lstm": "RecurrentPPO"}


def algorithm_name(algo: str) -> str:
    """The algorithm's SB3 class name, for people: ``SAC``, ``CrossQ``, ``RecurrentPPO`` (for ``ppo_lstm``)."""
    return ALGORITHM_NAMES.get(algo, algo.upper())


def dense_policy(algo: str) -> str:
    """The SB3 policy alias a dense run of ``algo`` trains: ``MlpPolicy``, RecurrentPPO's ``MlpLstmPolicy``."""
    return DENSE_POLICIES.get(algo, "MlpPolicy")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# Value checks of the hyperparameters a tuned entry commonly sets (everything else goes to the
# algorithm, which checks it when the model is built, still before any environment step).
def _check_hyperparam(algo: str, key: str, value: Any) -> None:
    setting = f"hyperparam {key}"
    if isinstance(value, float) and not math.isfinite(value):  # nan or inf: no hyperparameter means either
        raise ValueError(f"{setting}={value!r} must be a finite number")
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
            raise ValueError(f"{setting}={value!r} must be a finite number {'in [0, 1]' if unit else '>= 0'}")
    elif key == "max_grad_norm":
        if not is_finite_number(value) or value <= 0:
            raise ValueError(f"{setting}={value!r} must be a positive number")
    elif key == "ent_coef" and algo in ON_POLICY_ALGORITHMS:  # SAC's may be 'auto'; SAC checks it itself
        if not is_finite_number(value) or value < 0:
            raise ValueError(f"{setting}={value!r} must be a finite number >= 0")
    elif key in ("learning_rate", "clip_range", "clip_range_vf"):
        if key == "clip_range_vf" and value is None:
            return
        if isinstance(value, str):
            schedule, _, initial = value.partition("_")
            ok = schedule == "lin" and is_finite_number(_float_or_none(initial)) and float(initial) > 0
        else:
            ok = is_finite_number(value) and value > 0
        if not ok:
            raise ValueError(f"{setting}={value!r} must be a positive number or 'lin_<initial value>'")
    elif key == "train_freq":
        ok = _is_int(value) and value >= 1
        ok = ok or (isinstance(value, (list, tuple)) and len(value) == 2 and _is_int(value[0]) and value[0] >= 1
                    and value[1] in ("step", "episode"))
        if not ok:
            raise ValueError(f"{setting}={value!r} must be an integer >= 1 or [n, 'step' | 'episode']")
    elif key == "noise_type" and value not in ("normal", "ornstein-uhlenbeck"):
        raise ValueError(f"{setting}={value!r} is not a noise type; allowed: ['normal', 'ornstein-uhlenbeck']")


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@cache
def _algorithm_arguments(algo: str) -> frozenset[str]:
    from rl_zoo3.utils import ALGOS

    return frozenset(inspect.signature(ALGOS[algo].__init__).parameters) - {"self", "env", "_init_setup_model"}


@cache
def _algorithm_defaults(algo: str) -> dict[str, Any]:
    """The algorithm's keyword defaults (``learning_starts``, ...)."""
    from rl_zoo3.utils import ALGOS

    return {name: parameter.default for name, parameter in inspect.signature(ALGOS[algo].__init__).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


@cache
def _tuned_file(path: Path) -> dict[str, Any] | None:
    """A tuned file's entries, parsed once per process (a sweep resolves thousands of runs against it)."""
    return yaml.safe_load(path.read_text()) if path.exists() else None


def tuned_entry(algo: str, env: str, hyperparams_dir: Path = HYPERPARAMS_DIR) -> tuple[dict[str, Any], str]:
    """The project's zoo entry for ``(algo, env)`` and where it came from, e.g. ``"sac.yml: HalfCheetah-v4"``."""
    path = hyperparams_dir / f"{algo}.yml"
    entries = _tuned_file(path)
    if entries is None:
        return copy.deepcopy(BUILT_IN_DEFAULTS[algo]), f"built-in defaults for {algo} (no {path.name})"
    name = env if env in entries else "default"
    return copy.deepcopy(entries[name]), f"{path.name}: {name}"


class ZooExpression(str):
    """A ``policy_kwargs`` value that is Python code for rl-zoo3 to evaluate (``nn.ReLU``), kept as its source."""


def zoo_policy_kwargs(entry: dict[str, Any]) -> dict[str, Any]:
    """A zoo entry's ``policy_kwargs`` as a dict, also where the entry writes them as a string.

    rl-zoo3 evaluates a string ``policy_kwargs`` (``"dict(log_std_init=-2, activation_fn=nn.ReLU,
    net_arch=dict(pi=[256, 256], vf=[256, 256]))"``) as Python. Here literal values (and ``dict(...)``
    of literals) become values, so their sparse settings and widths can be read and replaced, and
    the rest (``nn.ReLU``) stays as its source, a ``ZooExpression``; ``zoo_policy_kwargs_value``
    writes the dict back in the form the zoo reads.

    :raises ValueError: if the string is not ``dict(key=value, ...)`` (or a ``{...}`` literal).
    """
    kwargs = entry.get("policy_kwargs") or {}
    if isinstance(kwargs, dict):
        return dict(kwargs)
    source = str(kwargs).strip()
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError:
        tree = None
    if isinstance(tree, ast.Dict) and all(isinstance(key, ast.Constant) for key in tree.keys):
        return {key.value: _zoo_value(value, source) for key, value in zip(tree.keys, tree.values)}
    if not _is_dict_call(tree):
        raise ValueError(f"policy_kwargs={kwargs!r} must be a mapping or a 'dict(key=value, ...)' string")
    return {keyword.arg: _zoo_value(keyword.value, source) for keyword in tree.keywords}


def _is_dict_call(node: ast.AST | None) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict"
            and not node.args and all(keyword.arg for keyword in node.keywords))


def _zoo_value(node: ast.AST, source: str) -> Any:
    if _is_dict_call(node):
        values = {keyword.arg: _zoo_value(keyword.value, source) for keyword in node.keywords}
        if not any(isinstance(value, ZooExpression) for value in values.values()):
            return values
    else:
        try:
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError):
            pass
    return ZooExpression(ast.get_source_segment(source, node))


def zoo_policy_kwargs_value(kwargs: dict[str, Any]) -> dict[str, Any] | str:
    """``kwargs`` as a zoo entry holds them: the dict itself, or a ``dict(...)`` string if a value is code."""
    if not any(isinstance(value, ZooExpression) for value in kwargs.values()):
        return kwargs
    return "dict(" + ", ".join(f"{key}={value if isinstance(value, ZooExpression) else repr(value)}"
                               for key, value in kwargs.items()) + ")"


def file_sparsity(entry: dict[str, Any]) -> dict[str, Any]:
    """The sparse-training keys of a tuned entry's ``policy_kwargs`` (sparsity, criterion, ...)."""
    return {key: value for key, value in zoo_policy_kwargs(entry).items()
            if key in SETTING_NAMES or key in ("scope", "iterations")}


def default_net_arch(algo: str) -> list[int]:
    """The hidden widths a run of ``algo`` gets when neither it nor its tuned entry sets them."""
    return list(DEFAULT_NET_ARCH if algo in OFF_POLICY_ALGORITHMS else SB3_NET_ARCH)


def hidden_widths(net_arch: Any, source: str) -> list[int]:
    """The hidden widths of a ``net_arch``: a list, or of a ``dict(pi=..., vf=...)`` (or ``qf``) the actor's ``pi``."""
    widths = net_arch.get("pi", next(iter(net_arch.values()), None)) if isinstance(net_arch, dict) else net_arch
    if not isinstance(widths, (list, tuple)) or not widths or not all(_is_int(width) for width in widths):
        raise ValueError(f"net_arch={net_arch!r} in {source} is not a list of layer widths nor "
                         "dict(pi=[...], vf=[...]); give the widths (--net-arch)")
    return list(widths)


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
            raise ValueError(f"algo={self.algo!r} is not supported; allowed: {list(ALGORITHMS)}")
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not a method; allowed: {list(METHODS)}")
        _check_env(self.env, self.algo)
        # NumPy integers are kept as the Python ints they hold, so the config writes as JSON.
        for setting, minimum, optional in (("seed", 0, False), ("n_timesteps", 1, True), ("eval_freq", 1, True),
                                           ("checkpoint_freq", 1, True), ("eval_episodes", 1, False)):
            value = getattr(self, setting)
            if value is not None or not optional:
                object.__setattr__(self, setting, check_integer(setting, value, minimum))
        if self.net_arch is not None:
            if not isinstance(self.net_arch, (list, tuple)) or not self.net_arch or not all(
                    _is_int(width) and width >= 1 for width in self.net_arch):
                raise ValueError(f"net_arch={self.net_arch!r} must be one or more layer widths >= 1")
            object.__setattr__(self, "net_arch", tuple(int(width) for width in self.net_arch))
        if not isinstance(self.device, str) or self.device.split(":")[0] not in DEVICES:
            raise ValueError(f"device={self.device!r} is not a torch device; allowed: {list(DEVICES)} (or 'cuda:N')")
        check_kernel(self.kernel, "run configuration")
        if self.kernel == "sparse" and self.method not in STATIC_METHODS:
            raise ValueError(f"kernel='sparse' compresses frozen masks; method={self.method!r} trains "
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
                raise ValueError("method='dense' trains no sparse network: leave the sparsity settings out")
            return
        if settings is None:
            return
        if not isinstance(settings, SparsitySettings):
            raise ValueError(f"sparsity must be a SparsitySettings, got {type(settings).__name__}")
        if self.method in ("static", *DYNAMIC_METHODS) and not settings.recovery_ratio_given:
            # The policy's default (TAR's 0.01) is not what these methods train: they revive nothing.
            settings = dataclasses.replace(settings, recovery_ratio=0.0)
            object.__setattr__(self, "sparsity", settings)
        if self.method in ("static", *DYNAMIC_METHODS) and settings.recovery_ratio != 0:
            raise ValueError(f"method={self.method!r} revives nothing, but recovery_ratio={settings.recovery_ratio!r}; "
                             "use method='tar' (or 'uniform') to revive")
        if self.method in ("tar", "uniform") and settings.recovery_ratio == 0:
            raise ValueError(f"method={self.method!r} revives weights: recovery_ratio must be > 0 "
                             "(recovery_ratio=0 is method='static')")
        if self.algo in VALUE_BASED_ALGORITHMS and settings.actor_sparsity is not None:
            raise ValueError(f"actor_sparsity={settings.actor_sparsity!r} does not apply: algo={self.algo!r} has no "
                             "actor; its Q-network takes sparsity or critic_sparsity")
        if self.algo not in VALUE_BASED_ALGORITHMS and settings.sparsity is None and settings.actor_sparsity is None:
            raise ValueError(f"critic_sparsity={settings.critic_sparsity!r} alone leaves the actor of algo={self.algo!r} "
                             "without a sparsity: set sparsity or actor_sparsity too")
        expected = {"tar": "topology", "uniform": "uniform"}.get(self.method)
        if expected is not None and settings.allocation != expected:
            raise ValueError(f"method={self.method!r} uses allocation={expected!r}, not {settings.allocation!r}")

    def _check_dst(self) -> None:
        if not isinstance(self.dst, Mapping):
            raise ValueError(f"dst={self.dst!r} must be a mapping of DST options; allowed: {list(DST_OPTIONS)}")
        object.__setattr__(self, "dst", {key: plain_number(value) for key, value in self.dst.items()})
        if self.dst and self.method not in DYNAMIC_METHODS:
            raise ValueError(f"dst options {sorted(self.dst)} apply only to methods {list(DYNAMIC_METHODS)}, "
                             f"not method={self.method!r}")
        unknown = sorted(set(self.dst) - set(DST_OPTIONS), key=str)
        if unknown:
            raise ValueError(f"dst has unknown option(s) {unknown}; allowed: {list(DST_OPTIONS)}")
        if self.dst:  # the callback's own checks, now rather than in every run of a sweep
            from sb3_tar.sb3.dst_callback import DSTCallback

            try:
                DSTCallback(self.method, sparsity=0.5, **self.dst)
            except ValueError as error:
                raise ValueError(f"dst option {error}") from None

    def _check_learning_starts(self) -> None:
        """An off-policy run whose budget ends before ``learning_starts`` would report the untrained policy's return."""
        default = _algorithm_defaults(self.algo).get("learning_starts")
        if default is None:
            return
        entry = {**self.tuned()[0], **self.hyperparams}
        starts = entry.get("learning_starts", default)
        if int(starts) >= self.budget():
            source = "hyperparams" if "learning_starts" in self.hyperparams else (
                self.tuned()[1] if "learning_starts" in entry else f"{algorithm_name(self.algo)}'s default")
            raise ValueError(f"learning_starts={starts} (from {source}) >= n_timesteps={self.budget()}: the run would "
                             f"take no gradient step and report the untrained policy's return; lower it "
                             f"(sb3-tar train --hyperparam learning_starts=N, N < {self.budget()}) or raise the budget "
                             f"(--timesteps)")

    def _check_hyperparams(self) -> None:
        if not isinstance(self.hyperparams, Mapping):
            raise ValueError(f"hyperparams={self.hyperparams!r} must be a mapping of hyperparameter overrides "
                             "(e.g. {batch_size: 64})")
        object.__setattr__(self, "hyperparams", {key: plain_number(value) for key, value in self.hyperparams.items()})
        allowed = _algorithm_arguments(self.algo) | set(ZOO_KEYS)
        for key, value in self.hyperparams.items():
            if key in RESERVED:
                raise ValueError(f"hyperparam {key} is set by the run's own setting {RESERVED[key]!r}; use that")
            if key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"hyperparam {key!r} is not an argument of {algorithm_name(self.algo)} nor an rl-zoo3 "
                                 f"key{hint} (allowed: {sorted(allowed)})")
            _check_hyperparam(self.algo, key, value)
        if "policy_kwargs" in self.hyperparams:
            given = zoo_policy_kwargs({"policy_kwargs": self.hyperparams["policy_kwargs"]})
            owned = sorted(set(given) & {*SETTING_NAMES, "scope", "iterations", "net_arch"}, key=str)
            if owned:
                raise ValueError(f"hyperparam policy_kwargs sets {owned}, which the run sets itself: use the run's own "
                                 "settings (sb3-tar train --sparsity, --criterion, --recovery-ratio, ..., --net-arch; "
                                 "a sweep's grid); policy_kwargs may set the policy's other options (activation_fn, "
                                 "log_std_init, ...)")
            activation = given.get("activation_fn")
            if isinstance(activation, str) and not isinstance(activation, ZooExpression):
                raise ValueError(f"hyperparam policy_kwargs activation_fn={activation!r} is a string; give the torch "
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
            raise ValueError(f"method={self.method!r} needs a sparsity, and {self.tuned()[1]} sets none: "
                             "give one (e.g. --sparsity 0.9)")
        if self.method == "static" or self.method in DYNAMIC_METHODS:
            from_file["recovery_ratio"] = 0.0
        if self.method in DYNAMIC_METHODS:
            from_file["criterion"] = "erk"
            from_file = {k: v for k, v in from_file.items() if k not in ("scope", "iterations")}
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
            raise ValueError(f"a run configuration is a mapping of settings (as result.json's 'config'), not "
                             f"{type(data).__name__} {data!r:.80}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names, key=str)
        if unknown:
            raise ValueError(f"run configuration has unknown key(s) {unknown}; allowed: {sorted(names)}")
        data = dict(data)
        if data.get("sparsity") is not None:
            if not isinstance(data["sparsity"], Mapping):
                raise ValueError(f"run configuration sparsity={data['sparsity']!r} must be a mapping of sparsity "
                                 f"settings (e.g. {{sparsity: 0.9, recovery_ratio: 0.01}}); allowed names: "
                                 f"{list(SETTING_NAMES)} and the criterion's options")
            data["sparsity"] = SparsitySettings.from_kwargs(dict(data["sparsity"]), owner="run configuration")
        return cls(**data)


def _check_env(env: object, algo: str) -> None:
    import gymnasium as gym

    if not isinstance(env, str):
        raise ValueError(f"env={env!r} must be a Gymnasium environment id (a string)")
    try:
        _spec(env)
    except gym.error.Error as error:
        raise ValueError(f"env={env!r} is not a registered Gymnasium environment ({error})") from None
    if not trains_on(algo, env):
        raise ValueError(f"algo={algo!r} trains on {' or '.join(ACTION_SPACES[algo])} actions, but env={env!r} has "
                         f"action space {_action_space(env)}; algorithms for it: "
                         f"{[name for name in ALGORITHMS if trains_on(name, env)]}")


def _spec(env: str) -> Any:
    """``env``'s Gymnasium spec, registering rl-zoo3's own tasks (``CartPoleNoVel-v1``, ...) if it is one, as
    the zoo does when it trains.

    :raises gymnasium.error.Error: if ``env`` is registered by neither.
    """
    import gymnasium as gym

    try:
        return gym.spec(env)
    except gym.error.Error:
        import rl_zoo3.import_envs  # noqa: F401

        return gym.spec(env)


def trains_on(algo: str, env: str) -> bool:
    """Whether ``algo`` trains on ``env``'s actions (``True`` where the environment cannot be built here)."""
    import gymnasium as gym

    space = _action_space(env)
    return space is None or isinstance(space, tuple(getattr(gym.spaces, kind) for kind in ACTION_SPACES[algo]))


@cache
def _action_space(env: str) -> Any:
    """``env``'s action space, or ``None`` where it cannot be built here (a simulator not installed: the run
    itself then stops with the simulator's own error, and configs of such runs can still be read)."""
    import gymnasium as gym

    try:
        # The run's log records the model's warnings; this check drops them.
        with mujoco_warnings_to(lambda message: None), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            instance = gym.make(_spec(env), disable_env_checker=True)
    except Exception:  # noqa: BLE001 - any failure to build it leaves the check to the run
        return None
    try:
        return instance.action_space
    finally:
        instance.close()


def sparse_policy_kwargs(settings: SparsitySettings) -> dict[str, Any]:
    """``TarMlpPolicy``'s keyword arguments for ``settings``, leaving out those at their defaults."""
    defaults = SparsitySettings(sparsity=0.5)
    kwargs = {key: getattr(settings, key) for key in ("sparsity", "actor_sparsity", "critic_sparsity")
              if getattr(settings, key) is not None}
    kwargs.update(criterion=settings.criterion, recovery_ratio=settings.recovery_ratio)
    for key in ("allocation", "budget", "allow_empty_layers"):
        if getattr(settings, key) != getattr(defaults, key):
            kwargs[key] = getattr(settings, key)
    return {**kwargs, **settings.criterion_options}


def method_entry(entry: dict[str, Any], method: str, settings: SparsitySettings | None, *,
                 net_arch: list[int] | dict[str, list[int]] | None = None,
                 dst: dict[str, Any] | None = None, policy: str = "MlpPolicy",
                 kernel: str = DEFAULT_KERNEL) -> dict[str, Any]:
    """A zoo entry that trains ``method``: ``entry`` with the method's policy, sparse settings and callback.

    The one translation from a method to hyperparameters: ``run_hyperparams`` (``sb3-tar train``
    and sweeps) and the rl-zoo3 variant files (``hyperparams/generate_variants.py``) both use it.

    :param entry: a tuned zoo entry (its sparse ``policy_kwargs`` keys are replaced).
    :param method: one of ``METHODS``.
    :param settings: the sparse settings (``None`` for ``dense``).
    :param net_arch: hidden widths, or PPO/A2C's ``dict(pi=..., vf=...)`` (default: the entry's, else
        ``DEFAULT_NET_ARCH``).
    :param dst: ``DSTCallback`` options for ``set``/``rigl``.
    :param policy: the dense policy alias (``dense_policy(algo)``); static methods train its ``Tar`` twin.
    :param kernel: the sparse policy's ``kernel`` (written only where it is not the default).
    """
    entry = copy.deepcopy(entry)
    policy_kwargs = {key: value for key, value in zoo_policy_kwargs(entry).items()
                     if key not in SETTING_NAMES and key not in ("scope", "iterations")}
    if net_arch:
        policy_kwargs["net_arch"] = copy.deepcopy(net_arch) if isinstance(net_arch, dict) else list(net_arch)
    else:
        policy_kwargs["net_arch"] = policy_kwargs.get("net_arch", DEFAULT_NET_ARCH)
    entry.pop("callback", None)
    if method in STATIC_METHODS:
        entry["policy"] = f"Tar{policy}"
        policy_kwargs.update(sparse_policy_kwargs(settings))
        if kernel != DEFAULT_KERNEL:
            policy_kwargs["kernel"] = kernel
    else:
        entry["policy"] = policy
    entry["policy_kwargs"] = zoo_policy_kwargs_value(policy_kwargs)
    if method in DYNAMIC_METHODS:
        sparsities = {key: getattr(settings, key) for key in ("sparsity", "actor_sparsity", "critic_sparsity")
                      if getattr(settings, key) is not None}
        entry["callback"] = [{"sb3_tar.DSTCallback": {"method": method, **sparsities, "initial": settings.criterion,
                                                      **(dst or {})}}]
    return entry


def run_hyperparams(config: RunConfig) -> dict[str, Any]:
    """The zoo entry ``config`` trains with: the tuned entry, the overrides, then the method on top."""
    entry = {**config.tuned()[0], **copy.deepcopy(config.hyperparams), "n_timesteps": config.budget()}
    return method_entry(entry, config.method, config.sparsity_settings(), net_arch=config.policy_net_arch(),
                        dst=config.dst, policy=dense_policy(config.algo), kernel=config.kernel)
