"""Export a trained SB3 actor for deployment: kept weights only, runnable with torch alone.

``export_actor(model, path)`` writes the file (``extract``); ``sb3_tar.runtime.load_actor(path)``
runs it without Stable-Baselines3; ``export_onnx`` writes the same actor as ONNX (``onnx_export``);
``sb3-tar export`` is the command line (``cli``). ``extract`` imports SB3, so it loads on first use:
``sb3-tar --help`` reaches ``cli`` without it.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["actor_spec", "export_actor"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("sb3_tar.export.extract"), name)
    raise AttributeError(f"module 'sb3_tar.export' has no attribute {name!r}")
