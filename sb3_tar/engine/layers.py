"""Which weights of a network the engine may prune: the weight matrix of every ``nn.Linear``.

A layer already compressed (``CompressedLinear``: its mask frozen, its kept weights stored alone)
is listed too, under the same name, so masks, reports and exports address it as before; its
``weight`` is a dense copy to read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sb3_tar.engine.compressed import CompressedLinear
from sb3_tar.engine.errors import UserError

LINEAR_LAYERS = (nn.Linear, CompressedLinear)


@dataclass(frozen=True)
class PrunableLayer:
    """One ``nn.Linear`` weight, addressed by its qualified parameter name (``"0.weight"``)."""

    name: str
    module: nn.Linear | CompressedLinear

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight

    @property
    def in_features(self) -> int:
        return self.module.in_features

    @property
    def out_features(self) -> int:
        return self.module.out_features

    @property
    def size(self) -> int:
        return self.module.in_features * self.module.out_features


def prunable_layers(network: nn.Module) -> list[PrunableLayer]:
    """The ``nn.Linear`` layers of ``network`` in module order; biases are never pruned.

    :raises ValueError: if ``network`` has no ``nn.Linear`` layer.
    """
    layers = [
        PrunableLayer(f"{module_name}.weight" if module_name else "weight", module)
        for module_name, module in network.named_modules()
        if isinstance(module, LINEAR_LAYERS)
    ]
    if not layers:
        raise UserError(
            f"network: a {type(network).__name__} without nn.Linear layers has nothing to prune; "
            "sb3-tar prunes the weight matrices of nn.Linear layers"
        )
    return layers
