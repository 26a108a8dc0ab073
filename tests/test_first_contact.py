"""What a new user meets first: bad settings get one clear line before anything is written, and a MuJoCo
run keeps the working directory and the terminal clean."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sb3_tar.cli import main


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--hyperparam", "batch_sise=64"], "hyperparam 'batch_sise' is not an argument of SAC nor an rl-zoo3 key; did you mean 'batch_size'?"),
        (["--hyperparam", "batch_size=abc"], "hyperparam batch_size='abc' must be an integer >= 1"),
        (["--hyperparam", "gamma=nan"], "hyperparam gamma='nan' must be a finite number in [0, 1]"),
        (["--hyperparam", "seed=3"], "hyperparam seed is set by the run's own setting 'seed'"),
        (["--device", "tpu"], "device='tpu' is not a torch device; allowed: ['auto', 'cpu', 'cuda', 'mps']"),
        (["--sparsity", "1.5"], "sparsity=1.5 must be in [0, 1)"),
        (["--env", "NoSuchTask-v0"], "env='NoSuchTask-v0' is not a registered Gymnasium environment"),
        (["--method", "dense", "--sparsity", "0.5"], "method='dense' prunes nothing: leave out ['--sparsity']"),
        (["--method", "static", "--recovery-ratio", "0.01"], "method='static' revives nothing, but recovery_ratio=0.01"),
        (["--method", "tar", "--recovery-ratio", "0"], "method='tar' revives weights: recovery_ratio must be > 0"),
        (["--seed", "-1"], "seed=-1 must be an integer >= 0"),
        (["--timesteps", "0"], "n_timesteps=0 must be an integer >= 1"),
        (["--dst", "update_interval=10"], "dst options ['update_interval'] apply only to methods ['set', 'rigl']"),
    ],
)
def test_a_bad_setting_stops_train_with_one_line_naming_it_and_writes_nothing(arguments, message, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["train", *arguments])
    assert message in str(stop.value)
    assert str(stop.value).startswith("sb3-tar train: ")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_algorithm_is_refused_by_the_parser_with_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--algo", "trpo"])
    assert ("invalid choice: 'trpo' (choose from 'sac', 'td3', 'ddpg', 'tqc', 'crossq', 'ppo', 'a2c', 'ppo_lstm', 'dqn', 'qrdqn')"
            in capsys.readouterr().err)


def test_a_mujoco_run_leaves_no_mujoco_log_and_prints_no_simulator_warnings(tmp_path):
    command = [sys.executable, "-m", "sb3_tar", "train", "--env", "HalfCheetah-v4", "--timesteps", "300",
               "--net-arch", "16", "16", "--hyperparam", "learning_starts=100", "--eval-freq", "300",
               "--eval-episodes", "1", "--no-progress-bar", "--output", "run"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout + result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]  # no MUJOCO_LOG.TXT
    assert "settotalmass" not in printed and "out of date" not in printed
    assert "settotalmass" in (tmp_path / "run" / "train.log").read_text()  # recorded once, in the run's log


def test_version_and_help_show_what_a_user_needs(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("sb3-tar 0.1.0")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "(default: Pendulum-v1)" in text and "(default: tar)" in text and "(default: None)" not in text
