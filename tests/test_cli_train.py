"""``sb3-tar train``: the main job, end to end, with tiny runs (a few hundred steps, [32, 32] networks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sb3_support import ALL_ALGOS, assert_masks_hold, assert_sparsity

import sb3_tar
from sb3_tar.cli import main
from sb3_tar.sb3 import training
from sb3_tar.sb3.training import ALGORITHMS, TrainConfig, train_run

TINY = ["--timesteps", "300", "--net-arch", "32", "32", "--evaluations", "2", "--eval-episodes", "1",
        "--hyperparam", "learning_starts=100", "--hyperparam", "batch_size=32", "--no-progress-bar"]
OUTPUTS = {"model.zip", "topology.txt", "topology.json", "learning_curve.png", "evaluations.npz", "monitor.csv",
           "progress.csv", "run.json"}


@pytest.mark.parametrize("algo", ALL_ALGOS)
def test_train_saves_the_model_topology_report_and_learning_curve_and_says_where(algo, tmp_path, capsys):
    name = next(key for key, value in ALGORITHMS.items() if value is algo)
    output = tmp_path / "run"
    main(["train", "--algo", name, "--sparsity", "0.9", "--criterion", "erk", "--recovery-ratio", "0.01",
          "--output", str(output), *TINY])
    printed = capsys.readouterr().out
    files = {path.name for path in output.iterdir()}
    networks = {"actor", "qf0"} | ({"qf1"} if name != "ddpg" else set())
    assert OUTPUTS | {f"topology-{network}.png" for network in networks} == files
    for path in ("model.zip", "topology.txt", "learning_curve.png", "progress.csv"):
        assert str(output / path) in printed
    assert f"results in {output}/" in printed and "final return" in printed

    model = algo.load(output / "model.zip", device="cpu")
    agent = sb3_tar.sparse_agent(model)
    assert_sparsity(agent, 0.9, 0.9)
    assert_masks_hold(agent)
    report = json.loads((output / "topology.json").read_text())
    assert set(report) == networks
    assert all(network["criterion"] == "erk" and network["achieved_sparsity"] == pytest.approx(0.9, abs=1e-3)
               for network in report.values())
    run = json.loads((output / "run.json").read_text())
    assert run["config"]["algo"] == name and "mean_return" in run["final_evaluation"]
    assert "sparsity/actor/revived" in (output / "progress.csv").read_text().splitlines()[0]


def test_default_output_folder_names_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["train", "--seed", "3", "--criterion", "random", *TINY])
    expected = Path("runs") / "sac-Pendulum-v1-random-s0.8-rr0.01-seed3"
    assert (tmp_path / expected / "model.zip").is_file()
    assert f"results in {expected}/" in capsys.readouterr().out
    assert TrainConfig(actor_sparsity=0.5, critic_sparsity=0.7).run_name() == (
        "sac-Pendulum-v1-magnitude-s0.8a0.5c0.7-rr0.01-seed0")


def test_an_existing_output_folder_is_refused_unless_overwrite(tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="exists; choose another with --output, or replace it with --overwrite"):
        main(["train", "--output", str(output), *TINY])
    assert [path.name for path in output.iterdir()] == ["notes.txt"]
    main(["train", "--output", str(output), "--overwrite", *TINY])
    assert not (output / "notes.txt").exists() and (output / "model.zip").is_file()
    assert [path.name for path in tmp_path.iterdir()] == ["run"]  # no partial or backup folders left


@pytest.mark.parametrize(("arguments", "message"), [
    (["--sparsity", "1.2"], "sparsity=1.2 must be in [0, 1)"),
    (["--option", "scpoe=global"], "unknown setting(s) ['scpoe']"),
    (["--env", "NoSuchEnv-v0"], "env='NoSuchEnv-v0' is not a registered Gymnasium environment"),
    (["--timesteps", "0"], "timesteps=0 must be an integer >= 1"),
    (["--hyperparam", "seed=1"], "hyperparams ['seed'] are set by the run itself"),
])
def test_a_bad_setting_stops_the_run_before_anything_is_created_or_replaced(arguments, message, tmp_path):
    output = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--output", str(output), *TINY, *arguments])
    assert message in str(stopped.value)
    assert list(tmp_path.iterdir()) == []
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        main(["train", "--output", str(output), "--overwrite", *TINY, *arguments])
    assert [path.name for path in output.iterdir()] == ["notes.txt"]


def test_a_run_that_fails_while_training_keeps_the_previous_results(tmp_path, monkeypatch):
    output = tmp_path / "run"
    output.mkdir()
    (output / "notes.txt").write_text("mine")

    def crash(config, work):
        (work / "model.zip").write_text("half written")
        raise RuntimeError("the environment crashed")

    monkeypatch.setattr(training, "_train", crash)
    with pytest.raises(RuntimeError, match="the environment crashed"):
        main(["train", "--output", str(output), "--overwrite", *TINY])
    assert [path.name for path in tmp_path.iterdir()] == ["run"]
    assert [path.name for path in output.iterdir()] == ["notes.txt"]


def test_train_run_is_the_reusable_entry_point(tmp_path):
    config = TrainConfig(algo="td3", timesteps=250, actor_sparsity=0.5, critic_sparsity=0.9, criterion="magnitude",
                         criterion_options={"scope": "layerwise"}, net_arch=(16, 16), evaluations=1,
                         eval_episodes=1, hyperparams={"learning_starts": 100}, progress_bar=False)
    result = train_run(config, tmp_path / "run")
    assert result.model.is_file() and result.learning_curve.is_file() and result.topology.is_file()
    agent = sb3_tar.sparse_agent(ALGORITHMS["td3"].load(result.model, device="cpu"))
    assert_sparsity(agent, actor=0.5, critic=0.9)
    assert agent.settings.criterion_options == {"scope": "layerwise"}
    assert torch.is_tensor(agent.masks["actor.mu.0.weight"])
    with pytest.raises(FileExistsError):
        train_run(config, tmp_path / "run")


def test_the_same_seed_gives_the_same_run(tmp_path):
    for name in ("first", "second"):
        main(["train", "--output", str(tmp_path / name), "--seed", "4", *TINY])
    first, second = (json.loads((tmp_path / name / "run.json").read_text()) for name in ("first", "second"))
    assert first["final_evaluation"] == second["final_evaluation"]
    assert (tmp_path / "first" / "monitor.csv").read_text().splitlines()[2:] != []
    first_returns, second_returns = ([line.split(",")[0] for line in (tmp_path / name / "monitor.csv").read_text()
                                      .splitlines()[2:]] for name in ("first", "second"))
    assert first_returns == second_returns


def test_python_m_sb3_tar_train_runs_with_a_progress_bar(tmp_path):
    command = [sys.executable, "-m", "sb3_tar", "train", "--output", str(tmp_path / "run"),
               *[argument for argument in TINY if argument != "--no-progress-bar"]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "300/300" in result.stdout + result.stderr  # the progress bar's last state
    assert (tmp_path / "run" / "model.zip").is_file()
