"""Who is building a policy: read from the call stack, because SB3 never says.

SB3 builds a policy from its spaces, learning-rate schedule and ``policy_kwargs`` only: it never
tells the policy its model's seed, nor that a saved state dict will overwrite it right away (so
drawing masks, seconds for SynFlow at width 1024, can be skipped). Both are read from the call
stack, where SB3's own functions are recognised by their code objects, not by name. This depends
on SB3's internals: ``tests/test_sb3_call_stack.py`` pins the SB3 version it was checked against.
"""

from __future__ import annotations

import sys

from sb3_contrib import MaskablePPO, RecurrentPPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BaseModel

# SB3's own functions, recognised on the call stack by identity (not by name). RecurrentPPO and
# MaskablePPO build their policies in their own ``_setup_model``.
ALGORITHM_SETUPS = (OffPolicyAlgorithm._setup_model.__code__, OnPolicyAlgorithm._setup_model.__code__,
                    RecurrentPPO._setup_model.__code__, MaskablePPO._setup_model.__code__)
LOADERS = (BaseAlgorithm.load.__func__.__code__, BaseModel.load.__func__.__code__)


def who_builds() -> tuple[BaseAlgorithm | None, bool]:
    """The algorithm whose ``_setup_model`` is building the policy (if any), and whether SB3's ``load`` is.

    SB3 builds a policy from its spaces, learning-rate schedule and ``policy_kwargs`` only: it never
    tells the policy its model's seed, nor that a saved state dict will overwrite it right away.
    Both are read from the call stack, where SB3's ``OffPolicyAlgorithm._setup_model`` or
    ``OnPolicyAlgorithm._setup_model`` (or RecurrentPPO's or MaskablePPO's own; its ``self`` is the
    algorithm) and ``BaseAlgorithm.load`` / ``BaseModel.load`` are recognised by their code objects.
    A policy built by hand finds neither.
    """
    algorithm, loading = None, False
    frame = sys._getframe(1)
    try:
        while frame is not None:
            if frame.f_code in ALGORITHM_SETUPS and algorithm is None:
                algorithm = frame.f_locals.get("self")
            elif frame.f_code in LOADERS:
                loading = True
                break
            frame = frame.f_back
    finally:
        del frame
    return algorithm, loading
