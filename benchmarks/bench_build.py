"""Building and loading a large sparse model against the dense one: what drawing and checking masks costs.

Run (from the repository root): python -m benchmarks.bench_build [--width 8192] [--rounds 3] [--threads 2]

TD3 on Pendulum-v1 with ``net_arch=[W, W, W]`` (the actor, two Q-networks and their targets):
``MlpPolicy`` against ``TarMlpPolicy(sparsity=0.9)`` (TAR at the default ``recovery_ratio``),
built from scratch, saved, and loaded with ``TD3.load``, in alternating rounds so machine noise
hits both alike. The figures are medians over rounds and the ratios of medians; the target
(issue 19) is at most 1.5x the dense build and load time.
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


def one_round(policy: str, width: int, folder: Path) -> dict[str, float]:
    kwargs = {"net_arch": [width] * 3, **({"sparsity": SPARSITY} if policy == "TarMlpPolicy" else {})}
    model, build = timed(TD3, policy, "Pendulum-v1", seed=0, device="cpu", policy_kwargs=kwargs)
    path = folder / f"{policy}.zip"
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
    times: dict[str, list[dict[str, float]]] = {"MlpPolicy": [], "TarMlpPolicy": []}
    with tempfile.TemporaryDirectory() as folder:
        for round_index in range(args.rounds):
            for policy in (times if round_index % 2 == 0 else reversed(list(times))):
                times[policy].append(one_round(policy, args.width, Path(folder)))
                print(policy, times[policy][-1], flush=True)
    medians = {policy: {key: statistics.median(r[key] for r in rounds) for key in ("build_s", "load_s")}
               for policy, rounds in times.items()}
    ratios = {key: medians["TarMlpPolicy"][key] / medians["MlpPolicy"][key] for key in ("build_s", "load_s")}
    rows = [f"| {policy} | {m['build_s']:.1f} | {m['load_s']:.1f} |" for policy, m in medians.items()]
    record = {"width": args.width, "sparsity": SPARSITY, "threads": args.threads, "rounds": times, "medians": medians,
              "ratios": ratios}
    write_record(args.output, "build", record, [
        f"# Building and loading TD3 with net_arch [{args.width}] * 3, dense and sparse ({SPARSITY})", "",
        f"`python -m benchmarks.bench_build --width {args.width} --rounds {args.rounds} --threads {args.threads}`: "
        f"medians over {args.rounds} alternated rounds, {args.threads} torch threads.", "",
        "| policy | build (s) | load (s) |", "|---|---:|---:|", *rows, "",
        f"Sparse / dense: build {ratios['build_s']:.2f}x, load {ratios['load_s']:.2f}x (target: at most 1.5x).", ""])
    print(json.dumps({"medians": medians, "ratios": ratios}))


if __name__ == "__main__":
    main()
