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



def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_kernels: run the test with kernel='dense' and with kernel='sparse' "
                                       "(every sb3_support model takes it)")
    config.addinivalue_line("markers", "dense_kernel_only(reason): in a both_kernels module, a test of the masked "
                                       "dense layers alone (it edits a masked position, or moves masks)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    dense_only = metafunc.definition.get_closest_marker("dense_kernel_only") is not None
    if metafunc.definition.get_closest_marker("both_kernels") is not None and not dense_only:
        metafunc.parametrize("policy_kernel", ["dense", "sparse"], indirect=True)


@pytest.fixture(autouse=True)
def policy_kernel(request: pytest.FixtureRequest):
    """The kernel sb3_support's models are built with: both for tests marked ``both_kernels``, else dense."""
    import sb3_support

    sb3_support.KERNEL = getattr(request, "param", "dense")
    yield sb3_support.KERNEL
    sb3_support.KERNEL = "dense"
