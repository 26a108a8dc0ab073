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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
PARTIAL = ".sb3-tar-partial"
OLD = ".sb3-tar-old"
LOCK = "lock"
RESULT_KEYS = ("run_id", "config", "summary", "evaluations", "final_evaluation", "num_timesteps", "provenance")


class ResultError(ValueError):
    """A result folder that is not a complete, valid result (named in the message)."""


class LockedError(RuntimeError):
    """Another process holds the lock (named in the message)."""


def partial_dir(output: Path) -> Path:
    """The private work folder of the run published at ``output`` (same name, so no length surprises)."""
    return output.parent / PARTIAL / output.name


def old_dir(output: Path) -> Path:
    return output.parent / OLD / output.name


def write_json_atomically(path: Path, data: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2, default=str))
    os.replace(temporary, path)


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
    missing = [key for key in RESULT_KEYS if not isinstance(result, dict) or key not in result]
    if missing:
        raise ResultError(f"{path} lacks {missing}: not a complete sb3-tar result")
    if result["num_timesteps"] < result["summary"]["n_timesteps"]:
        raise ResultError(f"{path} records {result['num_timesteps']} of {result['summary']['n_timesteps']} steps")
    return result


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
    file.write(f"pid {os.getpid()}: {' '.join(_command_line())}")
    file.flush()
    try:
        yield
    finally:
        fcntl.flock(file, fcntl.LOCK_UN)
        file.close()


def _command_line() -> list[str]:
    try:
        return Path(f"/proc/{os.getpid()}/cmdline").read_text().split("\0")[:-1]
    except OSError:
        import sys

        return sys.argv


def recover(output: Path) -> str | None:
    """Finish or undo a replacement of ``output`` that was interrupted; returns what was done, if anything."""
    old, work = old_dir(output), partial_dir(output) / "run"
    if not old.exists():
        return None
    if output.exists():  # the new result is in place: only the old one's removal was left
        shutil.rmtree(old)
        return None
    if is_finished(work):
        os.rename(work, output)
        shutil.rmtree(old)
        return f"finished replacing {output} with the new result that an interrupted run had completed"
    os.rename(old, output)
    return f"restored the previous result to {output} (a replacement of it had been interrupted)"


def publish(run: Path, output: Path, *, overwrite: bool) -> None:
    """Move the complete result ``run`` to ``output``; an existing result is replaced only if ``overwrite``.

    At every instant ``output`` holds the old or the new complete result, except between two
    renames, where the old one is in ``.sb3-tar-old/`` and ``recover`` puts things right.
    """
    read_result(run)  # never publish anything but a complete result
    if output.exists():
        if not overwrite:
            raise FileExistsError(f"{output} exists; choose another output folder or allow overwriting it")
        old = old_dir(output)
        old.parent.mkdir(exist_ok=True)
        shutil.rmtree(old, ignore_errors=True)
        os.rename(output, old)
        os.rename(run, output)
        shutil.rmtree(old)
        _remove_if_empty(old.parent)
    else:
        os.rename(run, output)


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
