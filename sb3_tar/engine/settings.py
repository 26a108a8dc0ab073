"""The settings of one pruning-and-revival run, validated before any work is done."""

from __future__ import annotations

from dataclasses import dataclass, field

from sb3_tar.engine.criteria import check_criterion_options, get_criterion
from sb3_tar.engine.errors import UserError
from sb3_tar.engine.revival import ALLOCATIONS
from sb3_tar.engine.validation import check_number, plain_number

BUDGETS = ("reserve", "extra")


# How a sparse policy's masked layers train (sb3_tar.sb3.kernels): chosen per layer, masked dense
# layers, or kept weights only.
KERNELS = ("auto", "dense", "sparse")
DEFAULT_KERNEL = "auto"


def check_kernel(kernel: object, owner: str) -> str:
    """``kernel`` if it is one of ``KERNELS``.

    :raises ValueError: naming the setting and the allowed values.
    """
    if kernel not in KERNELS:
        raise UserError(f"{owner}: kernel={kernel!r} is not a kernel; allowed: {list(KERNELS)} (dense: masked dense "
                        "layers; sparse: kept weights only; auto: per layer, whichever was measured faster)")
    return str(kernel)


@dataclass(frozen=True)
class PruningSettings:
    """Static pruning plus revival, as ``prune_and_revive`` takes them.

    :param sparsity: fraction of prunable weights that are zero at the end, in [0, 1).
    :param criterion: registered criterion name (``magnitude``, ``random``, ``erk``, ``synflow``, ...).
    :param recovery_ratio: revival budget as a fraction of all prunable weights (0 = static pruning).
    :param allocation: ``topology`` (TAR) or ``uniform`` (Uniform Revival ablation).
    :param budget: ``reserve`` prunes at ``sparsity + recovery_ratio`` then revives, ending at
        ``sparsity``; ``extra`` prunes at ``sparsity`` and revives on top.
    :param criterion_options: options of the criterion, e.g. ``scope`` or ``iterations``.
    """

    sparsity: float
    criterion: str = "magnitude"
    recovery_ratio: float = 0.0
    allocation: str = "topology"
    budget: str = "reserve"
    criterion_options: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # NumPy scalars are taken as the Python numbers they hold, so counts use Python arithmetic.
        for name in ("sparsity", "recovery_ratio"):
            object.__setattr__(self, name, plain_number(getattr(self, name)))
        sparsity = check_number("sparsity", self.sparsity)
        if not 0.0 <= sparsity < 1.0:
            raise UserError(f"sparsity={self.sparsity!r} must be in [0, 1)")
        ratio = check_number("recovery_ratio", self.recovery_ratio)
        if ratio < 0.0:
            raise UserError(f"recovery_ratio={self.recovery_ratio!r} must be >= 0")
        if self.budget not in BUDGETS:
            raise UserError(f"budget={self.budget!r} is not a revival budget mode; allowed: {list(BUDGETS)}")
        if self.budget == "reserve" and sparsity + ratio >= 1.0:
            raise UserError(
                f"recovery_ratio={self.recovery_ratio!r} is too large for sparsity={self.sparsity!r}: with "
                "budget='reserve' static pruning runs at sparsity + recovery_ratio, which must stay below 1"
            )
        if self.budget == "extra" and ratio > sparsity:
            raise UserError(
                f"recovery_ratio={self.recovery_ratio!r} is too large for sparsity={self.sparsity!r}: with "
                "budget='extra' at most the pruned fraction (sparsity) can be revived"
            )
        if self.allocation not in ALLOCATIONS:
            raise UserError(f"allocation={self.allocation!r} is not a revival allocation; allowed: {list(ALLOCATIONS)}")
        get_criterion(self.criterion)
        check_criterion_options(self.criterion, self.criterion_options)

    def kept_counts(self, total: int) -> tuple[int, int]:
        """``(kept by static pruning, revived)`` for a network of ``total`` prunable weights."""
        budget = round(self.recovery_ratio * total)
        if self.budget == "reserve":
            final = round((1.0 - self.sparsity) * total)
            budget = min(budget, final)
            return final - budget, budget
        kept = round((1.0 - self.sparsity) * total)
        return kept, min(budget, total - kept)
