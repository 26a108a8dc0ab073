"""``sb3-tar train`` and sweeps for PPO, A2C, RecurrentPPO, DQN and QR-DQN: the one run pipeline, with tiny runs.

The same guarantees as for the off-policy actor-critics: a valid result with every network's
topology, masked weights 0.0 in the saved model, SET/RigL through ``DSTCallback``, a stopped run
resumed from its checkpoint with its masks, evaluations and step count, and bad settings refused
before anything is created. PPO/A2C train whole rollouts of ``n_steps * n_envs`` steps, so a run
may end past its budget (the tuned CartPole-v1 entries: rollouts of 256 for PPO, 40 for A2C).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from rl_zoo3.utils import ALGOS
from stable_baselines3 import PPO
from sb3_support import assert_masks_hold, assert_sparsity

import sb3_tar
from run_support import CHILD_ENV, RESULT_KEYS, masks_of, same_masks
from sb3_tar.cli import main
from sb3_tar.experiments import timing
from sb3_tar.experiments.checkpoint import find_checkpoint
from sb3_tar.experiments.algorithms import ACTION_SPACES, ALGORITHMS
from sb3_tar.experiments.config import RunConfig, run_hyperparams
from sb3_tar.experiments.zoo_entries import BUILT_IN_DEFAULTS, HYPERPARAMS_DIR, file_sparsity
from sb3_tar.experiments.grid import expand_grid
from sb3_tar.experiments.store import partial_dir, read_result
from sb3_tar.settings import SparsitySettings

SMALL = ["--net-arch", "16", "16", "--eval-episodes", "1", "--device", "cpu", "--no-progress-bar"]
# Per run: the flags that keep it to a few seconds, and the steps it trains (PPO/A2C: whole rollouts).
RUNS = {
    ("ppo", "CartPole-v1"): (["--timesteps", "256", "--eval-freq", "128", "--hyperparam", "n_epochs=2"], 256),
    ("a2c", "CartPole-v1"): (["--timesteps", "210", "--eval-freq", "120"], 240),  # rollouts of 8 x 5 steps
    ("dqn", "CartPole-v1"): (["--timesteps", "300", "--eval-freq", "150", "--hyperparam", "learning_starts=100",
                              "--hyperparam", "train_freq=4", "--hyperparam", "gradient_steps=1"], 300),
    ("qrdqn", "CartPole-v1"): (["--timesteps", "300", "--eval-freq", "150"], 300),  # sb3-contrib's defaults
    ("ppo", "Pendulum-v1"): (["--timesteps", "256", "--eval-freq", "128", "--hyperparam", "n_steps=64"], 256),
    ("a2c", "Pendulum-v1"): (["--timesteps", "256", "--eval-freq", "128"], 256),  # normalized observations
    # rl-zoo3's own task (velocities hidden): rollouts of 8 x 32 steps, LSTMs of 64, normalized observations
    ("ppo_lstm", "CartPoleNoVel-v1"): (["--timesteps", "256", "--eval-freq", "128", "--hyperparam", "n_epochs=2"], 256),
}
NETWORKS = {"ppo": {"actor", "critic"}, "a2c": {"actor", "critic"}, "ppo_lstm": {"actor", "critic"}, "dqn": {"q_net"},
            "qrdqn": {"quantile_net"}}
POLICIES = {"ppo_lstm": "TarMlpLstmPolicy"}


def stop_training_at(monkeypatch, step: int) -> None:
    """Press Ctrl-C from inside training at ``step`` (the run's step timer is a callback of every run)."""
    original = timing.StepTimeCallback._on_step

    def on_step(self) -> bool:
        if self.num_timesteps == step:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(timing.StepTimeCallback, "_on_step", on_step)


@pytest.mark.parametrize(("algo", "env"), list(RUNS))
def test_train_runs_every_new_algorithm_sparse_with_a_valid_result(algo, env, tmp_path, capsys):
    flags, steps = RUNS[algo, env]
    output = tmp_path / "run"
    main(["train", "--algo", algo, "--env", env, "--method", "tar", "--sparsity", "0.9", "--output", str(output),
          *flags, *SMALL])
    printed = capsys.readouterr().out
    assert f"results in {output}/" in printed
    # the deployable actor: every algorithm here exports it but RecurrentPPO (an LSTM)
    assert (f"sb3-tar export {output / 'model.zip'} actor.sb3tar" in printed) == (algo != "ppo_lstm")
    budget = int(flags[flags.index("--timesteps") + 1])
    assert (f"for {budget} steps (whole rollouts of 40: {steps} steps)" in printed) == (steps != budget)

    result = read_result(output)
    assert RESULT_KEYS <= set(result) and result["report_errors"] == []
    assert result["num_timesteps"] == steps == result["final_evaluation"]["timesteps"]
    assert result["summary"]["algo"] == algo and result["summary"]["n_timesteps"] == budget
    assert result["hyperparams"]["policy"] == POLICIES.get(algo, "TarMlpPolicy")
    assert set(result["topology"]) == set(result["kept_weights"]) == NETWORKS[algo]
    assert all(network["achieved_sparsity"] == pytest.approx(0.9 - network["repaired_weights"] / network["total_weights"],
                                                           abs=0.01) for network in result["topology"].values())
    assert all((output / f"topology-{network}.png").is_file() for network in NETWORKS[algo])
    assert result["cost"]["flops_per_action"] > 0 and result["cost"]["flops_per_training_step"] > 0
    if algo == "ppo_lstm":  # its dense LSTMs count in full: 4 gates x 64 units x (4 inputs + 64 recurrent) each
        lstm, kept = 4 * 64 * (4 + 64), result["kept_weights"]  # the zoo zeroes the velocities, keeps 4 inputs
        assert result["cost"] == {"flops_per_action": 2.0 * (kept["actor"] + lstm),
                                  "flops_per_training_step": 6.0 * (kept["actor"] + kept["critic"] + 2 * lstm) * 256}
    header = (output / "progress.csv").read_text().splitlines()[0].split(",")
    assert {f"sparsity/{network}/sparsity" for network in NETWORKS[algo]} <= set(header)
    # the normalized observations the model acts on travel with it (a2c.yml's Pendulum-v1 entry normalizes)
    assert (output / "vecnormalize.pkl").is_file() == bool(result["hyperparams"].get("normalize"))

    if algo in ("ppo", "a2c", "ppo_lstm"):  # the step timer's last block ends with the last rollout's update
        assert result["step_times"]["timesteps"] == [0, steps] and result["seconds_per_1000_steps"] > 0

    model = ALGOS[algo].load(output / "model.zip", device="cpu")
    agent = sb3_tar.sparse_agent(model)
    assert_sparsity(agent, 0.9, 0.9)
    assert_masks_hold(agent)
    assert model.num_timesteps == steps


def test_on_policy_step_time_blocks_end_at_rollout_boundaries_and_hold_the_training(monkeypatch):
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    train = model.train

    def slow_train() -> None:
        time.sleep(0.2)  # an update far slower than a rollout of CartPole steps
        train()

    monkeypatch.setattr(model, "train", slow_train)
    timer = timing.StepTimeCallback(interval=100)
    model.learn(320, callback=timer)  # rollouts of 64: start at 0, 64, 128, 192, 256; training ends at 320
    assert timer.timesteps == [0, 128, 256, 320]  # the first rollout start past each 100 steps, then the end
    blocks = [later - earlier for earlier, later in zip(timer.wall, timer.wall[1:])]
    # each block holds its rollouts' updates (the updates after steps 64 and 128, 192 and 256, then 320)
    assert all(seconds >= 0.2 * updates for seconds, updates in zip(blocks, [2, 2, 1]))
    assert timing.median_block_seconds(timer.state()) >= 0.2 * 100 / 64
    # sleeping takes wall time, not CPU time: the CPU clock leaves the sleeps out
    assert timing.median_block_seconds(timer.state(), clock="cpu_s") < 0.2 * 100 / 64
    with pytest.raises(ValueError, match="clock='cpu' must be 'wall_s' or 'cpu_s'"):
        timing.median_block_seconds(timer.state(), clock="cpu")


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_ppo_trains_set_and_rigl_counting_minibatch_steps(method, tmp_path):
    output = tmp_path / "run"
    main(["train", "--algo", "ppo", "--env", "CartPole-v1", "--method", method, "--sparsity", "0.9",
          "--dst", "update_interval=5", "--output", str(output), "--timesteps", "256", "--eval-freq", "128", *SMALL])
    result = read_result(output)
    assert result["hyperparams"]["policy"] == "MlpPolicy" and set(result["topology"]) == {"actor", "critic"}
    model = ALGOS["ppo"].load(output / "model.zip", device="cpu")
    agent = sb3_tar.sparse_agent(model)
    assert_sparsity(agent, 0.9, 0.9)
    assert_masks_hold(agent)
    # one rollout of 8 x 32 steps, 20 epochs of one minibatch of 256: 20 optimizer steps, masks moved after 5, 10, 15
    assert model.sb3_tar_dst_state["gradient_steps"] == 20
    header = (output / "progress.csv").read_text().splitlines()[0].split(",")
    assert any(key.startswith("dst/") for key in header)


@pytest.mark.parametrize(("algo", "env"), [("ppo", "CartPole-v1"), ("ppo_lstm", "CartPoleNoVel-v1")])
def test_a_stopped_on_policy_run_resumes_from_its_checkpoint_to_its_whole_budget(algo, env, tmp_path, monkeypatch):
    # rollouts of 8 x 32 = 256 steps; a checkpoint at every rollout boundary; Ctrl-C in the third rollout
    output = tmp_path / "run"
    flags = ["train", "--algo", algo, "--env", env, "--sparsity", "0.9", "--timesteps", "768",
             "--eval-freq", "256", "--checkpoint-freq", "256", "--hyperparam", "n_epochs=2", "--output", str(output),
             *SMALL]
    stop_training_at(monkeypatch, 600)
    with pytest.raises(SystemExit) as stopped:
        main(flags)
    assert stopped.value.code == 130 and not output.exists()
    checkpoint = find_checkpoint(partial_dir(output))
    normalizer = ["vecnormalize.pkl"] if algo == "ppo_lstm" else []  # ppo_lstm.yml's entry normalizes
    assert checkpoint.num_timesteps == 512 and checkpoint.state["files"] == ["model.zip", *normalizer]  # no buffer
    at_checkpoint = ALGOS[algo].load(checkpoint.path / "model.zip", device="cpu")
    assert at_checkpoint._n_updates == 2 * 2  # the checkpoint holds the second rollout's update

    monkeypatch.undo()
    main(flags)
    result = read_result(output)
    assert result["resumed_at"] == [512] and result["num_timesteps"] == 768
    assert result["evaluations"]["timesteps"] == [256, 512, 768]
    assert result["evaluations"]["returns"][:2] == checkpoint.state["evaluations"]["results"]  # the curve continues
    final = ALGOS[algo].load(output / "model.zip", device="cpu")
    assert final._n_updates == 3 * 2  # every rollout trained once: none lost, none repeated
    assert same_masks(masks_of(final), masks_of(at_checkpoint))
    assert_masks_hold(sb3_tar.sparse_agent(final))


def test_a_stopped_dqn_run_resumes_with_its_replay_buffer_and_counters(tmp_path, monkeypatch):
    output = tmp_path / "run"
    flags = ["train", "--algo", "dqn", "--env", "CartPole-v1", "--sparsity", "0.9", "--timesteps", "400",
             "--eval-freq", "200", "--checkpoint-freq", "100", "--hyperparam", "learning_starts=100",
             "--hyperparam", "train_freq=4", "--hyperparam", "gradient_steps=1", "--hyperparam",
             "target_update_interval=50", "--output", str(output), *SMALL]
    stop_training_at(monkeypatch, 250)
    with pytest.raises(SystemExit):
        main(flags)
    checkpoint = find_checkpoint(partial_dir(output))
    assert checkpoint.num_timesteps == 200 and "replay_buffer.npz" in checkpoint.state["files"]
    at_checkpoint = ALGOS["dqn"].load(checkpoint.path / "model.zip", device="cpu")
    assert at_checkpoint._n_updates == (200 - 100) // 4  # trained after steps 104, 108, ..., 200

    monkeypatch.undo()
    main(flags)
    result = read_result(output)
    assert result["resumed_at"] == [200] and result["num_timesteps"] == 400
    assert result["evaluations"]["timesteps"] == [200, 400]
    assert result["evaluations"]["returns"][:1] == checkpoint.state["evaluations"]["results"]
    final = ALGOS["dqn"].load(output / "model.zip", device="cpu")
    assert final._n_updates == (400 - 100) // 4 and final._n_calls == 400  # the target-update clock continued
    assert same_masks(masks_of(final), masks_of(at_checkpoint))
    assert_masks_hold(sb3_tar.sparse_agent(final))


BAD_SETTINGS = {
    "dqn-on-continuous-actions": (["--algo", "dqn"],
                                  "algo='dqn' trains on Discrete actions, but env='Pendulum-v1' has action space Box("),
    "qrdqn-on-continuous-actions": (["--algo", "qrdqn", "--env", "MountainCarContinuous-v0"],
                                    "algorithms for it: ['sac', 'td3', 'ddpg'"),
    "sac-on-discrete-actions": (["--algo", "sac", "--env", "CartPole-v1"],
                                "has action space Discrete(2); algorithms for it: ['ppo', 'a2c', 'ppo_lstm', 'dqn', 'qrdqn']"),
    "ppo-misspelt-hyperparam": (["--algo", "ppo", "--hyperparam", "n_step=64"],
                                "hyperparam 'n_step' is not an argument of PPO nor an rl-zoo3 key; "
                                "did you mean 'n_steps'?"),
    "ppo-off-policy-hyperparam": (["--algo", "ppo", "--hyperparam", "learning_starts=100"],
                                  "hyperparam 'learning_starts' is not an argument of PPO"),
    "ppo-clip-range": (["--algo", "ppo", "--hyperparam", "clip_range=lin_x"],
                       "hyperparam clip_range='lin_x' must be a positive number or 'lin_<initial value>'"),
    "ppo-batch-size": (["--algo", "ppo", "--hyperparam", "batch_size=1"],
                       "hyperparam batch_size=1 must be an integer >= 2"),
    "a2c-gae-lambda": (["--algo", "a2c", "--hyperparam", "gae_lambda=1.5"],
                       "hyperparam gae_lambda=1.5 must be a finite number in [0, 1]"),
    "dqn-exploration": (["--algo", "dqn", "--env", "CartPole-v1", "--hyperparam", "exploration_fraction=-0.1"],
                        "hyperparam exploration_fraction=-0.1 must be a finite number in [0, 1]"),
    "ppo-lstm-batch-size": (["--algo", "ppo_lstm", "--env", "CartPoleNoVel-v1", "--hyperparam", "batch_size=1"],
                            "hyperparam batch_size=1 must be an integer >= 2"),
    "ppo-lstm-unknown-env": (["--algo", "ppo_lstm", "--env", "CartPoleNoVelocity-v1"],
                             "env='CartPoleNoVelocity-v1' is not a registered Gymnasium environment"),
    "dqn-actor-sparsity": (["--algo", "qrdqn", "--env", "CartPole-v1", "--sparsity", "0.8", "--actor-sparsity", "0.5"],
                           "actor_sparsity=0.5 does not apply: algo='qrdqn' has no actor; its Q-network takes "
                           "sparsity or critic_sparsity"),
}


@pytest.mark.parametrize(("arguments", "message"), list(BAD_SETTINGS.values()), ids=list(BAD_SETTINGS))
def test_a_bad_setting_for_a_new_algorithm_stops_before_anything_is_created(arguments, message, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--output", str(tmp_path / "run"), *arguments, *SMALL])
    assert message in str(stopped.value)
    assert list(tmp_path.iterdir()) == []


def test_critic_sparsity_alone_configures_a_value_based_run_and_is_refused_where_there_is_an_actor():
    critic_only = SparsitySettings(critic_sparsity=0.9)
    dqn = RunConfig(algo="dqn", env="CartPole-v1", method="static", sparsity=critic_only)
    assert dqn.run_id == "dqn-CartPole-v1-static-magnitude-c0.9-w256-seed0" and dqn.summary()["sparsity"] == 0.9
    with pytest.raises(ValueError, match=r"critic_sparsity=0\.9 alone leaves the actor of algo='ppo' without a "
                                         "sparsity: set sparsity or actor_sparsity too"):
        RunConfig(algo="ppo", env="CartPole-v1", method="static", sparsity=critic_only)


def test_every_algorithm_has_one_source_of_defaults_a_tuned_file_or_built_in_ones():
    for algo in ALGORITHMS:
        assert (HYPERPARAMS_DIR / f"{algo}.yml").is_file() != (algo in BUILT_IN_DEFAULTS), algo
        entry, source = RunConfig(algo=algo, env="CartPole-v1" if "Discrete" in ACTION_SPACES[algo] else
                                  "Pendulum-v1").tuned()
        assert file_sparsity(entry)["sparsity"] == 0.8, source  # the paper's default sparse training


def test_the_tuned_entries_give_each_algorithm_its_networks_and_policy():
    ppo = run_hyperparams(RunConfig(algo="ppo", env="CartPole-v1"))
    assert ppo["policy"] == "TarMlpPolicy" and ppo["n_envs"] == 8 and ppo["n_steps"] == 32
    assert ppo["policy_kwargs"] == {"net_arch": [64, 64], "sparsity": 0.8, "criterion": "magnitude",
                                    "recovery_ratio": 0.01}  # SB3's width: ppo.yml sets none
    # dqn.yml writes its policy_kwargs as a string for the zoo to evaluate: read, and its widths kept
    dqn = RunConfig(algo="dqn", env="CartPole-v1", method="static")
    assert dqn.resolved_net_arch() == [256, 256] and dqn.run_id == "dqn-CartPole-v1-static-magnitude-s0.8-w256-seed0"
    assert run_hyperparams(dqn)["policy_kwargs"] == {"net_arch": [256, 256], "sparsity": 0.8, "criterion": "magnitude",
                                                     "recovery_ratio": 0.0}
    # code stays code (activation_fn=nn.ReLU); PPO's separate pi/vf widths stay as written unless --net-arch
    cheetah = run_hyperparams(RunConfig(algo="ppo", env="HalfCheetah-v4", method="uniform"))["policy_kwargs"]
    assert isinstance(cheetah, str) and "activation_fn=nn.ReLU" in cheetah
    assert "net_arch={'pi': [256, 256], 'vf': [256, 256]}" in cheetah and "allocation='uniform'" in cheetah
    narrow = run_hyperparams(RunConfig(algo="ppo", env="HalfCheetah-v4", method="dense", net_arch=(32,)))
    assert "net_arch=[32]" in narrow["policy_kwargs"] and "sparsity" not in narrow["policy_kwargs"]
    qrdqn = RunConfig(algo="qrdqn", env="CartPole-v1")
    assert qrdqn.tuned()[1] == "built-in defaults for qrdqn (no qrdqn.yml)"
    assert qrdqn.sparsity_settings().sparsity == 0.8 and qrdqn.resolved_net_arch() == [64, 64]
    # RecurrentPPO trains the LSTM policies; its entry's LSTM settings stay as written
    # one hidden layer (ppo_lstm.yml's pi=[64]) is named apart from two: the runs must not share a folder
    assert RunConfig(algo="ppo_lstm", env="CartPoleNoVel-v1").run_id.endswith("-w64d1-seed0")
    assert RunConfig(algo="ppo_lstm", env="CartPoleNoVel-v1", net_arch=(64, 64)).run_id.endswith("-w64-seed0")
    assert RunConfig(algo="ppo", env="CartPole-v1", net_arch=(64, 32, 32)).run_id.endswith("-w64x32x32-seed0")
    lstm = run_hyperparams(RunConfig(algo="ppo_lstm", env="CartPoleNoVel-v1"))
    assert lstm["policy"] == "TarMlpLstmPolicy" and "lstm_hidden_size=64" in lstm["policy_kwargs"]
    assert run_hyperparams(RunConfig(algo="ppo_lstm", env="CartPoleNoVel-v1", method="set"))["policy"] == "MlpLstmPolicy"
    rigl = run_hyperparams(RunConfig(algo="a2c", env="CartPole-v1", method="rigl", dst={"update_interval": 10}))
    assert rigl["policy"] == "MlpPolicy" and rigl["callback"] == [
        {"sb3_tar.DSTCallback": {"method": "rigl", "sparsity": 0.8, "initial": "erk", "update_interval": 10}}]


def test_a_sweep_grid_of_every_kind_of_algorithm_keeps_the_pairs_that_train():
    sweep = {"grid": {"algo": ["sac", "ppo", "dqn"], "env": ["Pendulum-v1", "CartPole-v1"], "method": ["dense", "tar"],
                      "criterion": ["magnitude"], "sparsity": [0.9], "recovery_ratio": [0.01], "width": [16],
                      "seed": [0]},
             "settings": {"n_timesteps": 2000}}  # past DQN CartPole's learning_starts (1000)
    pairs = {(config.algo, config.env) for config in expand_grid(sweep)}
    assert pairs == {("sac", "Pendulum-v1"), ("ppo", "Pendulum-v1"), ("ppo", "CartPole-v1"), ("dqn", "CartPole-v1")}
    sweep["grid"]["algo"] = ["dqn"]
    sweep["grid"]["env"] = ["Pendulum-v1"]
    with pytest.raises(ValueError, match=r"algo='dqn' has no run: each of its points pairs an algorithm with an "
                                         r"environment whose actions it does not train on \(\[\('dqn', 'Pend"):
        expand_grid(sweep)


def test_the_zoos_own_tasks_are_known_to_a_fresh_process_before_anything_imports_the_zoo():
    # rl-zoo3 registers CartPoleNoVel-v1 and the like when it is imported; the action-space check may come first
    check = ("from sb3_tar.experiments.algorithms import trains_on\n"
             "assert trains_on('ppo_lstm', 'PendulumNoVel-v1') and not trains_on('dqn', 'PendulumNoVel-v1')")
    subprocess.run([sys.executable, "-c", check], check=True, env=CHILD_ENV)


def test_a_mismatched_point_listed_by_hand_is_refused_not_dropped():
    """Only the cross product's mismatched pairs are left out; a point named under ``extra:`` was meant."""
    sweep = {"grid": {"algo": ["ppo"], "env": ["CartPole-v1"], "method": ["dense"], "criterion": ["magnitude"],
                      "sparsity": [0.9], "recovery_ratio": [0.0], "width": [16], "seed": [0]},
             "extra": [{"algo": "dqn", "env": "Pendulum-v1", "method": "dense", "width": 16, "seed": 0}],
             "settings": {"n_timesteps": 300}}
    with pytest.raises(ValueError, match=r"sweep grid point \(algo='dqn', env='Pendulum-v1'.*algo='dqn' trains on "
                                         r"Discrete actions"):
        expand_grid(sweep)
