"""Training cost of a frozen sparse mask: the masked dense kernel against ``CompressedLinear``.

Run (from the repository root): python -m benchmarks.bench_train_kernels [--widths 256 1024 2048]
    [--sparsities 0.8 0.9 0.95 0.98] [--rounds 9]
  or, for the per-layer grid ``kernel="auto"``'s rule comes from:
    python -m benchmarks.bench_train_kernels --layers [--rounds 5]

Part 1: one Humanoid-sized critic MLP, 393 -> W -> W -> 1 with ReLU, batch
256, one torch thread. Every weight matrix keeps a random ``1 - sparsity`` of its entries. One
"step" is what an SB3 gradient step does to a network: forward, backward (input gradient
included, as SAC's actor loss needs it through the critic) and an Adam step with the mask kept:

- ``dense``: ``nn.Linear`` layers with the mask multiplied into the weights and Adam's moments
  after the step (what sb3-tar's step hook does today);
- ``compressed``: ``CompressedLinear`` layers, Adam over the kept values only (nothing to mask).

Both run in alternating rounds so machine noise hits them alike; the figures are medians of the
per-round mean step time and the ratio of the medians. ``--layers`` times single layers the same way
over a grid of shapes and densities (``results/train_kernel_layers.md``), each with what
``kernel="auto"`` chooses for it. Part 2, whole SAC and TD3 gradient steps with
compressed layers, is ``benchmarks/bench_train_steps.py`` (``results/train_steps.md``); the rule
``kernel="auto"`` follows is in ``sb3_tar/sb3/kernels.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.environment import write_record
from sb3_tar.engine.compressed import CompressedLinear
from sb3_tar.sb3.kernels import AUTO_MIN_SIDE, AUTO_RULE, choose_kernel

BATCH = 256
INPUT_WIDTH = 393  # Humanoid-v4: 376 observations + 17 actions
STEPS_PER_ROUND = 10
# (rows, columns) of the layers a SAC/TD3 network on Humanoid has at widths 256-2048, and small heads.
LAYER_SHAPES = ((256, 393), (256, 256), (1024, 393), (1024, 1024), (2048, 393), (2048, 2048), (64, 1024),
                (17, 1024), (1, 1024), (17, 256))
LAYER_DENSITIES = (0.05, 0.1, 0.15, 0.2, 0.3)
LAYER_ROUND_SECONDS = 0.2  # steps per round: about this much dense time


def masked_mlp(width: int, sparsity: float, seed: int) -> tuple[nn.Sequential, list[torch.Tensor]]:
    torch.manual_seed(seed)
    network = nn.Sequential(nn.Linear(INPUT_WIDTH, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                            nn.Linear(width, 1))
    masks = []
    for layer in network:
        if isinstance(layer, nn.Linear):
            mask = torch.rand(layer.weight.shape) >= sparsity
            with torch.no_grad():
                layer.weight.mul_(mask)
            masks.append(mask)
    return network, masks


def compressed_copy(network: nn.Sequential, masks: list[torch.Tensor]) -> nn.Sequential:
    layers, masks_left = [], iter(masks)
    for layer in network:
        layers.append(CompressedLinear(layer.weight, next(masks_left), layer.bias) if isinstance(layer, nn.Linear)
                      else layer)
    return nn.Sequential(*layers)


def stepper(network: nn.Sequential, masks: list[torch.Tensor] | None):
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-4)
    first = next(layer for layer in network if isinstance(layer, (nn.Linear, CompressedLinear)))
    inputs = torch.randn(BATCH, first.in_features, requires_grad=True)
    targets = torch.randn(BATCH, network[-1].out_features)
    weights = [layer.weight for layer in network if isinstance(layer, nn.Linear)]
    multipliers = [mask.float() for mask in masks] if masks is not None else []

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = (network(inputs) - targets).square().mean()
        loss.backward()
        optimizer.step()
        if multipliers:  # sb3-tar's step hook: weights and both Adam moments
            with torch.no_grad():
                tensors = [t for w in weights for t in (w, optimizer.state[w]["exp_avg"], optimizer.state[w]["exp_avg_sq"])]
                torch._foreach_mul_(tensors, [m for m in multipliers for _ in range(3)])

    return step


def tensor_bytes(network: nn.Module, optimizer_moments: int = 2) -> int:
    """Parameters and buffers, plus Adam's moments for every parameter."""
    parameters = sum(p.numel() * p.element_size() for p in network.parameters())
    buffers = sum(b.numel() * b.element_size() for b in network.buffers())
    return parameters * (1 + optimizer_moments) + buffers


def alternated(steps: dict, rounds: int, steps_per_round: int) -> dict[str, float]:
    """Median over ``rounds`` of each step's mean CPU time (ms), the order reversed every other round."""
    for step in steps.values():  # warm-up: Adam's state, allocator
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(rounds):
        order = list(steps) if round_index % 2 == 0 else list(reversed(list(steps)))
        for name in order:
            start = time.process_time()
            for _ in range(steps_per_round):
                steps[name]()
            times[name].append((time.process_time() - start) / steps_per_round * 1000.0)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(width: int, sparsity: float, rounds: int) -> dict[str, float]:
    network, masks = masked_mlp(width, sparsity, seed=0)
    compressed = compressed_copy(network, masks)
    medians = alternated({"dense": stepper(network, masks), "compressed": stepper(compressed, None)}, rounds,
                         STEPS_PER_ROUND)
    mask_bytes = sum(mask.numel() for mask in masks) * (1 + 1 + 4)  # a bool mask, the static one, a float copy
    return {"width": width, "sparsity": sparsity, "dense_ms": medians["dense"],
            "compressed_ms": medians["compressed"], "ratio": medians["compressed"] / medians["dense"],
            "dense_bytes": tensor_bytes(network) + mask_bytes, "compressed_bytes": tensor_bytes(compressed)}


def measure_layer(rows: int, columns: int, density: float, rounds: int) -> dict[str, object]:
    """One ``rows x columns`` layer keeping a random ``density`` of its weights: masked dense against compressed."""
    torch.manual_seed(0)
    dense = nn.Linear(columns, rows)
    mask = torch.zeros(rows * columns, dtype=torch.bool)  # exactly int(density * size) kept, as auto reads it
    mask[torch.randperm(rows * columns)[:int(density * rows * columns)]] = True
    mask = mask.view(rows, columns)
    with torch.no_grad():
        dense.weight.mul_(mask)
    compressed = nn.Sequential(CompressedLinear(dense.weight, mask, dense.bias.detach().clone()))
    steps = {"dense": stepper(nn.Sequential(dense), [mask]), "compressed": stepper(compressed, None)}
    start = time.process_time()
    steps["dense"]()
    steps_per_round = max(2, min(50, round(LAYER_ROUND_SECONDS / max(time.process_time() - start, 1e-4))))
    medians = alternated(steps, rounds, steps_per_round)
    return {"rows": rows, "columns": columns, "density": density, "dense_ms": medians["dense"],
            "compressed_ms": medians["compressed"], "ratio": medians["compressed"] / medians["dense"],
            "auto": choose_kernel("auto", mask, torch.device("cpu"))}


def layers_main(args: argparse.Namespace) -> None:
    cells = []
    for rows, columns in LAYER_SHAPES:
        for density in LAYER_DENSITIES:
            cells.append(measure_layer(rows, columns, density, args.rounds))
            print(json.dumps(cells[-1]), flush=True)
    rows = [f"| {c['rows']} x {c['columns']} | {c['density']:g} | {c['dense_ms']:.2f} | {c['compressed_ms']:.2f} | "
            f"{c['ratio']:.2f} | {c['auto']} |" for c in cells]
    tiers = "; ".join(f"at least {weights:,} weights and density <= {most:g}" for weights, most in AUTO_RULE)
    write_record(args.output, "train_kernel_layers", {"cells": cells}, [
        "# One layer, masked dense against compressed: the grid `kernel=\"auto\"` is chosen from", "",
        f"`python -m benchmarks.bench_train_kernels --layers --rounds {args.rounds}`: a rows x columns `nn.Linear` "
        f"keeping a random fraction (density) of its weights, batch {BATCH}, one thread; forward, backward "
        "(input gradient included) and an Adam step (masked dense: mask multiplied into weight and moments); "
        f"CPU time per step, medians of {args.rounds} alternated rounds.", "",
        "| layer (rows x columns) | density | masked dense (ms) | compressed (ms) | compressed / dense | auto picks |",
        "|---|---:|---:|---:|---:|---:|", *rows, "",
        f"The rule (`sb3_tar/sb3/kernels.py`): compressed on the CPU where both sides have at least {AUTO_MIN_SIDE} "
        f"and {tiers}; dense elsewhere. Worst measured ratio where auto picks compressed: "
        f"{max([c['ratio'] for c in cells if c['auto'] == 'sparse'], default=float('nan')):.2f}.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", action="store_true", help="the per-layer grid auto's rule comes from")
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.8, 0.9, 0.95, 0.98])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.layers:
        layers_main(args)
        return
    cells = []
    for width in args.widths:
        for sparsity in args.sparsities:
            cells.append(measure(width, sparsity, args.rounds))
            print(json.dumps(cells[-1]), flush=True)
    rows = [f"| {c['width']} | {c['sparsity']:g} | {c['dense_ms']:.2f} | {c['compressed_ms']:.2f} | "
            f"{c['ratio']:.2f} | {c['compressed_bytes'] / c['dense_bytes']:.2f} |" for c in cells]
    write_record(args.output, "train_kernels", {"cells": cells}, [
        "# Training kernels for frozen masks (part 1: one critic-sized MLP)", "",
        f"`python -m benchmarks.bench_train_kernels --widths {' '.join(map(str, args.widths))} --sparsities "
        f"{' '.join(f'{s:g}' for s in args.sparsities)} --rounds {args.rounds}`: {INPUT_WIDTH}-W-W-1 ReLU MLP, "
        f"batch {BATCH}, one thread; forward + backward + Adam step (masked dense: the mask multiplied into the "
        f"weights and moments after the step); CPU time per step, medians of {args.rounds} alternated rounds of "
        f"{STEPS_PER_ROUND} steps.", "",
        "| width | sparsity | masked dense (ms) | compressed (ms) | ratio | tensors (compressed / dense) |",
        "|---:|---:|---:|---:|---:|---:|", *rows, "",
        "Tensors: parameters, Adam's two moments and buffers (dense: plus a bool mask, the static mask and a "
        "float copy of the mask, as sb3-tar holds them today; compressed: values, bias, int32 CSR indices of W "
        "and W^T and the int64 permutation between them).", "",
        "Part 2, whole SAC and TD3 gradient steps with compressed layers: `train_steps.md` "
        "(`python -m benchmarks.bench_train_steps`).", ""])


if __name__ == "__main__":
    main()
