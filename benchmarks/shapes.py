"""Stand-in environments for timing: a gradient step's cost depends on the spaces' shapes, not the data."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class HalfCheetahShapes(gym.Env):
    """HalfCheetah-v4's spaces with random transitions: a gradient step's cost depends on shapes, not data."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (17,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), float(self.np_random.normal()), False, False, {}
