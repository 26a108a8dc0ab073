"""Export a trained SB3 actor for deployment: kept weights only, runnable with torch alone.

``export_actor(model, path)`` writes the file (``extract``); ``sb3_tar.runtime.load_actor(path)``
runs it without Stable-Baselines3; ``export_onnx`` writes the same actor as ONNX (``onnx_export``);
``sb3-tar export`` is the command line (``cli``).
"""

from sb3_tar.export.extract import actor_spec, export_actor

__all__ = ["actor_spec", "export_actor"]
