"""sb3-tar: sparse Stable-Baselines3 agents with Topology-Aware Revival.

``import sb3_tar`` exposes the sparsity engine (pure PyTorch) and makes the SB3 integration
available: the ``"TarMlpPolicy"`` alias (and its kin, see ``sb3_tar.sb3.policies``) is registered
as soon as Stable-Baselines3 is imported (at once if it already is), and ``TARCallback``, ``DSTCallback``,
``sparse_agent`` and the rest load on first use. So ``import sb3_tar.engine`` (and code that only
runs an exported actor) never imports SB3, while ``import sb3_tar`` followed by
``SAC("TarMlpPolicy", ...)`` works in either import order.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from sb3_tar import registration
from sb3_tar.engine import *  # noqa: F401,F403
from sb3_tar.engine import __all__ as _engine_all

__version__ = "0.1.0"

# Names of the SB3 layer, imported from ``sb3_tar.sb3`` on first access.
_SB3_NAMES = ("DSTCallback", "MaskDriftError", "MaskMismatchError", "SparseAgent", "SparsityLogCallback", "TARCallback",
              "TarActorCriticPolicy", "TarCrossQPolicy", "TarDQNMultiInputPolicy", "TarDQNPolicy",
              "TarMaskableActorCriticPolicy", "TarMaskableMultiInputActorCriticPolicy", "TarMultiInputActorCriticPolicy",
              "TarQRDQNMultiInputPolicy", "TarQRDQNPolicy", "TarRecurrentActorCriticPolicy",
              "TarRecurrentMultiInputActorCriticPolicy", "TarSACMultiInputPolicy", "TarSACPolicy",
              "TarTD3MultiInputPolicy", "TarTD3Policy", "TarTQCMultiInputPolicy", "TarTQCPolicy", "sparse_agent")
# The deployable actor: exporting needs SB3, running an exported actor needs only torch.
_DEPLOY = {"export_actor": "sb3_tar.export", "load_actor": "sb3_tar.runtime"}
__all__ = [*_engine_all, *_SB3_NAMES, *_DEPLOY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _SB3_NAMES:
        return getattr(importlib.import_module("sb3_tar.sb3"), name)
    if name in _DEPLOY:
        return getattr(importlib.import_module(_DEPLOY[name]), name)
    raise AttributeError(f"module 'sb3_tar' has no attribute {name!r}")


registration.install()

if "rl_zoo3.exp_manager" in sys.modules:  # imported by rl-zoo3 (--gym-packages sb3_tar): -optimize keeps sparse settings
    importlib.import_module("sb3_tar.zoo")
