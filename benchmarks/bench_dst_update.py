"""Cost of RigL's mask update as ``DSTCallback`` runs it, next to a SAC gradient step (HalfCheetah-sized).

Run (from the repository root): python -m benchmarks.bench_dst_update [--widths 256 1024] [--blocks N]

Two SAC models (SB3 ``MlpPolicy``, ``net_arch=[W, W]``, 17 observations, 6 actions, batch 256), each
trained by ``model.learn`` with the shipped ``sb3_tar.DSTCallback("rigl", sparsity=0.9)``:

- "every step": ``update_interval=1``, so every gradient step also runs one mask update of the
  actor and both Q-networks (the dense gradient is the step's own, read in the optimizer pre-hook,
  as in real training: no extra forward or backward pass);
- "never": ``update_interval`` beyond the run, so the same callback and hooks run but never update.

Blocks of ``learn(STEPS_PER_BLOCK)`` alternate between the two models, so machine noise hits both
alike. The update's cost is the difference of the medians per gradient step; amortised over
RigL's default ``update_interval=1000``, it is the overhead DST adds to training.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from stable_baselines3 import SAC

from benchmarks.environment import write_record
from benchmarks.shapes import HalfCheetahShapes
from sb3_tar import DSTCallback

BATCH_SIZE = 256
SPARSITY = 0.9
STEPS_PER_BLOCK = 50
DEFAULT_INTERVAL = 1000
BLOCKS = {256: 20, 1024: 6}
NEVER = 10**9


def model_with(width: int) -> SAC:
    model = SAC("MlpPolicy", HalfCheetahShapes(), policy_kwargs={"net_arch": [width, width]}, batch_size=BATCH_SIZE,
                learning_starts=BATCH_SIZE, seed=0, device="cpu")
    model.learn(BATCH_SIZE)  # fill the buffer past learning_starts
    return model


def time_block(model: SAC, callback: DSTCallback) -> float:
    """Milliseconds per environment step (one gradient step each) over one block of ``learn``."""
    start = time.perf_counter()
    model.learn(STEPS_PER_BLOCK, reset_num_timesteps=False, callback=callback)
    return (time.perf_counter() - start) * 1000.0 / STEPS_PER_BLOCK


def measure(width: int, blocks: int) -> dict[str, object]:
    models = {"every step": model_with(width), "never": model_with(width)}
    callbacks = {
        "every step": DSTCallback("rigl", sparsity=SPARSITY, update_interval=1, end_fraction=1.0,
                                  total_gradient_steps=NEVER),
        "never": DSTCallback("rigl", sparsity=SPARSITY, update_interval=NEVER, end_fraction=1.0,
                             total_gradient_steps=NEVER),
    }
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(blocks):
        for name in models:
            times[name].append(time_block(models[name], callbacks[name]))
    updates = len(callbacks["every step"].history)
    step, with_update = statistics.median(times["never"]), statistics.median(times["every step"])
    update = with_update - step
    return {"width": width, "blocks": blocks, "steps_per_block": STEPS_PER_BLOCK, "updates_logged": updates,
            "step_ms": step, "step_with_update_ms": with_update, "update_ms": update,
            "update_per_step": update / step, "amortised_percent": 100.0 * update / DEFAULT_INTERVAL / step}


def write_results(rows: list[dict[str, object]], output: Path) -> None:
    lines = [
        "# One RigL mask update vs one SAC gradient step, as DSTCallback runs them",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        "| width | blocks x steps | SAC step (ms) | step + RigL update (ms) | update (ms) | update / step | "
        f"amortised over {DEFAULT_INTERVAL} steps |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r['width']} | {r['blocks']} x {r['steps_per_block']} | {r['step_ms']:.2f} | "
            f"{r['step_with_update_ms']:.2f} | {r['update_ms']:.2f} | {r['update_per_step']:.2f} | "
            f"{r['amortised_percent']:.3f} % |"
            for r in rows
        ],
        "",
    ]
    write_record(output, "dst_update", {"rows": rows}, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--blocks", type=int, help=f"alternating blocks per width (default: {BLOCKS}, else 10)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for width in args.widths:
        rows.append(measure(width, args.blocks or BLOCKS.get(width, 10)))
        print(rows[-1])
    write_results(rows, args.output)


if __name__ == "__main__":
    main()
