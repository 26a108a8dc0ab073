"""Where a benchmark ran: the project's provenance record (command, date, commit, versions, machine, load)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sb3_tar.experiments.provenance import provenance


def invoking_command() -> str:
    """The command line as typed: ``python -m benchmarks.x ...`` when run as a module."""
    main_spec = getattr(sys.modules["__main__"], "__spec__", None)
    entry = ["-m", main_spec.name] if main_spec is not None else [sys.argv[0]]
    return " ".join(["python", *entry, *sys.argv[1:]])


def describe_environment() -> dict[str, Any]:
    """``sb3_tar.experiments.provenance.provenance`` with the command as the user typed it."""
    return provenance(command=[invoking_command()])


def environment_markdown(environment: dict[str, Any]) -> str:
    """The provenance record as a Markdown list: the same record the benchmark's JSON holds."""
    return "\n".join(f"- {key}: `{value}`" for key, value in environment.items())


def write_record(output: Path, stem: str, data: dict[str, Any], lines: list[str]) -> dict[str, Any]:
    """Write ``output/<stem>.json`` (``data`` plus the provenance record) and ``output/<stem>.md`` (``lines``, then
    the same record under "Where it ran"); returns the record. One schema for every benchmark's result."""
    environment = describe_environment()
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{stem}.json").write_text(json.dumps({**data, "environment": environment}, indent=2) + "\n")
    (output / f"{stem}.md").write_text("\n".join([*lines, "## Where it ran", "", environment_markdown(environment), ""]))
    return environment
