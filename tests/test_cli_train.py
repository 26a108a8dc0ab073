"""``sb3-tar train``: the one run pipeline from the command line, end to end, with tiny runs.

Every algorithm trains through ``main(["train", ...])`` and through ``python -m sb3_tar train`` started
from another working directory; both write the one result layout. Defaults come from the tuned
files inside the package, whatever the working directory.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from rl_zoo3.utils import ALGOS
from sb3_support import assert_masks_hold, assert_sparsity

import sb3_tar
from run_support import CHILD_ENV, PROVENANCE_KEYS, RESULT_KEYS, TINY_FLAGS, read_json, train_command
from sb3_tar.cli import main, parse_arguments, train_config
from sb3_tar.experiments.algorithms import OFF_POLICY_ALGORITHMS
from sb3_tar.experiments.config import RunConfig, run_hyperparams
from sb3_tar.experiments.zoo_entries import tuned_entry, zoo_policy_kwargs

NETWORKS = {"sac": {"actor", "qf0", "qf1"}, "td3": {"actor", "qf0", "qf1"}, "ddpg": {"actor", "qf0"},
            "tqc": {"actor", "qf0", "qf1"}, "crossq": {"actor", "qf0", "qf1"}}
LAYOUT = {"model.zip", "best_model.zip", "result.json", "hyperparams.yml", "evaluations.npz", "0.monitor.csv",
          "progress.csv", "learning_curve.png", "train.log", "zoo", "topology.txt", "topology.json"}


def config_of(*flags: str) -> RunConfig:
    return train_config(parse_arguments(["train", *flags]))


@pytest.mark.parametrize("algo", OFF_POLICY_ALGORITHMS)  # on-policy and DQN: tests/test_train_on_policy.py
def test_train_writes_the_result_layout_for_every_algorithm_and_says_where(algo, tmp_path, capsys):
    output = tmp_path / "run"
    main(["train", "--algo", algo, "--method", "static", "--sparsity", "0.8", "--criterion", "erk",
          "--hyperparam", "gamma=0.95", "--output", str(output), *TINY_FLAGS])
    printed = capsys.readouterr().out
    networks = NETWORKS[algo]
    assert {path.name for path in output.iterdir()} == LAYOUT | {f"topology-{network}.png" for network in networks}
    for path in ("model.zip", "topology.txt", "learning_curve.png", "progress.csv"):
        assert str(output / path) in printed
    assert f"results in {output}/" in printed and "final return" in printed
    assert f"to deploy the actor alone (kept weights only; runs with torch): sb3-tar export {output / 'model.zip'}" \
        in printed

    result = read_json(output / "result.json")
    assert RESULT_KEYS <= set(result)
    assert result["num_timesteps"] == 300 and result["evaluations"]["timesteps"] == [150, 300]
    assert result["summary"]["algo"] == algo and result["summary"]["method"] == "static"
    assert result["hyperparams"]["gamma"] == 0.95  # the --hyperparam override
    assert set(result["topology"]) == set(result["kept_weights"]) == networks
    model = ALGOS[algo].load(output / "model.zip", device="cpu")
    assert model.gamma == 0.95 and model.num_timesteps == 300
    agent = sb3_tar.sparse_agent(model)
    assert_sparsity(agent, 0.8, 0.8)
    assert_masks_hold(agent)
    assert all(network["criterion"] == "erk" for network in read_json(output / "topology.json").values())
    header = (output / "progress.csv").read_text().splitlines()[0].split(",")
    assert {f"sparsity/{network}/sparsity" for network in networks} <= set(header)


def test_python_m_sb3_tar_train_runs_from_another_directory_with_the_tuned_entry(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    flags = [flag for flag in TINY_FLAGS if flag != "--no-progress-bar"]
    completed = subprocess.run(train_command("--algo", "td3", "--output", "out/run", *flags), cwd=elsewhere,
                               env=CHILD_ENV, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "300/300" in completed.stdout + completed.stderr  # the progress bar's last state
    output = elsewhere / "out" / "run"
    assert (output / "model.zip").is_file() and (output / "learning_curve.png").is_file()
    assert sorted(path.name for path in elsewhere.iterdir()) == ["out"]  # nothing else left in the cwd
    assert sorted(path.name for path in (elsewhere / "out").iterdir()) == ["run"]  # no partial folder left

    result = read_json(output / "result.json")
    # td3.yml's Pendulum-v1 entry, found from the package wherever the command runs
    assert result["hyperparams"]["noise_type"] == "normal" and result["hyperparams"]["gamma"] == 0.98
    assert "hyperparameters from td3.yml: Pendulum-v1" in completed.stdout
    provenance = result["provenance"]
    assert PROVENANCE_KEYS <= set(provenance)
    assert provenance["command"][-len(flags):] == flags and "train" in provenance["command"]
    assert provenance["git_commit"] and len(provenance["git_commit"].removesuffix("+dirty")) == 40
    assert provenance["versions"]["stable-baselines3"] == "2.9.2" and provenance["versions"]["rl-zoo3"] == "2.9.2"
    assert provenance["cores"] == os.cpu_count() and provenance["torch_threads"] == 1
    assert provenance["device"] == "cpu" and provenance["wall_time_s"] > 0
    assert len(provenance["load_average"]) == 3 and provenance["cpu"]


def test_the_tuned_entry_gives_the_defaults_and_hyperparam_flags_override_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the files are the package's, not the working directory's
    cheetah = config_of("--env", "HalfCheetah-v4")
    assert cheetah.tuned()[1] == "sac.yml: HalfCheetah-v4"
    hyperparams = run_hyperparams(cheetah)
    assert hyperparams["learning_starts"] == 10000 and hyperparams["n_timesteps"] == 1_000_000
    assert hyperparams["policy_kwargs"] == {"net_arch": [256, 256], "sparsity": 0.8, "criterion": "magnitude",
                                            "recovery_ratio": 0.01}
    td3 = run_hyperparams(config_of("--algo", "td3", "--hyperparam", "gamma=0.9", "--hyperparam", "batch_size=64"))
    assert td3["noise_type"] == "normal" and td3["noise_std"] == 0.1 and td3["learning_starts"] == 100
    assert td3["gamma"] == 0.9 and td3["batch_size"] == 64
    assert tuned_entry("td3", "Pendulum-v1")[0]["gamma"] == 0.98
    # an algorithm without a tuned file trains the paper's default sparse settings
    tqc = config_of("--algo", "tqc", "--sparsity", "0.7")
    assert tqc.tuned()[1] == "built-in defaults for tqc (no tqc.yml)"
    assert tqc.sparsity_settings().sparsity == 0.7 and tqc.sparsity_settings().recovery_ratio == 0.01


def test_the_default_output_folder_names_the_run_and_a_config_file_trains_the_same_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["train", "--seed", "3", "--criterion", "random", *TINY_FLAGS])
    expected = Path("runs") / "sac-Pendulum-v1-tar-random-s0.8-rr0.01-w16-seed3"
    assert (tmp_path / expected / "model.zip").is_file()
    assert f"results in {tmp_path / expected}/" in capsys.readouterr().out
    config = read_json(expected / "result.json")["config"]
    (tmp_path / "run.yml").write_text(yaml.safe_dump(config))
    main(["train", "--config", "run.yml", "--output", "again"])
    again = read_json(tmp_path / "again" / "result.json")
    assert again["config"] == config and again["run_id"] == expected.name
    # a run setting next to --config would be silently ignored: refused, naming it, before anything is written
    with pytest.raises(SystemExit, match=r"--config run.yml gives the whole run, so \['--sparsity', '--seed'\] "
                                         "would be ignored"):
        main(["train", "--config", "run.yml", "--sparsity", "0.5", "--seed", "4", "--output", "third"])
    # given at its default value, a setting is still given beside the file, and still refused
    with pytest.raises(SystemExit, match=r"so \['--method', '--seed', '--eval-episodes'\] would be ignored"):
        main(["train", "--config", "run.yml", "--method", "tar", "--seed", "0", "--eval-episodes", "5",
              "--output", "third"])
    assert not (tmp_path / "third").exists()


@pytest.mark.parametrize(("text", "message"), [
    (None, r"--config 'run.yml' does not exist"),
    ("", r"--config 'run.yml' must hold a mapping of names to values; it is empty"),
    ("sparsity: 0.8\n", r"run configuration sparsity=0.8 must be a mapping of sparsity settings"),
    ("hyperparams: 5\n", r"hyperparams=5 must be a mapping of hyperparameter overrides"),
    ("method: rigl\nsparsity: {sparsity: 0.9}\ndst: [1]\n", r"dst=\[1\] must be a mapping of DST options"),
    ("hyperparams: {callback: [x]}\n", "hyperparam callback is set by the run's own setting 'method'"),
    ("method: tar\nsparsity: {sparsity: 0.8, recovery_ratio: 0.01, scope: bogus}\n", "scope='bogus' is not a distribution"),
])
def test_a_missing_or_malformed_config_file_stops_with_a_message_naming_it(text, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if text is not None:
        Path("run.yml").write_text(text)
    with pytest.raises(SystemExit, match=f"sb3-tar train: {message}"):
        main(["train", "--config", "run.yml", "--output", "run"])
    assert not Path("run").exists()


def test_an_existing_output_folder_is_refused_unless_overwrite(tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="exists; choose another with --output, or replace it with --overwrite"):
        main(["train", "--output", str(output), *TINY_FLAGS])
    assert [path.name for path in output.iterdir()] == ["notes.txt"]
    main(["train", "--output", str(output), "--overwrite", *TINY_FLAGS])
    assert not (output / "notes.txt").exists() and (output / "model.zip").is_file()
    assert [path.name for path in tmp_path.iterdir()] == ["run"]  # no partial or backup folders left
    with pytest.raises(SystemExit, match=r"exists and holds this very run \(300 steps, finished 20\d\d-\d\d-\d\d "
                                         r"\d\d:\d\d\); choose another"):
        main(["train", "--output", str(output), *TINY_FLAGS])
    longer = [*TINY_FLAGS[2:], "--timesteps", "600"]  # a smoke run's folder, asked for the full run
    with pytest.raises(SystemExit, match=r"exists and holds another run \(n_timesteps 300 -> 600, finished "
                                         r"20\d\d-\d\d-\d\d \d\d:\d\d\); choose another"):
        main(["train", "--output", str(output), *longer])


@pytest.mark.parametrize(("arguments", "message"), [
    (["--sparsity", "1.2"], "sparsity=1.2 must be in [0, 1)"),
    (["--option", "scpoe=global"], "unknown setting(s) ['scpoe']"),
    (["--option", "scope=bogus"], "scope='bogus' is not a distribution of kept weights"),
    (["--env", "NoSuchEnv-v0"], "env='NoSuchEnv-v0' is not a registered Gymnasium environment"),
    (["--timesteps", "0"], "n_timesteps=0 must be an integer >= 1"),
    (["--hyperparam", "seed=1"], "hyperparam seed is set by the run's own setting 'seed'"),
    (["--hyperparam", "gama=0.9"], "hyperparam 'gama' is not an argument of SAC nor an rl-zoo3 key; did you mean 'gamma'?"),
    (["--method", "static", "--recovery-ratio", "0.1"], "method='static' revives nothing, but recovery_ratio=0.1"),
    (["--method", "dense", "--sparsity", "0.5"], "method='dense' prunes nothing: leave out ['--sparsity']"),
])
def test_a_bad_setting_stops_the_run_before_anything_is_created_or_replaced(arguments, message, tmp_path):
    output = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--output", str(output), *TINY_FLAGS, *arguments])
    assert message in str(stopped.value)
    assert list(tmp_path.iterdir()) == []
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        main(["train", "--output", str(output), "--overwrite", *TINY_FLAGS, *arguments])
    assert [path.name for path in output.iterdir()] == ["notes.txt"]
    assert [path.name for path in tmp_path.iterdir()] == ["run"]


def test_the_output_folder_has_normal_permissions_and_a_long_name_works(tmp_path):
    output = tmp_path / ("r" * 240)
    main(["train", "--method", "dense", "--output", str(output), *TINY_FLAGS])
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(output.stat().st_mode) == 0o777 & ~umask  # as mkdir makes it: readable by others
    assert stat.S_IMODE((output / "result.json").stat().st_mode) == 0o666 & ~umask
    assert read_json(output / "result.json")["num_timesteps"] == 300
    assert [path.name for path in tmp_path.iterdir()] == [output.name]


def test_the_same_seed_gives_the_same_run(tmp_path):
    for name in ("first", "second"):
        main(["train", "--output", str(tmp_path / name), "--seed", "4", *TINY_FLAGS])
    first, second = (read_json(tmp_path / name / "result.json") for name in ("first", "second"))
    assert first["final_evaluation"] == second["final_evaluation"]
    assert first["evaluations"] == second["evaluations"] and first["kept_weights"] == second["kept_weights"]
    monitors = [(tmp_path / name / "0.monitor.csv").read_text().splitlines()[2:] for name in ("first", "second")]
    assert monitors[0]  # at least one training episode
    assert [row.split(",")[:2] for row in monitors[0]] == [row.split(",")[:2] for row in monitors[1]]


def test_the_help_names_every_method_and_algorithm(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in ("dense", "static", "tar", "uniform", "set", "rigl", "crossq", "--config"))


def test_the_kernel_flag_reaches_the_policy_and_the_saved_model(tmp_path):
    output = tmp_path / "run"
    main(["train", "--algo", "sac", "--method", "tar", "--sparsity", "0.9", "--kernel", "sparse",
          "--output", str(output), *TINY_FLAGS])
    result = read_json(output / "result.json")
    assert result["config"]["kernel"] == "sparse"
    model = ALGOS["sac"].load(output / "model.zip", device="cpu")
    assert model.policy.kernel == "sparse"
    assert any(type(module).__name__ == "CompressedLinear" for module in model.policy.modules())
    assert_masks_hold(sb3_tar.sparse_agent(model))


def test_the_kernel_is_a_cost_setting_not_part_of_the_run():
    default, sparse = config_of("--method", "tar"), config_of("--method", "tar", "--kernel", "sparse")
    assert default.kernel == "auto" and sparse.run_id == default.run_id  # like --device: the same function
    assert "kernel" not in zoo_policy_kwargs(run_hyperparams(default))  # auto: the policy's own default
    assert zoo_policy_kwargs(run_hyperparams(sparse))["kernel"] == "sparse"
    assert RunConfig.from_dict({**default.to_dict(), "kernel": "sparse"}) == sparse
    assert RunConfig.from_dict({key: value for key, value in default.to_dict().items() if key != "kernel"}) == default


@pytest.mark.parametrize("method", ["dense", "set", "rigl"])
def test_a_sparse_kernel_for_a_method_without_a_frozen_mask_is_refused(method):
    with pytest.raises(ValueError, match=rf"kernel='sparse' compresses frozen masks; method='{method}' trains .*: use "
                                         r"kernel='auto' or 'dense'"):
        RunConfig(method=method, kernel="sparse")
    with pytest.raises(ValueError, match=r"run configuration: kernel='csr' is not a kernel; allowed: \['auto', "
                                         r"'dense', 'sparse'\]"):
        RunConfig(kernel="csr")


def test_a_budget_that_ends_before_learning_starts_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"learning_starts=10000 \(from sac.yml: HalfCheetah-v4\) >= n_timesteps=2000: "
                                         r"the run would take no gradient step and report the untrained policy's "
                                         r"return; lower it \(sb3-tar train --hyperparam learning_starts=N, N < 2000\) "
                                         r"or raise the budget \(--timesteps\)"):
        config_of("--env", "HalfCheetah-v4", "--method", "rigl", "--sparsity", "0.9", "--timesteps", "2000")
    assert config_of("--env", "HalfCheetah-v4", "--timesteps", "20000").budget() == 20000
    assert config_of("--algo", "ppo", "--timesteps", "10").budget() == 10  # on-policy: no learning_starts
    with pytest.raises(SystemExit, match=r"learning_starts=300 \(from hyperparams\) >= n_timesteps=300"):
        main(["train", "--output", str(tmp_path / "run"), *TINY_FLAGS, "--hyperparam", "learning_starts=300"])
    assert not (tmp_path / "run").exists()


def test_tensorboard_events_hold_the_training_log_and_the_sparsity_keys(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output = tmp_path / "run"
    main(["train", "--method", "tar", "--sparsity", "0.8", "--tensorboard", "--output", str(output), *TINY_FLAGS])
    events = list(output.glob("events.out.tfevents.*"))
    assert len(events) == 1
    tags = set(EventAccumulator(str(events[0])).Reload().Tags()["scalars"])
    assert {"sparsity/actor/sparsity", "sparsity/qf0/sparsity", "train/actor_loss"} <= tags
    with pytest.raises(ValueError, match=r"hyperparam tensorboard_log is set by the run's own setting '--tensorboard'"):
        config_of("--hyperparam", "tensorboard_log=tb")
