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
import importlib.abc
import importlib.machinery
import sys
from typing import Any

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


_PACKAGES = ("stable_baselines3", "sb3_contrib")  # sb3-tar's policies subclass both


def _initializing(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and getattr(module.__spec__, "_initializing", False)


def _register_if_ready() -> None:
    """Import the SB3 layer (which registers the aliases) once neither package is half-imported."""
    if "stable_baselines3" in sys.modules and not any(_initializing(name) for name in _PACKAGES):
        for finder in [f for f in sys.meta_path if isinstance(f, _RegisterWhenSB3Loads)]:
            sys.meta_path.remove(finder)
        importlib.import_module("sb3_tar.sb3")


class _RegisterWhenSB3Loads(importlib.abc.MetaPathFinder):
    """Registers ``"TarMlpPolicy"`` right after ``stable_baselines3`` (or ``sb3_contrib``) finishes importing."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in _PACKAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            load(module)
            module.__spec__._initializing = False  # set again by importlib right after; needed now to register
            _register_if_ready()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "stable_baselines3" in sys.modules:
    _register_if_ready()
elif not any(isinstance(finder, _RegisterWhenSB3Loads) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenSB3Loads())

if "rl_zoo3.exp_manager" in sys.modules:  # imported by rl-zoo3 (--gym-packages sb3_tar): -optimize keeps sparse settings
    importlib.import_module("sb3_tar.zoo")
