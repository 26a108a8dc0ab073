"""*Which* weights survive static pruning: the criterion registry and the built-in criteria.

A criterion is a function ``criterion(target, **options) -> list[bool tensor]`` that returns one
mask per prunable layer, keeping exactly ``target.kept`` weights in total. Its keyword-only
parameters are its options; the engine checks a user's option names against them, and their values
with the criterion's ``check_options``, before any work.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sb3_tar.engine.allocation import erk_densities, split_largest_remainder
from sb3_tar.engine.errors import UserError
from sb3_tar.engine.layers import PrunableLayer
from sb3_tar.engine.topk import top_k_masks


@dataclass(frozen=True)
class PruningTarget:
    """What a criterion prunes: the network, its layers, how many weights to keep, and randomness."""

    network: nn.Module
    layers: list[PrunableLayer]
    kept: int
    generator: torch.Generator

    @property
    def sizes(self) -> list[int]:
        return [layer.size for layer in self.layers]

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def cpu_weights(self) -> list[torch.Tensor]:
        return [layer.weight.detach().to("cpu", torch.float32) for layer in self.layers]


Criterion = Callable[..., list[torch.Tensor]]
OptionCheck = Callable[..., None]
_CRITERIA: dict[str, Criterion] = {}
_OPTION_CHECKS: dict[str, OptionCheck] = {}


def register_criterion(name: str, check_options: OptionCheck | None = None) -> Callable[[Criterion], Criterion]:
    """Decorator that makes a criterion available by ``name`` to ``prune_and_revive`` and the SB3 glue.

    :param check_options: ``check_options(**options)`` raises ``ValueError`` for a bad option value,
        so that a policy, callback or run with such a value is refused when it is configured, not
        when the masks are drawn.
    """

    def register(criterion: Criterion) -> Criterion:
        if name in _CRITERIA:
            raise UserError(f"criterion {name!r} is already registered")
        _CRITERIA[name] = criterion
        if check_options is not None:
            _OPTION_CHECKS[name] = check_options
        return criterion

    return register


def available_criteria() -> list[str]:
    return sorted(_CRITERIA)


def get_criterion(name: str) -> Criterion:
    if not isinstance(name, str) or name not in _CRITERIA:
        raise UserError(f"criterion={name!r} is not a registered criterion; allowed: {available_criteria()}")
    return _CRITERIA[name]


def criterion_options(name: str) -> dict[str, object]:
    """The options a criterion accepts, with their defaults."""
    parameters = inspect.signature(get_criterion(name)).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def all_criterion_options() -> set[str]:
    """The option names of every registered criterion (``scope``, ``iterations``, a user criterion's own)."""
    return {option for name in _CRITERIA for option in criterion_options(name)}


def check_criterion_options(name: str, options: dict[str, object]) -> None:
    allowed = criterion_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UserError(
            f"criterion={name!r} got unknown option(s) {unknown}; its options are {sorted(allowed) or 'none'}"
        )
    if name in _OPTION_CHECKS:
        try:
            _OPTION_CHECKS[name](**options)
        except UserError:
            raise
        except ValueError as error:  # a user criterion's check judges user input: its refusal is a UserError too
            raise UserError(str(error)) from error


# A criterion is a scorer (which weights rank highest) cut by a distribution (how many each layer keeps),
# as in JaxPruner. The built-in scorers take the distribution as their option ``scope``.
SCOPES = ("global", "layerwise", "erk")


def check_scope(*, scope: object = "global") -> None:
    """A criterion option check (``magnitude``, ``random``): ``scope`` must be one of ``SCOPES``."""
    if not isinstance(scope, str) or scope not in SCOPES:
        raise UserError(f"scope={scope!r} is not a distribution of kept weights over layers; allowed: {list(SCOPES)}")


def layer_counts(target: PruningTarget, scope: str) -> list[int] | None:
    """How many weights each layer keeps under ``scope``; ``None`` for ``global``, where the scores decide.

    ``layerwise``: every layer at the network's sparsity. ``erk``: each layer at its Erdős–Rényi-Kernel
    density. Both rounded so the network keeps exactly ``target.kept``.
    """
    check_scope(scope=scope)
    if scope == "global":
        return None
    if scope == "layerwise":
        shares = [float(size) for size in target.sizes]
    else:
        shapes = [(layer.in_features, layer.out_features) for layer in target.layers]
        densities = erk_densities(shapes, target.kept / target.total)
        shares = [density * size for density, size in zip(densities, target.sizes)]
    return split_largest_remainder(target.kept, shares, target.sizes)


def select(target: PruningTarget, scores: list[torch.Tensor], scope: str, *, absolute: bool = False) -> list[torch.Tensor]:
    """The masks that keep the highest scores (``|scores|`` when ``absolute``), cut by ``scope``."""
    counts = layer_counts(target, scope)
    if counts is None:
        return top_k_masks(scores, target.kept, absolute=absolute)
    return [top_k_masks([score], count, absolute=absolute)[0] for score, count in zip(scores, counts)]


def random_scores(target: PruningTarget) -> list[torch.Tensor]:
    return [
        torch.rand(layer.out_features, layer.in_features, generator=target.generator, dtype=torch.float64)
        for layer in target.layers
    ]


@register_criterion("magnitude", check_scope)
def magnitude(target: PruningTarget, *, scope: str = "global") -> list[torch.Tensor]:
    """Keep the largest ``|w|``: over the whole network (``scope="global"``), per layer at the network's
    sparsity (``"layerwise"``), or per layer at its ERK density (``"erk"``)."""
    return select(target, target.cpu_weights(), scope, absolute=True)


@register_criterion("random", check_scope)
def random(target: PruningTarget, *, scope: str = "layerwise") -> list[torch.Tensor]:
    """Uniform random mask: every layer at the network's sparsity (``scope="layerwise"``), at its ERK density
    (``"erk"``), or one draw over the whole network (``"global"``)."""
    return select(target, random_scores(target), scope)


@register_criterion("erk")
def erk(target: PruningTarget) -> list[torch.Tensor]:
    """Random mask within each layer at its Erdős–Rényi-Kernel density: ``random`` with ``scope="erk"``."""
    return random(target, scope="erk")
