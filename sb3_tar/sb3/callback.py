"""Callbacks: ``TARCallback`` sparsifies a plain ``MlpPolicy`` model at training start;
``SparsityLogCallback`` logs and checks the masks of any sb3-tar model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from sb3_tar.engine.errors import UserError
from sb3_tar.engine.validation import check_seed, plain_number
from sb3_tar.sb3.agent import (
    STATE_ATTRIBUTE,
    SparseAgent,
    draw_masks,
    mask_seed_for,
    sparse_agent,
)
from sb3_tar.sb3.logging import check_masks, record_sparsity, record_topology
from sb3_tar.sb3.policies import TarPolicy
from sb3_tar.sb3.stored_masks import StoredMasks, attach_stored_masks
from sb3_tar.settings import SparsitySettings


class SparsityLogCallback(BaseCallback):
    """Log each network's sparsity and topology at training start, and check the masks at each log interval.

    Works with any model trained with ``TarMlpPolicy``, ``TarMultiInputPolicy`` or ``TARCallback``
    (which includes it). At training start it records the keys listed in ``sb3_tar.sb3.logging`` and
    writes them at once; then it checks that every masked weight of every network and target is
    still 0.0 and records the measured sparsity: off-policy, right before each of SB3's log dumps
    (every ``log_interval`` episodes); on-policy (PPO, A2C), at the end of every rollout, which
    comes right after the previous rollout's gradient steps and before SB3's log dump (every
    ``log_interval`` iterations).

    :raises MaskDriftError: when a masked weight is found non-zero.
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.agent: SparseAgent | None = None

    def _sparse_agent(self) -> SparseAgent:
        return sparse_agent(self.model)

    def _on_training_start(self) -> None:
        self.agent = self._sparse_agent()
        record_topology(self.logger, self.agent)
        self.logger.dump(step=self.num_timesteps)

    def _log_dump_follows(self) -> bool:
        """Whether SB3 dumps its logs after this step (``log_interval`` episodes completed)."""
        log_interval, dones = self.locals.get("log_interval"), self.locals.get("dones")
        if log_interval is None or dones is None:
            return False
        episode = self.model._episode_num
        return any((episode + finished) % log_interval == 0 for finished in range(1, int(np.sum(dones)) + 1))

    def _on_step(self) -> bool:
        if not isinstance(self.model, OnPolicyAlgorithm) and self._log_dump_follows():
            record_sparsity(self.logger, check_masks(self.agent))
        return True

    def _on_rollout_end(self) -> None:
        if isinstance(self.model, OnPolicyAlgorithm):
            record_sparsity(self.logger, check_masks(self.agent))

    def _on_training_end(self) -> None:
        check_masks(self.agent)


class TARCallback(SparsityLogCallback):
    """Sparsify a model with a plain ``MlpPolicy`` (or ``MultiInputPolicy``) at training start: static pruning, then one revival.

    The same settings, defaults and errors as ``TarMlpPolicy``'s ``policy_kwargs``, for the same
    algorithms and the same networks (``sb3_tar.sb3.networks``). At the first training start, each
    network (actor and each Q-network; PPO/A2C's actor and critic; DQN's Q-network) is pruned and
    revived on its own, the targets
    take their online network's mask, and the optimizers get the hooks that keep the masks through
    training. The masks are stored on the model (``model.sb3_tar_state``) and saved with it; resuming
    a loaded model with this callback (same settings) keeps its masks instead of pruning again,
    after checking them against the model's weights as ``TarMlpPolicy`` checks a loaded state dict.
    Without the callback, a loaded model trains dense: resume with it, or use ``TarMlpPolicy``.

    :param sparsity: final fraction of zero weights in each network, in [0, 1).
    :param actor_sparsity: the actor's sparsity (overrides ``sparsity``).
    :param critic_sparsity: each Q-network's sparsity (overrides ``sparsity``).
    :param criterion: ``magnitude`` (default), ``random``, ``erk``, ``synflow`` or a registered name.
    :param recovery_ratio: revival budget as a fraction of each network's weights (default 0.01: TAR;
        0 is static pruning).
    :param allocation: ``topology`` (TAR, default) or ``uniform`` (Uniform Revival).
    :param budget: ``reserve`` (default) or ``extra``.
    :param allow_empty_layers: train even if a layer keeps no weight after revival (default: refuse).
    :param seed: the masks' seed; default: the model's seed (as ``TarMlpPolicy``, so both draw the
        same masks for the same seed and initial weights), or a fresh one for an unseeded model.
    :param verbose: SB3's verbosity.
    :param criterion_options: the criterion's options (``scope``, ``iterations``).
    :raises ValueError: for a bad setting, when the callback is created.
    """

    def __init__(
        self,
        sparsity: float | None = None,
        *,
        actor_sparsity: float | None = None,
        critic_sparsity: float | None = None,
        criterion: str = "magnitude",
        recovery_ratio: float | None = None,
        allocation: str = "topology",
        budget: str = "reserve",
        allow_empty_layers: bool = False,
        seed: int | None = None,
        verbose: int = 0,
        **criterion_options: Any,
    ) -> None:
        super().__init__(verbose)
        self.settings = SparsitySettings(sparsity, actor_sparsity, critic_sparsity, criterion, recovery_ratio,
                                         allocation, budget, criterion_options, allow_empty_layers,
                                         owner="TARCallback", other_arguments=("TARCallback", ("seed", "verbose")))
        seed = plain_number(seed)
        check_seed(seed)
        self.seed = seed

    def _sparse_agent(self) -> SparseAgent:
        policy = self.model.policy
        if isinstance(policy, TarPolicy):
            raise UserError(
                "TARCallback sparsifies a model with a dense MlpPolicy, but this model's TarMlpPolicy is sparse "
                "already; use sb3_tar.SparsityLogCallback() to log it"
            )
        state = getattr(self.model, STATE_ATTRIBUTE, None)
        if state is None:
            seed = self.seed if self.seed is not None else mask_seed_for(self.model.seed)
            agent = draw_masks(policy, self.settings, seed)
            setattr(self.model, STATE_ATTRIBUTE, StoredMasks(agent.state()))
        else:
            stored = SparsitySettings.from_kwargs(dict(state["settings"]), owner="TARCallback")
            if stored != self.settings:
                raise UserError(
                    f"TARCallback: this model was sparsified with {stored.as_kwargs()}, not with "
                    f"{self.settings.as_kwargs()}; resume it with the settings it was trained with"
                )
            return attach_stored_masks(self.model)
        agent.enforce()
        return agent
