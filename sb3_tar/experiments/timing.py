"""Wall time per block of environment steps, measured inside a training run.

The median time of a block is the run's training speed: blocks that contain an evaluation are
slower, and the median leaves them out without having to know which they are. Sparse and dense
runs of one sweep measured this way compare side by side on the same machine.

A block must hold the training its steps cause. Off-policy algorithms train every few steps, so a
block ends at the step that completes it. On-policy algorithms (PPO, A2C) collect a whole rollout
of ``n_steps * n_envs`` steps and then train on it, so their blocks end at rollout boundaries,
after the training: at the first rollout start at or after each ``interval`` steps (a block is then
one rollout or more, and its time is scaled to ``interval`` steps), and at training end.
"""

from __future__ import annotations

import time
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from sb3_tar.engine.errors import UserError


class StepTimeCallback(BaseCallback):
    """Cumulative wall and CPU time at every ``interval`` environment steps (on-policy: at the rollout
    boundary that follows, see the module's docstring).

    ``state()`` is ``{"interval", "timesteps", "wall_s", "cpu_s"}``; a run resumed from a
    checkpoint passes it back to ``restore``, and the clock continues from the last stamp (the time
    the run was stopped is not counted).

    :param interval: environment steps per block.
    """

    def __init__(self, interval: int = 1000, verbose: int = 0) -> None:
        super().__init__(verbose)
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise UserError(f"interval={interval!r} must be an integer >= 1")
        self.interval = interval
        self.timesteps: list[int] = []
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._origin = (0.0, 0.0)
        self._per_rollout = False

    def restore(self, state: dict[str, Any]) -> None:
        self.timesteps, self.wall, self.cpu = list(state["timesteps"]), list(state["wall_s"]), list(state["cpu_s"])

    def state(self) -> dict[str, Any]:
        return {"interval": self.interval, "timesteps": list(self.timesteps), "wall_s": list(self.wall),
                "cpu_s": list(self.cpu)}

    def _on_training_start(self) -> None:
        self._per_rollout = isinstance(self.model, OnPolicyAlgorithm)
        last_wall, last_cpu = (self.wall[-1], self.cpu[-1]) if self.wall else (0.0, 0.0)
        self._origin = (time.perf_counter() - last_wall, time.process_time() - last_cpu)
        if not self.timesteps:
            self._stamp()

    def _stamp(self) -> None:
        self.timesteps.append(int(self.num_timesteps))
        self.wall.append(time.perf_counter() - self._origin[0])
        self.cpu.append(time.process_time() - self._origin[1])

    def _block_done(self) -> bool:
        # "passed a multiple of interval", not "is one": with n_envs > 1 the count moves n_envs at a time
        return self.num_timesteps // self.interval > self.timesteps[-1] // self.interval

    def _on_step(self) -> bool:
        if not self._per_rollout and self._block_done():
            self._stamp()
        return True

    def _on_rollout_start(self) -> None:
        if self._per_rollout and self._block_done():
            self._stamp()

    def _on_training_end(self) -> None:
        if self._per_rollout and self.num_timesteps > self.timesteps[-1]:
            self._stamp()


def median_block_seconds(step_times: dict[str, Any] | None, after: int = 0, clock: str = "wall_s") -> float | None:
    """Median seconds per ``interval`` steps, over blocks that end after step ``after``.

    ``clock="cpu_s"`` counts the process's CPU time (all its threads) instead of wall time: on a shared
    machine a run's wall time grows with everything else running on it, its CPU time far less (in the
    MuJoCo suite, about 10 % between a quiet machine and a load average of 5-9, where wall time grew
    3.6x), so runs made under different loads compare by CPU time.
    """
    if clock not in ("wall_s", "cpu_s"):
        raise UserError(f"clock={clock!r} must be 'wall_s' or 'cpu_s'")
    if not step_times or len(step_times["timesteps"]) < 2:
        return None
    stamps = list(zip(step_times["timesteps"], step_times[clock]))
    blocks = [(t1 - t0, w1 - w0) for (t0, w0), (t1, w1) in zip(stamps, stamps[1:]) if t1 > after and t1 > t0]
    if not blocks:
        return None
    per_interval = sorted(seconds * step_times["interval"] / steps for steps, seconds in blocks)
    middle = len(per_interval) // 2
    return per_interval[middle] if len(per_interval) % 2 else (per_interval[middle - 1] + per_interval[middle]) / 2
