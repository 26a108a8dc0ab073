"""Which kernel runs a linear layer: dense or CSR, by a rule measured on the kernels themselves.

A layer's cost depends on its number of weights ``P``, its density and the batch size. For square
layers of several widths, densities and batch sizes, ``benchmarks/bench_export.py`` timed the two
kernels the deployed actor runs (batch 1: ``torch.addmv``; larger batches: ``torch.addmm`` on the
feature-major activations; the CSR weight with int32 indices) and recorded, per batch size and
layer size, the largest density at which CSR took at most ``MARGIN`` of the dense time, at that
density and every lower one. The rule applies those measurements conservatively:

- a layer uses the entry of the largest measured size not above its own ``P`` (larger layers gain
  more from CSR); a layer smaller than every measured size runs dense;
- a batch size between two measured ones must pass both; above the largest, the largest applies;
- CSR only where the layer's density is at most the recorded density.

Measured on one CPU core (``torch.set_num_threads(1)``); with more threads or on a GPU the balance
shifts, so ``load_actor(..., kernels="dense")`` is always available.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

KERNELS = ("dense", "csr")
MARGIN = 0.8  # CSR must take at most 0.8x the dense time: on a shared machine noise alone moves a ratio by ~10 %


@dataclass(frozen=True)
class KernelRule:
    """Dense or CSR per layer and batch size, from measured break-even densities.

    :param csr_max_density: batch size -> {layer weights ``P`` -> the largest density at which CSR
        was measured faster (0.0: never)}.
    :param source: where the numbers come from.
    """

    csr_max_density: Mapping[int, Mapping[int, float]]
    source: str = ""

    def kernel(self, out_features: int, in_features: int, kept: int, batch: int) -> str:
        """``"csr"`` or ``"dense"`` for one layer at one batch size."""
        weights = out_features * in_features
        density = kept / weights if weights else 1.0
        return "csr" if all(self._csr_wins(row, weights, density) for row in self._rows(batch)) else "dense"

    def possible_kernels(self, out_features: int, in_features: int, kept: int) -> set[str]:
        """The kernels the layer uses at some batch size (a deployed actor keeps only these)."""
        return {self.kernel(out_features, in_features, kept, batch) for batch in self.csr_max_density}

    def _rows(self, batch: int) -> set[int]:
        batches = sorted(self.csr_max_density)
        below = [row for row in batches if row <= batch]
        above = [row for row in batches if row >= batch]
        return {max(below) if below else batches[0], min(above) if above else batches[-1]}

    def _csr_wins(self, row: int, weights: int, density: float) -> bool:
        sizes = [size for size in self.csr_max_density[row] if size <= weights]
        return bool(sizes) and density <= self.csr_max_density[row][max(sizes)]


# Measured by benchmarks/bench_export.py (benchmarks/results/export.json, "kernel_rule"); a test checks they agree.
MEASURED_RULE = KernelRule(
    csr_max_density={
        1: {128 * 128: 0.0, 256 * 256: 0.01, 512 * 512: 0.15, 1024 * 1024: 0.2, 2048 * 2048: 0.3},
        8: {128 * 128: 0.01, 256 * 256: 0.2, 512 * 512: 0.2, 1024 * 1024: 0.2, 2048 * 2048: 0.3},
        64: {128 * 128: 0.15, 256 * 256: 0.2, 512 * 512: 0.15, 1024 * 1024: 0.15, 2048 * 2048: 0.2},
        256: {128 * 128: 0.15, 256 * 256: 0.15, 512 * 512: 0.15, 1024 * 1024: 0.1, 2048 * 2048: 0.15},
    },
    source=f"benchmarks/results/export.json (2026-11-26, one thread, margin {MARGIN})",
)
