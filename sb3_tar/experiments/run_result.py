"""What a finished run records: its final evaluation and the contents of its ``result.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sb3_tar.experiments.algorithms import algorithm_name
from sb3_tar.experiments.config import RunConfig
from sb3_tar.experiments.timing import StepTimeCallback, median_block_seconds


def final_evaluation(model: Any, eval_callback: Any, config: RunConfig) -> dict[str, Any]:
    """The evaluation of the trained model, the one saved, always run anew.

    A scheduled evaluation runs inside a rollout, before that rollout's gradient steps (SB3 trains
    after collecting: every algorithm, ``train_freq`` of any length), so even one at the last step
    evaluates a model a few updates short of the saved one.
    """
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import sync_envs_normalization

    sync_envs_normalization(model.get_env(), eval_callback.eval_env)  # as the evaluation callback does
    returns, _ = evaluate_policy(model, eval_callback.eval_env, n_eval_episodes=config.eval_episodes,
                                 deterministic=True, return_episode_rewards=True)
    returns = np.asarray(returns, dtype=float)
    return {"timesteps": int(model.num_timesteps), "mean_return": float(returns.mean()),
            "std_return": float(returns.std()), "episodes": len(returns), "returns": returns.tolist()}


def run_result(config: RunConfig, hyperparams: dict[str, Any], model: Any, eval_callback: Any, final: dict[str, Any],
               timer: StepTimeCallback, resumes: list[int], run_dir: Path) -> dict[str, Any]:
    """The ``result.json`` of a finished run; a failed report (topology, figure) is recorded, never fatal."""
    from sb3_tar.experiments.inspection import inspect_model
    from sb3_tar.experiments.outputs import plot_learning_curve, write_topology

    returns = [np.asarray(row, dtype=float) for row in eval_callback.evaluations_results]
    evaluations = {
        "timesteps": [int(t) for t in eval_callback.evaluations_timesteps],
        "mean_return": [float(row.mean()) for row in returns],
        "std_return": [float(row.std()) for row in returns],
        "returns": [row.tolist() for row in returns],
    }
    inspection = inspect_model(config.algo, model)
    plans = inspection.pop("plans")
    errors = []
    try:
        inspection["topology"] = write_topology(plans, run_dir) if plans else {}
    except Exception as error:  # noqa: BLE001 - a report failure is recorded; the trained run is kept
        errors.append(f"topology report: {type(error).__name__}: {error}")
        inspection["topology"] = {}
    try:
        plot_learning_curve(run_dir, evaluations, final, title=f"{algorithm_name(config.algo)} {config.env}: {config.label}"
                            + ("" if config.method == "dense" else f", sparsity {config.summary()['sparsity']:g}"))
    except Exception as error:  # noqa: BLE001
        errors.append(f"learning curve: {type(error).__name__}: {error}")
    step_times = timer.state()
    # the blocks before learning starts train nothing (on-policy algorithms train from the first rollout)
    learning_starts = int(getattr(model, "learning_starts", 0))
    return {
        "run_id": config.run_id,
        "label": config.label,
        "config": config.to_dict(),
        "summary": config.summary(),
        "hyperparams": hyperparams,
        "num_timesteps": int(model.num_timesteps),
        "evaluations": evaluations,
        "final_evaluation": final,
        "step_times": step_times,
        "seconds_per_1000_steps": median_block_seconds(step_times, after=learning_starts),
        "cpu_seconds_per_1000_steps": median_block_seconds(step_times, after=learning_starts, clock="cpu_s"),
        "resumed_at": resumes,
        **inspection,
        "report_errors": errors,
    }
