"""Register ``"TarMlpPolicy"`` with SB3 whenever SB3 is imported, before or after ``import sb3_tar``.

SB3 looks policies up by alias in each algorithm's ``policy_aliases``; sb3-tar's sparse policies
subclass SB3's and sb3-contrib's, so they can only be defined once both are imported. An import
hook (a ``sys.meta_path`` finder) waits for ``stable_baselines3`` or ``sb3_contrib`` to finish
importing and then imports ``sb3_tar.sb3``, which registers the aliases. So ``import sb3_tar``
alone imports no SB3, and ``SAC("TarMlpPolicy", ...)`` works in either import order. This reads
importlib's internals (``__spec__._initializing``): ``tests/test_package_imports.py`` checks it in
every import order and pins the Python and SB3 versions it was checked against.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import Any

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


def install() -> None:
    """Register now if SB3 is imported, else once it is (``import sb3_tar`` calls this; calling it again is harmless)."""
    if "stable_baselines3" in sys.modules:
        _register_if_ready()
    elif not any(isinstance(finder, _RegisterWhenSB3Loads) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterWhenSB3Loads())
