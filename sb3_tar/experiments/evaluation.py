"""Replay a published run: its saved model, in the environment it trained in (``sb3-tar evaluate``).

The environment is built as rl-zoo3's ``enjoy`` builds it, from the run's own saved zoo config
(``zoo/config.yml``: wrappers, frame stacking, environment options) and, where the run normalised
observations, its ``vecnormalize.pkl`` (frozen: evaluation does not update the statistics).
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sb3_tar.engine.errors import UserError
from sb3_tar.experiments.config import RunConfig
from sb3_tar.experiments.store import read_result


@dataclass(frozen=True)
class Evaluation:
    """The returns of the replayed episodes, whether the run's observation statistics applied, and the video."""

    run_id: str
    returns: list[float]
    lengths: list[int]
    deterministic: bool
    normalized: bool
    video: Path | None

    @property
    def mean(self) -> float:
        return sum(self.returns) / len(self.returns)

    @property
    def std(self) -> float:
        return (sum((value - self.mean) ** 2 for value in self.returns) / len(self.returns)) ** 0.5


def _test_env(folder: Path, config: RunConfig, seed: int, render_mode: str | None) -> Any:
    from rl_zoo3.utils import create_test_env, get_saved_hyperparams

    hyperparams, _ = get_saved_hyperparams(str(folder / "zoo"), test_mode=True)
    env_kwargs = dict(hyperparams.pop("env_kwargs", None) or {})
    if render_mode is not None:
        env_kwargs["render_mode"] = render_mode
    with contextlib.redirect_stdout(io.StringIO()):  # the zoo announces the statistics it loads
        return create_test_env(config.env, n_envs=1, stats_path=str(folder), seed=seed, should_render=False,
                               hyperparams=hyperparams, env_kwargs=env_kwargs)


def evaluate_run(folder: str | Path, *, episodes: int = 10, deterministic: bool = True, seed: int = 0,
                 video: str | Path | None = None, device: str = "cpu") -> Evaluation:
    """Replay ``episodes`` episodes of the model a ``sb3-tar train`` run saved in ``folder``.

    :param video: a folder for an mp4 of the episodes (MuJoCo renders off-screen: ``MUJOCO_GL=egl``
        is set when no display is named).
    :raises ValueError: if ``folder`` holds no published run, or a setting is bad.
    """
    from rl_zoo3.utils import ALGOS
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import unwrap_vec_normalize

    from sb3_tar.engine.validation import check_integer
    from sb3_tar.experiments.store import ResultError

    folder = Path(folder)
    check_integer("episodes", episodes)
    check_integer("seed", seed, 0)
    try:
        result = read_result(folder)
    except ResultError as error:
        raise UserError(f"{folder} holds no finished sb3-tar run: {error}") from None
    config = RunConfig.from_dict(result["config"])
    target = None if video is None else Path(video) / f"{config.run_id}.mp4"
    if target is not None and target.exists():
        raise UserError(f"{target} exists; choose another --video folder or move it away")
    if video is not None and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")  # before MuJoCo is first imported by the environment
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # classic control draws with pygame
    env = _test_env(folder, config, seed, "rgb_array" if video is not None else None)
    normalized = unwrap_vec_normalize(env) is not None  # under a frame stack too
    if target is not None:
        from stable_baselines3.common.vec_env import VecVideoRecorder

        env = VecVideoRecorder(env, str(target.parent), record_video_trigger=lambda step: step == 0,
                               video_length=10**9, name_prefix=f".{config.run_id}")
    try:
        # Loaded without the environment: SB3 would seed it with the model's own seed.
        model = ALGOS[config.algo].load(folder / "model.zip", device=device)
        returns, lengths = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=deterministic,
                                           return_episode_rewards=True, warn=False)
    finally:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            env.close()  # writes the video (moviepy reports every frame)
    if target is not None:
        written = sorted(target.parent.glob(f".{config.run_id}-step-*.mp4"))
        if not written:
            raise RuntimeError(f"no video was written to {target.parent}")
        written[-1].rename(target)
    return Evaluation(config.run_id, [float(value) for value in returns], [int(value) for value in lengths],
                      deterministic, normalized, target)
