"""Start-up time of the command line: ``sb3-tar --help`` and ``sb3-tar train --help``, and what they import.

Run (from the repository root): python -m benchmarks.bench_startup [--rounds 5]

Each command runs as a fresh ``python -m sb3_tar ...`` process, alternated with a process that only
imports ``stable_baselines3`` (what the help used to pay on top of torch); wall time per process,
medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.environment import write_record

COMMANDS = {
    "sb3-tar --help": [sys.executable, "-m", "sb3_tar", "--help"],
    "sb3-tar train --help": [sys.executable, "-m", "sb3_tar", "train", "--help"],
    "import torch": [sys.executable, "-c", "import torch"],
    "import stable_baselines3": [sys.executable, "-c", "import stable_baselines3"],
}
PROBE = ("import contextlib, io, sys; from sb3_tar.cli import main\n"
         "with contextlib.redirect_stdout(io.StringIO()):\n    try: main(['train', '--help'])\n    except SystemExit: pass\n"
         "print(sorted(n for n in ('torch', 'stable_baselines3', 'sb3_contrib', 'rl_zoo3', 'gymnasium') "
         "if n in sys.modules))")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for round_index in range(args.rounds):
        for name in (list(COMMANDS) if round_index % 2 == 0 else list(reversed(list(COMMANDS)))):
            start = time.perf_counter()
            subprocess.run(COMMANDS[name], check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    imported = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout.strip()
    medians = {name: statistics.median(values) for name, values in times.items()}
    rows = [f"| `{name}` | {median:.2f} |" for name, median in medians.items()]
    write_record(args.output, "startup", {"seconds": times, "medians": medians, "imported": imported}, [
        "# Start-up time of the command line", "",
        f"`python -m benchmarks.bench_startup --rounds {args.rounds}`: each a fresh process, alternated, wall-time "
        f"medians of {args.rounds} rounds.", "",
        "| process | seconds |", "|---|---:|", *rows, "",
        f"Heavy packages `sb3-tar train --help` imports: `{imported}` (torch, for the engine's criteria; no SB3, "
        "sb3-contrib, rl-zoo3 or gymnasium).", ""])
    print(json.dumps({"medians": medians, "imported": imported}))


if __name__ == "__main__":
    main()
