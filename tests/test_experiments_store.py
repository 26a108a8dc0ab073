"""Result folders and checkpoints on disk: validation, crash-safe publishing and checkpoints, locks.

Crashes are injected by making the n-th file-system operation of ``publish``/``write_checkpoint``
raise ``Crash`` (a ``BaseException``, as a process dying there would leave things); after each,
the output path holds the old or the new complete result, or ``recover`` puts one there and says
which.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import gymnasium as gym
import pytest
from sb3_support import make_model
from stable_baselines3 import SAC
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_tar.experiments import checkpoint as checkpoints
from sb3_tar.experiments import store
from sb3_tar.experiments.checkpoint import find_checkpoint, write_checkpoint
from sb3_tar.experiments.store import (
    ResultError,
    is_finished,
    load_results,
    old_dir,
    partial_dir,
    publish,
    read_result,
    recover,
)
from sb3_tar.experiments.timing import StepTimeCallback


class Crash(BaseException):
    """The process died here."""


def valid_result(name: str, budget: int = 1000) -> dict:
    return {"run_id": name, "label": "TAR (magnitude)", "config": {}, "hyperparams": {},
            "summary": {"algo": "sac", "env": "Pendulum-v1", "method": "tar", "criterion": None, "sparsity": 0.9,
                        "recovery_ratio": 0.01, "width": 16, "depth": 2, "seed": 0, "n_timesteps": budget,
                        "eval_freq": budget, "eval_episodes": 1}, "num_timesteps": budget,
            "evaluations": {"timesteps": [budget], "mean_return": [-100.0]},
            "final_evaluation": {"mean_return": -100.0}, "cost": {"flops_per_action": 1.0},
            "provenance": {"wall_time_s": 1.0}}


def result_folder(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(valid_result(name)))
    return folder


def held(output: Path) -> str | None:
    """Which complete result is at ``output`` ("old" or "new"), or None."""
    return read_result(output)["run_id"] if is_finished(output) else None


def crash_at(monkeypatch, module, call: int) -> list[str]:
    """Make the ``call``-th ``os.rename``/``shutil.rmtree`` of ``module`` raise ``Crash``; returns the log of calls."""
    calls: list[str] = []
    rename, rmtree = os.rename, shutil.rmtree

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls.append(name)
            if len(calls) == call:
                raise Crash(f"{name} #{call}")
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(module.os, "rename", counted("rename", rename))
    monkeypatch.setattr(module.shutil, "rmtree", counted("rmtree", rmtree))
    return calls


# -- read_result ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("damage", "message"), [
    (lambda r: r.pop("final_evaluation"), r"lacks \['final_evaluation'\]"),
    (lambda r: r.pop("cost"), r"lacks \['cost'\]"),
    (lambda r: r["summary"].pop("n_timesteps"), r"lacks \['summary.n_timesteps'\]"),
    (lambda r: r["provenance"].pop("wall_time_s"), r"lacks \['provenance.wall_time_s'\]"),
    (lambda r: r.update(evaluations=[]), r"lacks \['evaluations.timesteps', 'evaluations.mean_return'\]"),
    (lambda r: r.update(num_timesteps=600), r"records 600 of 1000 steps"),
    (lambda r: r.update(num_timesteps="1000"), r"records '1000' of 1000 steps"),
    # hand edits that keep valid JSON: each refused before the report would misread it
    (lambda r: r["summary"].pop("sparsity"), r"lacks \['summary.sparsity'\]"),
    (lambda r: r["summary"].update(sparsity="0.9"), r"summary.sparsity is '0.9', not a number: not a result "
                                                    r"sb3-tar wrote \(edited by hand\?\)"),
    (lambda r: r["summary"].update(width=256.5), r"summary.width is 256.5, not an integer"),
    (lambda r: r.update(label=None), r"label is None, not text"),
    (lambda r: r["summary"].update(criterion=3), r"summary.criterion is 3, not text or null"),
    (lambda r: r.update(cost=[]), r"cost is list, not a mapping"),
    (lambda r: r["evaluations"].update(mean_return=[1.0, 2.0]), r"evaluations.timesteps and evaluations.mean_return "
                                                           r"are not two lists of as many steps and returns"),
    (lambda r: r["final_evaluation"].update(mean_return="high"), r"final_evaluation.mean_return is 'high', not a "
                                                                 r"number"),
])
def test_read_result_rejects_an_incomplete_result_naming_the_file(damage, message, tmp_path):
    result = valid_result("run")
    damage(result)
    (tmp_path / "result.json").write_text(json.dumps(result))
    with pytest.raises(ResultError, match=message) as error:
        read_result(tmp_path)
    assert str(tmp_path / "result.json") in str(error.value)


def test_read_result_rejects_a_truncated_or_missing_file(tmp_path):
    (tmp_path / "result.json").write_text(json.dumps(valid_result("run"))[:50])
    with pytest.raises(ResultError, match=rf"{tmp_path}/result.json is not valid JSON .*truncated or corrupt"):
        read_result(tmp_path)
    (tmp_path / "result.json").write_text("[1, 2]")
    with pytest.raises(ResultError, match="not a complete sb3-tar result"):
        read_result(tmp_path)
    with pytest.raises(ResultError, match="does not exist"):
        read_result(tmp_path / "elsewhere")
    with pytest.raises(ResultError, match=f"{tmp_path}/result.json"):
        load_results(tmp_path.parent)


# -- publish and recover --------------------------------------------------------------------------

def test_publish_moves_only_a_complete_result_and_replaces_only_when_asked(tmp_path):
    output = tmp_path / "run"
    incomplete = tmp_path / "building"
    incomplete.mkdir()
    with pytest.raises(ResultError):
        publish(incomplete, output, overwrite=False)
    assert not output.exists()
    publish(result_folder(tmp_path / "first", "old"), output, overwrite=False)
    with pytest.raises(FileExistsError):
        publish(result_folder(tmp_path / "second", "new"), output, overwrite=False)
    assert held(output) == "old"
    publish(tmp_path / "second", output, overwrite=True)
    assert held(output) == "new"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["building", "run"]  # no .sb3-tar-old left


@pytest.mark.parametrize("crash", [1, 2, 3, 4])
def test_an_overwrite_that_dies_anywhere_leaves_a_complete_result_or_recover_restores_one(crash, tmp_path,
                                                                                         monkeypatch):
    output = result_folder(tmp_path / "run", "old")
    new = result_folder(partial_dir(output) / "run", "new")
    calls = crash_at(monkeypatch, store, crash)
    try:
        publish(new, output, overwrite=True)
    except Crash:
        pass
    monkeypatch.undo()
    assert len(calls) >= crash or held(output) == "new"
    before = held(output)
    message = recover(output)
    after = held(output)
    assert after in ("old", "new")
    if before is None:  # between the two renames: recover must finish the swap, and say so
        assert after == "new" and message.startswith("finished replacing")
    else:
        assert after == before
    assert not old_dir(output).exists() and not old_dir(output).parent.exists()
    assert recover(output) is None  # nothing left to do


def test_recover_restores_the_old_result_when_the_new_one_is_incomplete(tmp_path):
    output = result_folder(tmp_path / "run", "old")
    new = partial_dir(output) / "run"
    new.mkdir(parents=True)
    (new / "result.json").write_text('{"run_id": "new"')  # the new result was being written
    old_dir(output).parent.mkdir()
    os.rename(output, old_dir(output))  # the first rename of an overwrite, then the process died
    message = recover(output)
    assert held(output) == "old"
    assert message == f"restored the previous result to {output} (a replacement of it had been interrupted)"
    assert not old_dir(output).parent.exists()


def test_recover_finishes_removing_the_old_result_and_says_so(tmp_path):
    output = result_folder(tmp_path / "run", "new")
    result_folder(old_dir(output), "old")  # both renamed, the old one not yet deleted
    message = recover(output)
    assert held(output) == "new" and not old_dir(output).parent.exists()
    assert message and "removed the previous result" in message and str(old_dir(output)) in message


def test_ctrl_c_during_publish_waits_until_the_new_result_is_in_place(tmp_path, monkeypatch):
    output = result_folder(tmp_path / "run", "old")
    new = result_folder(partial_dir(output) / "run", "new")
    rename = os.rename

    def rename_then_ctrl_c(source, destination):
        rename(source, destination)
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, between the two renames

    monkeypatch.setattr(store.os, "rename", rename_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        publish(new, output, overwrite=True)
    assert held(output) == "new" and not old_dir(output).exists()


# -- checkpoints ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    return make_model(SAC, "TarMlpPolicy", net_arch=[16, 16], sparsity=0.8)


def checkpoint_at(work: Path, model, steps: int) -> None:
    model.num_timesteps = steps
    write_checkpoint(work, model, {"run": "config"}, None, StepTimeCallback(), {"resumes": []})


@pytest.mark.parametrize("crash", [1, 2, 3, 4, 5])
def test_a_checkpoint_write_that_dies_anywhere_leaves_a_complete_checkpoint(crash, model, tmp_path, monkeypatch):
    work = tmp_path / "work"
    checkpoint_at(work, model, 100)
    checkpoint_at(work, model, 200)
    calls = crash_at(monkeypatch, checkpoints, crash)
    try:
        checkpoint_at(work, model, 300)
    except Crash:
        pass
    monkeypatch.undo()
    found = find_checkpoint(work)
    assert found is not None and found.num_timesteps in (200, 300), calls
    assert SAC.load(found.path / "model.zip", device="cpu").num_timesteps == found.num_timesteps


def test_resuming_from_the_previous_checkpoint_never_loses_it(model, tmp_path, monkeypatch):
    work = tmp_path / "work"
    checkpoint_at(work, model, 100)
    os.rename(work / "checkpoint", work / "checkpoint.old")  # a write died between its two renames
    assert find_checkpoint(work).num_timesteps == 100
    for crash in (1, 2, 3, 4):  # the next write, resumed from checkpoint.old, dies anywhere too
        calls = crash_at(monkeypatch, checkpoints, crash)
        try:
            checkpoint_at(work, model, 200)
        except Crash:
            pass
        monkeypatch.undo()
        found = find_checkpoint(work)
        assert found is not None and found.num_timesteps in (100, 200), calls


def test_find_checkpoint_only_reads(model, tmp_path):
    work = tmp_path / "work"
    checkpoint_at(work, model, 100)
    (work / "checkpoint.new").mkdir()  # a checkpoint being written by a run in flight
    assert find_checkpoint(work).num_timesteps == 100
    assert (work / "checkpoint.new").exists()


def test_a_replay_buffer_checkpoint_holds_only_the_filled_part(model, tmp_path):
    model.learn(150)
    work = tmp_path / "work"
    checkpoint_at(work, model, model.num_timesteps)
    fresh = make_model(SAC, "TarMlpPolicy", net_arch=[16, 16], sparsity=0.8, seed=1)
    find_checkpoint(work).restore(fresh, None, StepTimeCallback())
    assert fresh.replay_buffer.pos == model.replay_buffer.pos == 150
    assert (fresh.replay_buffer.observations[:150] == model.replay_buffer.observations[:150]).all()
    assert (fresh.replay_buffer.rewards[:150] == model.replay_buffer.rewards[:150]).all()
    assert (work / "checkpoint" / "replay_buffer.npz").stat().st_size < 100_000  # not the 10^6 allocated


def test_a_checkpoint_whose_normalization_does_not_match_its_run_is_refused_naming_both(model, tmp_path):
    work = tmp_path / "work"
    checkpoint_at(work, model, 100)
    normalized = make_model(SAC, "TarMlpPolicy", net_arch=[16, 16], sparsity=0.8,
                            env=VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")])))
    with pytest.raises(ValueError, match="has no vecnormalize.pkl, but the run it resumes normalizes its environment"):
        find_checkpoint(work).restore(normalized, None, StepTimeCallback())
    checkpoint_at(work, normalized, 200)
    with pytest.raises(ValueError, match="holds vecnormalize.pkl, but the run it resumes does not normalize"):
        find_checkpoint(work).restore(model, None, StepTimeCallback())



def test_a_json_write_that_fills_the_disk_leaves_no_half_file_nor_temporary(tmp_path, monkeypatch):
    import errno

    from sb3_tar.experiments.store import write_json_atomically

    target = tmp_path / "config.json"
    target.write_text('{"kept": true}')
    real_write_text = Path.write_text

    def half_then_full(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(OSError):
        write_json_atomically(target, {"new": list(range(100))})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"kept": True}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.json"]
