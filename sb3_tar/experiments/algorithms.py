"""Which algorithms and methods sb3-tar trains, by rl-zoo3's names, and the tasks each trains on.

Algorithms: the off-policy actor-critics (SAC, TD3, DDPG, TQC, CrossQ: continuous actions), the
on-policy actor-critics (PPO, A2C and RecurrentPPO, ``ppo_lstm``: continuous or discrete actions) and
the value-based ones (DQN, QR-DQN: discrete actions). RecurrentPPO trains ``MlpLstmPolicy`` (dense)
or ``TarMlpLstmPolicy``: the MLPs after its LSTMs are pruned.

Methods (one vocabulary for train, sweeps and the variant files):

- ``dense``: SB3's ``MlpPolicy``, no pruning;
- ``static``: ``TarMlpPolicy`` with ``recovery_ratio=0`` (the paper's "Original");
- ``tar``: ``TarMlpPolicy`` with Topology-Aware Revival (``recovery_ratio > 0``, topology allocation);
- ``uniform``: the Uniform Revival ablation (``allocation="uniform"``);
- ``set``, ``rigl``: ``MlpPolicy`` with ``sb3_tar.DSTCallback`` (the criterion is the initial mask's).
"""

from __future__ import annotations

import inspect
import warnings
from functools import cache
from typing import Any

from sb3_tar.engine.errors import UserError
from sb3_tar.experiments.simulators import mujoco_warnings_to

METHODS = ("dense", "static", "tar", "uniform", "set", "rigl")
STATIC_METHODS = ("static", "tar", "uniform")
DYNAMIC_METHODS = ("set", "rigl")
OFF_POLICY_ALGORITHMS = ("sac", "td3", "ddpg", "tqc", "crossq")
ON_POLICY_ALGORITHMS = ("ppo", "a2c", "ppo_lstm")
VALUE_BASED_ALGORITHMS = ("dqn", "qrdqn")
ALGORITHMS = (*OFF_POLICY_ALGORITHMS, *ON_POLICY_ALGORITHMS, *VALUE_BASED_ALGORITHMS)
# The action spaces each algorithm trains on (SB3's own requirement, checked when a run is configured).
ACTION_SPACES: dict[str, tuple[str, ...]] = {
    **{algo: ("Box",) for algo in OFF_POLICY_ALGORITHMS},
    **{algo: ("Box", "Discrete", "MultiDiscrete", "MultiBinary") for algo in ON_POLICY_ALGORITHMS},
    **{algo: ("Discrete",) for algo in VALUE_BASED_ALGORITHMS},
}
# The dense policy each algorithm trains (``dense``, ``set``, ``rigl``); the sparse one is its ``Tar`` twin.
DENSE_POLICIES = {"ppo_lstm": "MlpLstmPolicy"}
# Each algorithm's class name where it is not its rl-zoo3 name in capitals.
ALGORITHM_NAMES = {"crossq": "CrossQ", "ppo_lstm": "RecurrentPPO"}

# Hidden widths when neither the run nor its tuned entry sets them: the paper's for the off-policy
# actor-critics, SB3's own defaults (two layers of 64) for PPO, A2C, RecurrentPPO, DQN and QR-DQN. A list
# for the on-policy ones builds separate actor and critic trunks of those widths (``MlpExtractor`` shares none).
DEFAULT_NET_ARCH = [256, 256]
SB3_NET_ARCH = [64, 64]


def algorithm_name(algo: str) -> str:
    """The algorithm's SB3 class name, for people: ``SAC``, ``CrossQ``, ``RecurrentPPO`` (for ``ppo_lstm``)."""
    return ALGORITHM_NAMES.get(algo, algo.upper())


def dense_policy(algo: str) -> str:
    """The SB3 policy alias a dense run of ``algo`` trains: ``MlpPolicy``, RecurrentPPO's ``MlpLstmPolicy``."""
    return DENSE_POLICIES.get(algo, "MlpPolicy")


def default_net_arch(algo: str) -> list[int]:
    """The hidden widths a run of ``algo`` gets when neither it nor its tuned entry sets them."""
    return list(DEFAULT_NET_ARCH if algo in OFF_POLICY_ALGORITHMS else SB3_NET_ARCH)


@cache
def algorithm_parameters(algo: str) -> dict[str, Any]:
    """The algorithm's constructor arguments (what a hyperparameter override may set) and their defaults
    (``inspect.Parameter.empty`` where there is none)."""
    from rl_zoo3.utils import ALGOS

    return {name: parameter.default for name, parameter in inspect.signature(ALGOS[algo].__init__).parameters.items()
            if name not in ("self", "env", "_init_setup_model")}


def check_env(env: object, algo: str) -> None:
    import gymnasium as gym

    if not isinstance(env, str):
        raise UserError(f"env={env!r} must be a Gymnasium environment id (a string)")
    try:
        _spec(env)
    except gym.error.Error as error:
        raise UserError(f"env={env!r} is not a registered Gymnasium environment ({error})") from None
    if not trains_on(algo, env):
        raise UserError(f"algo={algo!r} trains on {' or '.join(ACTION_SPACES[algo])} actions, but env={env!r} has "
                        f"action space {_action_space(env)}; algorithms for it: "
                        f"{[name for name in ALGORITHMS if trains_on(name, env)]}")


def _spec(env: str) -> Any:
    """``env``'s Gymnasium spec, registering rl-zoo3's own tasks (``CartPoleNoVel-v1``, ...) if it is one, as
    the zoo does when it trains.

    :raises gymnasium.error.Error: if ``env`` is registered by neither.
    """
    import gymnasium as gym

    try:
        return gym.spec(env)
    except gym.error.Error:
        import rl_zoo3.import_envs  # noqa: F401

        return gym.spec(env)


def trains_on(algo: str, env: str) -> bool:
    """Whether ``algo`` trains on ``env``'s actions (``True`` where the environment cannot be built here)."""
    import gymnasium as gym

    space = _action_space(env)
    return space is None or isinstance(space, tuple(getattr(gym.spaces, kind) for kind in ACTION_SPACES[algo]))


@cache
def _action_space(env: str) -> Any:
    """``env``'s action space, or ``None`` where it cannot be built here (a simulator not installed: the run
    itself then stops with the simulator's own error, and configs of such runs can still be read)."""
    import gymnasium as gym

    try:
        # The run's log records the model's warnings; this check drops them.
        with mujoco_warnings_to(lambda message: None), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            instance = gym.make(_spec(env), disable_env_checker=True)
    except Exception:  # noqa: BLE001 - any failure to build it leaves the check to the run
        return None
    try:
        return instance.action_space
    finally:
        instance.close()
