"""The main job: train one sparse agent, evaluate it, and save everything a person wants to look at.

``train_run(config, output_dir)`` is the code path behind ``sb3-tar train`` (sweeps train through
``rl_zoo3.train`` instead, with the project's tuned hyperparameter files). It validates every setting before it touches the disk, trains in a
private folder next to ``output_dir`` and moves it into place only when the run has finished, so
a failed or interrupted run never leaves half a result behind and never costs an existing one.

The output folder holds:

- ``model.zip``: the trained model (``Algo.load`` restores it, masks included);
- ``topology.txt``, ``topology.json`` and ``topology-<network>.png``: each network's per-layer
  topology (density, connectivity floor, deficit, revived weights, isolated units);
- ``learning_curve.png``, ``evaluations.npz`` and ``monitor.csv``: returns during training;
- ``progress.csv``: SB3's log, with the ``sparsity/...`` keys;
- ``run.json``: the configuration, the final evaluation and the package versions.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import TQC, CrossQ
from stable_baselines3 import DDPG, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_tar.engine import format_topology_table, plot_topology, topology_report
from sb3_tar.sb3.agent import sparse_agent
from sb3_tar.sb3.callback import SparsityLogCallback
from sb3_tar.sb3.policies import ALIAS
from sb3_tar.sb3.settings import SparsitySettings

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"sac": SAC, "td3": TD3, "ddpg": DDPG, "tqc": TQC, "crossq": CrossQ}
# Deterministic actors explore only through action noise; SB3's default is none.
NOISY_ALGORITHMS = ("td3", "ddpg")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. The defaults train SAC on Pendulum-v1 in a few minutes on 2 CPU cores.

    :param algo: ``sac``, ``td3``, ``ddpg``, ``tqc`` or ``crossq``.
    :param env: a registered Gymnasium environment id with a continuous action space.
    :param timesteps: environment steps to train for.
    :param sparsity: see ``TarMlpPolicy``; ``actor_sparsity``/``critic_sparsity`` override it.
    :param criterion: static pruning criterion.
    :param recovery_ratio: revival budget as a fraction of each network's weights.
    :param allocation: ``topology`` (TAR) or ``uniform``.
    :param budget: ``reserve`` or ``extra``.
    :param criterion_options: the criterion's options (``scope``, ``iterations``).
    :param net_arch: hidden layer widths of the actor and of each Q-network.
    :param seed: the run's seed (environment, weights and masks; evaluation uses ``seed + 1``).
    :param learning_rate: the optimizers' learning rate (rl-zoo3's tuned value for Pendulum-v1).
    :param action_noise: standard deviation of TD3/DDPG's Gaussian exploration noise.
    :param hyperparams: any other keyword arguments of the algorithm (``batch_size``, ``gamma``, ...).
    :param evaluations: how many evaluations during training (for the learning curve).
    :param eval_episodes: episodes per evaluation, and for the final evaluation.
    :param device: ``auto``, ``cpu`` or ``cuda``.
    :param threads: torch CPU threads (1 is fastest for these small networks).
    :param progress_bar: show SB3's progress bar.
    """

    algo: str = "sac"
    env: str = "Pendulum-v1"
    timesteps: int = 10_000
    sparsity: float | None = 0.8
    actor_sparsity: float | None = None
    critic_sparsity: float | None = None
    criterion: str = "magnitude"
    recovery_ratio: float = 0.01
    allocation: str = "topology"
    budget: str = "reserve"
    criterion_options: dict[str, Any] = field(default_factory=dict)
    net_arch: tuple[int, ...] = (256, 256)
    seed: int = 0
    learning_rate: float = 1e-3
    action_noise: float = 0.1
    hyperparams: dict[str, Any] = field(default_factory=dict)
    evaluations: int = 10
    eval_episodes: int = 5
    device: str = "auto"
    threads: int = 1
    progress_bar: bool = True

    def sparsity_settings(self) -> SparsitySettings:
        return SparsitySettings(self.sparsity, self.actor_sparsity, self.critic_sparsity, self.criterion,
                                self.recovery_ratio, self.allocation, self.budget, dict(self.criterion_options),
                                owner="train")

    def validate(self) -> None:
        """Check every setting (without building anything).

        :raises ValueError: naming the setting, the value and what is allowed.
        """
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo={self.algo!r} is not supported; allowed: {sorted(ALGORITHMS)}")
        try:
            spec = gym.spec(self.env)
        except gym.error.Error as error:
            raise ValueError(f"env={self.env!r} is not a registered Gymnasium environment ({error})") from None
        if spec is None:
            raise ValueError(f"env={self.env!r} is not a registered Gymnasium environment")
        self.sparsity_settings()
        for setting in ("timesteps", "evaluations", "eval_episodes", "threads"):
            value = getattr(self, setting)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{setting}={value!r} must be an integer >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be a non-negative integer")
        if not self.net_arch or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.net_arch):
            raise ValueError(f"net_arch={list(self.net_arch)!r} must be one or more positive layer widths")
        for setting in ("learning_rate", "action_noise"):
            value = getattr(self, setting)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{setting}={value!r} must be a number >= 0")
        reserved = sorted(set(self.hyperparams) & {"policy", "env", "seed", "policy_kwargs", "device"})
        if reserved:
            raise ValueError(f"hyperparams {reserved} are set by the run itself; use its own settings")

    def run_name(self) -> str:
        """``<algo>-<env>-<criterion>-s<sparsity>-rr<recovery_ratio>-seed<seed>``: the default folder name.

        An actor or critic sparsity of its own adds ``a<actor_sparsity>`` or ``c<critic_sparsity>``.
        """
        sparsity = "".join(f"{letter}{value:g}" for letter, value in (
            ("s", self.sparsity), ("a", self.actor_sparsity), ("c", self.critic_sparsity)) if value is not None)
        return f"{self.algo}-{self.env}-{self.criterion}-{sparsity}-rr{self.recovery_ratio:g}-seed{self.seed}"

    def algorithm_kwargs(self, action_space: gym.spaces.Box) -> dict[str, Any]:
        """The algorithm's keyword arguments, without ``policy`` and ``env``."""
        policy_kwargs = {"net_arch": list(self.net_arch), **self.sparsity_settings().as_kwargs()}
        kwargs: dict[str, Any] = {"learning_rate": self.learning_rate, "seed": self.seed, "device": self.device,
                                  "policy_kwargs": policy_kwargs}
        if self.algo in NOISY_ALGORITHMS and self.action_noise > 0:
            actions = action_space.shape[0]
            kwargs["action_noise"] = NormalActionNoise(np.zeros(actions), self.action_noise * np.ones(actions))
        return {**kwargs, **self.hyperparams}


@dataclass(frozen=True)
class TrainResult:
    """Where a finished run's files are, and how the agent did."""

    output_dir: Path
    model: Path
    topology: Path
    learning_curve: Path
    mean_return: float
    std_return: float
    wall_time_s: float


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("sb3-tar", "torch", "stable-baselines3", "sb3-contrib", "gymnasium"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _training_episodes(monitor_csv: Path) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative timesteps at the end of each training episode, and its return."""
    lines = monitor_csv.read_text().splitlines()[2:]  # a JSON comment line, then the header r,l,t
    rows = [line.split(",") for line in lines if line]
    returns = np.array([float(row[0]) for row in rows])
    return np.cumsum([int(row[1]) for row in rows]), returns


def plot_learning_curve(output_dir: Path, title: str) -> Path:
    """``learning_curve.png``: training episode returns and evaluation mean +- std over timesteps."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    axes = figure.subplots()
    steps, returns = _training_episodes(output_dir / "monitor.csv")
    axes.plot(steps, returns, ".", color="#9e9e9e", markersize=4, label="training episodes")
    evaluations = np.load(output_dir / "evaluations.npz")
    if len(evaluations["timesteps"]):
        mean, std = evaluations["results"].mean(axis=1), evaluations["results"].std(axis=1)
        axes.plot(evaluations["timesteps"], mean, "-o", color="#2e7d32", label="evaluation (mean)")
        axes.fill_between(evaluations["timesteps"], mean - std, mean + std, color="#2e7d32", alpha=0.2,
                          label="evaluation (+- std)")
    axes.set_xlabel("environment steps")
    axes.set_ylabel("episode return")
    axes.set_title(title, fontsize="medium")
    axes.legend(fontsize="small", loc="lower right")
    path = output_dir / "learning_curve.png"
    figure.savefig(path, dpi=120)
    return path


def write_topology(model: BaseAlgorithm, output_dir: Path) -> Path:
    """``topology.txt``/``.json`` and one ``topology-<network>.png`` per network, from the model's masks."""
    plans = sparse_agent(model).plans()
    (output_dir / "topology.json").write_text(
        json.dumps({name: topology_report(plan) for name, plan in plans.items()}, indent=2))
    (output_dir / "topology.txt").write_text(
        "\n\n".join(format_topology_table(plan, title=f"network {name}") for name, plan in plans.items()) + "\n")
    for name, plan in plans.items():
        plot_topology(plan, output_dir / f"topology-{name}.png", title=f"{name}: {plan.settings.criterion}, "
                      f"sparsity {plan.settings.sparsity:g}, rr {plan.settings.recovery_ratio:g}")
    return output_dir / "topology.txt"


def _publish(work: Path, output_dir: Path) -> None:
    """Move the finished run into place; an existing folder is replaced only now."""
    if output_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.old-", dir=output_dir.parent))
        output_dir.rename(old / output_dir.name)
        work.rename(output_dir)
        shutil.rmtree(old)
    else:
        work.rename(output_dir)


def train_run(config: TrainConfig, output_dir: str | Path, *, overwrite: bool = False) -> TrainResult:
    """Train, evaluate and save one sparse agent into ``output_dir``.

    :param config: the run.
    :param output_dir: the folder to create; it must not exist unless ``overwrite``.
    :param overwrite: replace an existing ``output_dir`` (only once the new run has finished).
    :raises ValueError: for a bad setting, before anything is created.
    :raises FileExistsError: if ``output_dir`` exists and ``overwrite`` is false.
    """
    config.validate()
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"output folder {output_dir} exists; choose another or allow overwriting it")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    try:
        result = _train(config, work)
        _publish(work, output_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return TrainResult(output_dir, output_dir / "model.zip", output_dir / "topology.txt",
                       output_dir / "learning_curve.png", *result)


def _train(config: TrainConfig, work: Path) -> tuple[float, float, float]:
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        env = Monitor(gym.make(config.env), str(work / "monitor.csv"))
        # Evaluation episodes start from their own seeded stream, so a run is reproducible end to end.
        eval_env = DummyVecEnv([lambda: Monitor(gym.make(config.env))])
        eval_env.seed(config.seed + 1)
        model = ALGORITHMS[config.algo](ALIAS, env, **config.algorithm_kwargs(env.action_space))
        formats = ["csv"] + (["tensorboard"] if _has_tensorboard() else [])
        model.set_logger(configure(str(work), formats))
        eval_callback = EvalCallback(eval_env, n_eval_episodes=config.eval_episodes, log_path=str(work),
                                     eval_freq=max(1, config.timesteps // config.evaluations), verbose=0)
        model.learn(config.timesteps, callback=[SparsityLogCallback(), eval_callback],
                    progress_bar=config.progress_bar)
        mean_return, std_return = evaluate_policy(model, eval_env, n_eval_episodes=config.eval_episodes)
        model.save(work / "model.zip")
        write_topology(model, work)
        title = (f"{config.algo.upper()} {config.env}, TarMlpPolicy: {config.criterion}, sparsity "
                 f"{config.sparsity if config.sparsity is not None else 'per network'}, rr {config.recovery_ratio:g}")
        plot_learning_curve(work, title)
        wall_time = time.perf_counter() - start
        (work / "run.json").write_text(json.dumps({
            "config": {**asdict(config), "net_arch": list(config.net_arch)},
            "final_evaluation": {"mean_return": float(mean_return), "std_return": float(std_return),
                                 "episodes": config.eval_episodes},
            "wall_time_s": wall_time,
            "versions": _versions(),
        }, indent=2, default=str))
        env.close()
        eval_env.close()
    finally:
        torch.set_num_threads(threads)
    return float(mean_return), float(std_return), wall_time


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = ["ALGORITHMS", "TrainConfig", "TrainResult", "plot_learning_curve", "train_run", "write_topology"]
