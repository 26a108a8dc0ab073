"""Figures legible at the size they are written: tick labels apart, titles inside the figure, legends off the data."""

from __future__ import annotations

import itertools
import json

import numpy as np
import torch.nn as nn
from matplotlib.backends.backend_agg import FigureCanvasAgg

from sb3_tar import prune_and_revive
from sb3_tar.engine.report import plot_topology, topology_report
from sb3_tar.experiments.aggregate import Run
from sb3_tar.experiments.figures import recovery_ratio_figure, return_vs_recovery_ratio
from sb3_tar.experiments.outputs import learning_curve_figure, plot_learning_curve


def extents(figure, artists):
    """The artists' boxes on the drawn figure (sb3-tar draws on pyplot-free figures: give them an Agg canvas)."""
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    return [artist.get_window_extent(renderer) for artist in artists]


def test_topology_tick_labels_of_long_layer_names_do_not_overlap(tmp_path):
    network = nn.Sequential(nn.Linear(3, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    report = topology_report(prune_and_revive(network, sparsity=0.8, recovery_ratio=0.01, seed=0))
    names = ["mlp_extractor.policy_net.0.weight", "mlp_extractor.policy_net.2.weight", "action_net.weight"]
    report = json.loads(json.dumps(report))
    for layer, name in zip(report["layers"], names):  # PPO's names: the longest sb3-tar plots
        layer["name"] = name
    figure = plot_topology(report, tmp_path / "topology.png")
    labels = extents(figure, figure.axes[0].get_xticklabels())
    assert len(labels) == 3
    for first, second in itertools.pairwise(labels):
        assert first.x1 < second.x0, "tick labels overlap"
    assert all("weight" not in label.get_text() for label in figure.axes[0].get_xticklabels())


def test_the_learning_curves_legend_leaves_the_final_evaluation_visible(tmp_path):
    evaluations = {"timesteps": [100, 200, 300], "returns": [[-900.0], [-600.0], [-200.0]]}
    final = {"timesteps": 300, "mean_return": -150.0, "std_return": 10.0}
    figure = learning_curve_figure(tmp_path, evaluations, final, "SAC Pendulum-v1: TAR (magnitude)")
    (legend,), (axes,) = extents(figure, figure.legends), extents(figure, figure.axes)
    assert legend.y1 <= axes.y0, "the legend sits on the data"
    assert plot_learning_curve(tmp_path, evaluations, final, "x") == tmp_path / "learning_curve.png"


def test_the_recovery_ratio_figure_keeps_its_title_inside_with_one_panel(tmp_path):
    rng = np.random.default_rng(0)
    runs = [Run(f"r{index}", {"algo": "sac", "env": "HalfCheetah-v4", "method": "tar" if ratio else "static",
                              "criterion": "magnitude", "sparsity": 0.9, "recovery_ratio": ratio, "width": 256,
                              "seed": seed},
                "label", [1000, 2000, 3000], list(rng.normal(size=3)), 1.0, {})
            for index, (ratio, seed) in enumerate(itertools.product([0.0, 0.01, 0.02], [0, 1, 2]))]
    figure = recovery_ratio_figure(runs)
    (title,), (whole,) = extents(figure, [figure._suptitle]), [figure.bbox]
    assert whole.x0 <= title.x0 and title.x1 <= whole.x1 and title.y1 <= whole.y1, "the title is cut"
    assert return_vs_recovery_ratio(runs, tmp_path / "rr.png") and (tmp_path / "rr.png").is_file()
