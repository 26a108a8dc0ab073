"""What made a result: command, date, code version, packages and machine, recorded beside every number."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("sb3-tar", "torch", "stable-baselines3", "sb3-contrib", "rl-zoo3", "gymnasium", "mujoco", "numpy")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def git_commit(directory: Path | None = None) -> str | None:
    """The commit of the source tree this package runs from (with ``+dirty`` if modified), or ``None``."""
    directory = directory or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(*, command: list[str] | None = None, device: str = "cpu", wall_time_s: float | None = None,
               torch_threads: int | None = None) -> dict[str, Any]:
    """Provenance of a result: command, UTC date, git commit, package versions, CPU, cores, threads, load.

    :param command: the command line that produced the result (default: this process's ``sys.argv``).
    :param device: the torch device the result was computed on.
    :param wall_time_s: the wall time of the work, if measured.
    :param torch_threads: torch's intra-op threads during the work (default: the current setting).
    """
    import torch

    return {
        "command": command if command is not None else [sys.executable, *sys.argv],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "versions": package_versions(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch_threads if torch_threads is not None else torch.get_num_threads(),
        "device": device,
        "hostname": platform.node(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "wall_time_s": wall_time_s,
    }
