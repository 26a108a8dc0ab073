"""Write the study's rl-zoo3 variant files from hyperparams/sac.yml and hyperparams/td3.yml.

    python hyperparams/generate_variants.py

Writes ``hyperparams/variants/{algo}/w{width}/{method}.yml`` for SAC and TD3, widths 256 and 1024,
and every method of the paper's comparison. Each entry is made by the one function that turns a
method into hyperparameters for every run of the project (``sb3_tar.experiments.zoo_entries.method_entry``),
so a variant file trains exactly what ``sb3-tar train --method ...`` and a sweep train:

- ``dense``: SB3's ``MlpPolicy``, no pruning (the dense reference).
- ``magnitude``, ``erk``, ``synflow``: "Original" static sparse training (method ``static``).
- ``magnitude-tar``, ``erk-tar``, ``synflow-tar``: the same criterion followed by Topology-Aware
  Revival, ``recovery_ratio=0.01`` (method ``tar``; ``w256/magnitude-tar.yml`` is the base file's setting).
- ``set``, ``rigl``: dynamic sparse training on a dense ``MlpPolicy`` through the zoo's
  ``callback:`` key and ``sb3_tar.DSTCallback`` (ERK initial masks, the RigL authors' SAC schedule).

Every sparse method runs at the base file's sparsity (0.8). A test checks the committed files equal
this script's output, so edit the base files or this script, then re-run it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sb3_tar.engine.errors import UserError
from sb3_tar.experiments.zoo_entries import file_sparsity, method_entry
from sb3_tar.settings import SparsitySettings

HYPERPARAMS = Path(__file__).resolve().parent
ALGOS = ("sac", "td3")
WIDTHS = (256, 1024)
CRITERIA = ("magnitude", "erk", "synflow")
TAR_RECOVERY_RATIO = 0.01
DST_SCHEDULE = {"update_interval": 1000, "drop_fraction": 0.1, "end_fraction": 0.8}
METHODS = ("dense", *(f"{c}{suffix}" for c in CRITERIA for suffix in ("", "-tar")), "set", "rigl")


def variant_entry(entry: dict[str, Any], variant: str, width: int) -> dict[str, Any]:
    """One task's zoo entry for ``variant`` (one of ``METHODS``) at ``width``, from the base file's entry."""
    if variant not in METHODS:
        raise UserError(f"variant={variant!r} is not a study variant; allowed: {list(METHODS)}")
    sparsity = file_sparsity(entry)["sparsity"]
    net_arch = [width] * len(entry["policy_kwargs"]["net_arch"])
    if variant == "dense":
        return method_entry(entry, "dense", None, net_arch=net_arch)
    if variant in ("set", "rigl"):
        return method_entry(entry, variant, SparsitySettings(sparsity, criterion="erk", recovery_ratio=0.0), net_arch=net_arch,
                            dst=DST_SCHEDULE)
    criterion, _, tar = variant.partition("-")
    settings = SparsitySettings(sparsity, criterion=criterion, recovery_ratio=TAR_RECOVERY_RATIO if tar else 0.0)
    return method_entry(entry, "tar" if tar else "static", settings, net_arch=net_arch)


def variant_file(algo: str, variant: str, width: int) -> str:
    """The text of ``variants/{algo}/w{width}/{variant}.yml``."""
    base = yaml.safe_load((HYPERPARAMS / f"{algo}.yml").read_text())
    entries = [
        yaml.safe_dump({task: variant_entry(entry, variant, width)}, sort_keys=False, default_flow_style=None,
                       width=1000)
        for task, entry in base.items()
    ]
    header = (
        f"# {algo.upper()}, {variant}, width {width}: generated from hyperparams/{algo}.yml by\n"
        "# hyperparams/generate_variants.py (do not edit: edit the base file or the script, then re-run it).\n"
        f"#\n#   python -m rl_zoo3.train --algo {algo} --env HalfCheetah-v4 --gym-packages sb3_tar \\\n"
        f"#       -conf hyperparams/variants/{algo}/w{width}/{variant}.yml\n\n"
    )
    return header + "\n".join(entries)


def all_variant_files() -> dict[Path, str]:
    """Every variant file's path (under ``hyperparams/``) and text."""
    return {
        HYPERPARAMS / "variants" / algo / f"w{width}" / f"{variant}.yml": variant_file(algo, variant, width)
        for algo in ALGOS
        for width in WIDTHS
        for variant in METHODS
    }


def main() -> None:
    for path, text in all_variant_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path.relative_to(HYPERPARAMS.parent))


if __name__ == "__main__":
    main()
