"""One sweep run, end to end: write its zoo config, train through rl-zoo3, publish its result.

Runs go through ``python -m rl_zoo3.train`` with ``--gym-packages sb3_tar``: the same path a
researcher uses by hand, with the project's tuned hyperparameter files as the base. The run's
folder keeps the exact config it trained with, the zoo's logs, the model and ``result.json``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sb3_tar.experiments.grid import RunSpec
from sb3_tar.experiments.store import partial_dir, publish

HYPERPARAMS = Path(__file__).resolve().parents[2] / "hyperparams"
SPARSITY_KEYS = ("sparsity", "actor_sparsity", "critic_sparsity", "criterion", "recovery_ratio", "allocation",
                 "budget", "scope", "iterations")


def base_hyperparams(algo: str, env: str, hyperparams_dir: Path = HYPERPARAMS) -> dict[str, Any]:
    """The project's zoo entry for ``env`` (or its ``default`` entry), with YAML anchors resolved."""
    entries = yaml.safe_load((hyperparams_dir / f"{algo}.yml").read_text())
    return dict(entries.get(env, entries["default"]))


def run_hyperparams(spec: RunSpec, hyperparams_dir: Path = HYPERPARAMS) -> dict[str, Any]:
    """The zoo entry this run trains with: the tuned base, with the method's policy and sparsity."""
    hyperparams = {**base_hyperparams(spec.algo, spec.env, hyperparams_dir), **spec.hyperparams}
    if spec.n_timesteps is not None:
        hyperparams["n_timesteps"] = spec.n_timesteps
    policy_kwargs = {k: v for k, v in dict(hyperparams.get("policy_kwargs", {})).items() if k not in SPARSITY_KEYS}
    policy_kwargs["net_arch"] = [spec.width] * spec.depth
    if spec.method in ("static", "tar", "uniform"):
        hyperparams["policy"] = "TarMlpPolicy"
        policy_kwargs.update(sparsity=spec.sparsity, criterion=spec.criterion, recovery_ratio=spec.recovery_ratio,
                             allocation="uniform" if spec.method == "uniform" else "topology")
    else:
        hyperparams["policy"] = "MlpPolicy"
    if spec.method in ("set", "rigl"):
        dst = {"method": spec.method, "sparsity": spec.sparsity, **spec.dst}
        hyperparams["callback"] = [{"sb3_tar.DSTCallback": dst}]
    hyperparams["policy_kwargs"] = policy_kwargs
    return hyperparams


def zoo_command(spec: RunSpec, config: Path, log_folder: Path) -> list[str]:
    return [
        sys.executable, "-m", "rl_zoo3.train", "--algo", spec.algo, "--env", spec.env, "--gym-packages", "sb3_tar",
        "-conf", str(config), "--seed", str(spec.seed), "--eval-freq", str(spec.eval_freq),
        "--eval-episodes", str(spec.eval_episodes), "--n-eval-envs", "1", "--num-threads", "1",
        "-f", str(log_folder), "--log-interval", "-1",
    ]


def read_evaluations(log_folder: Path) -> dict[str, list[float]]:
    """The zoo's ``evaluations.npz``: timesteps and the mean return of each evaluation."""
    path = next(log_folder.glob("*/*/evaluations.npz"))
    data = np.load(path)
    return {"timesteps": [int(t) for t in data["timesteps"]],
            "mean_return": [float(r) for r in data["results"].mean(axis=1)]}


def execute_run(spec: RunSpec, results: Path) -> Path:
    """Train ``spec`` in a private folder, then publish it as ``results/<run_id>``."""
    from sb3_tar.experiments.inspection import inspect_saved_model

    work = partial_dir(results, spec)
    hyperparams = run_hyperparams(spec)
    config = work / "hyperparams.yml"
    config.write_text(yaml.safe_dump({spec.env: hyperparams}, sort_keys=False))
    log_folder = work / "logs"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    with open(work / "train.log", "w") as log:
        subprocess.run(zoo_command(spec, config, log_folder), stdout=log, stderr=subprocess.STDOUT,
                       env=environment, cwd=work, check=True)
    wall_time = time.perf_counter() - start
    model_path = next(log_folder.glob(f"{spec.algo}/*/{spec.env}.zip"))
    result = {
        "run_id": spec.run_id,
        "label": spec.label,
        "spec": {**spec.to_dict(), "cost": None},
        "evaluations": read_evaluations(log_folder),
        "wall_time_s": wall_time,
        **inspect_saved_model(spec.algo, model_path, batch_size=int(hyperparams.get("batch_size", 256))),
    }
    result["spec"]["cost"] = result.pop("cost")
    return publish(results, spec, work, result)
