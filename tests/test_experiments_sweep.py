"""A real sweep, end to end: runs train through rl_zoo3.train, finish atomically, resume, and report."""

from __future__ import annotations

import json

import pytest
import yaml

from sb3_tar.cli import main
from sb3_tar.experiments.backends import run_sweep
from sb3_tar.experiments.grid import RunSpec, expand_grid
from sb3_tar.experiments.runner import run_hyperparams

TINY = {
    "grid": {"algo": ["sac"], "env": ["Pendulum-v1"], "method": ["dense", "tar"], "criterion": ["magnitude"],
             "sparsity": [0.9], "recovery_ratio": [0.02], "width": [16], "seed": [0]},
    "settings": {"n_timesteps": 300, "eval_freq": 150, "eval_episodes": 1},
}


def test_run_hyperparams_set_each_methods_policy_on_the_tuned_base():
    base = {"algo": "td3", "env": "Pendulum-v1", "sparsity": 0.9, "width": 32, "seed": 0, "eval_freq": 100}
    tar = run_hyperparams(RunSpec(method="tar", criterion="erk", recovery_ratio=0.01, **base))
    assert tar["policy"] == "TarMlpPolicy" and tar["noise_type"] == "normal"  # the file's tuned TD3 settings
    assert tar["policy_kwargs"] == {"net_arch": [32, 32], "sparsity": 0.9, "criterion": "erk",
                                    "recovery_ratio": 0.01, "allocation": "topology"}
    dense = run_hyperparams(RunSpec(method="dense", criterion=None, recovery_ratio=0.0, **{**base, "sparsity": 0.0}))
    assert dense["policy"] == "MlpPolicy" and dense["policy_kwargs"] == {"net_arch": [32, 32]}
    rigl = run_hyperparams(RunSpec(method="rigl", criterion=None, recovery_ratio=0.0, dst={"update_interval": 5}, **base))
    assert rigl["callback"] == [{"sb3_tar.DSTCallback": {"method": "rigl", "sparsity": 0.9, "update_interval": 5}}]


def test_sweep_trains_publishes_resumes_and_reports(tmp_path):
    results = tmp_path / "results"
    specs = expand_grid(TINY)
    outcome = run_sweep(specs, results, workers=2)
    assert sorted(outcome.completed) == sorted(spec.run_id for spec in specs) and not outcome.failed
    tar = json.loads((results / "sac-Pendulum-v1-tar-magnitude-s0.9-rr0.02-w16-seed0" / "result.json").read_text())
    assert tar["evaluations"]["timesteps"] == [150, 300]
    assert set(tar["topology"]) == {"actor", "qf0", "qf1"}
    total = sum(layer["size"] for layer in tar["topology"]["actor"]["layers"])
    assert tar["kept_weights"]["actor"] <= round(0.1 * total)  # masked weights are 0 (a kept one may be too)
    assert tar["spec"]["cost"]["flops_per_action"] == 2 * tar["kept_weights"]["actor"]
    assert not list((results / ".partial").iterdir())

    again = run_sweep(specs, results, workers=2)  # everything finished: nothing is trained twice
    assert again.skipped == len(specs) and not again.completed

    main(["report", str(results)])
    report = (results / "report" / "report.md").read_text()
    assert "SAC Pendulum-v1" in report and (results / "report" / "curves-sac-Pendulum-v1.png").exists()


def test_a_failing_run_is_reported_and_the_others_still_finish(tmp_path):
    broken = {**TINY, "grid": {**TINY["grid"], "env": ["Pendulum-v1", "NoSuchEnv-v0"], "method": ["dense"]}}
    outcome = run_sweep(expand_grid(broken), tmp_path, workers=2)
    assert outcome.completed == ["sac-Pendulum-v1-dense-w16-seed0"]
    assert list(outcome.failed) == ["sac-NoSuchEnv-v0-dense-w16-seed0"]
    assert not (tmp_path / "sac-NoSuchEnv-v0-dense-w16-seed0").exists()


def test_sweep_command_rejects_a_malformed_sweep_before_training(tmp_path, capsys):
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({**TINY, "grid": {**TINY["grid"], "method": ["lottery"]}}))
    with pytest.raises(SystemExit, match="method='lottery' is not a sweep method"):
        main(["sweep", str(path), "--results", str(tmp_path / "results")])
    assert not (tmp_path / "results").exists()


def test_ray_backend_runs_the_same_code_on_a_local_ray_instance(tmp_path):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        specs = expand_grid({**TINY, "grid": {**TINY["grid"], "method": ["dense"]}})
        outcome = run_sweep(specs, tmp_path, backend="ray")
    finally:
        ray.shutdown()
    assert outcome.completed == [specs[0].run_id]
    assert (tmp_path / specs[0].run_id / "result.json").exists()
