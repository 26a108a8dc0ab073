"""A sweep is a YAML grid; expanding it gives one ``RunConfig`` per distinct training run.

The grid crosses algo x env x method x criterion x sparsity x recovery ratio x width x seed, then
drops the settings a method ignores (dense has no criterion, SET/RigL start from ERK and revive
nothing, static pruning has ``recovery_ratio=0``), so no run is trained twice, and the pairs of an
algorithm and an environment whose actions it does not train on (DQN with a continuous task, SAC
with a discrete one), so one grid can hold both kinds; an algorithm or environment left with no run
at all is an error. Every run is validated when the grid is read, so a bad value stops the sweep
before any run starts.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sb3_tar.engine.errors import UserError
from sb3_tar.engine.validation import check_integer
from sb3_tar.experiments.algorithms import ALGORITHMS, DYNAMIC_METHODS, METHODS, STATIC_METHODS, trains_on
from sb3_tar.experiments.config import RunConfig
from sb3_tar.experiments.files import read_mapping
from sb3_tar.settings import SparsitySettings

GRID_KEYS = ("algo", "env", "method", "criterion", "sparsity", "recovery_ratio", "width", "seed")
TOP_LEVEL_KEYS = ("description", "grid", "settings", "overrides", "extra", "order")
SETTING_KEYS = ("n_timesteps", "eval_freq", "eval_episodes", "checkpoint_freq", "depth", "hyperparams", "dst", "kernel")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _run_config(point: dict[str, Any], settings: dict[str, Any]) -> RunConfig | None:
    """The run a grid point stands for, or ``None`` if the point is meaningless (tar with rr 0).

    Settings a method ignores are dropped, so equal runs get equal configs: dense has no sparse
    settings, static and SET/RigL revive nothing, SET/RigL start from the point's criterion only
    if it is ``erk`` (their initial masks are always ERK).
    """
    method = point["method"]
    if method not in METHODS:
        raise UserError(f"method={method!r} is not a method; allowed: {list(METHODS)}")
    width, depth = point["width"], settings.pop("depth", 2)
    if method not in DYNAMIC_METHODS:
        settings.pop("dst", None)  # the sweep's SET/RigL options
    if method not in STATIC_METHODS:
        settings.pop("kernel", None)  # dense and SET/RigL networks train dense layers
    check_integer("width", width)
    check_integer("depth", depth)
    # A sweep measures every method as it is: a static mask whose pruning empties a layer is the
    # baseline TAR's connectivity floor repairs, so it trains instead of being refused.
    sparsity = None
    if method in DYNAMIC_METHODS:
        sparsity = SparsitySettings(point["sparsity"], criterion="erk", recovery_ratio=0.0, allow_empty_layers=True,
                                    owner="sweep")
    elif method in STATIC_METHODS:
        recovery_ratio = 0.0 if method == "static" else point["recovery_ratio"]
        if method != "static" and recovery_ratio == 0:
            return None
        sparsity = SparsitySettings(point["sparsity"], criterion=point["criterion"], recovery_ratio=recovery_ratio,
                                    allocation="uniform" if method == "uniform" else "topology",
                                    allow_empty_layers=True, owner="sweep")
    return RunConfig(algo=point["algo"], env=point["env"], method=method, sparsity=sparsity,
                     net_arch=(width,) * depth, seed=point["seed"], **settings)


def expand_grid(sweep: Mapping[str, Any]) -> list[RunConfig]:
    """All distinct runs of a sweep, in a stable order.

    :param sweep: a mapping with ``grid`` (lists for any of ``GRID_KEYS``; or a list of such grids,
        whose runs are united), ``settings`` (shared run
        settings such as ``n_timesteps``), optional ``overrides``: a list of
        ``{match: {...}, settings: {...}}`` that change settings (e.g. per-env step budgets), and
        optional ``order``: the grid keys the runs are trained by (default ``[seed]``).
    """
    unknown = set(sweep) - set(TOP_LEVEL_KEYS)
    if unknown:
        raise UserError(f"sweep has unknown top-level keys {sorted(unknown, key=str)}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    _check_shapes(sweep)
    grids = _grids(sweep.get("grid", {}))
    settings = dict(sweep.get("settings", {}))
    unknown_settings = set(settings) - set(SETTING_KEYS)
    if unknown_settings:
        raise UserError(f"sweep settings has unknown keys {sorted(unknown_settings, key=str)}; allowed: {list(SETTING_KEYS)}")

    configs: dict[str, RunConfig] = {}
    crossed = [dict(zip(GRID_KEYS, values)) for grid in grids
               for values in itertools.product(*(_as_list(grid[k]) for k in GRID_KEYS))]
    listed = [dict(point) for point in sweep.get("extra", [])]  # named one by one: a mismatch is refused below
    mismatched = []
    for index, point in enumerate(crossed + listed):
        algo, env = point.get("algo"), point.get("env")
        if index < len(crossed) and algo in ALGORITHMS and isinstance(env, str) and not trains_on(algo, env):
            mismatched.append(point)  # an unknown algo or env is left to RunConfig, which names it
            continue
        run_settings = dict(settings)
        for override in sweep.get("overrides", []):
            if all(point.get(key) in _as_list(value) for key, value in override["match"].items()):
                run_settings.update(override["settings"])
        try:
            config = _run_config(point, run_settings)
        except (TypeError, ValueError, KeyError) as error:
            shown = ", ".join(f"{key}={point.get(key)!r}" for key in GRID_KEYS)
            reason = f"it names no {error.args[0]}, which this run needs" if isinstance(error, KeyError) else error
            raise UserError(f"sweep grid point ({shown}): {reason}") from None
        if config is not None:
            configs.setdefault(config.run_id, config)
    for key in ("algo", "env"):
        for value in dict.fromkeys(point[key] for point in mismatched):
            if not any(getattr(config, key) == value for config in configs.values()):
                pairs = sorted({(point["algo"], point["env"]) for point in mismatched if point[key] == value})
                raise UserError(f"sweep grid: {key}={value!r} has no run: each of its points pairs an algorithm "
                                f"with an environment whose actions it does not train on ({pairs})")
    if not configs:
        raise UserError("sweep has no run to train: a grid list is empty, or every point is meaningless (tar or "
                        "uniform with recovery_ratio 0 only)")
    listed_values = {key: list(dict.fromkeys(v for grid in grids for v in _as_list(grid[key]))) for key in GRID_KEYS}
    return sorted(configs.values(), key=_order_key(listed_values, list(sweep.get("order", ["seed"]))))


def _grids(grid: Any) -> list[dict[str, Any]]:
    """The sweep's grids: one mapping, or a list of them whose runs are united (each crossed on its own)."""
    grids = [dict(one) for one in grid] if isinstance(grid, list) else [dict(grid)]
    for index, one in enumerate(grids):
        where = f"sweep grid[{index}]" if isinstance(grid, list) else "sweep grid"
        missing = [key for key in GRID_KEYS if key not in one]
        if missing:
            raise UserError(f"{where} is missing {missing}; a grid names every one of {list(GRID_KEYS)}")
        unknown_grid = set(one) - set(GRID_KEYS)
        if unknown_grid:
            raise UserError(f"{where} has unknown keys {sorted(unknown_grid, key=str)}; allowed: {list(GRID_KEYS)}")
    return grids


def _check_shapes(sweep: Mapping[str, Any]) -> None:
    """Each top-level entry has the shape ``expand_grid`` reads, so a wrong one is named, not a traceback."""
    grid = sweep.get("grid", {})
    if not (isinstance(grid, Mapping) or (isinstance(grid, list) and grid and all(isinstance(g, Mapping) for g in grid))):
        raise UserError(f"sweep grid must be a mapping of names to values, or a non-empty list of such mappings, "
                        f"not {grid!r}")
    if not isinstance(sweep.get("settings", {}), Mapping):
        raise UserError(f"sweep settings must be a mapping of names to values, not {sweep['settings']!r}")
    for key in ("overrides", "extra", "order"):
        if not isinstance(sweep.get(key, []), list):
            raise UserError(f"sweep {key} must be a list, not {sweep[key]!r}")
    for index, override in enumerate(sweep.get("overrides", [])):
        if (not isinstance(override, Mapping) or set(override) != {"match", "settings"}
                or not all(isinstance(override[key], Mapping) for key in ("match", "settings"))):
            raise UserError(f"sweep overrides[{index}]={override!r} must be {{match: {{grid key: values}}, "
                            "settings: {setting: value}}")
        for part, allowed in (("match", GRID_KEYS), ("settings", SETTING_KEYS)):
            unknown = sorted(set(override[part]) - set(allowed), key=str)
            if unknown:
                raise UserError(f"sweep overrides[{index}] {part} has unknown keys {unknown}; allowed: {list(allowed)}")
    for index, point in enumerate(sweep.get("extra", [])):
        if not isinstance(point, Mapping) or not set(point) <= set(GRID_KEYS):
            raise UserError(f"sweep extra[{index}]={point!r} must be one run: {{grid key: value}} with keys from "
                            f"{list(GRID_KEYS)}")


def _order_key(grid: Mapping[str, Any], order: list[str]) -> Any:
    """Sort runs by the ``order`` keys, each value ranked by its place in the grid's list.

    A value a method sets itself (dense's sparsity 0) ranks before the listed ones. The default,
    ``[seed]``, trains seed by seed, so a sweep stopped early still compares every method on the
    seeds it finished.
    """
    unknown = [key for key in order if key not in GRID_KEYS]
    if unknown:
        raise UserError(f"sweep order has unknown keys {unknown}; allowed: {list(GRID_KEYS)}")

    def rank(config: RunConfig) -> tuple[int, ...]:
        ranks = []
        summary = config.summary()
        for key in order:
            values = _as_list(grid[key])
            value = summary[key]
            ranks.append(values.index(value) if value in values else -1)
        return tuple(ranks)

    return rank


def load_sweep(path: str | Path) -> list[RunConfig]:
    return expand_grid(read_mapping(path, "sweep file"))
