"""sb3-tar: sparse Stable-Baselines3 agents with Topology-Aware Revival.

``import sb3_tar`` exposes the sparsity engine and registers the SB3 integration: the
``"TarMlpPolicy"`` alias for SAC, TD3, DDPG, TQC and CrossQ, and ``TARCallback``.
"""

from sb3_tar.engine import *  # noqa: F401,F403
from sb3_tar.engine import __all__ as _engine_all
from sb3_tar.sb3 import (
    DSTCallback,
    MaskDriftError,
    SparseAgent,
    SparsityLogCallback,
    TARCallback,
    TarCrossQPolicy,
    TarSACPolicy,
    TarTD3Policy,
    TarTQCPolicy,
    sparse_agent,
)

__version__ = "0.1.0"
__all__ = [
    *_engine_all,
    "DSTCallback",
    "MaskDriftError",
    "SparseAgent",
    "SparsityLogCallback",
    "TARCallback",
    "TarCrossQPolicy",
    "TarSACPolicy",
    "TarTD3Policy",
    "TarTQCPolicy",
    "__version__",
    "sparse_agent",
]
