"""Shared fixtures: small freshly initialised MLPs shaped like SB3's actors and critics."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from sb3_tar.cli import mlp

matplotlib.use("Agg")
# Tests run two workers on two cores (pytest -n 2); more torch threads per worker only contend.
torch.set_num_threads(1)


@pytest.fixture
def actor() -> torch.nn.Sequential:
    """A Humanoid-sized actor: 376 observations, 17 actions, two hidden layers of 256."""
    torch.manual_seed(0)
    return mlp(376, [256, 256], 17)


@pytest.fixture
def small_net() -> torch.nn.Sequential:
    torch.manual_seed(1)
    return mlp(11, [32, 24], 3)
