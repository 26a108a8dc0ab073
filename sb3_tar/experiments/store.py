"""Run folders: each run trains in a private temporary folder that is renamed into place when it ends.

A run is finished exactly when ``RESULTS/<run_id>/result.json`` exists. The rename is atomic, so an
interrupted sweep leaves only ``RESULTS/.partial/`` folders behind, which the next sweep clears;
finished runs are never touched again.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sb3_tar.experiments.grid import RunSpec

RESULT_FILE = "result.json"
PARTIAL = ".partial"
FAILED = ".failed"  # failed runs' folders, logs included, kept for the user to read


def write_json_atomically(path: Path, data: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(data, indent=2))
    os.replace(temporary, path)


def is_finished(results: Path, spec: RunSpec) -> bool:
    return (results / spec.run_id / RESULT_FILE).exists()


def pending_runs(results: Path, specs: Iterable[RunSpec]) -> list[RunSpec]:
    return [spec for spec in specs if not is_finished(results, spec)]


def clear_partial_runs(results: Path) -> int:
    """Remove what interrupted runs left behind; returns how many there were."""
    partial = results / PARTIAL
    if not partial.exists():
        return 0
    leftovers = list(partial.iterdir())
    shutil.rmtree(partial)
    return len(leftovers)


def partial_dir(results: Path, spec: RunSpec) -> Path:
    path = results / PARTIAL / f"{spec.run_id}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def publish(results: Path, spec: RunSpec, work: Path, result: dict[str, Any]) -> Path:
    """Record completion: write the result inside the private folder, then rename it into place."""
    write_json_atomically(work / RESULT_FILE, result)
    final = results / spec.run_id
    os.rename(work, final)
    return final


def load_results(results: Path) -> list[dict[str, Any]]:
    """Every finished run's ``result.json`` under ``results``."""
    return [json.loads(path.read_text()) for path in sorted(Path(results).glob(f"*/{RESULT_FILE}"))]
