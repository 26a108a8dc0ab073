"""Preemption: real signals to real ``sb3-tar train`` and ``sb3-tar sweep`` processes, then the same command again.

Each test starts its own processes and signals only those, by PID. Runs are 1000 steps on [16, 16]
networks with a checkpoint every 50 steps; a run is stopped at 30 %, 60 % or 70 % of its budget.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from stable_baselines3 import SAC

from run_support import (
    CHILD_ENV,
    checkpoint_state,
    children_of,
    is_running,
    masks_of,
    same_masks,
    start,
    stop,
    tail,
    train_command,
    wait_for,
)
from sb3_tar.experiments.checkpoint import find_checkpoint
from sb3_tar.experiments.config import RunConfig, run_hyperparams
from sb3_tar.experiments.pipeline import _experiment_manager
from sb3_tar.experiments.store import PARTIAL, partial_dir, read_result

BUDGET = 1000
LEARNING_STARTS = 550  # most of the run without gradient steps (fast), and still 450 of them
EVALUATIONS = [200, 400, 600, 800, 1000]
RUN_FLAGS = ["--timesteps", str(BUDGET), "--net-arch", "16", "16", "--eval-freq", "200", "--checkpoint-freq", "50",
             "--eval-episodes", "1", "--hyperparam", f"learning_starts={LEARNING_STARTS}", "--hyperparam",
             "batch_size=32", "--device", "cpu", "--no-progress-bar"]
# RigL updates its masks every 10 gradient steps until a tenth of the 450 planned ones: frozen at step 595.
DST_FLAGS = ["--dst", "update_interval=10", "--dst", "end_fraction=0.1"]
SWEEP = {
    "grid": {"algo": ["sac"], "env": ["Pendulum-v1"], "method": ["dense", "tar"], "criterion": ["magnitude"],
             "sparsity": [0.8], "recovery_ratio": [0.01], "width": [16], "seed": [0]},
    "settings": {"n_timesteps": BUDGET, "eval_freq": 200, "checkpoint_freq": 50, "eval_episodes": 1,
                 "hyperparams": {"learning_starts": LEARNING_STARTS, "batch_size": 32}},
}
RUN_IDS = ["sac-Pendulum-v1-dense-w16-seed0", "sac-Pendulum-v1-tar-magnitude-s0.8-rr0.01-w16-seed0"]
STOPPED_WITHIN_S = 20.0
STARTUP_S = 240.0  # imports and the first 70 % of a run, on two busy cores


def run_flags(method: str) -> list[str]:
    return ["--method", method, *RUN_FLAGS, *(DST_FLAGS if method in ("set", "rigl") else [])]


def progressed(output: Path, fraction: float):
    """A condition: the run at ``output`` has checkpointed ``fraction`` of ``BUDGET`` steps."""
    def condition():
        state = checkpoint_state(output)
        return state if state and state["num_timesteps"] >= fraction * BUDGET else None
    return condition


def initial_masks(config: RunConfig, folder: Path) -> dict:
    """The masks of the run's model at step 0, built by the pipeline's own experiment setup."""
    folder.mkdir()
    hyperparams = folder / "hyperparams.yml"
    hyperparams.write_text(yaml.safe_dump({config.env: run_hyperparams(config)}))
    model, _ = _experiment_manager(config, hyperparams, folder, resuming=False).setup_experiment()
    return masks_of(model)


def finish(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    completed = subprocess.run(command, cwd=cwd, env=CHILD_ENV, capture_output=True, text=True, timeout=400)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]
    return completed


def assert_resumed_whole(output: Path, resumed_at: list[int]) -> dict:
    """The published run trained its whole budget with every evaluation, and records where it resumed."""
    result = read_result(output)
    assert result["num_timesteps"] == BUDGET and result["resumed_at"] == resumed_at
    assert result["evaluations"]["timesteps"] == EVALUATIONS
    model = SAC.load(output / "model.zip", device="cpu")
    # every step after learning_starts took its gradient step, the ones around the resume included
    assert model.num_timesteps == BUDGET and model._n_updates == BUDGET - LEARNING_STARTS
    assert not (output.parent / PARTIAL).exists()  # the work folder is gone once published
    return result


def test_a_killed_rigl_run_resumes_from_its_checkpoint_with_its_masks_schedule_and_every_evaluation(tmp_path):
    output, log = tmp_path / "out" / "run", tmp_path / "train.log"
    command = train_command(*run_flags("rigl"), "--output", "out/run")  # relative to the run's cwd
    process = start(command, tmp_path, log)
    try:
        wait_for(progressed(output, 0.6), STARTUP_S, "a checkpoint at 60 % of the budget", process, log)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        stop(process)
    assert not output.exists()
    checkpoint = find_checkpoint(partial_dir(output))
    step, evaluations = checkpoint.num_timesteps, checkpoint.state["evaluations"]
    at_checkpoint = SAC.load(checkpoint.path / "model.zip", device="cpu")
    # one gradient step per step after learning_starts, the checkpoint's last step's included
    assert at_checkpoint.sb3_tar_dst_state["gradient_steps"] == at_checkpoint._n_updates == step - LEARNING_STARTS

    completed = finish(command, tmp_path)
    assert f"resuming from the checkpoint at step {step} of {BUDGET}" in completed.stdout
    result = assert_resumed_whole(output, [step])
    assert result["evaluations"]["mean_return"][:len(evaluations["timesteps"])] == pytest.approx(
        [sum(row) / len(row) for row in evaluations["results"]])  # the evaluations before the kill are kept
    final = SAC.load(output / "model.zip", device="cpu")
    # the masks RigL had moved to (frozen since end_fraction) are the ones the resumed run trained
    assert same_masks(masks_of(final), masks_of(at_checkpoint))
    assert final.sb3_tar_dst_state["gradient_steps"] == BUDGET - LEARNING_STARTS  # the schedule continued


def stop_with(number: int, fraction: float, command: list[str], output: Path, log: Path) -> int:
    """Run ``command`` until it checkpoints ``fraction`` of its budget, send it ``number``; returns the step kept."""
    process = start(command, output.parent, log)
    try:
        wait_for(progressed(output, fraction), STARTUP_S, f"a checkpoint at {fraction:.0%} of the budget", process, log)
        process.send_signal(number)
        signalled = time.monotonic()
        assert process.wait(timeout=STOPPED_WITHIN_S) == 130, tail(log)
    finally:
        stop(process)
    assert time.monotonic() - signalled < STOPPED_WITHIN_S
    step = find_checkpoint(partial_dir(output)).num_timesteps
    message = tail(log, 3)
    assert f"the checkpoint at step {step} of {BUDGET} is kept in {partial_dir(output)}" in message
    assert "run the same command again to resume" in message and not output.exists()
    return step


def test_sigint_then_sigterm_stop_a_run_with_exit_130_and_the_same_command_resumes_it_each_time(tmp_path):
    output, log = tmp_path / "run", tmp_path / "train.log"
    command = train_command(*run_flags("tar"), "--output", str(output))
    first = stop_with(signal.SIGINT, 0.3, command, output, log)
    second = stop_with(signal.SIGTERM, 0.7, command, output, log)
    assert f"resuming from the checkpoint at step {first} of {BUDGET}" in tail(log)

    finish(command, tmp_path)
    result = assert_resumed_whole(output, [first, second])
    # a static mask never changes: the resumed run's masks are the masks of step 0
    config = RunConfig.from_dict(result["config"])
    final = masks_of(SAC.load(output / "model.zip", device="cpu"))
    assert same_masks(final, initial_masks(config, tmp_path / "step0"))


def descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        children = children_of(frontier.pop())
        found += children
        frontier += children
    return found


def sweep_command(grid: str, *flags: str) -> list[str]:
    return [sys.executable, "-m", "sb3_tar", "sweep", grid, "--results", "results", *flags]


def start_sweep(tmp_path: Path, cwd: Path, log: Path, budget: int = BUDGET) -> subprocess.Popen:
    sweep = {**SWEEP, "settings": {**SWEEP["settings"], "n_timesteps": budget}}
    (tmp_path / "grid.yml").write_text(yaml.safe_dump(sweep))
    return start(sweep_command(str(Path("..") / "grid.yml") if cwd != tmp_path else "grid.yml", "--workers", "2"),
                 cwd, log)


def published_runs(results: Path) -> list[Path]:
    return [path for path in results.iterdir() if path.is_dir() and not path.name.startswith(".")]


def test_ctrl_c_stops_a_sweep_and_its_runs_within_seconds_and_the_same_command_resumes(tmp_path):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    results, log = cwd / "results", tmp_path / "sweep.log"
    sweep = start_sweep(tmp_path, cwd, log)
    run_ids = RUN_IDS
    try:
        wait_for(lambda: all(progressed(results / run_id, 0.3)() for run_id in run_ids), STARTUP_S,
                 "both runs to checkpoint", sweep, log)
        runs = descendants(sweep.pid)
        assert len(runs) >= 2
        sweep.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        assert sweep.wait(timeout=STOPPED_WITHIN_S + 10) == 130, tail(log)
    finally:
        stop(sweep)
    assert time.monotonic() - signalled < STOPPED_WITHIN_S
    assert not any(is_running(pid) for pid in runs)
    assert "interrupted; runs in flight kept their last checkpoint" in tail(log)
    for folder in published_runs(results):  # nothing half-published
        read_result(folder)
    # Each run kept its checkpoint, or (on a starved machine one run can finish before the other reaches 30 %)
    # was published whole before the signal: nothing is lost either way.
    finished = {folder.name for folder in published_runs(results)}
    kept = {run_id: find_checkpoint(results / PARTIAL / run_id) for run_id in run_ids if run_id not in finished}
    assert kept and all(checkpoint is not None for checkpoint in kept.values()), (finished, kept)

    completed = finish(sweep_command("../grid.yml"), cwd)
    assert f"{len(kept)} to train ({len(kept)} resume from a checkpoint)" in completed.stdout
    for run_id in run_ids:
        result = read_result(results / run_id)
        assert result["num_timesteps"] == BUDGET
        assert result["resumed_at"] == ([kept[run_id].num_timesteps] if run_id in kept else [])
        assert result["evaluations"]["timesteps"] == EVALUATIONS
        attempts = (results / ".sb3-tar-logs" / f"{run_id}.log").read_text().count("\n=== ")
        assert attempts == (2 if run_id in kept else 1)  # the log of each attempt is appended
    assert sorted(path.name for path in published_runs(results)) == sorted(run_ids)


def test_a_second_sweep_is_refused_and_killing_a_sweep_stops_its_runs(tmp_path):
    results, log = tmp_path / "results", tmp_path / "sweep.log"
    sweep = start_sweep(tmp_path, tmp_path, log, budget=20 * BUDGET)  # runs far from done when the sweep dies
    run_ids = RUN_IDS
    try:
        wait_for(lambda: all(checkpoint_state(results / run_id) for run_id in run_ids), STARTUP_S,
                 "both runs to checkpoint", sweep, log)
        runs = descendants(sweep.pid)
        assert len(runs) == 2
        second = subprocess.run(sweep_command("grid.yml"), cwd=tmp_path, env=CHILD_ENV, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode != 0
        assert f"is in use by pid {sweep.pid}" in second.stderr and "sb3_tar sweep" in second.stderr
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(timeout=30)
    finally:
        stop(sweep)
    killed = time.monotonic()
    wait_for(lambda: not any(is_running(pid) for pid in runs), STOPPED_WITHIN_S, "the runs to exit once the sweep died")
    assert time.monotonic() - killed < STOPPED_WITHIN_S
    for run_id in run_ids:  # each run was stopped by the SIGTERM the kernel sent it, and kept its checkpoint
        assert "sb3-tar train: interrupted; the checkpoint at step" in tail(results / ".sb3-tar-logs" / f"{run_id}.log")
    assert published_runs(results) == []
