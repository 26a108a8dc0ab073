"""rl-zoo3 integration beyond what ``--gym-packages sb3_tar`` already gives.

``--gym-packages sb3_tar.zoo`` imports sb3-tar (which registers ``TarMlpPolicy``) and lets rl-zoo3's
hyperparameter search (``-optimize``) keep each trial's sb3-tar settings: see ``sb3_tar.zoo.optimize``.
"""

from sb3_tar.zoo.optimize import install_optimize_support, search_space, sparse_settings

install_optimize_support()

__all__ = ["install_optimize_support", "search_space", "sparse_settings"]
