"""Bad input found by the fault round (issue 21): each refused before any work, naming the setting."""

from __future__ import annotations

import copy

import gymnasium as gym
import pytest
import torch
from stable_baselines3 import SAC

import sb3_tar
from sb3_tar.cli import main
from sb3_tar.experiments.config import RunConfig
from sb3_tar.experiments.grid import expand_grid
from sb3_tar.export import export_actor
from sb3_tar.sb3.settings import SparsitySettings

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
