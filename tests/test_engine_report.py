"""The topology report: data, table and figure agree with the masks."""

from __future__ import annotations

import json

import pytest

from sb3_tar import format_topology_table, plot_topology, prune_and_revive, topology_report
from sb3_tar.cli import main


@pytest.fixture
def plan(actor):
    return prune_and_revive(actor, sparsity=0.97, criterion="magnitude", recovery_ratio=0.01, seed=0)


def test_report_data_is_json_ready_and_sums_to_the_plan(plan):
    report = json.loads(json.dumps(topology_report(plan)))
    assert report["kept_weights"] == plan.kept == sum(layer["kept_after"] for layer in report["layers"])
    assert report["revived_weights"] == sum(layer["revived"] for layer in report["layers"])
    first = report["layers"][0]
    assert first["name"] == "0.weight"
    assert first["kept_before"] + first["revived"] == first["kept_after"]
    assert first["deficit"] == max(0, first["floor"] - first["kept_before"])
    assert first["coverage"] == pytest.approx(first["revived"] / (first["size"] - first["kept_before"]))


def test_table_lists_every_layer_with_its_before_and_after_counts(plan):
    table = format_topology_table(plan, title="actor")
    assert table.splitlines()[0] == "actor"
    for layer in plan.layers:
        line = next(line for line in table.splitlines() if line.startswith(layer.name))
        assert f"{layer.kept_before}->{layer.kept_after}" in line
        assert f"{layer.isolated_inputs_before}->{layer.isolated_inputs_after}" in line
    assert f"revived {plan.revived}" in table


def test_figure_has_before_after_bars_and_the_floor_for_each_layer(plan, tmp_path):
    figure = plot_topology(plan, tmp_path / "topology.png")
    axes = figure.axes[0]
    assert len(axes.patches) == 2 * len(plan.layers)
    assert sorted(text.get_text() for text in axes.get_legend().get_texts()) == [
        "after revival", "connectivity floor", "static pruning"]
    assert (tmp_path / "topology.png").stat().st_size > 10_000


def test_inspect_command_prints_the_report_and_writes_its_files(tmp_path, capsys):
    main(["inspect", "--sparsity", "0.95", "--criterion", "erk", "--output", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "erk pruning, sparsity 0.95" in printed and "0.weight" in printed
    assert json.loads((tmp_path / "out" / "topology.json").read_text())["criterion"] == "erk"
    assert (tmp_path / "out" / "topology.png").exists()


def test_inspect_command_reports_a_bad_setting_without_a_traceback(capsys):
    with pytest.raises(SystemExit, match=r"sb3-tar inspect: recovery_ratio=-1.0 must be >= 0"):
        main(["inspect", "--recovery-ratio", "-1"])
