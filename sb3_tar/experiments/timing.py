"""Wall time per block of environment steps, measured inside a training run.

The median time of a block is the run's training speed: blocks that contain an evaluation are
slower, and the median leaves them out without having to know which they are. Sparse and dense
runs of one sweep measured this way compare side by side on the same machine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from stable_baselines3.common.callbacks import BaseCallback


class StepTimeCallback(BaseCallback):
    """Write ``{"interval": N, "timesteps": [...], "wall_s": [...], "cpu_s": [...]}`` to ``path`` at training end.

    :param path: the JSON file to write.
    :param interval: environment steps per block.
    """

    def __init__(self, path: str, interval: int = 1000, verbose: int = 0) -> None:
        super().__init__(verbose)
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval={interval!r} must be an integer >= 1")
        self.path = Path(path)
        self.interval = interval
        self.timesteps: list[int] = []
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def _stamp(self) -> None:
        self.timesteps.append(int(self.num_timesteps))
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def _on_training_start(self) -> None:
        self._stamp()

    def _on_step(self) -> bool:
        if self.num_timesteps % self.interval == 0:
            self._stamp()
        return True

    def _on_training_end(self) -> None:
        start_wall, start_cpu = self.wall[0], self.cpu[0]
        self.path.write_text(json.dumps({
            "interval": self.interval,
            "timesteps": self.timesteps,
            "wall_s": [t - start_wall for t in self.wall],
            "cpu_s": [t - start_cpu for t in self.cpu],
        }))
