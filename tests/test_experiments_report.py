"""The sweep report: gains, rliable aggregates and figures computed from finished runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from run_support import PROVENANCE_KEYS

from sb3_tar.cli import main, mlp
from sb3_tar.engine import prune_and_revive, topology_report
from sb3_tar.experiments.aggregate import GainRow, as_runs, gain_percent, gain_rows, headline, rliable_aggregates
from sb3_tar.experiments.cost import cost_summary, training_step_flops
from sb3_tar.experiments.outputs import training_episodes
from sb3_tar.experiments.grid import expand_grid
from sb3_tar.experiments.report import best_gain_cell, methods_section, write_report
from sb3_tar.experiments.store import publish

FINAL = {"dense": -150.0, "static": -400.0, "tar": -200.0, "set": -300.0, "rigl": -250.0}


def fake_result(config, noise: float) -> dict:
    """A run's ``result.json``, as the pipeline writes it, whose curve rises linearly to a known final return."""
    final = FINAL[config.method] + noise
    steps = [250, 500, 750, 1000]
    returns = [-1200 + (final + 1200) * step / 1000 for step in steps]
    returns[-3:] = [final] * 3
    topology = {}
    if config.method in ("static", "tar"):
        settings = config.sparsity_settings()
        plan = prune_and_revive(mlp(3, [64, 64], 1), sparsity=settings.sparsity, criterion=settings.criterion,
                                recovery_ratio=settings.recovery_ratio, seed=config.seed)
        topology = {"actor": topology_report(plan)}
    return {"run_id": config.run_id, "label": config.label, "config": config.to_dict(), "summary": config.summary(),
            "hyperparams": {}, "num_timesteps": config.budget(),
            "evaluations": {"timesteps": steps, "mean_return": returns, "std_return": [0.0] * 4,
                            "returns": [[value] for value in returns]},
            "final_evaluation": {"timesteps": 1000, "mean_return": final, "std_return": 0.0, "episodes": 1,
                                 "returns": [final]},
            "step_times": None, "seconds_per_1000_steps": 2.0, "resumed_at": [], "kept_weights": {},
            "topology": topology, "cost": {"flops_per_action": 1e5, "flops_per_training_step": 1e9},
            "report_errors": [], "provenance": {"wall_time_s": 10.0}}


@pytest.fixture
def results(tmp_path):
    configs = expand_grid({
        "grid": {"algo": ["sac"], "env": ["Pendulum-v1", "MountainCarContinuous-v0"],
                 "method": ["dense", "static", "tar", "set", "rigl"], "criterion": ["magnitude"],
                 "sparsity": [0.9], "recovery_ratio": [0.0, 0.01], "width": [64], "seed": [0, 1, 2]},
        "settings": {"n_timesteps": 1000, "eval_freq": 250},
    })
    for index, config in enumerate(configs):
        run = tmp_path / ".building" / config.run_id
        run.mkdir(parents=True)
        (run / "result.json").write_text(json.dumps(fake_result(config, noise=float(index % 3))))
        publish(run, tmp_path / config.run_id, overwrite=False)  # publishing checks the result is complete
    (tmp_path / ".building").rmdir()
    return tmp_path


def test_a_gain_row_names_each_means_seeds_where_a_sweep_left_them_unequal(results):
    from sb3_tar.experiments.store import load_results

    runs = as_runs(load_results(results))
    assert {row.seeds_text for row in gain_rows(runs)} == {"3"}
    unfinished = [run for run in runs if not (run.spec["method"] == "tar" and run.spec["seed"] == 2)]
    rows = gain_rows(unfinished)
    assert {row.seeds_text for row in rows} == {"TAR 2, Original 3, DST 3, dense 3"}
    kept = [run.final_return for run in unfinished if run.spec["method"] == "tar" and run.task == rows[0].panel[:2]]
    assert len(kept) == 2 and rows[0].tar == pytest.approx(sum(kept) / 2)  # the mean of the seeds there are


def test_gain_is_relative_to_the_magnitude_of_the_baseline():
    assert gain_percent(-200.0, -400.0) == pytest.approx(50.0)
    assert gain_percent(120.0, 100.0) == pytest.approx(20.0)


def test_a_gain_over_a_baseline_of_exactly_zero_is_left_out_of_the_headline_whatever_the_order():
    undefined = GainRow(("sac", "A-v0", 0.9, 64), "magnitude", 0.01, 0.0, 10.0, None, None, (("TAR", 3),))
    defined = GainRow(("sac", "B-v0", 0.9, 64), "magnitude", 0.01, 100.0, 150.0, None, None, (("TAR", 3),))
    for rows in ([undefined, defined], [defined, undefined]):
        assert headline(rows)["max_gain_over_original"] == pytest.approx(50.0)
        assert headline(rows)["median_gain_over_original"] == pytest.approx(50.0)
        assert "SAC B-v0, sparsity 0.9" in best_gain_cell(rows)


def test_gain_rows_compare_tar_with_its_original_and_the_best_dst(results):
    from sb3_tar.experiments.store import load_results

    rows = gain_rows(as_runs(load_results(results)))
    assert len(rows) == 2  # one per task
    for row in rows:
        assert row.original == pytest.approx(FINAL["static"] + 1.0)  # noise 0, 1, 2 over seeds
        assert row.tar == pytest.approx(FINAL["tar"] + 1.0)
        assert row.best_dst == pytest.approx(FINAL["rigl"] + 1.0)
        assert row.seeds == 3
    stats = headline(rows)
    assert stats["median_gain_over_original"] == pytest.approx(gain_percent(-199.0, -399.0))
    assert stats["median_gain_over_best_dst"] == pytest.approx(gain_percent(-199.0, -249.0))


def test_report_writes_markdown_summary_and_every_figure(results):
    report = write_report(results)
    text = report.read_text()
    assert "median TAR gain over the best DST baseline" in text
    assert "| magnitude | 0.01 |" in text
    # the best gain names its cell and both returns (both tasks' rows are equal: the first panel is named)
    best = next(line for line in text.splitlines() if line.startswith("- best TAR gain over Original"))
    assert best == ("- best TAR gain over Original: **+50.1%** (SAC MountainCarContinuous-v0, sparsity 0.9, width 64, "
                    "magnitude rr 0.01: Original -399.0, TAR -199.0)")
    assert "IQM" in text and "P(TAR (magnitude) > Original (magnitude))" in text
    summary = json.loads((report.parent / "summary.json").read_text())
    assert summary["runs"] == 2 * 5 * 3
    assert PROVENANCE_KEYS <= set(summary["provenance"])  # the record every run's result.json carries
    for figure in ("curves-sac-Pendulum-v1.png", "curves-sac-MountainCarContinuous-v0.png",
                   "rr-sac-Pendulum-v1.png", "topology-actor.png"):
        assert (report.parent / figure).stat().st_size > 5_000
        assert f"]({figure})" in text
    poi = [row for row in summary["rliable"] if row["method"].startswith("P(")]
    assert poi and poi[0]["iqm"] == pytest.approx(1.0)  # TAR beats Original in every pairing here


def step_times(wall_per_block: float, cpu_per_block: float, blocks: int = 5) -> dict:
    return {"interval": 1000, "timesteps": [1000 * block for block in range(blocks + 1)],
            "wall_s": [wall_per_block * block for block in range(blocks + 1)],
            "cpu_s": [cpu_per_block * block for block in range(blocks + 1)]}


def test_the_cost_table_compares_methods_by_cpu_time_derived_for_runs_that_did_not_record_it(results):
    from sb3_tar.experiments.store import load_results

    finished = [r for r in load_results(results) if r["summary"]["env"] == "Pendulum-v1"]
    for result in finished:
        # dense ran on a loaded machine (slow wall clock), the others on a quiet one; CPU time tells the truth
        dense = result["summary"]["method"] == "dense"
        result["step_times"] = step_times(wall_per_block=90.0 if dense else 30.0,
                                          cpu_per_block=20.0 if dense else 30.0)
        result["seconds_per_1000_steps"] = 90.0 if dense else 30.0
        result["hyperparams"] = {"learning_starts": 1000}
        if result["summary"]["method"] == "rigl":
            result["cpu_seconds_per_1000_steps"] = 25.0  # a run's own figure wins over its step times
    rows = {line.split(" | ")[4]: line for line in methods_section(as_runs(finished)) if "| Pendulum-v1 |" in line}
    assert rows["Dense"].endswith("| 90.00 | 20.00 | 1.00x | 0.100 | 1.000 |")
    assert rows["Original (magnitude)"].endswith("| 30.00 | 30.00 | 1.50x | 0.100 | 1.000 |")
    assert "| 30.00 | 25.00 | 1.25x |" in rows["RigL"]


def test_rliable_intervals_are_the_same_each_time_and_leave_numpys_global_generator_alone(results):
    from sb3_tar.experiments.store import load_results

    runs = [run for run in as_runs(load_results(results))]
    for run in runs:  # spread the seeds' scores so that the intervals have width to differ in
        run.mean_returns[-1] += 40.0 * run.spec["seed"]
    np.random.seed(123)
    expected_next = np.random.random_sample()
    np.random.seed(123)
    first = rliable_aggregates(runs, reps=300)
    assert np.random.random_sample() == expected_next
    second = rliable_aggregates(runs, reps=300)
    assert any(row["ci_low"] < row["ci_high"] for row in first)
    assert first == second
    assert first != rliable_aggregates(runs, reps=300, seed=1)


def test_report_refuses_runs_of_one_width_and_different_depths_naming_them(results):
    run = next(path for path in results.glob("*/result.json") if "-dense-" in str(path))
    result = json.loads(run.read_text())
    result["summary"]["depth"] = 1
    run.write_text(json.dumps(result))
    with pytest.raises(ValueError, match=r"runs of width 64 with 2 depths \(1: sac-.*-dense-w64-seed., 2: sac-"):
        write_report(results)


def test_a_task_with_dense_runs_only_still_gets_its_learning_curve(results):
    import matplotlib.image

    for run in results.glob("*MountainCarContinuous*/result.json"):
        if "-dense-" not in str(run):
            shutil.rmtree(run.parent)  # a sweep that has so far finished only this task's dense runs
    report = write_report(results)
    pixels = matplotlib.image.imread(report.parent / "curves-sac-MountainCarContinuous-v0.png")[..., :3]
    assert (pixels < 0.9).any(axis=-1).mean() > 0.02  # axes, a curve and a legend; a blank figure has only its title
    assert "![learning curves sac MountainCarContinuous-v0]" in report.read_text()
    # rliable aggregates the task every method has runs on, instead of dropping every sparse method
    rows = json.loads((report.parent / "summary.json").read_text())["rliable"]
    assert {row["tasks"] for row in rows} == {1} and any(row["method"].startswith("TAR") for row in rows)


def test_report_refuses_an_empty_results_folder(tmp_path):
    with pytest.raises(ValueError, match="holds no finished run"):
        write_report(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "incomplete"])
def test_the_report_command_fails_naming_a_corrupt_result(damage, results):
    path = sorted(results.glob("*/result.json"))[3]
    text = path.read_text()
    path.write_text(text[:300] if damage == "truncated" else json.dumps(
        {key: value for key, value in json.loads(text).items() if key != "cost"}))
    with pytest.raises(SystemExit) as failed:
        main(["report", str(results)])
    assert str(failed.value).startswith(f"sb3-tar report: {path} ")
    assert ("not valid JSON" if damage == "truncated" else "lacks ['cost']") in str(failed.value)
    assert not (results / "report").exists()


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    ('{"tasks": {"Pendulum-v1": {}}}', r"must hold 'tasks': \{env: \{mean_return: number\}\}"),
    ("[1, 2]", "must hold a mapping of names to values; it is a list"),
])
def test_a_missing_or_malformed_random_returns_file_stops_the_report_before_it_writes(content, message, results, tmp_path):
    path = tmp_path / "random.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit, match=f"sb3-tar report: --random-returns file .*{message}"):
        main(["report", str(results), "--random-returns", str(path)])
    assert not (results / "report").exists()


def test_sparse_flops_scale_with_kept_weights():
    dense = training_step_flops("sac", 1000, [1000, 1000], batch_size=256)
    sparse = training_step_flops("sac", 100, [100, 100], batch_size=256)
    assert sparse == pytest.approx(dense / 10)
    summary = cost_summary("td3", {"actor": 100, "qf0": 50, "qf1": 50}, batch_size=10)
    assert summary["flops_per_action"] == 200
    # critic: target actor 200 + target Qs 200 + Qs fwd 200 + bwd 400; actor every 2: (200 + 400 + 300) / 2
    assert summary["flops_per_training_step"] == pytest.approx(10 * (1000 + 450))
    with pytest.raises(ValueError, match="algo='ppo' has no FLOP model"):
        training_step_flops("ppo", 1, [1], 1)
    assert np.isfinite(dense)
    # PPO/A2C: both networks forward (2K) and backward (4K) per sample; DQN: target fwd, Q fwd and bwd
    ppo = cost_summary("ppo", {"actor": 100, "critic": 60}, batch_size=64)
    assert ppo == {"flops_per_action": 200.0, "flops_per_training_step": 6.0 * 160 * 64}
    # RecurrentPPO: its dense LSTMs count in full, with their network
    lstm = cost_summary("ppo_lstm", {"actor": 100, "critic": 60}, batch_size=64, recurrent={"actor": 500, "critic": 40})
    assert lstm == {"flops_per_action": 1200.0, "flops_per_training_step": 6.0 * 700 * 64}
    dqn = cost_summary("dqn", {"q_net": 30}, batch_size=32)
    assert dqn == {"flops_per_action": 60.0, "flops_per_training_step": 8.0 * 30 * 32}


def test_training_episodes_of_several_environments_are_placed_on_the_runs_steps(tmp_path):
    """n monitor files (one per environment, stepped together): an environment's s steps are the run's n * s."""
    header = '#{"t_start": 0, "env_id": "CartPole-v1"}\nr,l,t\n'
    (tmp_path / "0.monitor.csv").write_text(header + "10.0,10,0.1\n20.0,20,0.3\n")
    (tmp_path / "1.monitor.csv").write_text(header + "15.0,15,0.2\n")
    steps, returns = training_episodes(tmp_path)
    assert steps.tolist() == [20, 30, 60] and returns.tolist() == [10.0, 15.0, 20.0]
    assert [len(part) for part in training_episodes(tmp_path / "absent")] == [0, 0]
