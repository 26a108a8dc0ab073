"""Sweep grids expand to distinct runs; run folders record completion atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sb3_tar.experiments.grid import RunSpec, expand_grid, load_sweep
from sb3_tar.experiments.store import clear_partial_runs, is_finished, partial_dir, pending_runs, publish

GRID = {
    "grid": {
        "algo": ["sac"], "env": ["Pendulum-v1", "InvertedPendulum-v4"],
        "method": ["dense", "static", "tar", "set"], "criterion": ["magnitude", "erk"],
        "sparsity": [0.9, 0.95], "recovery_ratio": [0.0, 0.01], "width": [64], "seed": [0, 1],
    },
    "settings": {"n_timesteps": 1000, "eval_freq": 500},
    "overrides": [{"match": {"env": "InvertedPendulum-v4"}, "settings": {"n_timesteps": 2000}}],
}


def test_grid_drops_what_a_method_ignores_and_trains_nothing_twice():
    specs = expand_grid(GRID)
    per_env_seed = {"dense": 1, "static": 2 * 2, "tar": 2 * 2 * 1, "set": 2}
    assert len(specs) == 2 * 2 * sum(per_env_seed.values())
    assert len({spec.run_id for spec in specs}) == len(specs)
    assert all(spec.recovery_ratio == 0.0 for spec in specs if spec.method in ("static", "set", "dense"))
    assert all(spec.recovery_ratio > 0 for spec in specs if spec.method == "tar")
    assert all(spec.criterion is None for spec in specs if spec.method in ("dense", "set"))


def test_overrides_change_settings_of_matching_runs_only():
    specs = expand_grid(GRID)
    assert {s.n_timesteps for s in specs if s.env == "InvertedPendulum-v4"} == {2000}
    assert {s.n_timesteps for s in specs if s.env == "Pendulum-v1"} == {1000}


def test_run_ids_are_readable():
    spec = RunSpec("sac", "Pendulum-v1", "tar", "erk", 0.9, 0.01, 256, 3, eval_freq=500, n_timesteps=1000)
    assert spec.run_id == "sac-Pendulum-v1-tar-erk-s0.9-rr0.01-w256-seed3"
    assert spec.label == "TAR (erk)"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"grid": {**GRID["grid"], "method": ["lottery"]}}, r"method='lottery' is not a sweep method; allowed"),
        ({"grid": {k: v for k, v in GRID["grid"].items() if k != "seed"}}, r"missing \['seed'\]"),
        ({"settings": {"n_timesteps": 10, "lr": 1}}, r"settings has unknown keys \['lr'\]"),
        ({"backend": "ray"}, r"unknown top-level keys \['backend'\]"),
    ],
)
def test_a_malformed_sweep_is_rejected_with_the_key_named(change, message):
    with pytest.raises(ValueError, match=message):
        expand_grid({**GRID, **change})


@pytest.mark.parametrize("sweep_file", sorted(Path(__file__).parents[1].glob("benchmarks/sweeps/*.yml")))
def test_the_shipped_sweeps_expand(sweep_file):
    specs = load_sweep(sweep_file)
    assert specs and len({spec.run_id for spec in specs}) == len(specs)


def test_completion_is_recorded_by_an_atomic_rename(tmp_path):
    spec = expand_grid(GRID)[0]
    work = partial_dir(tmp_path, spec)
    (work / "model.zip").write_text("weights")
    assert not is_finished(tmp_path, spec)
    final = publish(tmp_path, spec, work, {"run_id": spec.run_id})
    assert is_finished(tmp_path, spec) and not work.exists()
    assert json.loads((final / "result.json").read_text()) == {"run_id": spec.run_id}
    assert pending_runs(tmp_path, [spec]) == []


def test_an_interrupted_run_leaves_only_a_partial_folder_that_the_next_sweep_clears(tmp_path):
    specs = expand_grid(GRID)
    publish(tmp_path, specs[0], partial_dir(tmp_path, specs[0]), {})
    partial_dir(tmp_path, specs[1])  # a run killed mid-training
    assert clear_partial_runs(tmp_path) == 1
    assert pending_runs(tmp_path, specs[:2]) == [specs[1]]
    assert is_finished(tmp_path, specs[0])


def test_sweep_yaml_round_trips(tmp_path):
    path = tmp_path / "sweep.yml"
    path.write_text(yaml.safe_dump(GRID))
    assert load_sweep(path) == expand_grid(GRID)
