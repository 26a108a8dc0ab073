"""``DSTCallback``: SET and RigL, the dynamic sparse training baselines, for any sb3-tar model.

The mask update runs where gradient steps happen, not where SB3 callbacks run: a step pre-hook on
each of this model's optimizers (``Optimizer.register_step_pre_hook``), before the step. Each weight's ``.grad`` is then the *dense* gradient of this
step's loss on this step's batch (the mask enforcement never masks gradients; it re-masks weights
and moments after the step): RigL's regrowth score, at no extra forward or backward pass.

Gradient steps are counted on the critic's optimizer (one critic step per gradient step in SAC,
TD3, DDPG, TQC and CrossQ; DQN and QR-DQN have only the Q-network's). PPO and A2C have one optimizer
for actor and critic: a gradient step is one optimizer step, i.e. one minibatch (PPO takes
``n_epochs * ceil(n_steps * n_envs / batch_size)`` of them per rollout, A2C one), and ``update_interval``
counts those minibatch steps across epochs and rollouts; both networks are updated together,
before the due step. An update is due when the gradient steps completed so far, ``t``, are a
positive multiple of ``update_interval`` below the end step (``is_dst_update_step(t)``), and its
drop fraction is ``cosine_drop_fraction(t)``: JaxPruner's schedule, which counts the optimizer
updates already applied (``PeriodicSchedule`` with ``update_start_step`` in ``[1, update_interval]``).
So the first update comes after ``update_interval`` gradient steps, before step ``update_interval
+ 1`` is applied, on that step's gradient. The actor is updated at its first optimizer step at or
after a critic update (TD3's delayed policy updates included), with the same ``t``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import TrainFrequencyUnit

from sb3_tar.engine import derive_seed, get_criterion
from sb3_tar.engine.dst import (
    DST_METHODS,
    DSTUpdate,
    apply_mask_update,
    cosine_drop_fraction,
    dst_update,
    is_dst_update_step,
)
from sb3_tar.engine.errors import UserError
from sb3_tar.engine.validation import check_integer, check_seed
from sb3_tar.sb3.agent import STATE_ATTRIBUTE, SparseAgent
from sb3_tar.sb3.callback import SparsityLogCallback, TARCallback
from sb3_tar.sb3.kernels import is_compressed
from sb3_tar.sb3.networks import SparseNetwork, find_networks
from sb3_tar.sb3.policies import TarPolicy
from sb3_tar.sb3.stored_masks import DST_STATE_ATTRIBUTE
from sb3_tar.settings import CRITIC

# SET's regrowth draws come from streams apart from the ones the initial masks were drawn from.
SET_STREAM_OFFSET = 1000


def planned_gradient_steps(model: Any, total_timesteps: int) -> int:
    """Gradient steps a ``learn(total_timesteps)`` call will take, from the model's training schedule.

    With ``train_freq`` in episodes the rollout length is unknown; one gradient step per environment
    step is assumed there (pass ``total_gradient_steps`` to the callback to be exact). On-policy
    (PPO, A2C): one rollout of ``n_steps * n_envs`` per ``n_epochs`` passes of minibatches of
    ``batch_size`` (PPO; a last partial minibatch counts) or one step (A2C); PPO's ``target_kl``
    early stop makes it fewer.
    """
    if isinstance(model, OnPolicyAlgorithm):
        rollout = model.n_steps * model.n_envs
        rollouts = math.ceil(total_timesteps / rollout)
        batch_size = getattr(model, "batch_size", None) or rollout
        return max(1, rollouts * getattr(model, "n_epochs", 1) * math.ceil(rollout / batch_size))
    env_steps = max(0, total_timesteps - model.learning_starts)
    train_freq = model.train_freq
    if train_freq.unit == TrainFrequencyUnit.STEP:
        rollout = train_freq.frequency * model.n_envs
        per_rollout = model.gradient_steps if model.gradient_steps >= 0 else rollout
        return max(1, env_steps // rollout * per_rollout)
    return max(1, env_steps)


class DSTCallback(BaseCallback):
    """Dynamic sparse training (SET or RigL) of the actor and every Q-network.

    Initial masks: a ``TarMlpPolicy``'s own masks, or (for a plain ``MlpPolicy``) masks drawn at
    training start with the ``initial`` criterion at ``sparsity`` by a ``TARCallback`` it runs
    (``masks_callback``; a ``SparsityLogCallback`` for a ``TarMlpPolicy``), which also logs and
    checks the masks, as SB3's ``EvalCallback`` runs its child callback. Every ``update_interval``
    gradient steps, each layer drops its ``drop_fraction(t)`` smallest-magnitude active weights and
    regrows as many, at random (SET) or where the dense gradient is largest (RigL). Newly grown
    weights start at 0.0 with zeroed optimizer moments; a weight dropped and regrown in the same
    update keeps its value and moments (RigL's ``reinit_when_same=False``); targets take the new mask
    at once; per-layer sparsity never changes. ``drop_fraction`` decays on a cosine to 0 at
    ``end_fraction`` of the planned gradient steps, after which the mask is frozen. Defaults are
    those of the RigL authors' SAC configuration.

    :param method: ``"set"`` or ``"rigl"``.
    :param sparsity: each network's sparsity (plain ``MlpPolicy`` only; a ``TarMlpPolicy`` brings its own).
    :param actor_sparsity: the actor's sparsity (overrides ``sparsity``).
    :param critic_sparsity: each Q-network's sparsity (overrides ``sparsity``).
    :param initial: criterion of the initial masks (default ``"erk"``).
    :param update_interval: gradient steps between mask updates.
    :param drop_fraction: fraction of active weights replaced at the first update, in [0, 1].
    :param end_fraction: fraction of the planned gradient steps after which the mask is frozen, in (0, 1].
    :param total_gradient_steps: the planned gradient steps; default: derived from ``learn``'s
        ``total_timesteps`` and the model's ``train_freq``/``gradient_steps``/``learning_starts``.
    :param seed: the masks' and SET's seed; default: the model's seed.
    :param verbose: SB3's verbosity.
    :raises ValueError: for a bad setting, when the callback is created.
    """

    def __init__(
        self,
        method: str,
        sparsity: float | None = None,
        *,
        actor_sparsity: float | None = None,
        critic_sparsity: float | None = None,
        initial: str = "erk",
        update_interval: int = 1000,
        drop_fraction: float = 0.1,
        end_fraction: float = 0.8,
        total_gradient_steps: int | None = None,
        seed: int | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if method not in DST_METHODS:
            raise UserError(f"method={method!r} is not a dynamic sparse training method; allowed: {list(DST_METHODS)}")
        get_criterion(initial)
        update_interval = check_integer("update_interval", update_interval)
        if total_gradient_steps is not None:
            total_gradient_steps = check_integer("total_gradient_steps", total_gradient_steps)
        if isinstance(drop_fraction, bool) or not isinstance(drop_fraction, (int, float)) or not 0 <= drop_fraction <= 1:
            raise UserError(f"drop_fraction={drop_fraction!r} must be a number in [0, 1]")
        if isinstance(end_fraction, bool) or not isinstance(end_fraction, (int, float)) or not 0 < end_fraction <= 1:
            raise UserError(f"end_fraction={end_fraction!r} must be a number in (0, 1]")
        self.uses_policy_masks = sparsity is None and actor_sparsity is None and critic_sparsity is None
        self.masks_callback: SparsityLogCallback
        if self.uses_policy_masks:  # a TarMlpPolicy's masks: nothing to draw, so no settings to check
            check_seed(seed)
            self.masks_callback = SparsityLogCallback(verbose)
        else:
            self.masks_callback = TARCallback(sparsity, actor_sparsity=actor_sparsity, critic_sparsity=critic_sparsity,
                                              criterion=initial, recovery_ratio=0.0, seed=seed, verbose=verbose)
        self.seed = seed
        self.method = method
        self.update_interval = update_interval
        self.drop_fraction = float(drop_fraction)
        self.end_fraction = float(end_fraction)
        self.total_gradient_steps = total_gradient_steps
        self.gradient_steps = 0
        self.end_step = 1
        self.history: list[dict[str, Any]] = []
        self.agent: SparseAgent | None = None
        self._actor_update_step: int | None = None  # a critic update's step, until the actor's update
        self._hooks: list[Any] = []
        self._generators: dict[str, torch.Generator] = {}

    def _init_callback(self) -> None:
        self.masks_callback.init_callback(self.model)

    def update_child_locals(self, locals_: dict[str, Any]) -> None:
        self.masks_callback.update_locals(locals_)

    def _check_policy(self) -> None:
        """The masks come from the policy or from this callback's settings, never both or neither."""
        if isinstance(self.model.policy, TarPolicy) and not self.uses_policy_masks:
            raise UserError(
                "DSTCallback: this model's TarMlpPolicy already sets the sparsity (policy_kwargs); "
                "leave sparsity, actor_sparsity and critic_sparsity out of the callback"
            )
        if isinstance(self.model.policy, TarPolicy) and is_compressed(find_networks(self.model.policy)):
            raise UserError(
                f"DSTCallback: {self.method.upper()} moves masks, but this TarMlpPolicy trains compressed layers whose "
                f"masks are frozen (kernel={self.model.policy.kernel!r}); use policy_kwargs kernel='dense'"
            )
        if not isinstance(self.model.policy, TarPolicy) and self.uses_policy_masks:
            raise UserError(
                "DSTCallback needs sparsity=<fraction in [0, 1)> (or actor_sparsity and critic_sparsity) "
                "for a model with a plain MlpPolicy"
            )

    def _on_training_start(self) -> None:
        self._remove_hooks()  # a learn() that raised never reached training end: its hooks are still there
        self._check_policy()
        self.masks_callback.on_training_start(self.locals, self.globals)
        self.agent = self.masks_callback.agent
        seed = self.agent.seed if self.seed is None else self.seed
        self._generators = {
            network.name: torch.Generator().manual_seed(derive_seed(seed, SET_STREAM_OFFSET + network.index))
            for network in self.agent.networks
        }
        saved = getattr(self.model, DST_STATE_ATTRIBUTE, None)
        if saved is not None:  # resuming: keep counting where the saved model stopped
            self.gradient_steps = int(saved["gradient_steps"])
            for name, state in saved["generators"].items():
                self._generators[name].set_state(state)
        # Kept on the model, so save() then load() and learn() resume the schedule and SET's draws.
        self._progress = {"gradient_steps": self.gradient_steps,
                          "generators": {name: g.get_state() for name, g in self._generators.items()}}
        setattr(self.model, DST_STATE_ATTRIBUTE, self._progress)
        planned = self.total_gradient_steps or planned_gradient_steps(self.model, self.locals["total_timesteps"])
        self.end_step = max(1, math.floor(self.end_fraction * planned))
        critics = [network for network in self.agent.networks if network.role == CRITIC]
        self._critic_optimizer = critics[0].optimizer
        self._actor = next((network for network in self.agent.networks if network.role != CRITIC), None)
        self._critics = critics
        optimizers = {id(network.optimizer): network.optimizer for network in self.agent.networks}
        self._hooks = [optimizer.register_step_pre_hook(self._before_optimizer_step) for optimizer in optimizers.values()]

    def _on_step(self) -> bool:
        return self.masks_callback.on_step()

    def _on_rollout_start(self) -> None:
        self.masks_callback.on_rollout_start()

    def _on_rollout_end(self) -> None:
        self.masks_callback.on_rollout_end()

    def _on_training_end(self) -> None:
        self._remove_hooks()
        self.masks_callback.on_training_end()

    def _remove_hooks(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _before_optimizer_step(self, optimizer: torch.optim.Optimizer, *_: Any) -> None:
        if optimizer is self._critic_optimizer:
            completed = self.gradient_steps  # steps already applied; this one is about to be
            if is_dst_update_step(completed, update_interval=self.update_interval, end_step=self.end_step):
                self._update(self._critics, optimizer, completed)
                self._actor_update_step = completed
            self.gradient_steps = completed + 1
            self._progress["gradient_steps"] = self.gradient_steps
        if self._actor is not None and optimizer is self._actor.optimizer and self._actor_update_step is not None:
            step, self._actor_update_step = self._actor_update_step, None
            self._update([self._actor], optimizer, step)

    def _update(self, networks: list[SparseNetwork], optimizer: torch.optim.Optimizer, step: int) -> None:
        """One SET/RigL update of ``networks`` after ``step`` completed gradient steps."""
        fraction = cosine_drop_fraction(step, initial=self.drop_fraction, end_step=self.end_step)
        for network in networks:
            weights = self.agent.weights(network)
            masks = {name: self.agent.masks[name] for name in weights}
            gradients = None
            if self.method == "rigl":
                gradients = {name: weight.grad if weight.grad is not None else torch.zeros_like(weight)
                             for name, weight in weights.items()}
            update = dst_update(weights, masks, method=self.method, drop_fraction=fraction,
                                generator=self._generators[network.name], dense_gradients=gradients)
            self._apply_update(network, update, optimizer, step)

    def _apply_update(self, network: SparseNetwork, update: DSTUpdate, optimizer: torch.optim.Optimizer,
                      step: int) -> None:
        """Push one network's update into its weights, moments, targets, mask buffers and the log."""
        weights = self.agent.weights(network)
        apply_mask_update(weights, update, [optimizer], target_weights=self.agent.target_weights(network) or None)
        for name, mask in update.masks.items():
            self.agent.masks.set(name, mask)
        state = getattr(self.model, STATE_ATTRIBUTE, None)
        if state is not None:  # a plain MlpPolicy keeps its masks on the model: save the new ones
            state["masks"].update({name: mask.cpu() for name, mask in update.masks.items()})
        record = {"gradient_step": step, "network": network.name, "drop_fraction": update.drop_fraction,
                  "dropped": update.dropped, "regrown": update.regrown, "churn": update.churn,
                  "layer_sparsity": {layer.name: layer.sparsity for layer in update.layers}}
        self.history.append(record)
        self._progress["generators"][network.name] = self._generators[network.name].get_state()
        key = f"dst/{network.name}"
        self.logger.record(f"{key}/dropped", update.dropped)
        self.logger.record(f"{key}/regrown", update.regrown)
        self.logger.record(f"{key}/churn", update.churn)
        self.logger.record(f"{key}/drop_fraction", update.drop_fraction)
        for layer in update.layers:
            layer_name = layer.name.removeprefix(network.prefix).removesuffix(".weight")
            self.logger.record(f"{key}/sparsity/{layer_name}", layer.sparsity, exclude="stdout")
