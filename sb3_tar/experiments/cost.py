"""FLOPs of acting and of one training step, counting only kept weights.

A linear layer with ``K`` kept weights costs ``2K`` FLOPs per sample forward (a multiply and an
add per weight) and about ``4K`` backward (gradients for inputs and weights); biases and
activations are left out, as in the sparse-training literature (RigL, RLx2). These are the
arithmetic a sparse kernel would do; PyTorch's dense kernels do not skip zeros.
"""

from __future__ import annotations

from collections.abc import Mapping

from sb3_tar.engine.errors import UserError

FORWARD = 2
BACKWARD = 4


def forward_flops(kept_weights: int) -> int:
    return FORWARD * kept_weights


def training_step_flops(algo: str, actor_kept: int, q_kept: list[int], batch_size: int, policy_delay: int = 2) -> float:
    """FLOPs of one gradient step of an actor-critic algorithm on a batch.

    SAC (and TQC): critic update = actor forward on next observations, every target Q forward,
    every online Q forward and backward; actor update = actor forward and backward, every Q forward
    and backward (for the action gradient). TD3/DDPG: critic update = target actor and target Qs
    forward, online Qs forward and backward; actor update every ``policy_delay`` steps through the
    actor and the first Q-network. CrossQ has no target networks (joint forward of both batches is
    counted as two forwards).
    """
    q_total = sum(q_kept)
    fwd_a, fwd_q = FORWARD * actor_kept, FORWARD * q_total
    bwd_a, bwd_q = BACKWARD * actor_kept, BACKWARD * q_total
    if algo in ("sac", "tqc"):
        per_sample = (fwd_a + fwd_q + fwd_q + bwd_q) + (fwd_a + bwd_a + fwd_q + bwd_q)
    elif algo in ("td3", "ddpg"):
        delay = policy_delay if algo == "td3" else 1
        first_q = FORWARD * q_kept[0] + BACKWARD * q_kept[0]
        per_sample = (fwd_a + fwd_q + fwd_q + bwd_q) + (fwd_a + bwd_a + first_q) / delay
    elif algo == "crossq":
        per_sample = (fwd_a + 2 * fwd_q + bwd_q) + (fwd_a + bwd_a + fwd_q + bwd_q)
    else:
        raise UserError(f"algo={algo!r} has no FLOP model; allowed: ['crossq', 'ddpg', 'sac', 'td3', 'tqc']")
    return float(per_sample * batch_size)


def cost_summary(algo: str, kept: Mapping[str, int], batch_size: int,
                 recurrent: Mapping[str, int] | None = None) -> dict[str, float]:
    """FLOPs per action and per gradient step from kept weights per network.

    Off-policy actor-critics (``actor``, ``qf0``, ...): ``training_step_flops``. PPO/A2C (``actor``,
    ``critic``): a gradient step runs both networks forward and backward on its batch (PPO: a
    minibatch; A2C: the whole rollout). RecurrentPPO (``ppo_lstm``) adds its dense recurrent layers,
    ``recurrent`` (``{"actor": weights of the actor's LSTM, "critic": of the critic's LSTM or linear
    layer}``): an LSTM step costs 2 FLOPs per weight forward, like a linear layer. DQN/QR-DQN (one
    Q-network): the target network forward and the Q-network forward and backward on the batch.
    """
    if algo in ("ppo", "a2c", "ppo_lstm"):
        recurrent = recurrent or {}
        actor, critic = kept["actor"] + recurrent.get("actor", 0), kept["critic"] + recurrent.get("critic", 0)
        return {"flops_per_action": float(forward_flops(actor)),
                "flops_per_training_step": float((FORWARD + BACKWARD) * (actor + critic) * batch_size)}
    if algo in ("dqn", "qrdqn"):
        (q_kept,) = kept.values()
        return {"flops_per_action": float(forward_flops(q_kept)),
                "flops_per_training_step": float((2 * FORWARD + BACKWARD) * q_kept * batch_size)}
    if "actor" not in kept:
        raise UserError(f"algo={algo!r} has no FLOP model for networks {sorted(kept)}")
    q_kept = [count for name, count in sorted(kept.items()) if name.startswith("qf")]
    return {
        "flops_per_action": float(forward_flops(kept["actor"])),
        "flops_per_training_step": training_step_flops(algo, kept["actor"], q_kept, batch_size),
    }
