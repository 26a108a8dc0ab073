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
from sb3_tar.engine.layers import PrunableLayer
from sb3_tar.engine.topk import top_k_mask, top_k_masks


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
            raise ValueError(f"criterion {name!r} is already registered")
        _CRITERIA[name] = criterion
        if check_options is not None:
            _OPTION_CHECKS[name] = check_options
        return criterion

    return register


def available_criteria() -> list[str]:
    return sorted(_CRITERIA)


def get_criterion(name: str) -> Criterion:
    if not isinstance(name, str) or name not in _CRITERIA:
        raise ValueError(f"criterion={name!r} is not a registered criterion; allowed: {available_criteria()}")
    return _CRITERIA[name]


def criterion_options(name: str) -> dict[str, object]:
    """The options a criterion accepts, with their defaults."""
    parameters = inspect.signature(get_criterion(name)).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_criterion_options(name: str, options: dict[str, object]) -> None:
    allowed = criterion_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"criterion={name!r} got unknown option(s) {unknown}; its options are {sorted(allowed) or 'none'}"
        )
    if name in _OPTION_CHECKS:
        _OPTION_CHECKS[name](**options)


def layer_top_k(scores: list[torch.Tensor], counts: list[int]) -> list[torch.Tensor]:
    """Per-layer exact top-k: layer ``l`` keeps its ``counts[l]`` highest scores."""
    return [top_k_mask(score.flatten(), count).reshape(score.shape) for score, count in zip(scores, counts)]


def global_top_k(scores: list[torch.Tensor], kept: int) -> list[torch.Tensor]:
    """One threshold over all layers: the ``kept`` highest scores of the network survive."""
    return top_k_masks(scores, kept)


def uniform_counts(target: PruningTarget) -> list[int]:
    """Every layer at the network's sparsity, rounded so the network total is exact."""
    return split_largest_remainder(target.kept, target.sizes, target.sizes)


def random_scores(target: PruningTarget) -> list[torch.Tensor]:
    return [
        torch.rand(layer.out_features, layer.in_features, generator=target.generator, dtype=torch.float64)
        for layer in target.layers
    ]


MAGNITUDE_SCOPES = ("global", "layerwise")


def check_magnitude_options(*, scope: str = "global") -> None:
    if not isinstance(scope, str) or scope not in MAGNITUDE_SCOPES:
        raise ValueError(f"scope={scope!r} is not a magnitude scope; allowed: {list(MAGNITUDE_SCOPES)}")


@register_criterion("magnitude", check_magnitude_options)
def magnitude(target: PruningTarget, *, scope: str = "global") -> list[torch.Tensor]:
    """Keep the largest ``|w|``: over the whole network (``scope="global"``) or per layer."""
    check_magnitude_options(scope=scope)
    weights = target.cpu_weights()
    if scope == "global":
        return top_k_masks(weights, target.kept, absolute=True)
    return [top_k_masks([weight], count, absolute=True)[0] for weight, count in zip(weights, uniform_counts(target))]


@register_criterion("random")
def random(target: PruningTarget) -> list[torch.Tensor]:
    """Uniform random mask, every layer at the network's sparsity."""
    return layer_top_k(random_scores(target), uniform_counts(target))


@register_criterion("erk")
def erk(target: PruningTarget) -> list[torch.Tensor]:
    """Random mask within each layer at its Erdős–Rényi-Kernel density."""
    shapes = [(layer.in_features, layer.out_features) for layer in target.layers]
    densities = erk_densities(shapes, target.kept / target.total)
    counts = split_largest_remainder(
        target.kept, [density * size for density, size in zip(densities, target.sizes)], target.sizes
    )
    return layer_top_k(random_scores(target), counts)
