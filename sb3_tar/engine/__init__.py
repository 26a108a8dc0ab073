"""The sparsity engine: pure PyTorch, no SB3. Masks in, masks out.

*How many* weights each layer keeps lives in ``allocation``, *which* ones in ``criteria`` and
``synflow``, and the one-shot revival in ``revival``; ``plan.prune_and_revive`` ties them together.
"""

from sb3_tar.engine import synflow as _register_synflow  # noqa: F401  (registers "synflow")
from sb3_tar.engine.allocation import erk_densities, split_largest_remainder
from sb3_tar.engine.criteria import (
    PruningTarget,
    available_criteria,
    criterion_options,
    get_criterion,
    register_criterion,
)
from sb3_tar.engine.dst import (
    DST_METHODS,
    DSTLayerUpdate,
    DSTUpdate,
    apply_mask_update,
    cosine_drop_fraction,
    dense_gradients,
    dst_update,
    is_dst_update_step,
)
from sb3_tar.engine.errors import UserError
from sb3_tar.engine.layers import PrunableLayer, prunable_layers
from sb3_tar.engine.masking import multiply_masks
from sb3_tar.engine.plan import LayerTopology, RevivalPlan, apply_masks, prune_and_revive
from sb3_tar.engine.report import format_topology_table, plot_topology, topology_report
from sb3_tar.engine.revival import ALLOCATIONS, connectivity_floor, coverage_probability
from sb3_tar.engine.seeding import derive_seed, generator_for
from sb3_tar.engine.settings import BUDGETS, PruningSettings
from sb3_tar.engine.topk import top_k_mask

__all__ = [
    "ALLOCATIONS",
    "BUDGETS",
    "DSTLayerUpdate",
    "DSTUpdate",
    "DST_METHODS",
    "LayerTopology",
    "PrunableLayer",
    "PruningSettings",
    "PruningTarget",
    "RevivalPlan",
    "UserError",
    "apply_mask_update",
    "apply_masks",
    "available_criteria",
    "connectivity_floor",
    "cosine_drop_fraction",
    "coverage_probability",
    "criterion_options",
    "dense_gradients",
    "derive_seed",
    "dst_update",
    "erk_densities",
    "format_topology_table",
    "generator_for",
    "get_criterion",
    "is_dst_update_step",
    "multiply_masks",
    "plot_topology",
    "prunable_layers",
    "prune_and_revive",
    "register_criterion",
    "split_largest_remainder",
    "top_k_mask",
    "topology_report",
]
