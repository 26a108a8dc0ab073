"""MuJoCo's user warnings, routed away from the working directory while an environment is built or run.

MuJoCo writes its warnings to ``MUJOCO_LOG.TXT`` in the current directory and to the terminal; a
run records them in its own log instead, and the action-space check drops them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def mujoco_warnings_to(handler: Callable[[str], None]) -> Iterator[None]:
    """Within the block, MuJoCo's warnings go to ``handler`` (nothing happens without MuJoCo installed)."""
    try:
        import mujoco
    except ImportError:
        mujoco = None
    if mujoco is None:
        yield
        return
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)
