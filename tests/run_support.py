"""Shared helpers of the run-pipeline tests: tiny runs on Pendulum-v1, and processes the tests start and stop.

Every process these helpers signal is one a test started itself, by its PID: nothing else on the
machine is ever touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import sb3_tar
from sb3_tar.experiments.config import RunConfig
from sb3_tar.experiments.store import PARTIAL

REPO = Path(__file__).resolve().parents[1]
# learning starts after 100 steps, batch 32, [16, 16] networks: a few seconds per few hundred steps.
TINY_HYPERPARAMS = {"learning_starts": 100, "batch_size": 32}
TINY_FLAGS = ["--timesteps", "300", "--net-arch", "16", "16", "--eval-freq", "150", "--eval-episodes", "1",
              "--hyperparam", "learning_starts=100", "--hyperparam", "batch_size=32", "--device", "cpu",
              "--no-progress-bar"]
RESULT_KEYS = {"run_id", "label", "config", "summary", "hyperparams", "num_timesteps", "evaluations",
               "final_evaluation", "step_times", "seconds_per_1000_steps", "cpu_seconds_per_1000_steps",
               "resumed_at", "kept_weights", "topology",
               "cost", "report_errors", "provenance"}
PROVENANCE_KEYS = {"command", "date", "git_commit", "versions", "cpu", "cores", "torch_threads", "device",
                   "wall_time_s", "load_average"}
# One torch thread per process: the tests run two workers on two cores.
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
             "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def tiny(method: str = "tar", algo: str = "sac", **changes: Any) -> RunConfig:
    """A run of a few hundred steps: [16, 16] networks, one evaluation episode every 150 steps."""
    settings = {"algo": algo, "env": "Pendulum-v1", "method": method, "net_arch": (16, 16), "n_timesteps": 300,
                "eval_freq": 150, "eval_episodes": 1, "hyperparams": dict(TINY_HYPERPARAMS), "device": "cpu"}
    if method in ("set", "rigl"):
        settings["dst"] = {"update_interval": 20}  # several mask updates in 200 gradient steps
    return RunConfig(**{**settings, **changes})


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def masks_of(model: Any) -> dict[str, torch.Tensor]:
    """Every network's masks of an sb3-tar model, as CPU bool tensors by weight name."""
    return {name: mask.detach().cpu().clone() for name, mask in sb3_tar.sparse_agent(model).masks.items()}


def same_masks(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


def train_command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "sb3_tar", "train", *flags]


def start(command: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """Start ``command`` in ``cwd`` with its output in ``log`` (a file: a pipe nobody reads could block it)."""
    with open(log, "ab") as output:
        return subprocess.Popen(command, cwd=cwd, env=CHILD_ENV, stdout=output, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def checkpoint_state(output: Path) -> dict[str, Any] | None:
    """The ``state.json`` of the run publishing at ``output``, if it has written a checkpoint."""
    for name in ("checkpoint", "checkpoint.old"):
        try:
            return read_json(output.parent / PARTIAL / output.name / name / "state.json")
        except (OSError, ValueError):
            continue
    return None


def wait_for(condition: Any, timeout: float, what: str, process: subprocess.Popen | None = None,
             log: Path | None = None) -> Any:
    """Poll ``condition()`` until it returns something true; fail (naming ``what``) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited ({process.returncode}) before {what}:\n{tail(log)}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{tail(log)}")


def tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not Path(log).exists():
        return ""
    return "\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:])


def stop(process: subprocess.Popen) -> None:
    """Kill a process this test started, if it still runs (cleanup after a failed assertion)."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)


def children_of(pid: int) -> list[int]:
    """The PIDs of ``pid``'s child processes (read from /proc, nothing is signalled)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, exited but not yet reaped, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
