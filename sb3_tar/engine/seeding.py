"""Independent, reproducible random streams derived from one seed."""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(seed: int, *stream: int) -> int:
    """A 63-bit seed for the sub-stream ``stream`` of ``seed`` (NumPy's ``SeedSequence`` spawning).

    Distinct streams are statistically independent, so for example two Q-networks of one shape
    seeded from one model seed get different random masks.
    """
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=stream)
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))


def generator_for(seed: int, *stream: int) -> torch.Generator:
    """A private CPU generator: drawing from it leaves torch's global random state untouched."""
    return torch.Generator().manual_seed(derive_seed(seed, *stream))


def seed_from_global_state() -> int:
    """One seed drawn from torch's global generator, for ``seed=None``."""
    return int(torch.randint(0, 2**62, (1,)).item())
