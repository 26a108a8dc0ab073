"""Result folders on disk: private work folders, locks, validation, and crash-safe publishing.

A run with output folder ``DIR`` trains in ``DIR/../.sb3-tar-partial/<name>/`` (its checkpoints,
its log, and ``run/``, the result being built) and is published by renaming ``run/`` to ``DIR``.
So ``DIR`` only ever holds a complete result. Replacing an existing result (``--overwrite``)
first moves it to ``DIR/../.sb3-tar-old/<name>``; if the process dies between the two renames, the
next run on ``DIR`` finishes the swap or puts the old result back (``recover``), and says which.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sb3_tar.engine.errors import UserError

RESULT_FILE = "result.json"
PARTIAL = ".sb3-tar-partial"
OLD = ".sb3-tar-old"
LOCK = "lock"
# What a published result holds: each key, and the keys inside it that the report and sweeps read
# (``aggregate.as_runs``), so a result that passes ``read_result`` never fails them with a KeyError.
RESULT_FIELDS: dict[str, tuple[str, ...]] = {
    "run_id": (), "label": (), "config": (), "hyperparams": (),
    "summary": ("algo", "env", "method", "criterion", "sparsity", "recovery_ratio", "width", "depth", "seed",
                "n_timesteps", "eval_freq", "eval_episodes"),
    "evaluations": ("timesteps", "mean_return"), "final_evaluation": ("mean_return",), "num_timesteps": (),
    "cost": (), "provenance": ("wall_time_s",),
}
_TEXT, _NUMBER, _INTEGER = "text", "a number", "an integer"
# The type of each value the report and sweeps read; a hand-edited result of another type is refused.
RESULT_TYPES: dict[str, str] = {
    "run_id": _TEXT, "label": _TEXT, "summary.algo": _TEXT, "summary.env": _TEXT, "summary.method": _TEXT,
    "summary.sparsity": _NUMBER, "summary.recovery_ratio": _NUMBER, "summary.width": _INTEGER,
    "summary.depth": _INTEGER, "summary.seed": _INTEGER, "summary.eval_freq": _INTEGER,
    "summary.eval_episodes": _INTEGER, "final_evaluation.mean_return": _NUMBER, "provenance.wall_time_s": _NUMBER,
}


class ResultError(UserError):
    """A result folder that is not a complete, valid result (named in the message)."""


class LockedError(RuntimeError):
    """Another process holds the lock (named in the message)."""


def partial_dir(output: Path) -> Path:
    """The private work folder of the run published at ``output`` (same name, so no length surprises)."""
    return output.parent / PARTIAL / output.name


def old_dir(output: Path) -> Path:
    return output.parent / OLD / output.name


def shelf(root: Path, kind: str) -> Path:
    """A dated folder under ``root/kind`` (``.sb3-tar-corrupt/20261207-213000``) to set things aside in; not created."""
    return root / kind / time.strftime("%Y%m%d-%H%M%S")


def move_aside(folder: Path, destination: Path) -> Path:
    """Move ``folder`` to ``destination`` (parents created): kept, out of the way; returns ``destination``."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.rename(folder, destination)
    return destination


def write_json_atomically(path: Path, data: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(json.dumps(data, indent=2, default=str))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # a full disk leaves neither a half file nor a stray temporary


def read_result(folder: Path) -> dict[str, Any]:
    """The validated ``result.json`` of a published run.

    :raises ResultError: naming the file and what is wrong (missing, truncated, incomplete).
    """
    path = Path(folder) / RESULT_FILE
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultError(f"{path} does not exist") from None
    except (OSError, ValueError) as error:
        raise ResultError(f"{path} is not valid JSON ({error}): truncated or corrupt") from None
    missing = _missing_fields(result)
    if missing:
        raise ResultError(f"{path} lacks {missing}: not a complete sb3-tar result")
    wrong = _wrong_type(result)
    if wrong:
        raise ResultError(f"{path}: {wrong}: not a result sb3-tar wrote (edited by hand?)")
    steps, budget = result["num_timesteps"], result["summary"]["n_timesteps"]
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in (steps, budget)) or steps < budget:
        raise ResultError(f"{path} records {steps!r} of {budget!r} steps: the run did not reach its budget")
    return result


def _wrong_type(result: dict[str, Any]) -> str | None:
    """The first value of ``result`` the report would misread, described; ``None`` if there is none."""
    checks = {_TEXT: lambda v: isinstance(v, str), _INTEGER: lambda v: isinstance(v, int) and not isinstance(v, bool),
              _NUMBER: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}
    for key, kind in RESULT_TYPES.items():
        outer, _, inner = key.partition(".")
        value = result[outer][inner] if inner else result[outer]
        if not checks[kind](value):
            return f"{key} is {value!r}, not {kind}"
    for key in ("config", "hyperparams", "summary", "evaluations", "final_evaluation", "cost", "provenance"):
        if not isinstance(result[key], dict):
            return f"{key} is {type(result[key]).__name__}, not a mapping"
    if not (isinstance(result["summary"]["criterion"], str) or result["summary"]["criterion"] is None):
        return f"summary.criterion is {result['summary']['criterion']!r}, not text or null"
    timesteps, returns = result["evaluations"]["timesteps"], result["evaluations"]["mean_return"]
    if (not isinstance(timesteps, list) or not isinstance(returns, list) or not timesteps
            or len(timesteps) != len(returns) or not all(checks[_INTEGER](t) for t in timesteps)
            or not all(checks[_NUMBER](r) for r in returns)):
        return "evaluations.timesteps and evaluations.mean_return are not two lists of as many steps and returns"
    return None


def _missing_fields(result: Any) -> list[str]:
    """The ``RESULT_FIELDS`` that ``result`` lacks, as ``key`` or ``key.inner``."""
    if not isinstance(result, dict):
        return list(RESULT_FIELDS)
    missing = []
    for key, inner in RESULT_FIELDS.items():
        if key not in result:
            missing.append(key)
        else:
            present = result[key] if isinstance(result[key], dict) else {}
            missing += [f"{key}.{name}" for name in inner if name not in present]
    return missing


def is_finished(output: Path) -> bool:
    try:
        read_result(output)
    except ResultError:
        return False
    return True


@contextmanager
def locked(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the ``with`` block.

    The lock is the kernel's (``flock``): it is released when the holder exits or dies, so a
    killed process never leaves a stale lock. The file names the holder for the error message.

    :raises LockedError: if another process holds it, naming that process and its command.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    file = open(path, "a+")
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        holder = file.read().strip() or "another process"
        file.close()
        raise LockedError(f"{what} is in use by {holder} (lock {path}); wait for it to finish or stop it") from None
    file.seek(0)
    file.truncate()
    file.write(f"pid {os.getpid()}: {' '.join(command_line())}")
    file.flush()
    try:
        yield
    finally:
        fcntl.flock(file, fcntl.LOCK_UN)
        file.close()


def command_line() -> list[str]:
    """This process's command line as it was started (``python -m sb3_tar train ...``, not ``.../__main__.py``)."""
    try:
        return Path(f"/proc/{os.getpid()}/cmdline").read_text().split("\0")[:-1]
    except OSError:
        return [sys.executable, *sys.argv]


def recover(output: Path) -> str | None:
    """Finish or undo a replacement of ``output`` that was interrupted; returns what was done, if anything.

    Call it holding the run's lock (``run_training`` does), so no publish of the same output is in flight.
    """
    old, work = old_dir(output), partial_dir(output) / "run"
    if not old.exists():
        _remove_if_empty(old.parent)  # an overwrite that died before moving anything
        return None
    if output.exists():  # the new result is in place: only the old one's removal was left
        message = f"removed the previous result of {output} from {old} (its replacement had been interrupted)"
    elif is_finished(work):
        os.rename(work, output)
        message = f"finished replacing {output} with the new result that an interrupted run had completed"
    else:
        os.rename(old, output)
        message = f"restored the previous result to {output} (a replacement of it had been interrupted)"
    shutil.rmtree(old, ignore_errors=True)
    _remove_if_empty(old.parent)
    return message


def publish(run: Path, output: Path, *, overwrite: bool) -> None:
    """Move the complete result ``run`` to ``output``; an existing result is replaced only if ``overwrite``.

    At every instant ``output`` holds the old or the new complete result, except between two
    renames, where the old one is in ``.sb3-tar-old/`` and ``recover`` puts things right.
    """
    read_result(run)  # never publish anything but a complete result
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; choose another output folder or allow overwriting it")
    with _signals_deferred():  # a Ctrl-C between the two renames waits until the new result is in place
        if output.exists():
            old = old_dir(output)
            old.parent.mkdir(exist_ok=True)
            shutil.rmtree(old, ignore_errors=True)
            os.rename(output, old)
            os.rename(run, output)
            shutil.rmtree(old)
            _remove_if_empty(old.parent)
        else:
            os.rename(run, output)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the ``with`` block; the first one received is handled at its end.

    Python runs signal handlers in the main thread only, so outside it there is nothing to defer.
    (Blocking the signals with ``pthread_sigmask`` would not do: torch's threads would take them.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {number: signal.signal(number, lambda caught, _frame: received.append(caught))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if received:
            handler = previous[received[0]]
            if callable(handler):
                handler(received[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(received[0])


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def remove_work(work: Path) -> None:
    """Delete a run's private folder once its result is published (checkpoints included)."""
    shutil.rmtree(work, ignore_errors=True)
    _remove_if_empty(work.parent)


def load_results(results: Path) -> list[dict[str, Any]]:
    """Every published run's validated ``result.json`` under ``results``.

    :raises ResultError: naming the first file that is not a complete result.
    """
    return [read_result(path.parent) for path in sorted(Path(results).glob(f"*/{RESULT_FILE}"))]
