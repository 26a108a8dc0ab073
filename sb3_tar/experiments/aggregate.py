"""From finished runs to the numbers a study reports: final returns, gains, rliable aggregates."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from sb3_tar.experiments.timing import median_block_seconds

FINAL_EVALUATIONS = 3  # "final return": the mean over a run's last evaluations, damping one lucky episode


@dataclass(frozen=True)
class Run:
    """One finished run, as ``result.json`` records it."""

    run_id: str
    spec: dict[str, Any]
    label: str
    timesteps: list[int]
    mean_returns: list[float]
    wall_time_s: float
    topology: dict[str, Any]
    seconds_per_1000_steps: float | None = None
    cpu_seconds_per_1000_steps: float | None = None

    @property
    def final_return(self) -> float:
        return float(np.mean(self.mean_returns[-FINAL_EVALUATIONS:]))

    @property
    def task(self) -> tuple[str, str]:
        return self.spec["algo"], self.spec["env"]

    @property
    def panel(self) -> tuple[str, str, float, int]:
        """(algo, env, sparsity, width): the runs a paper table compares."""
        return self.spec["algo"], self.spec["env"], self.spec["sparsity"], self.spec["width"]


def _cpu_seconds_per_1000_steps(result: dict[str, Any]) -> float | None:
    """The run's own figure; results written before it was recorded derive it from their step times."""
    if "cpu_seconds_per_1000_steps" in result:
        return result["cpu_seconds_per_1000_steps"]
    after = int(result.get("hyperparams", {}).get("learning_starts", 0))
    return median_block_seconds(result.get("step_times"), after=after, clock="cpu_s")


def as_runs(results: Iterable[dict[str, Any]]) -> list[Run]:
    """Runs from ``result.json`` data: ``summary`` holds what runs are grouped by, ``cost`` their FLOPs."""
    return [
        Run(r["run_id"], {**r["summary"], "cost": r["cost"]}, r["label"], r["evaluations"]["timesteps"],
            r["evaluations"]["mean_return"], r["provenance"]["wall_time_s"], r.get("topology", {}),
            r.get("seconds_per_1000_steps"), _cpu_seconds_per_1000_steps(r))
        for r in results
    ]


def gain_percent(value: float, baseline: float) -> float:
    """Relative improvement over ``baseline``; ``|baseline|`` keeps the sign right for negative returns."""
    return 100.0 * (value - baseline) / abs(baseline) if baseline != 0 else float("nan")


def _mean_final(runs: Sequence[Run]) -> float | None:
    return statistics.fmean(run.final_return for run in runs) if runs else None


@dataclass(frozen=True)
class GainRow:
    """One TAR configuration against its static Original and the best DST baseline of its panel."""

    panel: tuple[str, str, float, int]
    criterion: str
    recovery_ratio: float
    original: float
    tar: float
    best_dst: float | None
    dense: float | None
    # Seeds behind each mean (TAR first, then Original, best DST, dense); they differ while a sweep is unfinished.
    seed_counts: tuple[tuple[str, int], ...]

    @property
    def seeds(self) -> int:
        """TAR's seeds."""
        return self.seed_counts[0][1]

    @property
    def seeds_text(self) -> str:
        """``"3"``, or each mean's seeds where they differ: ``"TAR 2, Original 3, dense 3"``."""
        if len({count for _, count in self.seed_counts}) <= 1:
            return str(self.seeds)
        return ", ".join(f"{name} {count}" for name, count in self.seed_counts)

    @property
    def gain_over_original(self) -> float:
        return gain_percent(self.tar, self.original)

    @property
    def gain_over_dst(self) -> float | None:
        return None if self.best_dst is None else gain_percent(self.tar, self.best_dst)


def gain_rows(runs: Sequence[Run]) -> list[GainRow]:
    """TAR's gains, per (panel, criterion, recovery ratio), as the paper's tables report them.

    Dense and DST baselines with the same algo, env and width are matched; DST also by sparsity.
    """
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        spec = run.spec
        groups[(run.panel, spec["method"], spec["criterion"], spec["recovery_ratio"])].append(run)
    rows = []
    for (panel, method, criterion, ratio), tar_runs in sorted(groups.items(), key=lambda item: str(item[0])):
        if method != "tar":
            continue
        original_runs = groups.get((panel, "static", criterion, 0.0), [])
        if not original_runs:
            continue
        dst = [(_mean_final(groups[(panel, m, None, 0.0)]), len(groups[(panel, m, None, 0.0)]))
               for m in ("set", "rigl") if groups.get((panel, m, None, 0.0))]
        best_dst = max(dst) if dst else None
        algo, env, _, width = panel
        dense_runs = [r for r in runs if r.spec["method"] == "dense" and r.task == (algo, env)
                      and r.spec["width"] == width]
        counts = (("TAR", len(tar_runs)), ("Original", len(original_runs)),
                  *((("DST", best_dst[1]),) if best_dst else ()), *((("dense", len(dense_runs)),) if dense_runs else ()))
        rows.append(GainRow(panel, criterion, ratio, _mean_final(original_runs), _mean_final(tar_runs),
                            best_dst[0] if best_dst else None, _mean_final(dense_runs), counts))
    return rows


def headline(rows: Sequence[GainRow]) -> dict[str, float | None]:
    """The two headline statistics: TAR's best and median gain over Original, its median gain over DST.

    A gain over a baseline of exactly 0 is undefined (NaN) and left out, rather than ordered arbitrarily.
    """
    over_original = [row.gain_over_original for row in rows if math.isfinite(row.gain_over_original)]
    over_dst = [row.gain_over_dst for row in rows if row.gain_over_dst is not None and math.isfinite(row.gain_over_dst)]
    return {
        "max_gain_over_original": max(over_original) if over_original else None,
        "median_gain_over_original": statistics.median(over_original) if over_original else None,
        "median_gain_over_best_dst": statistics.median(over_dst) if over_dst else None,
    }


def dense_random_anchors(runs: Sequence[Run], random_returns: dict[str, float]) -> dict[tuple, tuple[float, float]]:
    """Per task (algo, env): (a random policy's return, the dense runs' mean final return).

    Tasks without dense runs or without a random-policy return get no anchors.
    """
    anchors = {}
    for task in sorted({run.task for run in runs}):
        dense = _mean_final([run for run in runs if run.task == task and run.spec["method"] == "dense"])
        if dense is not None and task[1] in random_returns and dense != random_returns[task[1]]:
            anchors[task] = (random_returns[task[1]], dense)
    return anchors


def normalised_scores(runs: Sequence[Run], anchors: dict[tuple, tuple[float, float]] | None = None
                      ) -> dict[str, dict[tuple, list[float]]]:
    """Final returns on a common scale per task (algo, env), for rliable to aggregate across tasks.

    With ``anchors`` (task -> (low, high), e.g. ``dense_random_anchors``): ``(R - low) / (high - low)``,
    so a random policy scores 0 and dense training 1. Without: min-max over every run of the task.
    Keyed ``label -> (task, sparsity, width, recovery_ratio) -> scores``.
    """
    by_task: dict[tuple, list[float]] = defaultdict(list)
    for run in runs:
        by_task[run.task].append(run.final_return)
    scores: dict[str, dict[tuple, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        low, high = (anchors or {}).get(run.task, (min(by_task[run.task]), max(by_task[run.task])))
        value = (run.final_return - low) / (high - low) if high != low else 0.5
        key = (run.task, run.spec["sparsity"], run.spec["width"], run.spec["recovery_ratio"])
        scores[run.label][key].append(value)
    return scores


def score_matrix(per_task: dict[tuple, list[float]], tasks: Sequence[tuple]) -> np.ndarray:
    """(runs x tasks) matrix of ``tasks`` (each must have runs), trimmed to the smallest seed count."""
    columns = [per_task[task] for task in tasks]
    depth = min(len(column) for column in columns)
    return np.array([column[:depth] for column in columns]).T


def rliable_aggregates(runs: Sequence[Run], reps: int = 2000, seed: int = 0,
                       anchors: dict[tuple, tuple[float, float]] | None = None) -> list[dict[str, Any]]:
    """IQM with stratified-bootstrap 95% CIs per method, and P(TAR > Original), per (sparsity, width).

    Tasks are the (algo, env) pairs; dense runs are shared by every sparsity of their width.
    ``anchors`` as in ``normalised_scores``.
    """
    with seeded_global_numpy(seed):
        return _rliable_rows(runs, reps, anchors)


@contextmanager
def seeded_global_numpy(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator for a block, then restore it.

    rliable's stratified bootstraps draw their resamples from ``np.random`` itself; the
    ``random_state`` they accept reaches only arch, whose draws rliable overrides. Seeding the global
    generator is what makes a report's confidence intervals the same each time it is written.
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _rliable_rows(runs: Sequence[Run], reps: int, anchors: dict[tuple, tuple[float, float]] | None
                  ) -> list[dict[str, Any]]:
    from rliable import library, metrics

    scores = normalised_scores(runs, anchors)
    settings = sorted({(r.spec["sparsity"], r.spec["width"]) for r in runs if r.spec["method"] != "dense"})
    tasks = sorted({run.task for run in runs})
    rows = []
    for sparsity, width in settings:
        # every (method, rr) of this setting, with its scores per task
        curves: dict[tuple[str, float], dict[tuple, list[float]]] = defaultdict(dict)
        for label, per_key in sorted(scores.items()):
            for (task, key_sparsity, key_width, ratio), values in per_key.items():
                if key_width == width and key_sparsity in (sparsity, 0.0 if label == "Dense" else sparsity):
                    curves[(label, ratio)][task] = values
        # the tasks every method of the setting has runs on: an unfinished sweep leaves the others out
        common = [task for task in tasks if all(task in per_task for per_task in curves.values())]
        if not common:
            continue
        for (label, ratio), per_task in sorted(curves.items()):
            matrix = score_matrix(per_task, common)
            point, interval = library.get_interval_estimates(
                {label: matrix}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
            rows.append({"sparsity": sparsity, "width": width, "method": label, "recovery_ratio": ratio,
                         "iqm": float(point[label][0]), "ci_low": float(interval[label][0][0]),
                         "ci_high": float(interval[label][1][0]), "runs_per_task": matrix.shape[0],
                         "tasks": len(common)})
        for label, ratio in sorted(curves):
            original_label = label.replace("TAR (", "Original (")
            if not label.startswith("TAR (") or (original_label, 0.0) not in curves:
                continue
            tar = score_matrix(curves[(label, ratio)], common)
            static = score_matrix(curves[(original_label, 0.0)], common)
            point, interval = library.get_interval_estimates(
                {"poi": (tar, static)}, metrics.probability_of_improvement, reps=reps)
            rows.append({"sparsity": sparsity, "width": width, "method": f"P({label} > {original_label})",
                         "recovery_ratio": ratio, "iqm": float(point["poi"]), "ci_low": float(np.ravel(interval["poi"])[0]),
                         "ci_high": float(np.ravel(interval["poi"])[1]), "runs_per_task": tar.shape[0],
                         "tasks": len(common)})
    return rows
