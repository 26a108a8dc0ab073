"""Stable-Baselines3 integration: ``TarMlpPolicy``, ``TARCallback``, ``DSTCallback`` and logging.

One module per job: ``networks`` (which networks of a policy are pruned), ``settings`` (the flat
sparsity settings), ``agent`` (drawing and storing the masks), ``masking`` (the one mechanism that
keeps them through training), ``policies`` (``TarMlpPolicy``, ``TarMultiInputPolicy``, ``TarMlpLstmPolicy``),
``callback`` (``TARCallback``, ``SparsityLogCallback``), ``dst_callback`` (``DSTCallback``: SET and RigL) and
``logging`` (what goes to SB3's logger), ``load_guard`` (loads into a part of a sparse policy are checked),
``stored_masks`` (a ``TARCallback`` model keeps its masks when trained without it) and ``normalisation``
(BatchRenorm safe for constant units). Importing it registers ``"TarMlpPolicy"`` for SAC, TD3, DDPG, TQC,
CrossQ, PPO, A2C, DQN, QR-DQN and MaskablePPO, ``"TarMultiInputPolicy"`` for each of them that has a
``MultiInputPolicy`` (all but CrossQ), and ``"TarMlpLstmPolicy"`` and ``"TarMultiInputLstmPolicy"`` for RecurrentPPO.
"""

from sb3_tar.sb3.agent import MaskMismatchError, SparseAgent, sparse_agent
from sb3_tar.sb3.callback import SparsityLogCallback, TARCallback
from sb3_tar.sb3.dst_callback import DSTCallback
from sb3_tar.sb3.logging import MaskDriftError
from sb3_tar.sb3.masking import WeightMasks, enforce_masks
from sb3_tar.sb3.networks import SparseNetwork, find_networks
from sb3_tar.sb3.policies import (
    TarActorCriticPolicy,
    TarCnnLstmPolicy,
    TarCnnPolicy,
    TarCrossQPolicy,
    TarDQNMultiInputPolicy,
    TarDQNPolicy,
    TarMaskableActorCriticPolicy,
    TarMaskableMultiInputActorCriticPolicy,
    TarMultiInputActorCriticPolicy,
    TarPolicy,
    TarQRDQNMultiInputPolicy,
    TarQRDQNPolicy,
    TarRecurrentActorCriticPolicy,
    TarRecurrentMultiInputActorCriticPolicy,
    TarSACMultiInputPolicy,
    TarSACPolicy,
    TarTD3MultiInputPolicy,
    TarTD3Policy,
    TarTQCMultiInputPolicy,
    TarTQCPolicy,
    register_policies,
)
from sb3_tar.settings import SparsitySettings
from sb3_tar.sb3.stored_masks import install as install_stored_mask_attachment

register_policies()
install_stored_mask_attachment()

__all__ = [
    "DSTCallback",
    "MaskDriftError",
    "MaskMismatchError",
    "SparseAgent",
    "SparseNetwork",
    "SparsityLogCallback",
    "SparsitySettings",
    "TARCallback",
    "TarActorCriticPolicy",
    "TarCnnLstmPolicy",
    "TarCnnPolicy",
    "TarCrossQPolicy",
    "TarDQNMultiInputPolicy",
    "TarDQNPolicy",
    "TarMaskableActorCriticPolicy",
    "TarMaskableMultiInputActorCriticPolicy",
    "TarMultiInputActorCriticPolicy",
    "TarPolicy",
    "TarQRDQNMultiInputPolicy",
    "TarQRDQNPolicy",
    "TarRecurrentActorCriticPolicy",
    "TarRecurrentMultiInputActorCriticPolicy",
    "TarSACMultiInputPolicy",
    "TarSACPolicy",
    "TarTD3MultiInputPolicy",
    "TarTD3Policy",
    "TarTQCMultiInputPolicy",
    "TarTQCPolicy",
    "WeightMasks",
    "enforce_masks",
    "find_networks",
    "register_policies",
    "sparse_agent",
]
