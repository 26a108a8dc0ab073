"""The return of a uniformly random policy per task: the lower anchor of normalised scores.

    python -m benchmarks.random_policy --env Humanoid-v4 HalfCheetah-v4 --episodes 10

Writes ``benchmarks/results/random_policy.json``: per task, the mean and every episode's return
of actions drawn uniformly from the action space (episodes seeded 0, 1, ...).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np

from benchmarks.environment import describe_environment


def random_returns(env_id: str, episodes: int) -> list[float]:
    env = gym.make(env_id)
    env.action_space.seed(0)
    returns = []
    for episode in range(episodes):
        env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", nargs="+", default=["Humanoid-v4", "HalfCheetah-v4"])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/random_policy.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=r".*is out of date")
    tasks = {}
    for env_id in args.env:
        returns = random_returns(env_id, args.episodes)
        tasks[env_id] = {"mean_return": float(np.mean(returns)), "returns": returns}
        print(f"{env_id}: random policy {np.mean(returns):.1f} over {args.episodes} episodes")
    args.output.write_text(json.dumps({"environment": describe_environment(), "tasks": tasks}, indent=2))


if __name__ == "__main__":
    main()
