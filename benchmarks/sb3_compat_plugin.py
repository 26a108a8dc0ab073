"""pytest plugin of ``benchmarks.sb3_compat``: every sparse policy built without a sparsity gets ``sparsity=0.8``.

That is all a user switching ``"MlpPolicy"`` for ``"TarMlpPolicy"`` gives; everything else is the
sparse policy's default. Each pytest process appends how many sparse policies it built to the file
``SB3_COMPAT_COUNT_FILE`` names.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import sb3_tar  # noqa: F401  (registers the aliases)
from sb3_tar.sb3.policies import TarPolicy

SPARSITY_NAMES = ("sparsity", "actor_sparsity", "critic_sparsity")
_built = 0
_original_init = TarPolicy.__init__


@functools.wraps(_original_init)
def _init_with_only_a_sparsity(self: TarPolicy, *args: Any, **kwargs: Any) -> None:
    global _built
    if not any(name in kwargs for name in SPARSITY_NAMES):
        kwargs["sparsity"] = 0.8
    _original_init(self, *args, **kwargs)
    _built += 1


TarPolicy.__init__ = _init_with_only_a_sparsity  # type: ignore[method-assign]


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    count_file = os.environ.get("SB3_COMPAT_COUNT_FILE")
    if count_file:
        with open(count_file, "a") as handle:
            handle.write(f"{_built}\n")
