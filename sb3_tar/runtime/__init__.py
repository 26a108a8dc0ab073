"""Run an exported sparse actor with torch alone (no Stable-Baselines3, no gymnasium).

One module per job: ``spec`` (what an actor computes, as plain tensors), ``encoding`` (how a
layer's kept weights are stored), ``fileformat`` (the file: a JSON header and raw arrays),
``kernels`` (the measured dense-or-CSR rule) and ``actor`` (``DeployedActor``, ``load_actor``).
The SB3 side, which writes the files, is ``sb3_tar.export``.
"""

from sb3_tar.runtime.actor import DeployedActor, load_actor
from sb3_tar.runtime.fileformat import read_actor, write_actor
from sb3_tar.runtime.kernels import MEASURED_RULE, KernelRule
from sb3_tar.runtime.spec import ActorSpec, Activation, Linear, Normalization

__all__ = [
    "MEASURED_RULE",
    "Activation",
    "ActorSpec",
    "DeployedActor",
    "KernelRule",
    "Linear",
    "Normalization",
    "load_actor",
    "read_actor",
    "write_actor",
]
