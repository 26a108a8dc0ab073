"""sb3-tar: sparse Stable-Baselines3 agents with Topology-Aware Revival.

``import sb3_tar`` exposes the sparsity engine; the SB3 integration registers itself on import.
"""

from sb3_tar.engine import *  # noqa: F401,F403
from sb3_tar.engine import __all__ as _engine_all

__version__ = "0.1.0"
__all__ = [*_engine_all, "__version__"]
