"""A model sparsified by ``TARCallback`` keeps its masks wherever it trains next, callback or not.

``TARCallback`` stores the masks on the model (``model.sb3_tar_state``), which SB3 saves with it,
but nothing in SB3 reads them back: a loaded model trained without the callback would silently
train dense. So sb3-tar wraps ``BaseAlgorithm._setup_learn`` (run by every algorithm's ``learn``,
before the first step): a model that carries stored masks and no sparse policy gets them attached,
after the same checks as ``TARCallback`` makes on resume. The stored state is a ``StoredMasks``, a
dict whose class lives here, so unpickling a saved model imports sb3-tar and installs the wrapper
even in a program that never imported it.
"""

from __future__ import annotations

import functools
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_tar.sb3.agent import STATE_ATTRIBUTE, SparseAgent, agent_from_state, check_agent

# Where DSTCallback (sb3_tar.sb3.dst_callback) keeps its schedule on the model: its masks moved.
DST_STATE_ATTRIBUTE = "sb3_tar_dst_state"


class StoredMasks(dict):
    """``SparseAgent.state()`` as stored on a model: a plain dict whose class makes unpickling import sb3-tar."""


def attach_stored_masks(model: BaseAlgorithm) -> SparseAgent:
    """The agent of the masks stored on ``model``, checked against its weights and attached.

    :raises MaskMismatchError: (a ``ValueError``) if the stored masks and the weights do not belong together.
    """
    policy = model.policy
    agent = agent_from_state(policy, getattr(model, STATE_ATTRIBUTE), policy.device)
    # Dynamic sparse training moves the masks within their layers; without it they must be the ones drawn.
    masks_moved = getattr(model, DST_STATE_ATTRIBUTE, None) is not None
    check_agent(agent, masks_moved=masks_moved, source=f"the masks stored on the model ({STATE_ATTRIBUTE})")
    agent.enforce()
    return agent


def _carries_stored_masks(model: BaseAlgorithm) -> bool:
    from sb3_tar.sb3.policies import TarPolicy  # the policies import this module's neighbours

    return getattr(model, STATE_ATTRIBUTE, None) is not None and not isinstance(model.policy, TarPolicy)


def install() -> None:
    """Wrap ``BaseAlgorithm._setup_learn`` once, so ``learn`` attaches stored masks before the first step."""
    original = BaseAlgorithm._setup_learn
    if getattr(original, "_sb3_tar_attaches_stored_masks", False):
        return

    @functools.wraps(original)
    def setup_learn(self: BaseAlgorithm, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if _carries_stored_masks(self):
            attach_stored_masks(self)
        return result

    setup_learn._sb3_tar_attaches_stored_masks = True  # type: ignore[attr-defined]
    BaseAlgorithm._setup_learn = setup_learn  # type: ignore[method-assign]
