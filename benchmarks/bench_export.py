"""The deployed sparse actor: file size and latency against the dense actor, and the kernel rule.

Run (from the repository root): python -m benchmarks.bench_export [--rounds N] [--quick]

One torch thread throughout. Three parts, each timing dense and sparse side by side in the same
run, alternating which goes first, and reporting medians and their ratios:

1. **The kernel rule.** One square linear layer of width 128 ... 2048 at densities 0.5 ... 0.01 and
   batch sizes 1, 8, 64 and 256, run by the deployed actor's own two kernels (``LinearLayer.step``:
   ``torch.addmv`` at batch 1, ``torch.addmm`` on feature-major activations above it; CSR with
   int32 indices). The dense time does not depend on the density, so each row's dense samples are
   pooled over its densities. Per batch size and width it records the largest density at which
   CSR took at most ``MARGIN`` (0.8) of the dense time there and at every lower density: the
   table ``sb3_tar.runtime.kernels.MEASURED_RULE`` ships (the benchmark says if they differ).
2. **Size.** SAC ``TarMlpPolicy`` actors, HalfCheetah-v4-sized (17 observations, 6 actions),
   ``net_arch`` [w, w] for w in 256 and 1024, at sparsity 0.8, 0.9, 0.95 and 0.98 (magnitude
   pruning, TAR ``recovery_ratio=0.01``; untrained: sizes and speed depend on shapes and masks, not
   on the values). The exported file against the dense actor's state dict (``torch.save`` of
   the same-width dense ``MlpPolicy``'s ``actor.state_dict()``) and both SB3 zips.
3. **Latency** at batch 1 and 256 of the exported actor (``load_actor``, kernels by the rule
   measured in part 1) against the dense actor: the same network as a plain ``nn.Sequential`` of
   dense ``nn.Linear`` layers (``DeployedActor.as_sequential()``), under ``torch.no_grad``. SB3's
   own actor forward pass (``model.actor(obs, deterministic=True)``) is timed beside them for
   reference. Goals: size <= 0.2x the dense actor's state dict at sparsity 0.9; latency <= 1.0x
   everywhere.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from stable_baselines3 import SAC

import sb3_tar  # noqa: F401  (registers "TarMlpPolicy")
from benchmarks.environment import write_record
from benchmarks.shapes import HalfCheetahShapes
from sb3_tar.export import export_actor
from sb3_tar.runtime import DeployedActor, KernelRule, Linear, MEASURED_RULE, read_actor
from sb3_tar.runtime.actor import LinearLayer
from sb3_tar.runtime.encoding import encoded_sizes
from sb3_tar.runtime.kernels import MARGIN

RESULTS = Path(__file__).parent / "results"

RULE_WIDTHS = (128, 256, 512, 1024, 2048)
RULE_DENSITIES = (0.5, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.02, 0.01)
RULE_BATCHES = (1, 8, 64, 256)
WIDTHS = (256, 1024)
SPARSITIES = (0.8, 0.9, 0.95, 0.98)
LATENCY_BATCHES = (1, 256)
TAR_SETTINGS = {"criterion": "magnitude", "recovery_ratio": 0.01}
SIZE_GOAL = 0.2  # exported file / dense actor state dict at sparsity 0.9
LATENCY_GOAL = 1.0
SAMPLE_MS = 5.0  # each timing sample repeats a call for about this long
WARM_UP_MS = 50.0
BOOTSTRAP = 2000  # resamples of the rounds for the 95 % interval of a ratio of medians


def repeats_for(call: Callable[[], object]) -> int:
    """How many calls make one timing sample of about ``SAMPLE_MS``, after warming the call up
    (first-touch page faults, caches, lazily built kernel plans) for about ``WARM_UP_MS``."""
    start = time.perf_counter()
    calls = 0
    while calls < 2 or (time.perf_counter() - start) * 1e3 < WARM_UP_MS:
        call()
        calls += 1
    once_ms = (time.perf_counter() - start) * 1e3 / calls
    return max(1, min(5000, round(SAMPLE_MS / max(once_ms, 1e-3))))


def sample_ms(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    """CPU and wall-clock milliseconds per call over ``repeats`` calls."""
    start, start_cpu = time.perf_counter(), time.thread_time()
    for _ in range(repeats):
        call()
    return (time.thread_time() - start_cpu) * 1e3 / repeats, (time.perf_counter() - start) * 1e3 / repeats


def ratio_interval(numerator: list[float], denominator: list[float]) -> tuple[float, float]:
    """95 % bootstrap interval of ``median(numerator) / median(denominator)``, resampling whole rounds
    (the two were timed side by side in each round)."""
    generator = random.Random(0)
    rounds = len(numerator)
    ratios = []
    for _ in range(BOOTSTRAP):
        picked = [generator.randrange(rounds) for _ in range(rounds)]
        ratios.append(statistics.median(numerator[i] for i in picked)
                      / statistics.median(denominator[i] for i in picked))
    ratios.sort()
    return ratios[int(0.025 * BOOTSTRAP)], ratios[int(0.975 * BOOTSTRAP) - 1]


def verdict(ratio: float, interval: tuple[float, float], goal: float) -> str:
    """``met``; ``within noise`` (above the goal, but the interval reaches it); or ``NOT met``."""
    if ratio <= goal:
        return "met"
    return "within noise" if interval[0] <= goal else "NOT met"


def alternate(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, dict[str, float]]:
    """Median CPU and wall-clock ms per call of each, timed round by round with the order rotating.

    CPU time (of this thread: one torch thread) is the figure the tables use: the machine is shared,
    and wall-clock time also counts the moments other processes held the core.
    """
    repeats = {name: repeats_for(call) for name, call in calls.items()}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    names = list(calls)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(sample_ms(calls[name], repeats[name]))
    return {name: {"cpu": statistics.median(cpu for cpu, _ in times),
                   "wall": statistics.median(wall for _, wall in times),
                   "cpu_samples": [cpu for cpu, _ in times]}
            for name, times in samples.items()}


# ---------------------------------------------------------------- part 1: the kernel rule


def random_layer(width: int, density: float, generator: torch.Generator) -> Linear:
    """A ``width x width`` layer keeping exactly ``round(density * width**2)`` random weights."""
    weights = width * width
    mask = torch.zeros(weights, dtype=torch.bool)
    mask[torch.randperm(weights, generator=generator)[: round(density * weights)]] = True
    mask = mask.reshape(width, width)
    weight = torch.randn(width, width, generator=generator) * mask
    return Linear(weight, mask, torch.randn(width, generator=generator), f"{width}x{width}@{density}")


def measure_kernels(rounds: int, widths: tuple[int, ...]) -> list[dict[str, object]]:
    generator = torch.Generator().manual_seed(0)
    records = []
    for width in widths:
        for batch in RULE_BATCHES:
            # batch-major activations for the dense kernel, feature-major for CSR (as the deployed actor runs them)
            rows = torch.randn(batch, width, generator=generator)
            dense_input, csr_input = (rows[0], rows[0]) if batch == 1 else (rows, rows.t().contiguous())
            found = []
            for density in RULE_DENSITIES:
                layer = LinearLayer(random_layer(width, density, generator), {"dense", "csr"})
                dense, csr = layer.step("dense", batch == 1), layer.step("csr", batch == 1)
                times = alternate({"dense": lambda: dense(dense_input), "csr": lambda: csr(csr_input)}, rounds)
                found.append({"width": width, "batch": batch, "density": density,
                              "dense_ms": {key: times["dense"][key] for key in ("cpu", "wall")},
                              "csr_ms": {key: times["csr"][key] for key in ("cpu", "wall")},
                              "dense_samples": times["dense"]["cpu_samples"]})
            # The dense product does not depend on the density: its samples at every density time the same work,
            # so their pooled median is the steadiest reference for each density's CSR time.
            dense_ms = statistics.median(sample for record in found for sample in record.pop("dense_samples"))
            for record in found:
                record["dense_pooled_ms"] = dense_ms
                record["ratio"] = record["csr_ms"]["cpu"] / dense_ms
                print(f"  width {width:5d} batch {batch:4d} density {record['density']:5.2f}: dense {dense_ms:.4f} ms, "
                      f"CSR {record['csr_ms']['cpu']:.4f} ms, ratio {record['ratio']:.3f}", flush=True)
            records.extend(found)
    return records


def rule_from(records: list[dict[str, object]]) -> KernelRule:
    """Per batch and width, the largest density where CSR won by ``MARGIN`` there and at every lower density."""
    table: dict[int, dict[int, float]] = {}
    for batch in RULE_BATCHES:
        for width in sorted({record["width"] for record in records}):
            threshold = 0.0
            for density in sorted(RULE_DENSITIES):
                ratio = next(r["ratio"] for r in records
                             if r["batch"] == batch and r["width"] == width and r["density"] == density)
                if ratio > MARGIN:
                    break
                threshold = density
            table.setdefault(batch, {})[width * width] = threshold
    return KernelRule(table, source="benchmarks/results/export.json")


# ---------------------------------------------------------------- parts 2 and 3: size and latency


def sac(policy: str, width: int, policy_kwargs: dict[str, object]) -> SAC:
    return SAC(policy, HalfCheetahShapes(), policy_kwargs={"net_arch": [width, width], **policy_kwargs},
               buffer_size=1000, device="cpu", seed=0)


def state_dict_bytes(module: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def zip_bytes(model: SAC, path: Path) -> int:
    model.save(path)
    return path.stat().st_size


def measure_actor(width: int, sparsity: float | None, rule: KernelRule, rounds: int, folder: Path,
                  dense_sizes: dict[str, int]) -> dict[str, object]:
    label = "dense" if sparsity is None else f"sparsity {sparsity}"
    model = sac("MlpPolicy", width, {}) if sparsity is None else sac("TarMlpPolicy", width,
                                                                      {"sparsity": sparsity, **TAR_SETTINGS})
    path = export_actor(model, folder / f"actor-{width}-{sparsity}.sb3tar")
    spec = read_actor(path)
    layers = [{"name": layer.name, "shape": [layer.out_features, layer.in_features], "kept": layer.kept,
               "density": layer.density,
               "encoding_bytes": encoded_sizes(layer.out_features, layer.in_features, layer.kept,
                                               int(layer.mask.sum(dim=1).max()))}
              for layer in spec.linear_layers()]
    record: dict[str, object] = {
        "width": width, "sparsity": sparsity, "kept_weights": spec.kept, "weights": spec.total, "layers": layers,
        "file_bytes": path.stat().st_size,
        "sb3_zip_bytes": zip_bytes(model, folder / f"model-{width}-{sparsity}.zip"),
        "actor_state_dict_bytes": state_dict_bytes(model.actor),
    }
    if sparsity is None:
        dense_sizes.update(state_dict=record["actor_state_dict_bytes"], zip=record["sb3_zip_bytes"],
                           file=record["file_bytes"])
    record.update(dense_actor_state_dict_bytes=dense_sizes["state_dict"], dense_sb3_zip_bytes=dense_sizes["zip"],
                  dense_file_bytes=dense_sizes["file"])
    record["size_ratio_vs_dense_state_dict"] = record["file_bytes"] / dense_sizes["state_dict"]
    record["latency"] = {}
    sparse_actor = DeployedActor(spec, rule=rule).eval()
    all_dense = DeployedActor(spec, kernels="dense").eval()
    dense_actor = sparse_actor.as_sequential()
    model.actor.set_training_mode(False)
    for batch in LATENCY_BATCHES:
        observations = torch.randn(batch, 17)
        with torch.no_grad():
            error = float((sparse_actor(observations) - dense_actor(observations)).abs().max())
            times = alternate({
                "dense_actor": lambda: dense_actor(observations),
                "exported_actor": lambda: sparse_actor(observations),
                "exported_all_dense": lambda: all_dense(observations),
                "sb3_actor_forward": lambda: model.actor(observations, deterministic=True),
            }, rounds)
        kernels = [sparse_actor.kernel(layer, batch) for layer in sparse_actor.layers if isinstance(layer, LinearLayer)]
        cpu = {name: value["cpu"] for name, value in times.items()}
        interval = ratio_interval(times["exported_actor"]["cpu_samples"], times["dense_actor"]["cpu_samples"])
        record["latency"][str(batch)] = {**{f"{name}_ms": value for name, value in cpu.items()},
                                         "wall_ms": {name: value["wall"] for name, value in times.items()},
                                         "ratio": cpu["exported_actor"] / cpu["dense_actor"],
                                         "ratio_95_interval": interval,
                                         "verdict": verdict(cpu["exported_actor"] / cpu["dense_actor"], interval,
                                                            LATENCY_GOAL),
                                         "kernel_gain": cpu["exported_actor"] / cpu["exported_all_dense"],
                                         "kernels": kernels, "max_abs_difference": error}
        print(f"  width {width:5d} {label:>15} batch {batch:3d}: dense actor {cpu['dense_actor']:.4f} ms, exported "
              f"{cpu['exported_actor']:.4f} ms (ratio {cpu['exported_actor'] / cpu['dense_actor']:.3f}, kernels "
              f"{kernels}), exported all dense {cpu['exported_all_dense']:.4f} ms, SB3 actor "
              f"{cpu['sb3_actor_forward']:.4f} ms", flush=True)
    print(f"  width {width:5d} {label:>15}: file {record['file_bytes']:,} B = "
          f"{record['size_ratio_vs_dense_state_dict']:.3f}x the dense actor's state dict", flush=True)
    return record


def measure(rounds: int, quick: bool) -> dict[str, object]:
    load_before = os.getloadavg()[0]
    rule_widths = RULE_WIDTHS[:3] if quick else RULE_WIDTHS
    print("kernel rule: one square layer, dense vs CSR")
    kernel_records = measure_kernels(rounds, rule_widths)
    rule = rule_from(kernel_records)
    actors = []
    with tempfile.TemporaryDirectory() as folder:
        for width in WIDTHS[:1] if quick else WIDTHS:
            dense_sizes: dict[str, int] = {}
            print(f"actors of width {width}")
            for sparsity in (None, *SPARSITIES):
                actors.append(measure_actor(width, sparsity, rule, rounds, Path(folder), dense_sizes))
    return {
        "rounds": rounds,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "kernel_timings": kernel_records,
        "kernel_rule": {"margin": MARGIN, "csr_max_density": {str(batch): {str(size): density
                                                                           for size, density in sizes.items()}
                                                              for batch, sizes in rule.csr_max_density.items()}},
        "actors": actors,
    }


# ---------------------------------------------------------------- results


def kib(size: int) -> str:
    return f"{size / 1024:,.1f} KiB"


def rule_table(result: dict[str, object]) -> list[str]:
    rule = result["kernel_rule"]["csr_max_density"]
    widths = sorted({record["width"] for record in result["kernel_timings"]})
    lines = ["| batch | " + " | ".join(f"{w}x{w}" for w in widths) + " |", "|---:|" + "---:|" * len(widths)]
    for batch, sizes in rule.items():
        cells = [f"<= {sizes[str(w * w)]}" if sizes[str(w * w)] else "never" for w in widths]
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    return lines


def ratio_table(result: dict[str, object]) -> list[str]:
    widths = sorted({record["width"] for record in result["kernel_timings"]})
    lines = ["| width | batch | " + " | ".join(f"d={d}" for d in RULE_DENSITIES) + " |",
             "|---:|---:|" + "---:|" * len(RULE_DENSITIES)]
    for width in widths:
        for batch in RULE_BATCHES:
            ratios = {r["density"]: r["ratio"] for r in result["kernel_timings"]
                      if r["width"] == width and r["batch"] == batch}
            lines.append(f"| {width} | {batch} | " + " | ".join(f"{ratios[d]:.2f}" for d in RULE_DENSITIES) + " |")
    return lines


def sparsity_label(actor: dict[str, object]) -> str:
    return "dense" if actor["sparsity"] is None else str(actor["sparsity"])


def size_table(actors: list[dict[str, object]]) -> list[str]:
    lines = ["| width | sparsity | kept weights | exported file | dense actor state dict | ratio | goal | "
             "SB3 zip (this model) | SB3 zip (dense) |", "|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for a in actors:
        ratio = a["size_ratio_vs_dense_state_dict"]
        goal = ("met" if ratio <= SIZE_GOAL else "NOT met") if a["sparsity"] == 0.9 else ""
        lines.append(f"| {a['width']} | {sparsity_label(a)} | {a['kept_weights']:,} / {a['weights']:,} | "
                     f"{kib(a['file_bytes'])} | {kib(a['dense_actor_state_dict_bytes'])} | **{ratio:.3f}x** | {goal} | "
                     f"{kib(a['sb3_zip_bytes'])} | {kib(a['dense_sb3_zip_bytes'])} |")
    return lines


def microseconds(milliseconds: float) -> str:
    return f"{milliseconds * 1e3:,.1f} us"


def latency_table(actors: list[dict[str, object]]) -> list[str]:
    lines = ["| width | sparsity | batch | dense actor | exported actor | ratio [95 % interval] | goal | "
             "kernels (layer by layer) | exported, all dense | kernel gain | SB3 actor forward |",
             "|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|"]
    for a in actors:
        for batch, t in a["latency"].items():
            kernels = ", ".join(t["kernels"])
            lines.append(f"| {a['width']} | {sparsity_label(a)} | {batch} | {microseconds(t['dense_actor_ms'])} | "
                         f"{microseconds(t['exported_actor_ms'])} | **{t['ratio']:.2f}x** "
                         f"[{t['ratio_95_interval'][0]:.2f}, {t['ratio_95_interval'][1]:.2f}] | {t['verdict']} | "
                         f"{kernels} | "
                         f"{microseconds(t['exported_all_dense_ms'])} | {t['kernel_gain']:.2f}x | "
                         f"{microseconds(t['sb3_actor_forward_ms'])} |")
    return lines


def layer_table(actors: list[dict[str, object]]) -> list[str]:
    lines = ["| width | sparsity | layer | shape | density | dense | bitmask | indices |",
             "|---:|---:|---|---|---:|---:|---:|---:|"]
    for a in actors:
        if a["sparsity"] is None:
            continue
        for layer in a["layers"]:
            sizes = layer["encoding_bytes"]
            best = min(sizes, key=sizes.get)
            cells = [f"**{kib(sizes[name])}**" if name == best else kib(sizes[name])
                     for name in ("dense", "bitmask", "indices")]
            shape = f"{layer['shape'][0]}x{layer['shape'][1]}"
            lines.append(f"| {a['width']} | {a['sparsity']} | {layer['name']} | {shape} | {layer['density']:.4f} | "
                         + " | ".join(cells) + " |")
    return lines


def write_results(result: dict[str, object], output: Path) -> None:
    settings = {"algorithm": "SAC", "observations": 17, "actions": 6, "widths": list(WIDTHS),
                "sparsities": list(SPARSITIES), "torch_threads": 1, **TAR_SETTINGS,
                "rule_widths": list(RULE_WIDTHS), "rule_densities": list(RULE_DENSITIES),
                "rule_batches": list(RULE_BATCHES), "margin": MARGIN}
    sparse_09 = [a for a in result["actors"] if a["sparsity"] == 0.9]
    latencies = [(a, batch, t) for a in result["actors"] for batch, t in a["latency"].items()]
    worst = max(t["ratio"] for _, _, t in latencies)
    verdicts = {t["verdict"] for _, _, t in latencies}
    above = "; ".join(f"width {a['width']} {sparsity_label(a)} batch {batch}: {t['ratio']:.2f}x "
                      f"[{t['ratio_95_interval'][0]:.2f}, {t['ratio_95_interval'][1]:.2f}], kernels "
                      f"{', '.join(t['kernels'])}" for a, batch, t in latencies if t["verdict"] != "met")
    lines = [
        "# The deployed sparse actor: size and latency against the dense actor",
        "",
        "SAC `TarMlpPolicy` actors, HalfCheetah-v4-sized (17 observations, 6 actions), `net_arch` [w, w], "
        f"magnitude pruning with TAR (`recovery_ratio={TAR_SETTINGS['recovery_ratio']}`), exported with "
        "`sb3_tar.export.export_actor` and run with `sb3_tar.runtime.load_actor` (one torch thread). Every timing "
        f"alternates dense and sparse in the same run ({result['rounds']} rounds, rotating order); figures are "
        "medians and ratios of medians.",
        "",
        f"1-minute load average before / after: `{result['load_average_1min']['before']:.2f}` / "
        f"`{result['load_average_1min']['after']:.2f}` (a long benchmark ran beside it at low priority)",
        "",
        "## Size",
        "",
        "The exported file (kept weights in the smallest encoding per layer, biases, activation, squash, action "
        "bounds, a JSON header) against `torch.save(actor.state_dict())` of the dense `MlpPolicy` of the same width "
        "(which includes SAC's `log_std` head; the export leaves it out, a deterministic action does not use it), "
        f"and the SB3 zips (whole model: critics, targets, optimizers). Goal: <= {SIZE_GOAL}x at sparsity 0.9: "
        + ", ".join(f"width {a['width']}: {a['size_ratio_vs_dense_state_dict']:.3f}x "
                    f"({'met' if a['size_ratio_vs_dense_state_dict'] <= SIZE_GOAL else 'NOT met'})" for a in sparse_09)
        + ".",
        "",
        *size_table(result["actors"]),
        "",
        "## Latency",
        "",
        "The exported actor (each linear layer dense or CSR by the rule below) against the dense actor: the same "
        "network as a plain `nn.Sequential` of dense `nn.Linear` layers, both under `torch.no_grad()`. SB3's own "
        "actor forward pass is shown for reference (it adds SB3's preprocessing and distribution objects). "
        f"Goal: <= {LATENCY_GOAL}x everywhere. Worst ratio: {worst:.2f}x; "
        + ("met everywhere." if verdicts == {"met"} else
           f"above {LATENCY_GOAL}x at {above}" + (" (each within noise: its bootstrap interval reaches "
                                                  f"{LATENCY_GOAL}x)." if "NOT met" not in verdicts else ".")),
        "",
        "The ratio's interval is a 95 % bootstrap interval over the rounds; *exported, all dense* is the same file "
        "with every layer dense (`load_actor(path, kernels=\"dense\")`), and *kernel gain* the exported actor's time "
        "over it: what the CSR layers alone bring, apart from the leaner forward pass.",
        "",
        *latency_table(result["actors"]),
        "",
        "## The kernel rule",
        "",
        "One square layer, the deployed actor's own kernels (batch 1: `torch.addmv`; larger batches: `torch.addmm` "
        "on feature-major activations; CSR with int32 indices). CSR time / dense time (CPU time, medians; the dense "
        "time pooled over all densities of a row, since it does the same work at each):",
        "",
        *ratio_table(result),
        "",
        f"The rule: CSR where the layer's density is at most the density below, for the largest measured layer "
        f"size not above the layer's own (smaller layers run dense), at batch sizes between two rows both rows "
        f"must agree. An entry is the largest density at which CSR took at most {MARGIN}x the dense time there and "
        "at every lower density:",
        "",
        *rule_table(result),
        "",
        "`sb3_tar.runtime.kernels.MEASURED_RULE` ships this table (`tests/test_export.py` checks that it does).",
        "",
        "## Encoding per layer",
        "",
        "Bytes of each layer's weights in each encoding (the file uses the smallest, in bold):",
        "",
        *layer_table(result["actors"]),
        "",
    ]
    write_record(output, "export", {"settings": settings, "result": result}, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--quick", action="store_true",
                        help="smaller grid, width 256 only (a smoke test; written to a temporary folder by default, so "
                             "the committed results stay the full run's)")
    parser.add_argument("--output", type=Path, help="results folder (default: benchmarks/results)")
    args = parser.parse_args()
    if args.output is None:
        args.output = Path(tempfile.mkdtemp(prefix="bench-export-quick-")) if args.quick else RESULTS
    torch.set_num_threads(1)
    result = measure(args.rounds, args.quick)
    measured = {int(batch): {int(size): density for size, density in sizes.items()}
                for batch, sizes in result["kernel_rule"]["csr_max_density"].items()}
    if measured != {batch: dict(sizes) for batch, sizes in MEASURED_RULE.csr_max_density.items()}:
        print(f"note: the measured kernel rule differs from sb3_tar.runtime.kernels.MEASURED_RULE; on this machine "
              f"it is {measured}", file=sys.stderr)
    write_results(result, args.output)
    print(f"results written to {args.output / 'export.md'}")


if __name__ == "__main__":
    main()
