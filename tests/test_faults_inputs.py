"""Bad input found by the fault round (issue 21): each refused before any work, naming the setting."""

from __future__ import annotations

import copy
import errno

import gymnasium as gym
import pytest
import torch
from stable_baselines3 import SAC

import sb3_tar
from sb3_tar.cli import main
from sb3_tar.experiments.config import RunConfig
from sb3_tar.experiments.grid import expand_grid
from sb3_tar.export import export_actor
from sb3_tar.settings import SparsitySettings

GRID = {
    "grid": {"algo": ["sac"], "env": ["Pendulum-v1"], "method": ["static", "tar"], "criterion": ["magnitude"],
             "sparsity": [0.9], "recovery_ratio": [0.01], "width": [16], "seed": [0]},
    "settings": {"n_timesteps": 1000},
}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("key", ["ent_coef", "gamma", "learning_rate", "tau"])
def test_a_non_finite_hyperparameter_is_refused_naming_it(key, value):
    with pytest.raises(ValueError, match=rf"hyperparam {key}=.* must be a (finite|positive) number"):
        RunConfig(hyperparams={key: value})


def test_minus_zero_is_zero_so_one_run_is_never_trained_twice():
    sweep = copy.deepcopy(GRID)
    sweep["grid"]["sparsity"] = [0.0, -0.0]
    sweep["grid"]["method"] = ["static"]
    (config,) = expand_grid(sweep)
    assert config.run_id == "sac-Pendulum-v1-static-magnitude-s0-w16-seed0"
    assert str(SparsitySettings(-0.0).sparsity) == "0.0"


@pytest.mark.parametrize("change", [{"seed": []}, {"method": ["tar"], "recovery_ratio": [0.0]}],
                         ids=["empty-list", "tar-without-revival"])
def test_a_sweep_with_no_run_is_an_error_not_zero_runs(change):
    sweep = copy.deepcopy(GRID)
    sweep["grid"].update(change)
    with pytest.raises(ValueError, match="sweep has no run to train"):
        expand_grid(sweep)


def test_zero_threads_is_refused_by_the_command_line(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--threads", "0"])
    assert stopped.value.code == 2
    assert "argument --threads: 0 must be an integer >= 1" in capsys.readouterr().err


def test_nan_weights_are_refused_by_load_and_by_export(tmp_path):
    model = SAC("TarMlpPolicy", gym.make("Pendulum-v1"), seed=0, device="cpu",
                policy_kwargs={"net_arch": [16], "sparsity": 0.5})
    agent = sb3_tar.sparse_agent(model)
    name, mask = next(iter(agent.masks.items()))
    with torch.no_grad():
        model.policy.get_parameter(name)[mask] = float("nan")
    with pytest.raises(ValueError, match=r"layer .*: its weight holds nan or inf"):
        export_actor(model, tmp_path / "actor.sb3tar")
    assert not (tmp_path / "actor.sb3tar").exists()
    model.save(tmp_path / "model.zip")
    with pytest.raises(sb3_tar.MaskMismatchError, match=rf"{name} holds nan or inf"):
        SAC.load(tmp_path / "model.zip", device="cpu")


@pytest.mark.parametrize("policy_kwargs", ["dict(sparsity=0.99, net_arch=[16, 16])", {"net_arch": [16]},
                                           {"criterion": "erk", "activation_fn": "nn.ReLU"}])
def test_policy_kwargs_that_set_what_the_run_sets_are_refused_not_ignored(policy_kwargs):
    with pytest.raises(ValueError, match=r"hyperparam policy_kwargs sets \[.*\], which the run sets itself: use the "
                                         r"run's own settings \(sb3-tar train --sparsity"):
        RunConfig(method="tar", hyperparams={"policy_kwargs": policy_kwargs})
    RunConfig(method="tar", hyperparams={"policy_kwargs": "dict(log_std_init=-2)"})  # the policy's other options pass


TRAIN = ["train", "--env", "Pendulum-v1", "--method", "tar", "--sparsity", "0.8", "--timesteps", "200", "--net-arch",
         "16", "16", "--no-progress-bar", "--hyperparam", "learning_starts=50", "--checkpoint-freq", "100"]


@pytest.mark.parametrize(("output", "message"), [
    ("a-file/run", r"--output '.*a-file/run': '.*a-file' is a file, not a folder"),
    ("a-file", r"--output '.*a-file' is a file, not a result folder \(--overwrite replaces only a result folder\)"),
    ("x" * 300, r"--output: the name 'x{40}'\.\.\. is 300 bytes; at most 255 fit here"),
])
def test_an_output_folder_that_cannot_be_is_refused_before_training(output, message, tmp_path):
    (tmp_path / "a-file").write_text("the user's notes")
    with pytest.raises(SystemExit, match=rf"^sb3-tar train: {message}"):
        main([*TRAIN, "--overwrite", "--output", str(tmp_path / output)])
    assert (tmp_path / "a-file").read_text() == "the user's notes"  # untouched, even with --overwrite
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]


def test_a_full_disk_while_publishing_is_one_line_that_says_the_checkpoint_is_kept(tmp_path, monkeypatch):
    from sb3_tar.experiments import pipeline

    def disk_full(run, output, *, overwrite):
        raise OSError(errno.ENOSPC, "No space left on device", str(output))

    output = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "publish", disk_full)
        with pytest.raises(SystemExit) as failed:
            main([*TRAIN, "--output", str(output)])
    assert str(failed.value) == (
        f"sb3-tar train: could not write {output}: the disk is full; the checkpoint at step 200 is kept in "
        f"{tmp_path / '.sb3-tar-partial' / 'run'}: free the space (or fix the folder) and run the same command again "
        "to resume")
    main([*TRAIN, "--output", str(output)])  # space freed: the same command finishes the run
    assert (output / "result.json").exists() and not (tmp_path / ".sb3-tar-partial").exists()


def test_a_string_activation_is_refused_naming_the_code_to_write():
    with pytest.raises(ValueError, match=r"activation_fn='tanh' is a string; .*dict\(activation_fn=nn.Tanh\)"):
        RunConfig(hyperparams={"policy_kwargs": "dict(activation_fn='tanh')"})
    RunConfig(hyperparams={"policy_kwargs": "dict(activation_fn=nn.Tanh)"})  # code: rl-zoo3 evaluates it


def test_export_to_a_folder_under_a_file_or_a_full_disk_is_one_line_and_spoils_nothing(tmp_path, monkeypatch, capsys):
    model = SAC("TarMlpPolicy", "Pendulum-v1", seed=0, device="cpu",
                policy_kwargs={"net_arch": [16, 16], "sparsity": 0.8})
    model.save(tmp_path / "model.zip")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "folder").mkdir()
    with pytest.raises(SystemExit, match=r"output '.*folder' is a folder; give a file name, e\.g\. '.*actor\.sb3tar'"):
        main(["export", str(tmp_path / "model.zip"), str(tmp_path / "folder")])
    with pytest.raises(SystemExit, match=r"output '.*a-file/actor': '.*a-file' is a file, not a folder"):
        main(["export", str(tmp_path / "model.zip"), str(tmp_path / "a-file" / "actor")])
    actor = tmp_path / "actor.sb3tar"
    main(["export", str(tmp_path / "model.zip"), str(actor)])
    before = actor.read_bytes()
    real_write = type(actor).write_bytes

    def half_then_full(self, data):
        real_write(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(type(actor), "write_bytes", half_then_full)
    with pytest.raises(SystemExit, match=r"could not write .*: the disk is full; nothing was exported"):
        main(["export", str(tmp_path / "model.zip"), str(actor)])
    assert actor.read_bytes() == before  # the previous actor is intact, and no temporary is left
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file", "actor.sb3tar", "folder", "model.zip"]


@pytest.mark.parametrize("damaged", ["model.zip", "replay_buffer.npz"])
def test_a_damaged_checkpoint_is_set_aside_and_the_run_starts_over(damaged, tmp_path, capsys):
    """A truncated archive in the checkpoint never blocks the output: it moves aside, named, and the run trains."""
    from sb3_tar.experiments.checkpoint import CORRUPT, find_checkpoint

    output = tmp_path / "run"
    with pytest.raises(SystemExit):  # a full disk at publishing leaves the step-200 checkpoint behind
        from sb3_tar.experiments import pipeline

        real_publish = pipeline.publish
        pipeline.publish = lambda *args, **kwargs: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full", "x"))
        try:
            main([*TRAIN, "--output", str(output)])
        finally:
            pipeline.publish = real_publish
    work = tmp_path / ".sb3-tar-partial" / "run"
    archive = work / "checkpoint" / damaged
    with open(archive, "r+b") as file:
        file.truncate(archive.stat().st_size // 2)
    assert find_checkpoint(work) is None  # never trusted
    capsys.readouterr()
    main([*TRAIN, "--output", str(output)])
    printed = capsys.readouterr().out
    assert "the checkpoint is damaged, so the run starts over" in printed and damaged in printed
    assert (output / "result.json").exists()
    (kept,) = (tmp_path / CORRUPT).glob("*/run.checkpoint")
    assert (kept / damaged).stat().st_size < (kept / "model.zip").stat().st_size * 10  # the damaged copy, kept


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--sparsty", "0.9"], "unrecognized arguments: --sparsty (did you mean --sparsity?) 0.9"),
    (["train", "--recovery_ratio=0.02"], "unrecognized arguments: --recovery_ratio=0.02 (did you mean "
                                         "--recovery-ratio?)"),
    (["sweep", "grid.yml", "--wokers", "2"], "unrecognized arguments: --wokers (did you mean --workers?) 2"),
    (["train", "--foo"], "unrecognized arguments: --foo"),
])
def test_a_misspelt_flag_gets_the_closest_flag_of_its_command(argv, message, capsys):
    with pytest.raises(SystemExit) as refused:
        main(argv)
    assert refused.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"error: {message}")
