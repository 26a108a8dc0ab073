"""Mid-run checkpoints: everything a run needs to continue after it was stopped.

A checkpoint is a folder with the model (``model.zip``: weights, masks, optimizer state, the
sb3-tar callbacks' state and the step counters, as SB3 saves them), the filled part of the replay
buffer of an off-policy algorithm (``replay_buffer.npz``: a Humanoid buffer is allocated for 10^6
transitions, but a 50,000-step run fills 5 % of it, and SB3's own pickle would write all of it;
PPO and A2C have none: a checkpoint falls between rollouts, when their rollout buffer is spent), the
observation and return statistics where the environment is normalized (``vecnormalize.pkl``), and
``state.json`` (the run configuration, the evaluations so far and the step timer). It is written to
a fresh folder and renamed into place, so the latest checkpoint is always complete.

Not restored: the environment's episode in progress (training resumes with a fresh episode, as
SB3's ``load`` does), and the random generators of the environment, the action noise and the
replay sampling; so a resumed run is the same up to the checkpoint and a different draw after it.
The training-episode log is cut back to the checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback

from sb3_tar.engine.errors import UserError
from sb3_tar.experiments.store import move_aside, shelf
from sb3_tar.experiments.timing import StepTimeCallback

CHECKPOINT = "checkpoint"
CORRUPT = ".sb3-tar-corrupt"  # where damaged results and checkpoints are set aside, beside the output
MONITORS = "*.monitor.csv"
NORMALIZER = "vecnormalize.pkl"
BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def save_replay_buffer(buffer: ReplayBuffer, path: Path) -> None:
    """The filled part of ``buffer`` and its position, as one ``.npz`` file."""
    size = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {name: getattr(buffer, name)[:size] for name in BUFFER_FIELDS if getattr(buffer, name, None) is not None}
    with open(path, "wb") as file:
        np.savez(file, pos=buffer.pos, full=buffer.full, **arrays)


def load_replay_buffer(buffer: ReplayBuffer, path: Path) -> None:
    """Fill ``buffer`` (freshly allocated, same shapes) from ``save_replay_buffer``'s file."""
    with np.load(path) as data:
        for name in BUFFER_FIELDS:
            if name in data.files:
                stored = data[name]
                getattr(buffer, name)[: len(stored)] = stored
        buffer.pos, buffer.full = int(data["pos"]), bool(data["full"])


def _eval_state(callback: EvalCallback) -> dict[str, Any]:
    return {
        "timesteps": [int(t) for t in callback.evaluations_timesteps],
        "results": [[float(r) for r in row] for row in callback.evaluations_results],
        "lengths": [[int(n) for n in row] for row in callback.evaluations_length],
        "best_mean_reward": float(callback.best_mean_reward),
        "last_mean_reward": float(callback.last_mean_reward),
    }


def _restore_eval(callback: EvalCallback, state: dict[str, Any], num_timesteps: int, n_envs: int) -> None:
    callback.evaluations_timesteps = list(state["timesteps"])
    callback.evaluations_results = [list(row) for row in state["results"]]
    callback.evaluations_length = [list(row) for row in state["lengths"]]
    callback.best_mean_reward = state["best_mean_reward"]
    callback.last_mean_reward = state["last_mean_reward"]
    callback.n_calls = num_timesteps // n_envs  # the next evaluation falls where it would have


@dataclass
class Checkpoint:
    """A loaded checkpoint: where it is, and its ``state.json``."""

    path: Path
    state: dict[str, Any]

    @property
    def num_timesteps(self) -> int:
        return int(self.state["num_timesteps"])

    def restore(self, model: BaseAlgorithm, eval_callback: EvalCallback | None, timer: StepTimeCallback) -> None:
        """Put the buffer, the evaluations so far and the step timer back into a freshly loaded run."""
        buffer_path = self.path / "replay_buffer.npz"
        if buffer_path.exists():
            load_replay_buffer(model.replay_buffer, buffer_path)
        normalizer_path = self.path / NORMALIZER
        normalizer = model.get_vec_normalize_env()
        if normalizer_path.exists() != (normalizer is not None):
            raise UserError(
                f"the checkpoint at {self.path} {'holds' if normalizer_path.exists() else 'has no'} {NORMALIZER}, but "
                f"the run it resumes {'does not normalize' if normalizer is None else 'normalizes'} its environment "
                "(the 'normalize' hyperparameter); the checkpoint is not this run's"
            )
        if normalizer is not None:
            with open(normalizer_path, "rb") as file:
                saved = pickle.load(file)  # noqa: S301 - the run's own checkpoint, written by write_checkpoint
            normalizer.obs_rms, normalizer.ret_rms = saved.obs_rms, saved.ret_rms
        if eval_callback is not None and self.state.get("evaluations") is not None:
            _restore_eval(eval_callback, self.state["evaluations"], self.num_timesteps, model.n_envs)
        timer.restore(self.state["step_times"])

    def restore_monitors(self, logs: Path) -> None:
        """Cut the training-episode logs in ``logs`` back to the checkpoint (a resumed run trains those steps again)."""
        for name, size in self.state.get("monitor_bytes", {}).items():
            path = logs / name
            if path.exists() and path.stat().st_size > size:
                os.truncate(path, size)


def find_checkpoint(work: Path) -> Checkpoint | None:
    """The latest complete checkpoint in ``work``, or ``None``.

    It only reads: a sweep looks into the work folders of runs that may be in flight, and a
    half-written ``checkpoint.new`` is the next ``write_checkpoint``'s to clear.
    """
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):  # .old is complete: kept until the new one was in place
        path = work / name
        try:
            state = json.loads((path / "state.json").read_text())
        except (OSError, ValueError):
            continue
        # state.json is written last and names the other files: a folder that lost one (a removal
        # cut short) would resume with an empty replay buffer, so it is not a checkpoint; nor is one
        # whose model or buffer archive is damaged (a truncated or flipped file fails its CRC-32).
        if damage(path, state) is None:
            return Checkpoint(path, state)
    return None


def damage(path: Path, state: dict[str, Any]) -> str | None:
    """What is wrong with the checkpoint files at ``path`` (missing, or an archive that fails its checksums), or ``None``."""
    for name in dict.fromkeys(["model.zip", *state.get("files", [])]):
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        written = state.get("sizes", {}).get(name)
        if written is not None and file.stat().st_size != written:
            return f"{name} is {file.stat().st_size} bytes, {written} were written"
        if file.suffix in (".zip", ".npz"):
            try:
                with zipfile.ZipFile(file) as archive:
                    bad = archive.testzip()
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
                return f"{name} is not a whole archive ({error})"
            if bad is not None:
                return f"{name} fails its checksum at {bad}"
    return None


def set_aside_damaged(work: Path, output: Path) -> str | None:
    """Move checkpoint folders in ``work`` that are not whole checkpoints aside; returns a message, or ``None``.

    Called under the run's lock, when no whole checkpoint was found: what is left would otherwise
    stop every later attempt. It goes to ``.sb3-tar-corrupt/<date>/<output name>.<folder>`` beside the output.
    """
    moved = []
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        folder = work / name
        if not folder.is_dir():
            continue
        try:
            state = json.loads((folder / "state.json").read_text())
            reason = damage(folder, state) or "it does not read"
        except (OSError, ValueError) as error:
            reason = f"state.json does not read ({error.__class__.__name__})"
        destination = move_aside(folder, shelf(output.parent, CORRUPT) / f"{output.name}.{name}")
        moved.append(f"{folder} ({reason}) moved to {destination}")
    if not moved:
        return None
    return "the checkpoint is damaged, so the run starts over: " + "; ".join(moved)


def write_checkpoint(work: Path, model: BaseAlgorithm, config: dict[str, Any], eval_callback: EvalCallback | None,
                     timer: StepTimeCallback, extra_state: dict[str, Any] | None = None) -> Path:
    """Save the run as it is now into ``work/checkpoint``, replacing the previous one only when complete."""
    fresh, current, previous = work / f"{CHECKPOINT}.new", work / CHECKPOINT, work / f"{CHECKPOINT}.old"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    model.save(fresh / "model.zip")
    files = ["model.zip"]
    if getattr(model, "replay_buffer", None) is not None:
        save_replay_buffer(model.replay_buffer, fresh / "replay_buffer.npz")
        files.append("replay_buffer.npz")
    normalizer = model.get_vec_normalize_env()
    if normalizer is not None:
        normalizer.save(str(fresh / NORMALIZER))
        files.append(NORMALIZER)
    sizes = {name: (fresh / name).stat().st_size for name in files}  # what was written, to find a truncated file
    state = {"num_timesteps": int(model.num_timesteps), "config": config, "files": files, "sizes": sizes,
             "evaluations": _eval_state(eval_callback) if eval_callback is not None else None,
             "step_times": timer.state(), **(extra_state or {})}
    (fresh / "state.json").write_text(json.dumps(state))
    if current.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.rename(current, previous)
    os.rename(fresh, current)
    shutil.rmtree(previous, ignore_errors=True)
    return current


class CheckpointCallback(BaseCallback):
    """Write a checkpoint every ``frequency`` environment steps (put it after the evaluation callback).

    The checkpoint is written when the next rollout starts (or training ends at the budget), once
    the gradient steps of the rollout just collected are done: SB3 trains after a rollout, so a
    checkpoint written at the rollout's last step would hold that step's transition but not its
    gradient steps, and a resumed run would never take them. (Training stopped early by a callback
    ends before those gradient steps: nothing is written then.) For PPO and A2C a rollout is
    ``n_steps * n_envs`` steps and its training is all the epochs on it, so checkpoints fall on
    rollout boundaries, the first at or after each ``frequency`` steps.

    :param work: the run's private folder.
    :param logs: the folder of the run's training-episode logs (``*.monitor.csv``), whose length
        at the checkpoint is recorded so a resume drops the episodes logged after it.
    :param frequency: environment steps between checkpoints.
    :param budget: the run's step budget.
    :param config: the run configuration, stored so a resume can check it is the same run.
    :param eval_callback: the run's evaluation callback, whose results so far are saved.
    :param timer: the run's step timer.
    """

    def __init__(self, work: Path, logs: Path, frequency: int, budget: int, config: dict[str, Any],
                 eval_callback: EvalCallback | None, timer: StepTimeCallback) -> None:
        super().__init__()
        self.work, self.logs, self.frequency, self.budget, self.config = work, logs, frequency, budget, config
        self.eval_callback, self.timer = eval_callback, timer
        self.extra_state: dict[str, Any] = {}
        self.saved_at = 0

    def _on_training_start(self) -> None:
        self.saved_at = self.model.num_timesteps  # a resumed run's checkpoint is the one it started from

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        self._save_if_due()

    def _on_training_end(self) -> None:
        if self.model.num_timesteps >= self.budget:
            self._save_if_due()

    def _save_if_due(self) -> None:
        steps = self.model.num_timesteps
        if steps // self.frequency > self.saved_at // self.frequency:
            monitors = {path.name: path.stat().st_size for path in self.logs.glob(MONITORS)}
            write_checkpoint(self.work, self.model, self.config, self.eval_callback, self.timer,
                             {**self.extra_state, "monitor_bytes": monitors})
            self.saved_at = steps
