"""rl-zoo3 trains, saves and replays sb3-tar agents from the project's hyperparameter files, unpatched.

The training tests run the real ``python -m rl_zoo3.train`` for a few hundred steps on Pendulum-v1
(the files' smoke-test entry) and load what it saved with the algorithm's own ``load``. Only the
zoo's hyperparameter search (``-optimize``) needs more: ``--gym-packages sb3_tar.zoo``, which wraps the
zoo's samplers so that each trial keeps its sb3-tar settings.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch as th
import yaml

from stable_baselines3 import SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

import sb3_tar  # registers TarMlpPolicy, as --gym-packages sb3_tar does

REPO = Path(__file__).resolve().parents[1]
HYPERPARAMS = (REPO / "hyperparams").resolve()  # a link to the package's tuned files (sb3_tar/hyperparams)
ENV_ID = "Pendulum-v1"
STEPS = 300  # the Pendulum entries start learning after 100 steps: 200 gradient steps
SPARSITY = 0.8  # the files' default
ALGOS = {"sac": SAC, "td3": TD3}


def run_zoo(script: str, algo: str, log_folder: Path, *args: str, gym_package: str = "sb3_tar",
            env_id: str = ENV_ID, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m rl_zoo3.<script>`` on Pendulum-v1, with sb3_tar as the zoo's gym package where it takes one."""
    command = [sys.executable, "-m", f"rl_zoo3.{script}", "--algo", algo, "--env", env_id]
    command += ["-f", str(log_folder), "--seed", "0", *args]
    if script != "record_video":  # record_video has no --gym-packages: the saved model imports sb3_tar itself
        command += ["--gym-packages", gym_package]
    # One torch thread: two runs in parallel on two cores otherwise oversubscribe the CPU many times over.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(environ or {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=log_folder, env=env)


def zoo_train(algo: str, conf: Path, log_folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_zoo(
        "train", algo, log_folder, "-conf", str(conf), "-n", str(STEPS), "--eval-freq", "-1", "--num-threads", "1", *args
    )


def saved_model(algo: str, log_folder: Path) -> Path:
    return log_folder / algo / f"{ENV_ID}_1" / f"{ENV_ID}.zip"


def linear_weights(network: th.nn.Module) -> list[th.Tensor]:
    return [module.weight.detach() for module in network.modules() if isinstance(module, th.nn.Linear)]


def networks(model: BaseAlgorithm) -> dict[str, tuple[th.nn.Module, th.nn.Module | None]]:
    """Each pruned network of a SAC/TD3 policy and its target network (None for SAC's actor)."""
    policy = model.policy
    pairs = {"actor": (policy.actor, getattr(policy, "actor_target", None))}
    for index, q_network in enumerate(policy.critic.q_networks):
        pairs[f"critic.qf{index}"] = (q_network, policy.critic_target.q_networks[index])
    return pairs


def assert_sparse(model: BaseAlgorithm, sparsity: float) -> None:
    """Each network keeps exactly ``round((1 - sparsity) * weights)`` weights, plus any TAR's connectivity repair
    added; targets share its zeros."""
    repaired = {name: plan.repaired for name, plan in sb3_tar.sparse_agent(model).plans().items()}
    for name, (network, target) in networks(model).items():
        weights = linear_weights(network)
        total = sum(w.numel() for w in weights)
        nonzero = sum(int(w.count_nonzero()) for w in weights)
        expected = round((1.0 - sparsity) * total) + repaired[name.removeprefix("critic.")]
        assert nonzero == expected, f"{name}: {nonzero} of {total} weights are non-zero"
        if target is not None:
            for weight, target_weight in zip(weights, linear_weights(target), strict=True):
                assert th.all(target_weight[weight == 0] == 0), f"{name}'s target has weights its mask removes"


def assert_dense(model: BaseAlgorithm) -> None:
    """A dense variant builds SB3's own policy: no sb3-tar masks and no weight held at zero."""
    with pytest.raises(ValueError, match="has no sb3-tar masks"):
        sb3_tar.sparse_agent(model)
    for name, (network, _) in networks(model).items():
        for weight in linear_weights(network):
            assert int(weight.count_nonzero()) == weight.numel(), f"{name} has zero weights"


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_zoo_trains_saves_and_replays_a_sparse_agent_from_the_project_file(algo: str, tmp_path: Path) -> None:
    result = zoo_train(algo, HYPERPARAMS / f"{algo}.yml", tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]

    model = ALGOS[algo].load(saved_model(algo, tmp_path), device="cpu")
    assert model.num_timesteps == STEPS
    assert_sparse(model, SPARSITY)

    result = run_zoo("enjoy", algo, tmp_path, "--exp-id", "1", "-n", "100", "--no-render", "--deterministic")
    assert result.returncode == 0, result.stderr[-4000:]

    result = run_zoo("record_video", algo, tmp_path, "--exp-id", "1", "-n", "50")
    assert result.returncode == 0, result.stderr[-4000:]
    assert list((tmp_path / algo / f"{ENV_ID}_1" / "videos").glob("*.mp4"))


def test_tar_callback_from_the_zoo_callback_key(tmp_path: Path) -> None:
    entry = yaml.safe_load((HYPERPARAMS / "sac.yml").read_text())[ENV_ID]
    entry["policy"] = "MlpPolicy"
    entry["policy_kwargs"] = {"net_arch": [64, 64]}
    entry["callback"] = [
        {"sb3_tar.TARCallback": {"sparsity": 0.7, "criterion": "erk", "recovery_ratio": 0.02, "seed": 3}}
    ]
    conf = tmp_path / "sac-callback.yml"
    conf.write_text(yaml.safe_dump({ENV_ID: entry}))
    result = zoo_train("sac", conf, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert_sparse(SAC.load(saved_model("sac", tmp_path), device="cpu"), 0.7)


def test_dst_callback_from_a_variant_file_trains_through_the_zoo(tmp_path: Path) -> None:
    entry = yaml.safe_load((HYPERPARAMS / "variants" / "td3" / "w256" / "rigl.yml").read_text())[ENV_ID]
    (dst_kwargs,) = entry["callback"][0].values()
    dst_kwargs["update_interval"] = 50  # several mask updates within the run's 200 gradient steps
    conf = tmp_path / "td3-rigl.yml"
    conf.write_text(yaml.safe_dump({ENV_ID: entry}))
    result = zoo_train("td3", conf, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    model = TD3.load(saved_model("td3", tmp_path), device="cpu")
    for name, (network, _) in networks(model).items():
        weights = linear_weights(network)
        total = sum(w.numel() for w in weights)
        # regrown weights start at exactly 0, so a network may hold a few more zeros than its mask
        assert sum(int(w.count_nonzero()) for w in weights) <= round((1.0 - SPARSITY) * total), name


def test_readme_replay_and_video_commands_run_headless_on_a_mujoco_task(tmp_path: Path) -> None:
    """The README's enjoy and record_video lines, on a machine without a display (HalfCheetah-v4, MuJoCo).

    Without --no-render, enjoy opens a GLFW window and aborts (exit 134) where there is no display.
    """
    headless = {"DISPLAY": "", "MUJOCO_GL": "egl"}
    result = run_zoo("train", "sac", tmp_path, "-conf", str(HYPERPARAMS / "sac.yml"), "-n", str(STEPS),
                     "--eval-freq", "-1", "--num-threads", "1", env_id="HalfCheetah-v4")
    assert result.returncode == 0, result.stderr[-4000:]
    result = run_zoo("enjoy", "sac", tmp_path, "--exp-id", "1", "-n", "100", "--no-render", env_id="HalfCheetah-v4",
                     environ=headless)
    assert result.returncode == 0, result.stderr[-4000:]
    result = run_zoo("record_video", "sac", tmp_path, "--exp-id", "1", "-n", "50", env_id="HalfCheetah-v4",
                     environ=headless)
    assert result.returncode == 0, result.stderr[-4000:]
    assert list((tmp_path / "sac" / "HalfCheetah-v4_1" / "videos").glob("*.mp4"))


# --- -optimize: rl-zoo3's samplers replace policy_kwargs; sb3_tar.zoo keeps the sparse settings -----------

OPTIMIZE_TRIALS = 2


def zoo_optimize(conf: Path, log_folder: Path, gym_package: str = "sb3_tar") -> subprocess.CompletedProcess[str]:
    """A real two-trial SAC study on Pendulum-v1 with a tiny budget; each trial's best model is kept."""
    return run_zoo(
        "train", "sac", log_folder, "-conf", str(conf), "-optimize", "--n-trials", str(OPTIMIZE_TRIALS),
        "-n", str(STEPS), "--n-startup-trials", "1", "--eval-episodes", "1", "--num-threads", "1",
        "--pruner", "none", "--no-optim-plots", "--optimization-log-path", str(log_folder / "trials"),
        gym_package=gym_package,
    )


def study_rows(log_folder: Path) -> list[dict[str, str]]:
    (report,) = (log_folder / "sac").glob("report_*.csv")
    with open(report) as file:
        return list(csv.DictReader(file))


def trial_models(log_folder: Path) -> list[BaseAlgorithm]:
    paths = sorted((log_folder / "trials").glob("trial_*/best_model.zip"))
    assert len(paths) == OPTIMIZE_TRIALS, paths
    return [SAC.load(path, device="cpu") for path in paths]


def test_optimize_keeps_the_sparse_settings_and_samples_a_listed_recovery_ratio(tmp_path: Path) -> None:
    entry = yaml.safe_load((HYPERPARAMS / "sac.yml").read_text())[ENV_ID]
    entry["policy_kwargs"] = {**entry["policy_kwargs"], "recovery_ratio": [0.0, 0.02]}
    conf = tmp_path / "sac-study.yml"
    conf.write_text(yaml.safe_dump({ENV_ID: entry}))
    result = zoo_optimize(conf, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]

    rows = study_rows(tmp_path)
    assert [row["state"] for row in rows] == ["COMPLETE"] * OPTIMIZE_TRIALS
    sampled = [float(row["params_recovery_ratio"]) for row in rows]
    assert set(sampled) <= {0.0, 0.02}
    for model, recovery_ratio in zip(trial_models(tmp_path), sampled):
        assert_sparse(model, SPARSITY)  # the file's sparsity, at the sampled net_arch
        for network, plan in sb3_tar.sparse_agent(model).plans().items():
            assert plan.revived == round(recovery_ratio * plan.total), network


def test_optimize_refuses_an_empty_search_space_before_any_trial(tmp_path: Path) -> None:
    entry = yaml.safe_load((HYPERPARAMS / "sac.yml").read_text())[ENV_ID]
    entry["policy_kwargs"] = {**entry["policy_kwargs"], "recovery_ratio": []}
    conf = tmp_path / "sac-study.yml"
    conf.write_text(yaml.safe_dump({ENV_ID: entry}))
    result = zoo_optimize(conf, tmp_path)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "-optimize: policy_kwargs recovery_ratio=[] has no value to sample" in last_line, result.stderr[-4000:]
    assert "Trial 0" not in result.stdout + result.stderr
    assert not (tmp_path / "trials").exists()


def test_optimize_trains_sparse_models_with_the_zoo_callback_key(tmp_path: Path) -> None:
    """The zoo builds the callback: key anew for every trial, so TARCallback needs no help (plain sb3_tar)."""
    entry = yaml.safe_load((HYPERPARAMS / "sac.yml").read_text())[ENV_ID]
    entry["policy"] = "MlpPolicy"
    entry["policy_kwargs"] = {"net_arch": [64, 64]}
    entry["callback"] = [{"sb3_tar.TARCallback": {"sparsity": 0.7, "criterion": "erk", "recovery_ratio": 0.02}}]
    conf = tmp_path / "sac-callback-study.yml"
    conf.write_text(yaml.safe_dump({ENV_ID: entry}))
    result = zoo_optimize(conf, tmp_path, gym_package="sb3_tar")
    assert result.returncode == 0, result.stderr[-4000:]
    for model in trial_models(tmp_path):
        assert_sparse(model, 0.7)


# (where the bad setting goes, the setting, the error that must reach the user)
MALFORMED = {
    "sparsity-out-of-range": ("policy_kwargs", {"sparsity": 1.5}, "sparsity=1.5 must be in [0, 1)"),
    "sparsity-as-string": ("policy_kwargs", {"sparsity": "0.8"}, "sparsity='0.8' must be a finite number"),
    "actor-sparsity": ("policy_kwargs", {"actor_sparsity": -0.1}, "actor_sparsity=-0.1"),
    "unknown-criterion": ("policy_kwargs", {"criterion": "magnitud"}, "criterion='magnitud' is not a registered"),
    "unknown-setting": ("policy_kwargs", {"scpoe": "global"}, "TarMlpPolicy got unknown setting(s) ['scpoe']"),
    "callback-recovery-ratio": ("callback", {"recovery_ratio": -0.01}, "recovery_ratio=-0.01 must be >= 0"),
    "callback-seed-as-string": ("callback", {"seed": "3"}, "seed='3' must be a non-negative integer or None"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_setting_stops_the_run_before_training_with_the_engines_error(case: str, tmp_path: Path) -> None:
    where, setting, message = MALFORMED[case]
    entry = yaml.safe_load((HYPERPARAMS / "sac.yml").read_text())[ENV_ID]
    if where == "policy_kwargs":
        entry["policy_kwargs"] = {**entry["policy_kwargs"], **setting}
    else:
        entry["policy"] = "MlpPolicy"
        entry["policy_kwargs"] = {"net_arch": entry["policy_kwargs"]["net_arch"]}
        entry["callback"] = [{"sb3_tar.TARCallback": {"sparsity": 0.8, **setting}}]
    conf = tmp_path / "bad.yml"
    conf.write_text(yaml.safe_dump({ENV_ID: entry}))
    result = zoo_train("sac", conf, tmp_path)
    assert result.returncode != 0
    assert message in result.stderr.strip().splitlines()[-1], result.stderr[-4000:]  # the last line printed
    assert "Log path:" not in result.stdout  # the zoo prints it when training starts
    assert not list(tmp_path.rglob("*.zip"))


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_variants", HYPERPARAMS / "generate_variants.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variant_files_are_what_their_generator_writes() -> None:
    generator = load_generator()
    expected = generator.all_variant_files()
    committed = set((HYPERPARAMS / "variants").rglob("*.yml"))
    assert committed == set(expected), "re-run: python hyperparams/generate_variants.py"
    for path, text in expected.items():
        assert path.read_text() == text, f"{path} is stale; re-run: python hyperparams/generate_variants.py"


def test_variant_files_cover_the_base_files_tasks() -> None:
    for algo in ALGOS:
        tasks = list(yaml.safe_load((HYPERPARAMS / f"{algo}.yml").read_text()))
        for required in ("HalfCheetah-v4", "Humanoid-v4", "BipedalWalker-v3", "Hopper-v4", "Walker2d-v4", "Ant-v4"):
            assert required in tasks
        for path in (HYPERPARAMS / "variants" / algo).rglob("*.yml"):
            assert list(yaml.safe_load(path.read_text())) == tasks, path


def build_with_the_zoo(algo: str, conf: Path, log_folder: Path) -> tuple[BaseAlgorithm, list]:
    """The zoo's own experiment setup (hyperparameter parsing, callbacks, model), without training."""
    from rl_zoo3.exp_manager import ExperimentManager

    manager = ExperimentManager(
        argparse.Namespace(), algo, ENV_ID, str(log_folder), eval_freq=-1, verbose=0, device="cpu", config=str(conf)
    )
    model, _ = manager.setup_experiment()
    return model, manager.callbacks


@pytest.mark.parametrize("method", load_generator().METHODS)
@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_every_width_256_variant_builds_through_the_zoo(algo: str, method: str, tmp_path: Path) -> None:
    model, callbacks = build_with_the_zoo(algo, HYPERPARAMS / "variants" / algo / "w256" / f"{method}.yml", tmp_path)
    if method == "dense":
        assert_dense(model)
    elif method in ("set", "rigl"):
        assert [type(callback).__name__ for callback in callbacks] == ["DSTCallback"]
    else:
        assert_sparse(model, SPARSITY)
