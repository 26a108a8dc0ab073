"""``import sb3_tar``: the engine never needs SB3, and ``"TarMlpPolicy"`` is there in every import order."""

from __future__ import annotations

import subprocess
import sys

import pytest
from import_blocking import BLOCK_SB3


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_the_engine_imports_and_prunes_without_sb3():
    printed = run_python(BLOCK_SB3 + """
import torch
import sb3_tar
from sb3_tar import prune_and_revive
net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
plan = prune_and_revive(net, sparsity=0.8, recovery_ratio=0.05, seed=0)
print(plan.kept - plan.repaired, 'stable_baselines3' in sys.modules)
""")
    assert printed == f"{round(0.2 * (8 * 16 + 16 * 2))} False"


def test_importing_the_engine_does_not_import_sb3():
    assert run_python("import sys, sb3_tar.engine; print('stable_baselines3' in sys.modules)") == "False"


@pytest.mark.parametrize(
    "imports",
    [
        "import sb3_tar\nfrom stable_baselines3 import SAC as Algo",
        "from stable_baselines3 import SAC as Algo\nimport sb3_tar",
        "import sb3_tar\nfrom sb3_contrib import TQC as Algo",
        "from sb3_contrib import CrossQ as Algo\nimport sb3_tar",
        "import sb3_tar\nimport sb3_contrib\nfrom stable_baselines3 import TD3 as Algo",
    ],
)
def test_tar_mlp_policy_is_registered_in_any_import_order(imports):
    printed = run_python(imports + """
model = Algo("TarMlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16, 16], sparsity=0.5), seed=0)
print(type(model.policy).__name__, sb3_tar.sparse_agent(model).settings.sparsity)
""")
    assert printed.endswith(" 0.5") and printed.startswith("Tar")


def test_sb3_names_load_on_first_use():
    assert run_python("import sb3_tar; print(sb3_tar.TARCallback.__name__, sb3_tar.DSTCallback.__name__)") == (
        "TARCallback DSTCallback")


def test_the_registration_hook_is_checked_against_these_versions():
    """``sb3_tar.registration`` reads importlib's ``__spec__._initializing``: re-check it on a new Python or SB3."""
    import stable_baselines3

    assert sys.version_info[:2] == (3, 11), "re-run this file's import-order tests on the new Python, then update"
    assert stable_baselines3.__version__ == "2.9.2", "re-run this file's import-order tests on the new SB3, then update"
