"""The project's tuned rl-zoo3 entries, and the one translation from a method to a zoo entry.

The defaults for a task are the project's tuned rl-zoo3 files (``sb3_tar/hyperparams/<algo>.yml``:
the task's entry, else the file's ``default`` entry), and ``BUILT_IN_DEFAULTS`` only for an
algorithm without a file. ``method_entry`` turns a method and its sparse settings into the entry's
policy, ``policy_kwargs`` and callback: ``sb3-tar train``, every sweep run and the variant files
for rl-zoo3 all go through it.
"""

from __future__ import annotations

import ast
import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from sb3_tar.engine.criteria import all_criterion_options
from sb3_tar.engine.errors import UserError
from sb3_tar.engine.settings import DEFAULT_KERNEL
from sb3_tar.engine.validation import is_int
from sb3_tar.experiments.algorithms import DEFAULT_NET_ARCH, DYNAMIC_METHODS, STATIC_METHODS
from sb3_tar.settings import SETTING_NAMES, SparsitySettings

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
# Keys of a zoo entry that are not arguments of the algorithm's constructor.
ZOO_KEYS = ("n_timesteps", "noise_type", "noise_std", "normalize", "n_envs", "env_wrapper", "vec_env_wrapper",
            "frame_stack", "monitor_kwargs", "env_kwargs", "callback")

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
        raise UserError(f"policy_kwargs={kwargs!r} must be a mapping or a 'dict(key=value, ...)' string")
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
            if key in SETTING_NAMES or key in all_criterion_options()}


def hidden_widths(net_arch: Any, source: str) -> list[int]:
    """The hidden widths of a ``net_arch``: a list, or of a ``dict(pi=..., vf=...)`` (or ``qf``) the actor's ``pi``."""
    widths = net_arch.get("pi", next(iter(net_arch.values()), None)) if isinstance(net_arch, dict) else net_arch
    if not isinstance(widths, (list, tuple)) or not widths or not all(is_int(width) for width in widths):
        raise UserError(f"net_arch={net_arch!r} in {source} is not a list of layer widths nor "
                        "dict(pi=[...], vf=[...]); give the widths (--net-arch)")
    return list(widths)


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
                     if key not in SETTING_NAMES and key not in all_criterion_options()}
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
