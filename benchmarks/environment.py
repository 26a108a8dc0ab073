"""Where a benchmark ran: date, machine and package versions, written beside every result."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from importlib import metadata

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def invoking_command() -> str:
    """The command line as typed: ``python -m benchmarks.x ...`` when run as a module."""
    main_spec = getattr(sys.modules["__main__"], "__spec__", None)
    entry = ["-m", main_spec.name] if main_spec is not None else [sys.argv[0]]
    return " ".join(["python", *entry, *sys.argv[1:]])


def describe_environment() -> dict[str, str]:
    versions = {}
    for package in ("sb3-tar", "torch", "stable-baselines3", "sb3-contrib", "gymnasium", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": invoking_command(),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "python": platform.python_version(),
        **versions,
    }


def environment_markdown() -> str:
    return "\n".join(f"- {key}: `{value}`" for key, value in describe_environment().items())
