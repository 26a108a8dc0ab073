"""A sweep is a YAML grid; expanding it gives one ``RunSpec`` per distinct training run.

The grid crosses algo x env x method x criterion x sparsity x recovery ratio x width x seed, then
drops the settings a method ignores (dense has no criterion, SET/RigL start from ERK and revive
nothing, static pruning has ``recovery_ratio=0``), so no run is trained twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

METHODS = ("dense", "static", "tar", "uniform", "set", "rigl")
SPARSE_STATIC = ("static", "tar", "uniform")
DYNAMIC = ("set", "rigl")
GRID_KEYS = ("algo", "env", "method", "criterion", "sparsity", "recovery_ratio", "width", "seed")
TOP_LEVEL_KEYS = ("description", "grid", "settings", "overrides", "extra", "order")
SETTING_KEYS = ("n_timesteps", "eval_freq", "eval_episodes", "depth", "hyperparams", "dst")


@dataclass(frozen=True)
class RunSpec:
    """One training run of a sweep, fully determined by its fields."""

    algo: str
    env: str
    method: str
    criterion: str | None
    sparsity: float
    recovery_ratio: float
    width: int
    seed: int
    eval_freq: int
    n_timesteps: int | None = None  # None: the hyperparameter file's budget
    eval_episodes: int = 5
    depth: int = 2
    hyperparams: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    dst: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def run_id(self) -> str:
        """A readable folder name that differs for every distinct run."""
        parts = [self.algo, self.env, self.method]
        if self.method in SPARSE_STATIC:
            parts.append(str(self.criterion))
        if self.method != "dense":
            parts.append(f"s{self.sparsity:g}")
        if self.method in ("tar", "uniform"):
            parts.append(f"rr{self.recovery_ratio:g}")
        parts += [f"w{self.width}", f"seed{self.seed}"]
        return "-".join(parts)

    @property
    def label(self) -> str:
        """Method name as figures and tables show it, e.g. ``TAR (magnitude)``."""
        names = {"dense": "Dense", "static": "Original", "tar": "TAR", "uniform": "Uniform revival",
                 "set": "SET", "rigl": "RigL"}
        name = names[self.method]
        return f"{name} ({self.criterion})" if self.method in SPARSE_STATIC else name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _canonical(combo: dict[str, Any]) -> dict[str, Any] | None:
    """The run a grid point stands for, or ``None`` if the point is meaningless (static with rr > 0)."""
    method = combo["method"]
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not a sweep method; allowed: {list(METHODS)}")
    if method == "dense":
        return {**combo, "criterion": None, "sparsity": 0.0, "recovery_ratio": 0.0}
    if method in DYNAMIC:
        return {**combo, "criterion": None, "recovery_ratio": 0.0}
    if method == "static":
        return {**combo, "recovery_ratio": 0.0}
    return combo if combo["recovery_ratio"] > 0 else None


def expand_grid(sweep: Mapping[str, Any]) -> list[RunSpec]:
    """All distinct runs of a sweep, in a stable order.

    :param sweep: a mapping with ``grid`` (lists for any of ``GRID_KEYS``), ``settings`` (shared run
        settings such as ``n_timesteps``), optional ``overrides``: a list of
        ``{match: {...}, settings: {...}}`` that change settings (e.g. per-env step budgets), and
        optional ``order``: the grid keys the runs are trained by (default ``[seed]``).
    """
    unknown = set(sweep) - set(TOP_LEVEL_KEYS)
    if unknown:
        raise ValueError(f"sweep has unknown top-level keys {sorted(unknown)}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    grid = dict(sweep.get("grid", {}))
    missing = [key for key in GRID_KEYS if key not in grid]
    if missing:
        raise ValueError(f"sweep grid is missing {missing}; a grid names every one of {list(GRID_KEYS)}")
    unknown_grid = set(grid) - set(GRID_KEYS)
    if unknown_grid:
        raise ValueError(f"sweep grid has unknown keys {sorted(unknown_grid)}; allowed: {list(GRID_KEYS)}")
    settings = dict(sweep.get("settings", {}))
    unknown_settings = set(settings) - set(SETTING_KEYS)
    if unknown_settings:
        raise ValueError(f"sweep settings has unknown keys {sorted(unknown_settings)}; allowed: {list(SETTING_KEYS)}")

    specs: dict[str, RunSpec] = {}
    points = [dict(zip(GRID_KEYS, values)) for values in itertools.product(*(_as_list(grid[k]) for k in GRID_KEYS))]
    points += [dict(point) for point in sweep.get("extra", [])]
    for point in points:
        combo = _canonical(point)
        if combo is None:
            continue
        run_settings = dict(settings)
        for override in sweep.get("overrides", []):
            if all(combo.get(key) in _as_list(value) for key, value in override["match"].items()):
                run_settings.update(override["settings"])
        spec = RunSpec(**combo, **run_settings)
        specs.setdefault(spec.run_id, spec)
    return sorted(specs.values(), key=_order_key(grid, list(sweep.get("order", ["seed"]))))


def _order_key(grid: Mapping[str, Any], order: list[str]) -> Any:
    """Sort runs by the ``order`` keys, each value ranked by its place in the grid's list.

    A value a method sets itself (dense's sparsity 0) ranks before the listed ones. The default,
    ``[seed]``, trains seed by seed, so a sweep stopped early still compares every method on the
    seeds it finished.
    """
    unknown = [key for key in order if key not in GRID_KEYS]
    if unknown:
        raise ValueError(f"sweep order has unknown keys {unknown}; allowed: {list(GRID_KEYS)}")

    def rank(spec: RunSpec) -> tuple[int, ...]:
        ranks = []
        for key in order:
            values = _as_list(grid[key])
            value = getattr(spec, key)
            ranks.append(values.index(value) if value in values else -1)
        return tuple(ranks)

    return rank


def load_sweep(path: str | Path) -> list[RunSpec]:
    with open(path) as file:
        return expand_grid(yaml.safe_load(file))
