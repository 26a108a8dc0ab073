"""Building and loading a large sparse model against the dense one: what drawing and checking masks costs.

Run (from the repository root): python -m benchmarks.bench_build [--width 8192] [--rounds 3] [--threads 2]

TD3 on Pendulum-v1 with ``net_arch=[W, W, W]`` (the actor, two Q-networks and their targets):
``MlpPolicy`` against ``TarMlpPolicy(sparsity=0.9)`` (TAR at the default ``recovery_ratio``) with
the default ``kernel="auto"`` (which compresses these layers at build) and with ``kernel="dense"``
(mask drawing alone), built from scratch, saved, and loaded with ``TD3.load``, in rounds whose
order rotates so machine noise hits all alike. The figures are medians over rounds and the ratios
of medians; the target (issue 19) is at most 1.5x the dense build and load time.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from stable_baselines3 import TD3

import sb3_tar  # noqa: F401  (registers "TarMlpPolicy")
from benchmarks.environment import write_record

SPARSITY = 0.9


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


VARIANTS = {  # label -> (policy, extra policy_kwargs)
    "MlpPolicy": ("MlpPolicy", {}),
    "TarMlpPolicy (kernel auto)": ("TarMlpPolicy", {"sparsity": SPARSITY}),
    "TarMlpPolicy (kernel dense)": ("TarMlpPolicy", {"sparsity": SPARSITY, "kernel": "dense"}),
}


def one_round(variant: str, width: int, folder: Path) -> dict[str, float]:
    policy, extra = VARIANTS[variant]
    kwargs = {"net_arch": [width] * 3, **extra}
    model, build = timed(TD3, policy, "Pendulum-v1", seed=0, device="cpu", policy_kwargs=kwargs)
    path = folder / "model.zip"
    model.save(path)
    del model
    gc.collect()
    model, load = timed(TD3.load, path, device="cpu")
    del model
    gc.collect()
    path.unlink()
    return {"build_s": build, "load_s": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    times: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as folder:
        for variant in VARIANTS:  # one-time costs (imports, the environment's first make) count for none
            one_round(variant, 8, Path(folder))
        for round_index in range(args.rounds):
            order = list(VARIANTS)[round_index % len(VARIANTS):] + list(VARIANTS)[:round_index % len(VARIANTS)]
            for variant in order:
                times[variant].append(one_round(variant, args.width, Path(folder)))
                print(variant, times[variant][-1], flush=True)
    medians = {variant: {key: statistics.median(r[key] for r in rounds) for key in ("build_s", "load_s")}
               for variant, rounds in times.items()}
    ratios = {variant: {key: medians[variant][key] / medians["MlpPolicy"][key] for key in ("build_s", "load_s")}
              for variant in VARIANTS if variant != "MlpPolicy"}
    rows = [f"| {variant} | {m['build_s']:.1f} | {m['load_s']:.1f} | "
            + (" | ".join(f"{ratios[variant][key]:.2f}x" for key in ("build_s", "load_s")) if variant in ratios
               else "1 | 1") + " |" for variant, m in medians.items()]
    record = {"width": args.width, "sparsity": SPARSITY, "threads": args.threads, "rounds": times, "medians": medians,
              "ratios": ratios}
    write_record(args.output, "build", record, [
        f"# Building and loading TD3 with net_arch [{args.width}] * 3, dense and sparse ({SPARSITY})", "",
        f"`python -m benchmarks.bench_build --width {args.width} --rounds {args.rounds} --threads {args.threads}`: "
        f"medians over {args.rounds} rounds (rotating order), {args.threads} torch threads. Target: at most 1.5x "
        "the dense build and load time.", "",
        "| policy | build (s) | load (s) | build / dense | load / dense |", "|---|---:|---:|---:|---:|", *rows, ""])
    print(json.dumps({"medians": medians, "ratios": ratios}))


if __name__ == "__main__":
    main()
