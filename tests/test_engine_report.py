"""The topology report: data, table and figure agree with the masks, layers with nothing pruned included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sb3_tar import format_topology_table, plot_topology, prune_and_revive, topology_report
from sb3_tar.cli import main, mlp


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


# --- layers with nothing pruned: a dense layer has no coverage, and every output says so ---------------

CRITERIA = ["magnitude", "random", "erk", "synflow"]
# (input, hidden, output): small networks where layers end up fully kept, empty or both, and Humanoid's.
SHAPES = {
    "3-input": (3, [64, 64], 1),  # a Pendulum Q-network; at sparsity 0.5 ERK keeps its 64x1 output layer dense
    "4-input": (4, [8], 2),
    "3-1-output": (6, [3], 1),
    "1-wide-hidden": (3, [1], 1),
    "humanoid": (376, [256, 256], 17),
}


def options(criterion: str) -> dict[str, object]:
    return {"iterations": 10} if criterion == "synflow" else {}


def cover_column(table: str, plan) -> dict[str, str]:
    """Layer name -> the table's last column ("cover")."""
    rows = {line.split()[0]: line.split()[-1] for line in table.splitlines() if line.split()}
    return {layer.name: rows[layer.name] for layer in plan.layers}


def assert_report_and_table_agree(plan) -> dict[str, object]:
    """Coverage is null in the JSON data and "-" in the table exactly where nothing was pruned."""
    report = json.loads(json.dumps(topology_report(plan), allow_nan=False))
    table = format_topology_table(plan)
    covers = cover_column(table, plan)
    for layer, record in zip(plan.layers, report["layers"]):
        nothing_pruned = layer.kept_before == layer.size
        assert (record["coverage"] is None) == nothing_pruned, record
        assert (covers[layer.name] == "-") == nothing_pruned, table
        if not nothing_pruned:
            assert 0.0 <= record["coverage"] <= 1.0
    return report


def assert_figure_renders(report: dict[str, object], path: Path) -> None:
    """The figure, from the JSON data as saved with a trained model: two bars a layer, empty layers labelled."""
    layers = report["layers"]
    axes = plot_topology(report, path).axes[0]
    assert len(axes.patches) == 2 * len(layers)
    assert sum(text.get_text() == "0 kept" for text in axes.texts) == sum(layer["kept_before"] == 0 for layer in layers)
    assert path.stat().st_size > 0


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.95])
@pytest.mark.parametrize("criterion", CRITERIA)
def test_report_table_and_figure_handle_layers_with_nothing_pruned(criterion, sparsity, shape, tmp_path):
    torch.manual_seed(0)
    network = mlp(*SHAPES[shape])
    static = prune_and_revive(network, sparsity=sparsity, criterion=criterion, seed=0, **options(criterion))
    if sparsity == 0.0:
        assert all(layer.coverage is None for layer in static.layers)
    assert_figure_renders(assert_report_and_table_agree(static), tmp_path / "topology.png")
    tar = prune_and_revive(network, sparsity=sparsity, criterion=criterion, recovery_ratio=0.02, seed=0,
                           **options(criterion))
    assert_report_and_table_agree(tar)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    input_width=st.integers(1, 40),
    hidden=st.lists(st.integers(1, 40), min_size=0, max_size=3),
    output_width=st.integers(1, 8),
    sparsity=st.one_of(st.just(0.0), st.floats(0.0, 0.98)),
    recovery_ratio=st.sampled_from([0.0, 0.005, 0.02]),
    criterion=st.sampled_from(CRITERIA),
    allocation=st.sampled_from(["topology", "uniform"]),
    budget=st.sampled_from(["reserve", "extra"]),
    seed=st.integers(0, 2**31),
)
def test_any_network_and_setting_gives_a_json_report_a_table_and_a_figure(
    input_width, hidden, output_width, sparsity, recovery_ratio, criterion, allocation, budget, seed, tmp_path
):
    torch.manual_seed(seed)
    network = mlp(input_width, hidden, output_width)
    # reserve prunes at sparsity + recovery_ratio (< 1); extra revives at most the pruned fraction
    recovery_ratio = min(recovery_ratio, (1.0 - sparsity) * 0.999 if budget == "reserve" else sparsity)
    plan = prune_and_revive(network, sparsity=sparsity, criterion=criterion, recovery_ratio=recovery_ratio,
                            allocation=allocation, budget=budget, seed=seed, **options(criterion))
    assert_figure_renders(assert_report_and_table_agree(plan), tmp_path / "topology.png")


SB3_TAR = Path(sys.executable).with_name("sb3-tar")  # the console script, installed beside the interpreter


@pytest.mark.parametrize("extra", [[], ["--sparsity", "0.5"]], ids=["default-sparsity", "sparsity-0.5"])
def test_inspect_command_on_a_q_network_shape_exits_cleanly(extra, tmp_path):
    """ERK keeps a 256x1 output layer dense: nothing pruned there, so no coverage (it used to raise)."""
    command = [str(SB3_TAR), "inspect", "--input-width", "3", "--output-width", "1", "--criterion", "erk", *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    last_layer = next(line for line in result.stdout.splitlines() if line.startswith("4.weight"))
    assert "256x1" in last_layer and last_layer.split()[-1] == "-"
