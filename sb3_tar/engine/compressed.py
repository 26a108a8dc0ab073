"""A linear layer that stores and trains only the kept weights of a frozen mask.

A static or TAR mask never changes after revival, so its index structure is built once: the kept
weights are one parameter ``values`` (row-major order: the CSR order of the mask), and three
products run on kept weights only, each with torch's native CPU kernels (measured in
``benchmarks/results/train_kernels.md``):

- forward ``y^T = W x^T``: ``torch.sparse.mm(W_csr, x^T, reduce="sum")``, vectorised over the batch;
- input gradient ``dx^T = W^T dy^T``: the same kernel on a CSR of ``W^T`` whose indices and the
  permutation from ``values`` are built once, on the first backward (``values[perm]`` each step);
- weight gradient ``dvalues = (dy^T x)`` at the kept positions only: ``torch.sparse.sampled_addmm``.

Indices are int32 (what the kernels prefer). The output is returned as the transpose of a
feature-major result; elementwise ops keep that layout, so the next compressed layer reads its
input without a copy.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from sb3_tar.engine.errors import UserError

# torch announces once that CSR support is beta; sb3-tar's use of it is tested (tests/test_engine_compressed.py).
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state", category=UserWarning)


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A CSR view of ``values`` on fixed indices, built each step: the indices were checked when the layer was made."""
    return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class _CompressedMatmul(torch.autograd.Function):
    """``x @ W^T`` for a CSR ``W`` given by fixed indices and trainable ``values``."""

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, values: torch.Tensor, layer: CompressedLinear) -> torch.Tensor:
        inputs_t = inputs.T.contiguous()  # free when the input is already a feature-major .T view
        weight = _csr(layer.crow, layer.col, values, layer.shape)
        output_t = torch.sparse.mm(weight, inputs_t, reduce="sum")
        ctx.save_for_backward(inputs_t, values)
        ctx.layer = layer
        return output_t.T

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        inputs_t, values = ctx.saved_tensors
        layer: CompressedLinear = ctx.layer
        grad_t = grad_output.T.contiguous()
        grad_inputs = grad_values = None
        if ctx.needs_input_grad[0]:
            crow_t, col_t, perm = layer.transposed_index()
            transposed = _csr(crow_t, col_t, torch.index_select(values, 0, perm), (layer.in_features, layer.out_features))
            grad_inputs = torch.sparse.mm(transposed, grad_t, reduce="sum").T
        if ctx.needs_input_grad[1]:
            # Zeros, not empty: with beta=0 sampled_addmm still adds 0 * the old values (nan stays nan).
            sampled = _csr(layer.crow, layer.col, torch.zeros_like(values), layer.shape)
            torch.sparse.sampled_addmm(sampled, grad_t, inputs_t.T, beta=0.0, out=sampled)
            grad_values = sampled.values()
        return grad_inputs, grad_values, None


GATHER_BLOCK = 1 << 22  # weights gathered at a time when a layer is compressed


class CompressedLinear(nn.Module):
    """``nn.Linear`` whose weight is ``values`` at the kept positions of a fixed mask and 0 elsewhere.

    The state dict holds ``values`` (and ``bias``) only: the index buffers are rebuilt from the
    mask, which a sparse policy saves beside its weights.

    :param weight: the dense weight, ``(out_features, in_features)``; only its kept entries are used.
    :param mask: bool, the weight's shape; ``True`` = kept. It never changes.
    :param bias: the bias, or ``None``; an ``nn.Parameter`` is kept as it is (an optimizer that owns
        it goes on owning it), a plain tensor is copied into a new one.
    :param indices_of: a layer of the same mask whose index tensors this one shares (a target
        network's copy of an online layer) instead of holding its own.
    """

    def __init__(self, weight: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None,
                 indices_of: CompressedLinear | None = None) -> None:
        super().__init__()
        if mask.shape != weight.shape or weight.dim() != 2:
            raise UserError(f"mask {tuple(mask.shape)} and weight {tuple(weight.shape)} must be matrices of one shape")
        self.out_features, self.in_features = weight.shape
        self.bias = bias if isinstance(bias, nn.Parameter) or bias is None else nn.Parameter(bias.detach().clone())
        weight = weight.detach()
        kept = int(mask.count_nonzero())
        if indices_of is not None:  # a target network's copy: the same mask, so the same index tensors
            if indices_of.shape != self.shape or indices_of.kept != kept:
                raise UserError(f"indices_of: a layer of shape {indices_of.shape} keeping {indices_of.kept} weights "
                                f"cannot lend its indices to one of shape {self.shape} keeping {kept}")
            crow, col = indices_of.crow, indices_of.col
        else:
            crow = torch.zeros(self.out_features + 1, dtype=torch.int32, device=mask.device)
            col = torch.empty(kept, dtype=torch.int32, device=mask.device)
        self.register_buffer("crow", crow, persistent=False)
        self.register_buffer("col", col, persistent=False)
        # W^T's index (built by transposed_index on the first backward that needs it: a target network's copy
        # and a model loaded only to act never do).
        for name in ("perm", "crow_t", "col_t"):
            self.register_buffer(name, None, persistent=False)
        # The index and the kept weights in CSR order, a block of rows at a time: the temporaries stay small,
        # where one flat index over the whole layer would be a fresh allocation twice the size of the values.
        values = weight.new_empty(kept)
        rows_per_block = max(1, GATHER_BLOCK // max(1, self.in_features))
        begin = 0
        for first in range(0, self.out_features, rows_per_block):
            last = min(self.out_features, first + rows_per_block)
            if indices_of is None:
                positions = mask[first:last].reshape(-1).nonzero().squeeze(1)  # ascending: row-major, the CSR order
                end = begin + positions.numel()
                col[begin:end] = positions.remainder(self.in_features)
                row_counts = torch.bincount(positions.div(self.in_features, rounding_mode="floor"),
                                            minlength=last - first)
                crow[first + 1:last + 1] = row_counts.cumsum(0).add_(begin)
            else:
                row_counts = crow[first + 1:last + 1] - crow[first:last]
                end = begin + int(row_counts.sum())
                row_starts = torch.arange(0, (last - first) * self.in_features, self.in_features, device=col.device)
                positions = torch.repeat_interleave(row_starts, row_counts).add_(col[begin:end])
            torch.index_select(weight[first:last].reshape(-1), 0, positions, out=values[begin:end])
            begin = end
        self.values = nn.Parameter(values)

    def transposed_index(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """W^T's CSR ``(crow_t, col_t, perm)``: entries sorted by column, then row, and ``values[perm]`` in that order.

        Built once, from the row-major index by a stable sort of the columns.
        """
        if self.perm is None:
            rows = torch.repeat_interleave(torch.arange(self.out_features, device=self.col.device), self.crow.diff())
            perm = torch.sort(self.col, stable=True).indices
            counts_t = torch.bincount(self.col, minlength=self.in_features)
            self.perm = perm.to(torch.int32)
            self.crow_t = torch.cat([counts_t.new_zeros(1), counts_t.cumsum(0)]).to(torch.int32)
            self.col_t = rows.index_select(0, perm).to(torch.int32)
        return self.crow_t, self.col_t, self.perm

    @property
    def shape(self) -> tuple[int, int]:
        return self.out_features, self.in_features

    @property
    def kept(self) -> int:
        return self.values.numel()

    def dense_weight(self) -> torch.Tensor:
        """The weight as a dense matrix (0.0 where the mask prunes)."""
        return _csr(self.crow, self.col, self.values.detach(), self.shape).to_dense()

    @property
    def weight(self) -> torch.Tensor:
        """``dense_weight()``, for code that reads an ``nn.Linear``'s weight; a copy: writing to it changes nothing."""
        return self.dense_weight()

    def mask(self) -> torch.Tensor:
        """The fixed mask, as a dense bool matrix."""
        ones = torch.ones(self.kept, dtype=torch.float32, device=self.values.device)
        return _csr(self.crow, self.col, ones, self.shape).to_dense().to(torch.bool)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.values.device.type != "cpu":
            raise RuntimeError(f"a compressed layer (kernel='sparse') runs on the CPU only (torch's CSR kernels with "
                               f"reduce), but it was moved to {self.values.device}: load the model onto that device "
                               "instead (Algo.load(path, device=...)); kernel='auto' then trains it dense")
        flat = inputs.reshape(-1, self.in_features)
        output = _CompressedMatmul.apply(flat, self.values, self)
        if self.bias is not None:
            output = output + self.bias
        return output.reshape(*inputs.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, kept={self.kept}, "
                f"bias={self.bias is not None}")


def values_of(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The kept entries of a dense ``weight`` (or of a tensor of its shape, such as an Adam moment), in ``values`` order."""
    return weight[mask.to(device=weight.device, dtype=torch.bool)]


def dense_of(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The dense matrix of ``mask``'s shape holding ``values`` at the kept positions and 0.0 elsewhere."""
    mask = mask.to(device=values.device, dtype=torch.bool)
    dense = values.new_zeros(mask.shape)
    dense[mask] = values
    return dense


def compress_linear_layers(network: nn.Module, masks: dict[str, torch.Tensor],
                           indices_of: dict[str, CompressedLinear] | None = None) -> list[str]:
    """Replace each ``nn.Linear`` of ``network`` whose weight has a mask by a ``CompressedLinear`` of it, in place.

    :param network: the module whose layers are replaced (its optimizer, if any, must be rebuilt:
        the replaced layers' parameters are new ones).
    :param masks: weight name in ``network`` (``"0.weight"``) -> bool mask; ``True`` = kept.
    :param indices_of: weight name -> a compressed layer of the same mask whose indices to share.
    :returns: the names of the replaced layers' weights.
    :raises ValueError: for a mask whose name is not an ``nn.Linear`` weight of ``network``.
    """
    replaced = []
    for name, mask in masks.items():
        module_name = name.removesuffix(".weight")
        try:
            layer = network.get_submodule(module_name) if name.endswith(".weight") else None
        except AttributeError:
            layer = None
        if not isinstance(layer, nn.Linear):
            raise UserError(f"mask {name!r} names no nn.Linear weight of {type(network).__name__}")
        compressed = CompressedLinear(layer.weight, mask.to(layer.weight.device), layer.bias,
                                      (indices_of or {}).get(name))
        parent_name, _, child = module_name.rpartition(".")
        network.get_submodule(parent_name).register_module(child, compressed)
        replaced.append(name)
    return replaced
