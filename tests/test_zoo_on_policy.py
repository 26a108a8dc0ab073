"""rl-zoo3 trains PPO, A2C and DQN sparse agents from the project's files (hyperparams/{ppo,a2c,dqn}.yml)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from stable_baselines3 import A2C, DQN, PPO

import sb3_tar

HYPERPARAMS = (Path(__file__).resolve().parents[1] / "hyperparams").resolve()
RUNS = {
    # algo: (class, env, steps): budgets just past each entry's first updates
    "ppo": (PPO, "CartPole-v1", 600),
    "a2c": (A2C, "CartPole-v1", 300),
    "dqn": (DQN, "CartPole-v1", 1300),  # learning starts after 1000 steps, trains every 256
}


@pytest.mark.parametrize("algo", sorted(RUNS))
def test_the_zoo_trains_a_sparse_agent_from_the_projects_file(algo, tmp_path):
    algorithm, env_id, steps = RUNS[algo]
    command = [sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", env_id, "--gym-packages", "sb3_tar",
               "-conf", str(HYPERPARAMS / f"{algo}.yml"), "-n", str(steps), "--eval-freq", "-1", "--num-threads", "1",
               "-f", str(tmp_path), "--seed", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    model = algorithm.load(tmp_path / algo / f"{env_id}_1" / f"{env_id}.zip", device="cpu")
    agent = sb3_tar.sparse_agent(model)
    for network, plan in agent.plans().items():
        settings = plan.settings
        assert plan.kept == round((1 - settings.sparsity) * plan.total) + plan.repaired, network
        weights = agent.weights(next(n for n in agent.networks if n.name == network))
        assert all(int(w.detach()[~agent.masks[name]].count_nonzero()) == 0 for name, w in weights.items())
