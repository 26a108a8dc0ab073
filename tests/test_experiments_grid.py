"""Sweep grids expand to distinct ``RunConfig``s, and every value is validated when the grid is read."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from sb3_tar.experiments.config import RunConfig, run_hyperparams
from sb3_tar.experiments.files import read_mapping
from sb3_tar.experiments.grid import expand_grid, load_sweep
from sb3_tar.settings import SparsitySettings

GRID = {
    "grid": {
        "algo": ["sac"], "env": ["Pendulum-v1", "MountainCarContinuous-v0"],
        "method": ["dense", "static", "tar", "set"], "criterion": ["magnitude", "erk"],
        "sparsity": [0.9, 0.95], "recovery_ratio": [0.0, 0.01], "width": [64], "seed": [0, 1],
    },
    "settings": {"n_timesteps": 1000, "eval_freq": 500, "dst": {"update_interval": 50}},
    "overrides": [{"match": {"env": "MountainCarContinuous-v0"}, "settings": {"n_timesteps": 2000}}],
}


def changed(section: str, key: str, value) -> dict:
    sweep = copy.deepcopy(GRID)
    sweep[section][key] = value
    return sweep


def test_grid_drops_what_a_method_ignores_and_trains_nothing_twice():
    configs = expand_grid(GRID)
    per_env_seed = {"dense": 1, "static": 2 * 2, "tar": 2 * 2 * 1, "set": 2}
    assert len(configs) == 2 * 2 * sum(per_env_seed.values())
    assert len({config.run_id for config in configs}) == len(configs)
    assert all(isinstance(config, RunConfig) for config in configs)
    for config in configs:
        settings = config.sparsity_settings()
        summary = config.summary()
        if config.method == "dense":
            assert settings is None and config.sparsity is None
        elif config.method == "tar":
            assert settings.recovery_ratio == 0.01
        else:
            assert settings.recovery_ratio == 0.0
        assert (summary["criterion"] is None) == (config.method in ("dense", "set"))
        assert config.dst == ({"update_interval": 50} if config.method == "set" else {})
        assert config.resolved_net_arch() == [64, 64]


def test_a_sweep_kernel_applies_to_the_frozen_masks_only():
    configs = expand_grid(changed("settings", "kernel", "sparse"))
    assert {config.kernel for config in configs if config.method in ("static", "tar")} == {"sparse"}
    assert {config.kernel for config in configs if config.method in ("dense", "set")} == {"auto"}
    assert {config.run_id for config in configs} == {config.run_id for config in expand_grid(GRID)}


def test_overrides_change_settings_of_matching_runs_only():
    configs = expand_grid(GRID)
    assert {c.budget() for c in configs if c.env == "MountainCarContinuous-v0"} == {2000}
    assert {c.budget() for c in configs if c.env == "Pendulum-v1"} == {1000}


def test_a_list_of_grids_unites_their_runs_each_crossed_on_its_own():
    td3_grid = {**GRID["grid"], "algo": ["td3"], "env": ["Pendulum-v1"], "method": ["dense"]}
    configs = expand_grid({**GRID, "grid": [GRID["grid"], td3_grid], "order": ["seed", "algo"]})
    sac_only = expand_grid(GRID)
    assert [c.run_id for c in configs if c.algo == "sac"] == [c.run_id for c in sac_only]
    assert sorted(c.run_id for c in configs if c.algo == "td3") == ["td3-Pendulum-v1-dense-w64-seed0",
                                                                     "td3-Pendulum-v1-dense-w64-seed1"]
    assert [(c.seed, c.algo) for c in configs] == sorted((c.seed, c.algo) for c in configs)


def test_runs_are_ordered_seed_by_seed():
    seeds = [config.seed for config in expand_grid(GRID)]
    assert seeds == sorted(seeds)


def test_run_ids_and_labels_are_readable():
    config = RunConfig(method="tar", sparsity=SparsitySettings(0.9, criterion="erk", recovery_ratio=0.01),
                       net_arch=(256, 256), seed=3)
    assert config.run_id == "sac-Pendulum-v1-tar-erk-s0.9-rr0.01-w256-seed3"
    assert config.label == "TAR (erk)"
    assert RunConfig(method="rigl", sparsity=SparsitySettings(0.9, criterion="erk")).label == "RigL"
    mixed = RunConfig(method="static", sparsity=SparsitySettings(actor_sparsity=0.5, critic_sparsity=0.7),
                      net_arch=(32, 64, 32))
    assert mixed.run_id == "sac-Pendulum-v1-static-magnitude-a0.5-c0.7-w32x64x32-seed0"


def test_each_method_gets_its_policy_on_the_tuned_entry():
    tar = run_hyperparams(RunConfig(algo="td3", method="tar", net_arch=(32, 32),
                                    sparsity=SparsitySettings(0.9, criterion="erk", recovery_ratio=0.01)))
    assert tar["policy"] == "TarMlpPolicy" and tar["noise_type"] == "normal"  # td3.yml's tuned Pendulum entry
    assert tar["policy_kwargs"] == {"net_arch": [32, 32], "sparsity": 0.9, "criterion": "erk", "recovery_ratio": 0.01}
    dense = run_hyperparams(RunConfig(algo="td3", method="dense", net_arch=(32, 32)))
    assert dense["policy"] == "MlpPolicy" and dense["policy_kwargs"] == {"net_arch": [32, 32]}
    rigl = run_hyperparams(RunConfig(algo="td3", method="rigl", sparsity=SparsitySettings(0.9, criterion="erk"),
                                     dst={"update_interval": 5}))
    assert rigl["policy"] == "MlpPolicy" and "sparsity" not in rigl["policy_kwargs"]
    assert rigl["callback"] == [{"sb3_tar.DSTCallback": {"method": "rigl", "sparsity": 0.9, "initial": "erk",
                                                         "update_interval": 5}}]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("sparsity", float("nan"), "sparsity=nan must be a finite number"),
    ("sparsity", 1.0, r"sparsity=1.0 must be in \[0, 1\)"),
    ("width", 0, "width=0 must be an integer >= 1"),
    ("algo", "trpo", "algo='trpo' is not supported; allowed: "),
    ("seed", -1, "seed=-1 must be an integer >= 0"),
    ("method", "lottery", r"method='lottery' is not a method; allowed: \['dense', 'static', 'tar'"),
    ("criterion", "magnitud", "criterion='magnitud' is not a registered criterion"),
    ("recovery_ratio", -0.1, "recovery_ratio=-0.1 must be >= 0"),
    ("env", "NoSuchEnv-v0", "env='NoSuchEnv-v0' is not a registered Gymnasium environment"),
])
def test_a_bad_grid_value_is_rejected_when_read_naming_key_and_value(key, value, message):
    with pytest.raises(ValueError, match=message) as error:
        expand_grid(changed("grid", key, [value]))
    assert f"{key}={value!r}" in str(error.value)  # the grid point is named too


@pytest.mark.parametrize(("key", "value", "message"), [
    ("n_timesteps", 0, "n_timesteps=0 must be an integer >= 1"),
    ("eval_episodes", 0, "eval_episodes=0 must be an integer >= 1"),
    ("checkpoint_freq", -5, "checkpoint_freq=-5 must be an integer >= 1"),
    ("depth", 0, "depth=0 must be an integer >= 1"),
    ("hyperparams", {"gama": 0.9}, "hyperparam 'gama' is not an argument of SAC nor an rl-zoo3 key; did you mean 'gamma'"),
    ("hyperparams", {"batch_size": 0}, "hyperparam batch_size=0 must be an integer >= 1"),
    ("dst", {"update_interval": 0}, "dst option update_interval=0 must be an integer >= 1"),
    ("dst", {"drop_rate": 0.1}, r"dst has unknown option\(s\) \['drop_rate'\]"),
])
def test_a_bad_setting_is_rejected_when_read(key, value, message):
    with pytest.raises(ValueError, match=message):
        expand_grid(changed("settings", key, value))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"grid": {k: v for k, v in GRID["grid"].items() if k != "seed"}}, r"missing \['seed'\]"),
        ({"grid": {**GRID["grid"], "lr": [1]}}, r"grid has unknown keys \['lr'\]"),
        ({"settings": {"n_timesteps": 10, "lr": 1}}, r"settings has unknown keys \['lr'\]"),
        ({"backend": "ray"}, r"unknown top-level keys \['backend'\]"),
        ({"order": ["colour"]}, r"order has unknown keys \['colour'\]"),
        ({"grid": [1]}, r"sweep grid must be a mapping of names to values, or a non-empty list of such mappings, "
                        r"not \[1\]"),
        ({"grid": []}, r"non-empty list of such mappings, not \[\]"),
        ({"grid": [GRID["grid"], {"algo": ["td3"]}]}, r"sweep grid\[1\] is missing \['env', "),
        ({"settings": 5}, "sweep settings must be a mapping"),
        ({"extra": {"algo": "sac"}}, "sweep extra must be a list"),
        ({"extra": [{"algo": "sac", "lr": 1}]}, r"sweep extra\[0\]=.* must be one run: \{grid key: value\}"),
        ({"extra": [{"algo": "sac", "env": "Pendulum-v1"}]}, r"algo='sac', env='Pendulum-v1'.*it names no method"),
        ({"overrides": [{"settings": {"n_timesteps": 5}}]}, r"sweep overrides\[0\]=.* must be \{match: "),
        ({"overrides": [{"match": {"colour": "red"}, "settings": {}}]}, r"overrides\[0\] match has unknown keys \['colour'\]"),
        ({"overrides": [{"match": {"env": "Pendulum-v1"}, "settings": {"seed": 5}}]},
         r"overrides\[0\] settings has unknown keys \['seed'\]"),
        ({"settings": {1: 2, "lr": 3}}, r"settings has unknown keys \[1, 'lr'\]"),
    ],
)
def test_a_malformed_sweep_is_rejected_with_the_key_named(change, message):
    with pytest.raises(ValueError, match=message):
        expand_grid({**GRID, **change})


@pytest.mark.parametrize("sweep_file", sorted(Path(__file__).parents[1].glob("benchmarks/sweeps/*.yml")),
                         ids=lambda path: path.name)
def test_the_shipped_sweeps_expand(sweep_file):
    configs = load_sweep(sweep_file)
    assert configs and len({config.run_id for config in configs}) == len(configs)


@pytest.mark.parametrize(("text", "message"), [
    (None, r"sweep file '.*sweep.yml' does not exist"),
    ("", "must hold a mapping of names to values; it is empty"),
    ("- 1\n", "must hold a mapping of names to values; it is a list"),
    ("grid: [\n", "is not valid YAML"),
])
def test_a_missing_or_malformed_sweep_file_is_a_value_error_naming_it(text, message, tmp_path):
    path = tmp_path / "sweep.yml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_sweep(path)


def test_a_json_file_is_read_as_json_and_numpy_integers_become_python_ints(tmp_path):
    # PyYAML (YAML 1.1) reads JSON's 1e-05 as a string; a sweep's run files are JSON
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"hyperparams": {"learning_rate": 1e-05}}))
    assert read_mapping(path, "--config") == {"hyperparams": {"learning_rate": 1e-05}}
    config = RunConfig(method="rigl", sparsity=SparsitySettings(0.9, criterion="erk"), seed=np.int64(3),
                       n_timesteps=np.int64(200), dst={"update_interval": np.int64(5)},
                       hyperparams={"batch_size": np.int64(16)})
    data = config.to_dict()
    assert type(data["seed"]) is int and type(data["dst"]["update_interval"]) is int
    assert RunConfig.from_dict(json.loads(json.dumps(data))) == config


def test_sweep_yaml_round_trips_and_a_config_round_trips_through_its_dict(tmp_path):
    path = tmp_path / "sweep.yml"
    path.write_text(yaml.safe_dump(GRID))
    configs = load_sweep(path)
    assert configs == expand_grid(GRID)
    assert all(RunConfig.from_dict(yaml.safe_load(yaml.safe_dump(c.to_dict()))) == c for c in configs)
