"""The one run pipeline: a ``RunConfig`` in, a published result folder out.

``run_training`` is what ``sb3-tar train`` runs, what every sweep run runs (in a child process),
and what the training benchmarks run. It trains through rl-zoo3's own experiment setup
(``ExperimentManager``: the tuned entry's schedules, action noise, environment wrappers and
evaluation callback, exactly as ``python -m rl_zoo3.train`` builds them), in a private folder,
checkpointing every ``checkpoint_freq`` steps; re-running the same configuration on the same
output resumes from the last checkpoint. The result is published (renamed into place) only once
the run has trained its whole budget and its ``result.json`` is written.

The result folder:

- ``result.json``: configuration, hyperparameters, evaluation curve, final evaluation, per-network
  topology and kept weights, FLOPs, step times and provenance;
- ``model.zip`` (``Algo.load`` restores it, masks included), ``vecnormalize.pkl`` (only where the
  entry normalizes observations: the statistics the model acts on), ``hyperparams.yml`` (the zoo entry it
  trained with), ``evaluations.npz``, ``<n>.monitor.csv`` (one per environment), ``progress.csv`` (SB3's log with the
  ``sparsity/...`` keys), ``best_model.zip`` (the zoo's best evaluation), ``zoo/`` (the zoo's config);
- ``topology.txt``/``.json``/``-<network>.png`` and ``learning_curve.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sb3_tar.experiments.algorithms import STATIC_METHODS
from sb3_tar.experiments.checkpoint import CHECKPOINT, CheckpointCallback, find_checkpoint, set_aside_damaged
from sb3_tar.experiments.config import RunConfig, run_hyperparams
from sb3_tar.experiments.provenance import provenance
from sb3_tar.experiments.run_result import final_evaluation, run_result
from sb3_tar.experiments.simulators import mujoco_warnings_to
from sb3_tar.experiments.store import (
    LOCK,
    LockedError,
    ResultError,
    command_line,
    locked,
    partial_dir,
    publish,
    read_result,
    recover,
    remove_work,
    write_json_atomically,
)
from sb3_tar.experiments.timing import StepTimeCallback

STEP_TIME_INTERVAL = 1000


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped (Ctrl-C, SIGTERM); the message says what was kept and how to resume."""


class IncompleteRunError(RuntimeError):
    """Training ended before the step budget (a callback stopped it); nothing is published."""


@dataclass(frozen=True)
class RunResult:
    """A published run: its folder and its ``result.json`` data."""

    output: Path
    result: dict[str, Any]

    @property
    def final_return(self) -> float:
        return float(self.result["final_evaluation"]["mean_return"])


STEP_COLUMN = "time/total_timesteps"  # SB3's step count in progress.csv


def _set_aside_progress_log(run_dir: Path, step: int) -> None:
    """Keep the interrupted run's ``progress.csv``, up to the checkpoint, before SB3 starts a new one on resume.

    Rows logged after the checkpoint describe training the resume discards and trains again, so
    they are dropped: the resumed log would repeat them. A run stopped twice after the same
    checkpoint resumes from the same step twice: the second log gets its own name rather than
    replacing the first.
    """
    progress = run_dir / "progress.csv"
    if not progress.exists():
        return
    target, attempt = run_dir / f"progress.until-{step}.csv", 2
    while target.exists():
        target, attempt = run_dir / f"progress.until-{step}-{attempt}.csv", attempt + 1
    with progress.open(newline="") as source:
        rows = list(csv.reader(source))
    if rows and STEP_COLUMN in rows[0]:
        column = rows[0].index(STEP_COLUMN)
        rows = rows[:1] + [row for row in rows[1:] if len(row) <= column or not row[column]
                           or float(row[column]) <= step]
    with target.open("w", newline="") as kept:
        csv.writer(kept).writerows(rows)
    progress.unlink()


def run_training(config: RunConfig, output: str | Path, *, overwrite: bool = False, progress_bar: bool = False,
                 echo: Callable[[str], None] = print, tensorboard: bool = False) -> RunResult:
    """Train ``config`` and publish its result at ``output``, resuming from a checkpoint if there is one.

    :param config: the run.
    :param output: the result folder to create (it must not exist unless ``overwrite``).
    :param overwrite: replace an existing result at ``output``, once the new one is complete.
    :param progress_bar: show SB3's progress bar.
    :param echo: where progress messages go.
    :param tensorboard: also write SB3's log as TensorBoard events into the result folder.
    :raises ValueError: for a bad setting, before anything is written.
    :raises FileExistsError: if ``output`` exists, or holds an interrupted run of other settings,
        and ``overwrite`` is false.
    :raises LockedError: if another process is training the same output.
    :raises RunInterrupted: on Ctrl-C/SIGTERM; the last checkpoint is kept for the next call.
    """
    output = Path(output).absolute()
    hyperparams = run_hyperparams(config)
    work = partial_dir(output)
    if output.exists() and not overwrite and not work.exists():
        raise FileExistsError(f"output folder {output} exists; choose another or allow overwriting it")
    publishing = False
    try:
        with locked(work / LOCK, f"output folder {output}"):
            message = recover(output)  # under the lock: no publish of this output is in flight
            if message:
                echo(f"sb3-tar: {message}")
            if _already_published(work, output, config):
                # Stopped after its result was in place, before its work folder was removed: it is complete,
                # and training it again (with --overwrite) would publish a copy without its evaluations.
                echo(f"sb3-tar: this run was already published to {output}; removing its leftover checkpoint")
                finished = read_result(output)
            else:
                finished = None
            if finished is None and output.exists() and not overwrite:
                raise FileExistsError(f"output folder {output} exists; choose another or allow overwriting it")
            if finished is not None:
                result = finished
            else:
                result = _train_in(work, config, hyperparams, progress_bar, echo, overwrite, tensorboard)
                publishing = True
                publish(work / "run", output, overwrite=overwrite)
    except LockedError:
        raise  # another process's run: its folder is not ours to clean
    except KeyboardInterrupt:
        # publish holds a Ctrl-C back until both renames are done: once it moved the run, it is published
        published = publishing and not (work / "run").exists()
        raise _interrupted(work, output, config, published) from None
    except BaseException:
        if find_checkpoint(work) is None:
            remove_work(work)  # nothing to resume from: leave nothing behind
        raise
    remove_work(work)
    return RunResult(output, result)


def _already_published(work: Path, output: Path, config: RunConfig) -> bool:
    """Whether this run was published to ``output`` and only the removal of its work folder was cut short.

    Publishing moves ``work/run`` to ``output``; a checkpoint at the budget is left for the cleanup.
    """
    if (work / "run").exists():
        return False
    checkpoint = find_checkpoint(work)
    if checkpoint is None or checkpoint.num_timesteps < config.budget():
        return False
    try:
        return RunConfig.from_dict(read_result(output)["config"]) == config
    except (ResultError, TypeError, ValueError):
        return False


def _train_in(work: Path, config: RunConfig, hyperparams: dict[str, Any], progress_bar: bool,
              echo: Callable[[str], None], overwrite: bool, tensorboard: bool) -> dict[str, Any]:
    """Train in ``work/run``, from ``work``'s checkpoint if it is one of this run; returns ``result.json``'s data.

    A checkpoint of another configuration is discarded only with ``overwrite``; one of this
    configuration whose tuned hyperparameters changed since is discarded (resuming would mix two runs).
    """
    checkpoint = find_checkpoint(work)
    if checkpoint is None and (message := set_aside_damaged(work, work.parent.parent / work.name)):
        echo(f"sb3-tar: {message}")
    saved = None if checkpoint is None else _checkpoint_config(checkpoint.state)
    if checkpoint is not None and not _same_run(checkpoint.state, saved, config, hyperparams):
        if saved is not None and saved != config and not overwrite:
            # Another run's progress, perhaps hours of it: discarding it takes the user's say-so.
            raise FileExistsError(
                f"{work} holds the checkpoint at step {checkpoint.num_timesteps} of another run, {saved.run_id}: "
                "resume it with the command that started it, or discard it with --overwrite")
        echo(f"sb3-tar: discarding a checkpoint in {work} made with other settings or hyperparameters")
        for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
            shutil.rmtree(work / name, ignore_errors=True)
        checkpoint = None
    run_dir = work / "run"
    if checkpoint is None:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        echo(f"sb3-tar: resuming from the checkpoint at step {checkpoint.num_timesteps} of {config.budget()}")
    run_dir.mkdir(parents=True, exist_ok=True)
    return _train(config, hyperparams, work, run_dir, checkpoint, progress_bar, tensorboard)


def _interrupted(work: Path, output: Path, config: RunConfig, published: bool) -> RunInterrupted:
    """What a Ctrl-C left: the published run, the checkpoint kept, or nothing (the work folder is removed)."""
    if published:
        remove_work(work)
        return RunInterrupted(f"interrupted after the run was published to {output}; it is complete")
    kept = find_checkpoint(work)
    if kept is None:
        remove_work(work)
        return RunInterrupted(f"interrupted before the first checkpoint; nothing was kept, and {output} is as it was")
    return RunInterrupted(f"interrupted; the checkpoint at step {kept.num_timesteps} of {config.budget()} is "
                          f"kept in {work}: run the same command again to resume")


def _checkpoint_config(state: dict[str, Any]) -> RunConfig | None:
    """The run a checkpoint belongs to, or ``None`` if its configuration no longer reads (an older sb3-tar's)."""
    try:
        return RunConfig.from_dict(state["config"])
    except (KeyError, TypeError, ValueError):
        return None


def _same_run(state: dict[str, Any], saved: RunConfig | None, config: RunConfig, hyperparams: dict[str, Any]) -> bool:
    """Whether a checkpoint (its state and the configuration it was saved with) is of this run: the same
    configuration, and the same hyperparameters it resolved to.

    The hyperparameters come from the tuned files, which may change between a stop and a resume;
    a checkpoint written before they were recorded is judged by its configuration alone.
    """
    resolved = _as_json(hyperparams)
    return saved == config and state.get("hyperparams", resolved) == resolved


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from a checkpoint's ``state.json``."""
    return json.loads(json.dumps(value, default=str))


@contextlib.contextmanager
def _quiet_simulators(log: io.StringIO) -> Iterator[None]:
    """Keep MuJoCo's warnings out of the working directory (MUJOCO_LOG.TXT) and the terminal, once each in the log.

    The paper's tasks are the v4 MuJoCo environments, which gymnasium marks out of date (v5 changed
    the tasks); the deprecation warning is expected and silenced here.
    """
    seen: set[str] = set()

    def record(message: str) -> None:
        if message not in seen:
            seen.add(message)
            log.write(f"MuJoCo: {message}\n")

    with mujoco_warnings_to(record), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is out of date\. You should consider upgrading")
        yield


def _experiment_manager(config: RunConfig, hyperparams_file: Path, run_dir: Path, resuming: bool) -> Any:
    """rl-zoo3's experiment setup, writing into ``run_dir`` (the same folder on every resume)."""
    from rl_zoo3.exp_manager import ExperimentManager

    class RunManager(ExperimentManager):
        def create_envs(self, n_envs: int, eval_env: bool = False, no_log: bool = False) -> Any:
            if resuming:  # continue the training episodes' monitor file instead of replacing it
                self.monitor_kwargs = {**self.monitor_kwargs, "override_existing": False}
            return super().create_envs(n_envs, eval_env=eval_env, no_log=no_log)

    arguments = argparse.Namespace(algo=config.algo, env=config.env, seed=config.seed, sb3_tar=config.to_dict())
    manager = RunManager(
        arguments, config.algo, config.env, str(run_dir), n_timesteps=config.budget(),
        eval_freq=config.resolved_eval_freq(), n_eval_episodes=config.eval_episodes, seed=config.seed,
        verbose=0, device=config.device, config=str(hyperparams_file), n_eval_envs=1, log_interval=-1,
    )
    manager.save_path, manager.params_path = str(run_dir), str(run_dir / "zoo")
    return manager


def _train(config: RunConfig, hyperparams: dict[str, Any], work: Path, run_dir: Path, checkpoint: Any,
           progress_bar: bool, tensorboard: bool) -> dict[str, Any]:
    from rl_zoo3.utils import ALGOS
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    from sb3_tar.sb3 import SparsityLogCallback

    start = time.perf_counter()
    hyperparams_file = run_dir / "hyperparams.yml"
    hyperparams_file.write_text(yaml.safe_dump({config.env: hyperparams}, sort_keys=False))
    log = io.StringIO()
    if checkpoint is not None:
        checkpoint.restore_monitors(run_dir)  # before the environments reopen them to append
    with _quiet_simulators(log):
        manager = _experiment_manager(config, hyperparams_file, run_dir, checkpoint is not None)
        with contextlib.redirect_stdout(log):
            model, _ = manager.setup_experiment()
        eval_callback = next(c for c in manager.callbacks if isinstance(c, EvalCallback))
        eval_callback.verbose = 0  # the zoo's default prints every evaluation; the result records them
        timer = StepTimeCallback(STEP_TIME_INTERVAL)
        resumes = [] if checkpoint is None else [*checkpoint.state.get("resumes", []), checkpoint.num_timesteps]
        if checkpoint is not None:
            model = ALGOS[config.algo].load(checkpoint.path / "model.zip", env=model.env, device=config.device)
            checkpoint.restore(model, eval_callback, timer)
            _set_aside_progress_log(run_dir, checkpoint.num_timesteps)
        model.set_logger(configure(str(run_dir), ["csv", "tensorboard"] if tensorboard else ["csv"]))
        callbacks = [*manager.callbacks]
        if config.method in STATIC_METHODS:
            callbacks.append(SparsityLogCallback())
        saver = CheckpointCallback(work, run_dir, config.resolved_checkpoint_freq(), config.budget(),
                                   config.to_dict(), eval_callback, timer)
        saver.extra_state = {"resumes": resumes, "hyperparams": _as_json(hyperparams)}
        callbacks += [timer, saver]
        remaining = config.budget() - model.num_timesteps
        if remaining > 0:
            model.learn(remaining, callback=callbacks, reset_num_timesteps=checkpoint is None,
                        progress_bar=progress_bar)
            if model.logger.name_to_value and isinstance(model, OnPolicyAlgorithm):
                # PPO/A2C log before they train: the last update's records are still pending
                model.logger.record("time/total_timesteps", model.num_timesteps)
                model.logger.dump(model.num_timesteps)
        if model.num_timesteps < config.budget():
            raise IncompleteRunError(f"training stopped at step {model.num_timesteps} of {config.budget()}")
        model.save(run_dir / "model.zip")  # before anything else can fail: the trained model is kept
        normalizer = model.get_vec_normalize_env()
        if normalizer is not None:  # the model acts on normalized observations: keep what they are
            normalizer.save(str(run_dir / "vecnormalize.pkl"))
        final = final_evaluation(model, eval_callback, config)
    (run_dir / "train.log").write_text(log.getvalue())
    result = run_result(config, hyperparams, model, eval_callback, final, timer, resumes, run_dir)
    result["provenance"] = provenance(command=command_line(), device=str(model.device),
                                      wall_time_s=time.perf_counter() - start)
    write_json_atomically(run_dir / "result.json", result)
    return result


def kept_after_failure(output: Path) -> str:
    """What a run that failed on the file system (disk full, read-only) kept, and how to go on."""
    work = partial_dir(Path(output))
    kept = find_checkpoint(work) if work.is_dir() else None
    if kept is None:
        return f"no checkpoint was kept; {output} is as it was"
    return (f"the checkpoint at step {kept.num_timesteps} is kept in {work}: free the space (or fix the folder) and "
            "run the same command again to resume")
