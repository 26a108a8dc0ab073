"""``run_training``: every method through the one pipeline; only a run that reached its budget is published.

Faults here are injected in-process (a callback that stops training, an exception, a Ctrl-C raised
from inside training); ``test_faults.py`` sends real signals to real processes.
"""

from __future__ import annotations

import csv
import json
import io
import os
import signal

import pytest
from rl_zoo3.utils import ALGOS
from sb3_support import assert_masks_hold

import sb3_tar
from run_support import RESULT_KEYS, read_json, tiny
from sb3_tar.experiments import store, timing
from sb3_tar.experiments.checkpoint import find_checkpoint
from sb3_tar.experiments.pipeline import IncompleteRunError, RunInterrupted, run_training
from sb3_tar.experiments.store import LockedError, locked, partial_dir, read_result

SPARSE_NETWORKS = {"actor", "qf0", "qf1"}


def stop_training_at(monkeypatch, step: int, action: str) -> None:
    """Make the run's step timer (a callback of every run) stop training, raise, or press Ctrl-C at ``step``."""
    original = timing.StepTimeCallback._on_step

    def on_step(self) -> bool:
        if self.num_timesteps == step:
            if action == "error":
                raise RuntimeError("the environment crashed")
            if action == "ctrl-c":
                raise KeyboardInterrupt
            return False
        return original(self)

    monkeypatch.setattr(timing.StepTimeCallback, "_on_step", on_step)


@pytest.mark.parametrize("method", ["dense", "static", "tar", "uniform", "set", "rigl"])
def test_every_method_trains_through_run_training(method, tmp_path):
    config = tiny(method)
    run = run_training(config, tmp_path / "run")
    result = read_json(tmp_path / "run" / "result.json")
    assert run.result == result and RESULT_KEYS <= set(result)
    assert result["summary"]["method"] == method and result["num_timesteps"] == 300
    assert result["run_id"] == config.run_id and result["label"] == config.label
    model = ALGOS["sac"].load(tmp_path / "run" / "model.zip", device="cpu")
    expected_policy = "TarMlpPolicy" if method in ("static", "tar", "uniform") else "MlpPolicy"
    assert result["hyperparams"]["policy"] == expected_policy
    header = set((tmp_path / "run" / "progress.csv").read_text().splitlines()[0].split(","))
    if method == "dense":
        assert result["topology"] == {} and not list((tmp_path / "run").glob("topology*"))
        assert result["summary"]["sparsity"] == 0.0
        return
    assert set(result["topology"]) == SPARSE_NETWORKS
    assert all(network["achieved_sparsity"] == pytest.approx(0.8 - network["repaired_weights"] / network["total_weights"],
                                                           abs=0.01) for network in result["topology"].values())
    agent = sb3_tar.sparse_agent(model)
    assert_masks_hold(agent)
    assert all(result["kept_weights"][n] <= result["topology"][n]["kept_weights"] for n in SPARSE_NETWORKS)
    if method in ("static", "tar", "uniform"):
        assert "sparsity/actor/sparsity" in header
        revived = {network["revived_weights"] for network in result["topology"].values()}
        assert (revived == {0}) == (method == "static")
        assert {network["allocation"] for network in result["topology"].values()} == (
            {"uniform"} if method == "uniform" else {"topology"})
    else:
        assert model.sb3_tar_dst_state["gradient_steps"] == 200  # steps 101..300, one gradient step each
        assert any(key.startswith("dst/") for key in header)  # the mask updates were logged


def test_a_run_that_training_stops_early_is_not_published_and_the_next_call_finishes_it(tmp_path, monkeypatch):
    output, config = tmp_path / "run", tiny(checkpoint_freq=50)
    stop_training_at(monkeypatch, 150, "stop")
    with pytest.raises(IncompleteRunError, match="training stopped at step 150 of 300"):
        run_training(config, output)
    assert not output.exists()
    kept = find_checkpoint(partial_dir(output))
    # kept to resume from: the one before the stop, which holds every gradient step of its steps
    # (the stop came before step 150's gradient step, so no checkpoint is written at 150)
    assert kept is not None and kept.num_timesteps == 100
    monkeypatch.undo()
    result = run_training(config, output).result
    assert result["resumed_at"] == [100] and result["num_timesteps"] == 300
    assert result["evaluations"]["timesteps"] == [150, 300]
    assert ALGOS["sac"].load(output / "model.zip", device="cpu")._n_updates == 200  # one per step after 100
    assert [path.name for path in tmp_path.iterdir()] == ["run"]  # the work folder is gone


def test_a_run_that_fails_before_a_checkpoint_leaves_an_existing_result_alone_and_creates_nothing(tmp_path,
                                                                                                  monkeypatch):
    stop_training_at(monkeypatch, 120, "error")
    with pytest.raises(RuntimeError, match="the environment crashed"):
        run_training(tiny(), tmp_path / "new")
    assert list(tmp_path.iterdir()) == []

    output = tmp_path / "run"
    output.mkdir()
    (output / "result.json").write_text("the previous result")
    with pytest.raises(RuntimeError, match="the environment crashed"):
        run_training(tiny(), output, overwrite=True)
    assert [path.name for path in tmp_path.iterdir()] == ["run"]
    assert (output / "result.json").read_text() == "the previous result"


def test_ctrl_c_keeps_the_last_checkpoint_and_says_where(tmp_path, monkeypatch):
    output = tmp_path / "run"
    stop_training_at(monkeypatch, 120, "ctrl-c")
    with pytest.raises(RunInterrupted, match="before the first checkpoint; nothing was kept"):
        run_training(tiny(), output)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    stop_training_at(monkeypatch, 250, "ctrl-c")
    with pytest.raises(RunInterrupted) as interrupted:
        run_training(tiny(), output)
    assert f"the checkpoint at step 150 of 300 is kept in {partial_dir(output)}" in str(interrupted.value)
    assert "run the same command again to resume" in str(interrupted.value) and not output.exists()


def test_a_run_stopped_twice_after_one_checkpoint_keeps_both_interrupted_logs(tmp_path, monkeypatch):
    output = tmp_path / "run"
    for _ in range(2):
        stop_training_at(monkeypatch, 250, "ctrl-c")
        with pytest.raises(RunInterrupted, match="the checkpoint at step 150 of 300"):
            run_training(tiny(), output)
        monkeypatch.undo()
    (partial_dir(output) / "run" / "progress.until-150.csv").write_text("rows of the first run, up to step 150")
    stop_training_at(monkeypatch, 250, "ctrl-c")
    with pytest.raises(RunInterrupted):
        run_training(tiny(), output)
    monkeypatch.undo()
    run_training(tiny(), output)
    assert (output / "progress.until-150.csv").read_text() == "rows of the first run, up to step 150"
    assert {path.name for path in output.glob("progress.until-150*.csv")} == {
        "progress.until-150.csv", "progress.until-150-2.csv", "progress.until-150-3.csv"}


def test_a_resumed_run_logs_no_training_episode_twice(tmp_path, monkeypatch):
    # Pendulum episodes are 200 steps: the one ending at 400 comes after the checkpoint at 300
    config, output = tiny("dense", n_timesteps=600, eval_freq=300, hyperparams={"learning_starts": 550}), tmp_path / "run"
    stop_training_at(monkeypatch, 450, "ctrl-c")
    with pytest.raises(RunInterrupted, match="the checkpoint at step 300 of 600"):
        run_training(config, output)
    monkeypatch.undo()
    run_training(config, output)
    episodes = (output / "0.monitor.csv").read_text().splitlines()[2:]
    assert [row.split(",")[1] for row in episodes] == ["200", "200"]  # steps 1-200, then 301-500 after the resume


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path, monkeypatch):
    output = tmp_path / "run"
    stop_training_at(monkeypatch, 200, "stop")
    with pytest.raises(IncompleteRunError):
        run_training(tiny(seed=1), output)
    monkeypatch.undo()
    kept = find_checkpoint(partial_dir(output))
    with pytest.raises(FileExistsError, match=r"holds the checkpoint at step 150 of another run, "
                                              r"sac-Pendulum-v1-.*-seed1: resume it .* or discard it with --overwrite"):
        run_training(tiny(seed=2), output)
    assert find_checkpoint(partial_dir(output)).num_timesteps == kept.num_timesteps  # untouched
    messages = []
    result = run_training(tiny(seed=2), output, overwrite=True, echo=messages.append).result
    assert result["resumed_at"] == [] and result["config"]["seed"] == 2
    assert any("discarding a checkpoint" in message and "other settings" in message for message in messages)


def test_a_checkpoint_whose_tuned_hyperparameters_changed_since_is_not_resumed(tmp_path, monkeypatch):
    """The tuned files may change between a stop and a resume (a suite spans sessions): no mixed run."""
    import sb3_tar.experiments.pipeline as pipeline

    output = tmp_path / "run"
    stop_training_at(monkeypatch, 200, "stop")
    with pytest.raises(IncompleteRunError):
        run_training(tiny(), output)
    monkeypatch.undo()
    tuned = pipeline.run_hyperparams
    monkeypatch.setattr(pipeline, "run_hyperparams", lambda config: {**tuned(config), "gamma": 0.9})
    messages = []
    result = run_training(tiny(), output, echo=messages.append).result
    assert result["resumed_at"] == [] and result["hyperparams"]["gamma"] == 0.9
    assert any("discarding a checkpoint" in message and "hyperparameters" in message for message in messages)


def test_an_existing_output_or_a_run_in_flight_is_refused_before_anything_is_written(tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    with pytest.raises(FileExistsError, match="exists; choose another or allow overwriting it"):
        run_training(tiny(), output)
    assert [path.name for path in tmp_path.iterdir()] == ["run"]
    output.rmdir()
    with locked(partial_dir(output) / "lock", "the test"):
        with pytest.raises(LockedError, match=r"output folder .*/run is in use by pid \d+"):
            run_training(tiny(), output)
    assert not output.exists()


def test_ctrl_c_while_publishing_waits_for_the_result_and_says_it_is_complete(tmp_path, monkeypatch):
    rename = os.rename

    def rename_then_ctrl_c(source, destination):
        rename(source, destination)
        if destination == tmp_path / "run":
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, as the run is moved into place

    monkeypatch.setattr(store.os, "rename", rename_then_ctrl_c)
    with pytest.raises(RunInterrupted, match=r"interrupted after the run was published to .*/run; it is complete"):
        run_training(tiny("dense"), tmp_path / "run")
    assert read_result(tmp_path / "run")["num_timesteps"] == 300
    assert [path.name for path in tmp_path.iterdir()] == ["run"]


def test_an_interrupted_log_keeps_only_the_rows_up_to_the_checkpoint_the_resume_starts_from(tmp_path, monkeypatch):
    """Rows logged after the checkpoint are trained again by the resume: kept once, in the resumed log."""
    output = tmp_path / "run"
    stop_training_at(monkeypatch, 290, "ctrl-c")  # checkpoint at 150; SB3 logged rows past it
    with pytest.raises(RunInterrupted, match="the checkpoint at step 150 of 300"):
        run_training(tiny(), output)
    monkeypatch.undo()
    log = partial_dir(output) / "run" / "progress.csv"
    rows = list(csv.DictReader(io.StringIO(log.read_text())))
    assert rows and all(float(row["time/total_timesteps"]) <= 150 for row in rows if row["time/total_timesteps"])
    with log.open("a", newline="") as file:  # what SB3 logged between the checkpoint and the interrupt
        csv.DictWriter(file, fieldnames=list(rows[0])).writerow({**rows[-1], "time/total_timesteps": "280"})
    run_training(tiny(), output)
    kept = list(csv.DictReader((output / "progress.until-150.csv").open()))
    assert kept and all(float(row["time/total_timesteps"]) <= 150 for row in kept if row["time/total_timesteps"])
    resumed = [float(row["time/total_timesteps"]) for row in csv.DictReader((output / "progress.csv").open())
               if row.get("time/total_timesteps")]
    assert min(resumed) > 150  # no step logged twice across the two files


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_run_stopped_after_publishing_is_not_trained_or_published_again(overwrite, tmp_path, monkeypatch, capsys):
    """Killed between its result's publish and its work folder's removal: the same command finishes the cleanup."""
    from sb3_tar.experiments import pipeline

    output = tmp_path / "run"
    monkeypatch.setattr(pipeline, "remove_work", lambda work: None)  # the kill: the cleanup never happens
    run_training(tiny(), output)
    monkeypatch.undo()
    published = {path.name: path.read_bytes() for path in output.iterdir() if path.is_file()}
    assert "best_model.zip" in published and partial_dir(output).exists()

    capsys.readouterr()
    again = run_training(tiny(), output, overwrite=overwrite)
    assert "this run was already published" in capsys.readouterr().out
    assert {path.name: path.read_bytes() for path in output.iterdir() if path.is_file()} == published
    assert again.result == json.loads(published["result.json"])
    assert not partial_dir(output).exists() and sorted(path.name for path in tmp_path.iterdir()) == ["run"]
