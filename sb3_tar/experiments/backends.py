"""Where a sweep's runs execute: a local process pool (default) or an existing Ray cluster.

Both backends call the same ``execute_run``, so a run is the same code on a laptop and a cluster.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from sb3_tar.experiments.grid import RunSpec
from sb3_tar.experiments.runner import execute_run
from sb3_tar.experiments.store import clear_partial_runs, pending_runs

BACKENDS = ("local", "ray")


@dataclass
class SweepOutcome:
    """What a sweep call did: runs skipped as already finished, completed now, and failed."""

    skipped: int = 0
    completed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _guarded(spec: RunSpec, results: str) -> tuple[str, str | None]:
    """Run one spec; a failure is reported, not raised, so one bad run does not stop the sweep."""
    try:
        execute_run(spec, Path(results))
        return spec.run_id, None
    except Exception:  # noqa: BLE001 - reported to the user with its traceback
        return spec.run_id, traceback.format_exc()


def _run_local(todo: Sequence[RunSpec], results: Path, workers: int, done: Callable[[str, str | None], None]) -> None:
    context = multiprocessing.get_context("spawn")  # a clean interpreter per worker: no inherited torch threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_guarded, spec, str(results)) for spec in todo]
        for future in as_completed(futures):
            done(*future.result())


def _run_ray(todo: Sequence[RunSpec], results: Path, address: str | None, done: Callable[[str, str | None], None]) -> None:
    import ray

    ray.init(address=address, ignore_reinit_error=True)
    remote_run = ray.remote(num_cpus=1)(_guarded)
    pending = [remote_run.remote(spec, str(results)) for spec in todo]
    while pending:
        finished, pending = ray.wait(pending, num_returns=1)
        done(*ray.get(finished[0]))


def run_sweep(
    specs: Sequence[RunSpec],
    results: str | Path,
    *,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
) -> SweepOutcome:
    """Train every unfinished run of ``specs`` into ``results``; finished runs are skipped.

    :param backend: ``local`` (process pool, one run per core) or ``ray`` (tasks on the cluster at
        ``address``; ``results`` must then be on a file system every node shares).
    :param workers: local pool size (default: the number of cores).
    :param address: Ray cluster address, e.g. ``ray://head:10001`` or ``auto``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not a sweep backend; allowed: {list(BACKENDS)}")
    results = Path(results).resolve()
    results.mkdir(parents=True, exist_ok=True)
    cleared = clear_partial_runs(results)
    todo = pending_runs(results, specs)  # in the sweep's order
    outcome = SweepOutcome(skipped=len(specs) - len(todo))
    print(f"sweep: {len(specs)} runs, {outcome.skipped} already finished, {len(todo)} to train"
          + (f" ({cleared} interrupted runs cleared)" if cleared else ""))
    progress = tqdm(total=len(todo), desc="runs", unit="run")

    def done(run_id: str, error: str | None) -> None:
        if error is None:
            outcome.completed.append(run_id)
        else:
            outcome.failed[run_id] = error
            progress.write(f"run {run_id} failed:\n{error}")
        progress.update(1)

    if todo and backend == "local":
        _run_local(todo, results, workers or os.cpu_count() or 1, done)
    elif todo:
        _run_ray(todo, results, address, done)
    progress.close()
    return outcome
