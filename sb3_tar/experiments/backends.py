"""Where a sweep's runs execute: child processes on this machine (default) or an existing Ray cluster.

Every run is the same command, ``python -m sb3_tar train --config RUN.json --output RESULTS/<run_id>``:
the one run pipeline, with its checkpoints, its resume and its atomic publishing. The sweep only
schedules those commands and keeps their logs (``RESULTS/.sb3-tar-logs/<run_id>.log``, appended on
every attempt, never deleted). Under faults:

- Ctrl-C (or SIGTERM) stops the sweep: each run in flight gets SIGTERM, stops at once keeping its
  last checkpoint, and the sweep exits with status 130 within seconds; a second Ctrl-C kills them.
- If the sweep process itself is killed, its runs get SIGTERM from the kernel (``PR_SET_PDEATHSIG``).
- A results folder is locked by one sweep at a time; a second one is refused, naming the first.
- Re-running the sweep skips finished runs, resumes interrupted ones from their checkpoints, moves
  a corrupt result aside (naming it) and trains it again, and removes leftovers that have nothing
  to resume.
- A run's identity is its whole configuration, not only its folder name: a result or checkpoint
  in the folder that was trained with other settings (another ``n_timesteps``, ``eval_episodes``,
  ``hyperparams``, ``dst``, ...) is neither counted as finished nor resumed. The sweep refuses to
  start and names each difference; ``overwrite=True`` (``sb3-tar sweep --overwrite``) moves those
  results and checkpoints to ``.sb3-tar-replaced/<date>/`` and trains the runs again.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from sb3_tar.engine.errors import UserError
from sb3_tar.engine.validation import check_integer
from sb3_tar.experiments.checkpoint import CORRUPT, find_checkpoint
from sb3_tar.experiments.config import RunConfig
from sb3_tar.experiments.output_paths import describe_os_error
from sb3_tar.experiments.store import (
    LOCK,
    PARTIAL,
    LockedError,
    ResultError,
    is_finished,
    locked,
    move_aside,
    read_result,
    remove_work,
    shelf,
    write_json_atomically,
)

BACKENDS = ("local", "ray")
LOGS = ".sb3-tar-logs"
REPLACED = ".sb3-tar-replaced"
STOP_GRACE_S = 15.0
INTERRUPTED = 130
NOT_STARTED = -1


@dataclass
class SweepOutcome:
    """What a sweep call did: runs skipped as already finished, completed now, failed, stopped, and interrupted.

    ``stopped``: runs that exited 130 while the sweep went on (a signal sent to the run alone); each
    kept its last checkpoint and resumes from it when the sweep runs again. ``interrupted``: the
    sweep itself was stopped (Ctrl-C, SIGTERM).
    """

    skipped: int = 0
    completed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)
    interrupted: bool = False


def run_command(config_path: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "sb3_tar", "train", "--config", str(config_path), "--output", str(output),
            "--no-progress-bar", "--threads", "1"]


def _die_with_parent() -> None:
    """In the child: ask the kernel for SIGTERM when the sweep process dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except OSError:
        pass


def start_run(config: RunConfig, results: Path) -> subprocess.Popen:
    """Start one run as a child process, its output appended to its log."""
    logs = results / LOGS
    logs.mkdir(exist_ok=True)
    config_path = logs / f"{config.run_id}.json"
    write_json_atomically(config_path, config.to_dict())  # a full disk leaves no empty config behind
    command = run_command(config_path, results / config.run_id)
    log = open(logs / f"{config.run_id}.log", "a")
    log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
    log.flush()
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    try:
        return subprocess.Popen(command, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment,
                                start_new_session=True, preexec_fn=_die_with_parent)
    finally:
        log.close()


def log_tail(results: Path, run_id: str, lines: int = 15) -> str:
    try:
        return "\n".join((results / LOGS / f"{run_id}.log").read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def tidy(results: Path, configs: Sequence[RunConfig]) -> list[str]:
    """Before a sweep: move corrupt results aside and remove leftovers with nothing to resume; returns messages.

    A corrupt result goes to ``.sb3-tar-corrupt/<date>/<run id>`` (the date a folder of its own, so
    a run id near the file system's 255-character limit still fits).
    """
    messages = []
    moved_to = shelf(results, CORRUPT)
    for config in configs:
        output = results / config.run_id
        if output.exists():
            try:
                read_result(output)
            except ResultError as error:
                destination = move_aside(output, moved_to / config.run_id)
                messages.append(f"{error}; moved to {destination}, the run trains again")
    partial = results / PARTIAL
    for work in sorted(partial.iterdir()) if partial.exists() else []:
        if is_finished(results / work.name):
            reason = "the run is published (it was stopped before it could remove this folder)"
        elif find_checkpoint(work) is None:
            reason = "an interrupted run with no checkpoint to resume from"
        else:
            continue
        try:
            with locked(work / LOCK, f"run {work.name}"):
                pass
        except LockedError:
            continue  # a run in flight (another sweep or a train command): not ours to touch
        remove_work(work)
        messages.append(f"removed {work}: {reason}")
    return messages


class SweepConflictError(UserError):
    """Results or checkpoints in a sweep's folder that belong to other settings of the same run ids."""


def settings_changes(saved: object, config: RunConfig) -> str | None:
    """How the configuration ``saved`` (as ``to_dict`` wrote it) differs from ``config``; ``None`` if it is the same run."""
    try:
        previous = RunConfig.from_dict(saved)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "its settings do not read as a run configuration (an older sb3-tar's)"
    if previous == config:
        return None
    before, after = previous.to_dict(), config.to_dict()
    return ", ".join(f"{key} {before[key]!r} -> {after[key]!r}" for key in after if before.get(key) != after[key])


def stale_runs(results: Path, configs: Sequence[RunConfig]) -> dict[Path, str]:
    """Published results and checkpoints in ``results`` whose run id is in ``configs`` but whose settings are not.

    :returns: folder -> what differs.
    """
    stale = {}
    for config in configs:
        output, work = results / config.run_id, results / PARTIAL / config.run_id
        if output.exists():
            changes = settings_changes(read_result(output)["config"], config)
            if changes:
                stale[output] = changes
        elif (kept := find_checkpoint(work)) is not None:
            changes = settings_changes(kept.state.get("config"), config)
            if changes:
                stale[work] = changes
    return stale


def set_aside(results: Path, stale: dict[Path, str]) -> list[str]:
    """Move each stale result or checkpoint to ``.sb3-tar-replaced/<date>/`` (kept, never deleted); returns messages."""
    moved_to = shelf(results, REPLACED)
    messages = []
    for folder, changes in stale.items():
        kind = "checkpoint" if folder.parent.name == PARTIAL else "result"
        with locked(folder / LOCK, f"run {folder.name}") if kind == "checkpoint" else contextlib.nullcontext():
            destination = move_aside(folder, moved_to / (folder.name + (".checkpoint" if kind == "checkpoint" else "")))
        messages.append(f"moved the {kind} of {folder.name} ({changes}) to {destination}; the run trains again")
    return messages


def _run_local(todo: Sequence[RunConfig], results: Path, workers: int, done: Callable[..., None]) -> None:
    queue, running = list(todo), {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                config = queue.pop(0)
                try:
                    running[config.run_id] = start_run(config, results)
                except OSError as error:  # a full or read-only disk: this run fails, named; the sweep goes on
                    done(config.run_id, NOT_STARTED, f"could not start: {describe_os_error(error)}")
            for run_id, process in list(running.items()):
                if process.poll() is not None:
                    del running[run_id]
                    done(run_id, process.returncode)
            time.sleep(0.2)
    except KeyboardInterrupt:
        _stop(running)
        raise


def _stop(running: dict[str, subprocess.Popen]) -> None:
    """SIGTERM every run (each keeps its last checkpoint), wait a little, then SIGKILL what is left."""
    for process in running.values():
        _signal(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    try:
        while any(process.poll() is None for process in running.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
    except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
        pass
    for process in running.values():
        if process.poll() is None:
            _signal(process, signal.SIGKILL)
            process.wait()


def _signal(process: subprocess.Popen, number: int) -> None:
    try:
        os.killpg(process.pid, number)  # the run and anything it started (its own session)
    except ProcessLookupError:
        pass


def _ray_run(config: dict, results: str) -> tuple[str, int]:
    """On a Ray worker: the same child process as a local run."""
    run = RunConfig.from_dict(config)
    process = start_run(run, Path(results))
    return run.run_id, process.wait()


def _run_ray(todo: Sequence[RunConfig], results: Path, address: str | None, done: Callable[[str, int], None]) -> None:
    import ray

    ray.init(address=address, ignore_reinit_error=True)
    remote_run = ray.remote(num_cpus=1)(_ray_run)
    pending = [remote_run.remote(config.to_dict(), str(results)) for config in todo]
    try:
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            done(*ray.get(finished[0]))
    except KeyboardInterrupt:
        for reference in pending:
            ray.cancel(reference, force=True)
        raise


def run_sweep(
    configs: Sequence[RunConfig],
    results: str | Path,
    *,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    overwrite: bool = False,
) -> SweepOutcome:
    """Train every unfinished run of ``configs`` into ``results`` (resuming interrupted ones).

    :param backend: ``local`` (child processes, one run per core) or ``ray`` (tasks on the cluster
        at ``address``; ``results`` must then be on a file system every node shares).
    :param workers: runs at a time on this machine (default: the number of cores).
    :param address: Ray cluster address, e.g. ``ray://head:10001`` or ``auto``.
    :param overwrite: set aside results and checkpoints of these run ids that were trained with other
        settings and train those runs again (default: refuse, naming them).
    :raises LockedError: if another sweep is using ``results``.
    :raises SweepConflictError: without ``overwrite``, if ``results`` holds runs of these ids with other settings.
    """
    if backend not in BACKENDS:
        raise UserError(f"backend={backend!r} is not a sweep backend; allowed: {list(BACKENDS)}")
    if workers is not None:
        check_integer("workers", workers)
    results = Path(results).resolve()
    results.mkdir(parents=True, exist_ok=True)
    with locked(results / ".sweep.lock", f"results folder {results}"):
        for message in tidy(results, configs):
            print(f"sweep: {message}")
        stale = stale_runs(results, configs)
        if stale and not overwrite:
            listed = "; ".join(f"{folder.name} ({changes})" for folder, changes in list(stale.items())[:3])
            raise SweepConflictError(
                f"{results} holds {len(stale)} run(s) of this sweep's ids trained with other settings: {listed}"
                + (f"; and {len(stale) - 3} more" if len(stale) > 3 else "")
                + ". Use another --results folder, or --overwrite to move them to "
                f"{results / REPLACED} and train them again"
            )
        for message in set_aside(results, stale):
            print(f"sweep: {message}")
        todo = [config for config in configs if not (results / config.run_id).exists()]
        outcome = SweepOutcome(skipped=len(configs) - len(todo))
        resumable = sum(find_checkpoint(results / PARTIAL / config.run_id) is not None for config in todo)
        print(f"sweep: {len(configs)} runs, {outcome.skipped} already finished, {len(todo)} to train"
              + (f" ({resumable} resume from a checkpoint)" if resumable else ""), flush=True)
        progress = tqdm(total=len(todo), desc="runs", unit="run")

        def done(run_id: str, returncode: int, message: str | None = None) -> None:
            if message is not None:
                outcome.failed[run_id] = message
                progress.write(f"run {run_id} {message}")
            elif returncode == 0 and (results / run_id).exists():
                outcome.completed.append(run_id)
            elif returncode == INTERRUPTED:
                outcome.stopped.append(run_id)
                kept = ("it kept its last checkpoint and resumes from it" if find_checkpoint(results / PARTIAL / run_id)
                        else "it had no checkpoint yet and starts over")
                progress.write(f"run {run_id} was stopped by a signal (exit {INTERRUPTED}); {kept} when the sweep "
                               "runs again")
            else:
                outcome.failed[run_id] = log_tail(results, run_id)
                progress.write(f"run {run_id} failed (exit {returncode}); its log: "
                               f"{results / LOGS / (run_id + '.log')}\n{outcome.failed[run_id]}")
            progress.update(1)

        try:
            if todo and backend == "local":
                _run_local(todo, results, workers or os.cpu_count() or 1, done)
            elif todo:
                _run_ray(todo, results, address, done)
        except KeyboardInterrupt:
            outcome.interrupted = True
        finally:
            progress.close()
    return outcome

