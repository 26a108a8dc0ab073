"""One sweep run, end to end: write its zoo config, train through rl-zoo3, publish its result.

Runs go through ``python -m rl_zoo3.train`` with ``--gym-packages sb3_tar``: the same path a
researcher uses by hand, with the project's tuned hyperparameter files as the base. The run's
folder keeps the exact config it trained with, the zoo's logs, the model and ``result.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sb3_tar.experiments.grid import RunSpec
from sb3_tar.experiments.provenance import provenance
from sb3_tar.experiments.store import FAILED, partial_dir, publish

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


class IncompleteRunError(RuntimeError):
    """The training process ended without reaching the run's step budget (interrupted or killed)."""


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
    """Train ``spec`` in a private folder, then publish it as ``results/<run_id>``.

    The run is published only if the saved model reached the step budget and every evaluation is
    there; anything else (a failure, an interrupted zoo that saved early) moves the folder, logs
    included, to ``results/.failed/`` and raises.
    """
    from sb3_tar.experiments.inspection import inspect_saved_model

    results = Path(results).resolve()  # the zoo runs in the run's folder: relative paths would break
    work = partial_dir(results, spec)
    try:
        hyperparams = run_hyperparams(spec)
        timing = work / "step_times.json"
        hyperparams["callback"] = [*hyperparams.get("callback", []),
                                   {"sb3_tar.experiments.timing.StepTimeCallback": {"path": str(timing)}}]
        config = work / "hyperparams.yml"
        config.write_text(yaml.safe_dump({spec.env: hyperparams}, sort_keys=False))
        log_folder = work / "logs"
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        command = zoo_command(spec, config, log_folder)
        start = time.perf_counter()
        with open(work / "train.log", "w") as log:
            subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=work, check=True)
        wall_time = time.perf_counter() - start
        budget = int(hyperparams["n_timesteps"])
        model_path = next(log_folder.glob(f"{spec.algo}/*/{spec.env}.zip"))
        inspection = inspect_saved_model(spec.algo, model_path, batch_size=int(hyperparams.get("batch_size", 256)))
        evaluations = read_evaluations(log_folder)
        expected_evaluations = budget // spec.eval_freq
        if inspection["num_timesteps"] < budget or len(evaluations["timesteps"]) < expected_evaluations:
            raise IncompleteRunError(
                f"run {spec.run_id} stopped at {inspection['num_timesteps']} of {budget} steps with "
                f"{len(evaluations['timesteps'])} of {expected_evaluations} evaluations; not published"
            )
        result = {
            "run_id": spec.run_id,
            "label": spec.label,
            "spec": {**spec.to_dict(), "cost": inspection.pop("cost")},
            "n_timesteps": budget,
            "evaluations": evaluations,
            "step_times": json.loads(timing.read_text()) if timing.exists() else None,
            "wall_time_s": wall_time,
            **inspection,
            "provenance": provenance(command=command, wall_time_s=wall_time, torch_threads=1),
        }
        return publish(results, spec, work, result)
    except BaseException:
        failed = results / FAILED
        failed.mkdir(exist_ok=True)
        os.rename(work, failed / work.name)
        raise
