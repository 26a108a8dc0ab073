"""Sweeps, end to end: every run is ``python -m sb3_tar train`` in a child process, published only when
complete; a re-run skips finished runs, trains corrupt ones again and clears leftovers.

Real signals to sweeps and their runs are in ``test_faults.py``.
"""

from __future__ import annotations

import json
import signal
import sys

import pytest
import yaml
from sb3_support import make_model
from stable_baselines3 import SAC

from run_support import TINY_HYPERPARAMS, read_json, tiny
from sb3_tar.cli import main
from sb3_tar.experiments import backends
from sb3_tar.experiments.backends import CORRUPT, LOGS, run_sweep, tidy
from sb3_tar.experiments.checkpoint import write_checkpoint
from sb3_tar.experiments.grid import expand_grid
from sb3_tar.experiments.store import PARTIAL, locked, read_result
from sb3_tar.experiments.timing import StepTimeCallback

TINY = {
    "grid": {"algo": ["sac"], "env": ["Pendulum-v1"], "method": ["dense", "tar"], "criterion": ["magnitude"],
             "sparsity": [0.9], "recovery_ratio": [0.02], "width": [16], "seed": [0]},
    "settings": {"n_timesteps": 300, "eval_freq": 150, "eval_episodes": 1, "hyperparams": TINY_HYPERPARAMS},
}
DENSE = "sac-Pendulum-v1-dense-w16-seed0"
TAR = "sac-Pendulum-v1-tar-magnitude-s0.9-rr0.02-w16-seed0"


def with_grid(**changes) -> dict:
    return {**TINY, "grid": {**TINY["grid"], **changes}}


def test_sweep_trains_publishes_skips_finished_runs_and_reports(tmp_path, capsys):
    results = tmp_path / "results"
    configs = expand_grid(TINY)
    outcome = run_sweep(configs, results, workers=2)
    assert sorted(outcome.completed) == sorted([DENSE, TAR]) and not outcome.failed
    tar = read_result(results / TAR)
    assert tar["evaluations"]["timesteps"] == [150, 300] and tar["num_timesteps"] == 300
    assert set(tar["topology"]) == {"actor", "qf0", "qf1"}
    total = tar["topology"]["actor"]["total_weights"]
    repaired = tar["topology"]["actor"]["repaired_weights"]  # TAR's connectivity repair on this tiny network
    assert tar["kept_weights"]["actor"] <= round(0.1 * total) + repaired  # masked weights are 0 (a kept one may be too)
    assert tar["cost"]["flops_per_action"] == 2 * tar["kept_weights"]["actor"]
    assert tar["provenance"]["command"][1:4] == ["-m", "sb3_tar", "train"]
    assert not (results / PARTIAL).exists()
    assert sorted(path.name for path in (results / LOGS).iterdir()) == sorted(
        f"{run_id}{suffix}" for run_id in (DENSE, TAR) for suffix in (".json", ".log"))

    main(["report", str(results)])
    report = (results / "report" / "report.md").read_text()
    assert "SAC Pendulum-v1" in report and (results / "report" / "curves-sac-Pendulum-v1.png").exists()

    # the next sweep trains nothing twice, except a result that was corrupted since
    result = results / DENSE / "result.json"
    result.write_text(result.read_text()[:200])  # a disk that filled up while it was written, say
    capsys.readouterr()
    again = run_sweep(configs, results, workers=2)
    printed = capsys.readouterr().out
    assert again.skipped == 1 and again.completed == [DENSE]
    assert f"sweep: {result} is not valid JSON" in printed and "the run trains again" in printed
    assert read_result(results / DENSE)["num_timesteps"] == 300
    assert len(list((results / CORRUPT).glob(f"*/{DENSE}/result.json"))) == 1
    attempts = (results / LOGS / f"{DENSE}.log").read_text().count("\n=== ")
    assert attempts == 2  # the first attempt's log is kept, the second appended


def test_a_failing_run_is_reported_and_the_others_still_finish(tmp_path):
    # valid settings that SB3 refuses when the replay buffer is built: the run fails after it started
    sweep = {**with_grid(method=["dense", "static"]), "overrides": [
        {"match": {"method": "static"}, "settings": {"hyperparams": {**TINY_HYPERPARAMS,
                                                                       "optimize_memory_usage": True}}}]}
    outcome = run_sweep(expand_grid(sweep), tmp_path, workers=2)
    failed = "sac-Pendulum-v1-static-magnitude-s0.9-w16-seed0"
    assert outcome.completed == [DENSE] and list(outcome.failed) == [failed]
    assert "optimize_memory_usage" in outcome.failed[failed]  # the end of its log
    assert not (tmp_path / failed).exists() and not (tmp_path / PARTIAL).exists()
    assert "optimize_memory_usage" in (tmp_path / LOGS / f"{failed}.log").read_text()


# A stand-in for a run that a signal sent to it alone stops: like `sb3-tar train`, it exits 130.
STOPPED_RUN = "import os, signal, sys; signal.signal(signal.SIGTERM, lambda *_: sys.exit(130)); os.kill(os.getpid(), 15)"


def test_a_run_stopped_by_a_signal_to_it_alone_is_reported_and_the_sweep_exits_non_zero(tmp_path, monkeypatch, capsys):
    """Exit 130 while the sweep goes on: not finished, not failed (its checkpoint resumes), but never silent."""
    monkeypatch.setattr(backends, "run_command", lambda config_path, output: [sys.executable, "-c", STOPPED_RUN])
    path = tmp_path / "sweep.yml"
    path.write_text(yaml.safe_dump(TINY))
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as stopped:
            main(["sweep", str(path), "--results", str(tmp_path / "results"), "--workers", "1"])
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    message = str(stopped.value)
    assert message.startswith("sb3-tar sweep: 2 runs were stopped by a signal before their budget")
    assert DENSE in message and TAR in message and "run the same command again to resume them" in message
    printed = capsys.readouterr()
    assert "0 runs finished now, 0 were already done, 0 failed, 2 stopped" in printed.out
    assert f"run {DENSE} was stopped by a signal (exit 130)" in printed.out
    assert not (tmp_path / "results" / DENSE).exists()


@pytest.mark.parametrize(("key", "value", "message"), [
    ("sparsity", float("nan"), "sparsity=nan must be a finite number"),
    ("sparsity", 1.0, "sparsity=1.0 must be in [0, 1)"),
    ("width", 0, "width=0 must be an integer >= 1"),
    ("algo", "trpo", "algo='trpo' is not supported"),
    ("seed", -1, "seed=-1 must be an integer >= 0"),
    ("method", "lottery", "method='lottery' is not a method"),
])
def test_the_sweep_command_rejects_a_bad_value_before_any_run(key, value, message, tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(with_grid(**{key: [value]})))
    with pytest.raises(SystemExit) as stopped:
        main(["sweep", str(path), "--results", str(tmp_path / "results")])
    assert message in str(stopped.value) and f"{key}={value!r}" in str(stopped.value)
    assert str(stopped.value).startswith("sb3-tar sweep: sweep grid point")
    assert not (tmp_path / "results").exists()


def test_the_sweep_command_lists_its_runs(tmp_path, capsys):
    path = tmp_path / "sweep.yml"
    path.write_text(yaml.safe_dump(TINY))
    main(["sweep", str(path), "--list"])
    assert capsys.readouterr().out.split() == [DENSE, TAR]
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.yml"]


def result_of(config, **changes) -> dict:
    result = {"run_id": config.run_id, "label": config.label, "config": config.to_dict(), "hyperparams": {},
              "summary": config.summary(), "num_timesteps": config.budget(),
              "evaluations": {"timesteps": [config.budget()], "mean_return": [-100.0]},
              "final_evaluation": {"mean_return": -100.0}, "cost": {}, "provenance": {"wall_time_s": 1.0}}
    return {**result, **changes}


def test_tidy_moves_corrupt_results_aside_naming_them_and_clears_leftovers(tmp_path):
    configs = [tiny(seed=seed) for seed in range(5)]
    texts = {0: json.dumps(result_of(configs[0])),  # complete: kept
             1: json.dumps(result_of(configs[1]))[:100],  # truncated
             2: json.dumps({key: value for key, value in result_of(configs[2]).items() if key != "evaluations"}),
             3: json.dumps(result_of(configs[3], num_timesteps=120))}  # stopped before its budget
    for seed, text in texts.items():
        (tmp_path / configs[seed].run_id).mkdir()
        (tmp_path / configs[seed].run_id / "result.json").write_text(text)
    partial = tmp_path / PARTIAL
    stale, in_flight, resumable = partial / "stale", partial / "in-flight", partial / configs[4].run_id
    published = partial / configs[0].run_id
    for folder in (stale, in_flight, published):
        (folder / "run").mkdir(parents=True)
    write_checkpoint(resumable, make_model(SAC, net_arch=[16, 16], sparsity=0.8), {}, None, StepTimeCallback())
    with locked(in_flight / "lock", "the test"):
        messages = tidy(tmp_path, configs)
    moved = {seed: list((tmp_path / CORRUPT).glob(f"*/{configs[seed].run_id}")) for seed in (1, 2, 3)}
    for seed, message in zip((1, 2, 3), messages):
        assert str(tmp_path / configs[seed].run_id / "result.json") in message
        assert len(moved[seed]) == 1 and message.endswith(f"moved to {moved[seed][0]}, the run trains again")
        assert (moved[seed][0] / "result.json").read_text() == texts[seed]
    assert "not valid JSON" in messages[0] and "lacks ['evaluations']" in messages[1]
    assert "records 120 of 300 steps" in messages[2]
    assert sorted(messages[3:]) == sorted([
        f"removed {published}: the run is published (it was stopped before it could remove this folder)",
        f"removed {stale}: an interrupted run with no checkpoint to resume from"])
    assert sorted(path.name for path in partial.iterdir()) == sorted([in_flight.name, resumable.name])
    assert read_result(tmp_path / configs[0].run_id)["run_id"] == configs[0].run_id


def test_ray_backend_runs_the_same_code_on_a_local_ray_instance(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        configs = expand_grid(with_grid(method=["dense"]))
        outcome = run_sweep(configs, tmp_path, backend="ray")
    finally:
        ray.shutdown()
    assert outcome.completed == [DENSE], outcome.failed
    assert read_json(tmp_path / DENSE / "result.json")["num_timesteps"] == 300


def test_a_sweep_refuses_results_and_checkpoints_of_its_run_ids_trained_with_other_settings(tmp_path, capsys):
    """A run's identity is its whole configuration: another budget, evaluation or hyperparameter is another run."""
    finished, interrupted, same = tiny(seed=0), tiny(seed=1), tiny(seed=2)
    longer = [tiny(seed=0, n_timesteps=450), tiny(seed=1, eval_episodes=2), same]
    for config in (finished, same):
        (tmp_path / config.run_id).mkdir()
        (tmp_path / config.run_id / "result.json").write_text(json.dumps(result_of(config)))
    work = tmp_path / PARTIAL / interrupted.run_id
    write_checkpoint(work, make_model(SAC, net_arch=[16, 16], sparsity=0.8), interrupted.to_dict(), None,
                     StepTimeCallback())
    assert longer[0].run_id == finished.run_id and longer[1].run_id == interrupted.run_id  # same folder names

    with pytest.raises(backends.SweepConflictError) as refused:
        run_sweep(longer, tmp_path, workers=1)
    message = str(refused.value)
    assert "holds 2 run(s) of this sweep's ids trained with other settings" in message
    assert f"{finished.run_id} (n_timesteps 300 -> 450)" in message
    assert f"{interrupted.run_id} (eval_episodes 1 -> 2)" in message and "--overwrite" in message
    assert (tmp_path / finished.run_id / "result.json").exists() and work.exists()  # nothing touched

    stale = backends.stale_runs(tmp_path, longer)
    assert set(stale) == {tmp_path / finished.run_id, work}
    messages = backends.set_aside(tmp_path, stale)
    replaced = next((tmp_path / backends.REPLACED).iterdir())
    assert json.loads((replaced / finished.run_id / "result.json").read_text())["config"]["n_timesteps"] == 300
    assert (replaced / f"{interrupted.run_id}.checkpoint" / "checkpoint" / "state.json").exists()
    assert not (tmp_path / finished.run_id).exists() and not work.exists()
    assert any("n_timesteps 300 -> 450" in line and "the run trains again" in line for line in messages)
    assert backends.stale_runs(tmp_path, longer) == {}  # the unchanged run stays finished


def test_the_sweep_command_names_the_conflict_and_offers_overwrite(tmp_path):
    sweep = tmp_path / "sweep.yml"
    sweep.write_text(yaml.safe_dump(TINY))
    results = tmp_path / "results"
    (dense,) = [config for config in expand_grid(TINY) if config.run_id == DENSE]
    (results / DENSE).mkdir(parents=True)
    result = {**result_of(dense), "config": {**dense.to_dict(), "eval_episodes": 3}}
    (results / DENSE / "result.json").write_text(json.dumps(result))
    with pytest.raises(SystemExit, match=f"sb3-tar sweep: .*{DENSE} \\(eval_episodes 3 -> 1\\).*--overwrite"):
        main(["sweep", str(sweep), "--results", str(results)])


def test_a_full_disk_fails_the_runs_it_stops_by_name_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys):
    """Disk full while a run's configuration is written: that run fails, named; no traceback, no empty file."""
    import errno

    real_write = backends.write_json_atomically

    def full_for_dense(path, data):
        if path.name == f"{DENSE}.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    monkeypatch.setattr(backends, "write_json_atomically", full_for_dense)
    outcome = run_sweep(expand_grid(TINY), tmp_path, workers=1)
    assert outcome.completed == [TAR]
    assert outcome.failed == {DENSE: f"could not start: could not write {tmp_path / LOGS / (DENSE + '.json')}: "
                                     "the disk is full"}
    assert f"run {DENSE} could not start" in capsys.readouterr().out
    assert not (tmp_path / LOGS / f"{DENSE}.json").exists() and not (tmp_path / DENSE).exists()
