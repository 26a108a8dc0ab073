"""Write the study's rl-zoo3 variant files from hyperparams/sac.yml and hyperparams/td3.yml.

    python hyperparams/generate_variants.py

Writes ``hyperparams/variants/{algo}/w{width}/{method}.yml`` for SAC and TD3, widths 256 and 1024,
and every method of the paper's comparison. Each variant file has the same tasks and the same zoo
settings as its base file; only the policy, the width and the sparse-training settings change:

- ``dense``: SB3's ``MlpPolicy``, no pruning (the dense reference).
- ``magnitude``, ``erk``, ``synflow``: "Original" static sparse training, ``recovery_ratio=0``.
- ``magnitude-tar``, ``erk-tar``, ``synflow-tar``: the same criterion followed by Topology-Aware
  Revival, ``recovery_ratio=0.01`` (``w256/magnitude-tar.yml`` is the base file's setting).
- ``set``, ``rigl``: dynamic sparse training on a dense ``MlpPolicy`` through the zoo's
  ``callback:`` key and ``sb3_tar.DSTCallback`` (ERK initial masks, the RigL authors' SAC schedule).

Every sparse method runs at the base file's sparsity (0.8). A test checks the committed files equal
this script's output, so edit the base files or this script, then re-run it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

HYPERPARAMS = Path(__file__).resolve().parent
ALGOS = ("sac", "td3")
WIDTHS = (256, 1024)
CRITERIA = ("magnitude", "erk", "synflow")
TAR_RECOVERY_RATIO = 0.01
DST_SCHEDULE = {"initial": "erk", "update_interval": 1000, "drop_fraction": 0.1, "end_fraction": 0.8}
METHODS = ("dense", *(f"{c}{suffix}" for c in CRITERIA for suffix in ("", "-tar")), "set", "rigl")
# policy_kwargs keys read by TarMlpPolicy; SB3's MlpPolicy rejects them.
SPARSE_POLICY_KEYS = (
    "sparsity",
    "actor_sparsity",
    "critic_sparsity",
    "criterion",
    "recovery_ratio",
    "allocation",
    "budget",
    "scope",
    "iterations",
)


def variant_entry(entry: dict[str, Any], method: str, width: int) -> dict[str, Any]:
    """One task's zoo entry for ``method`` at ``width``, from the base file's entry.

    :param entry: the base file's entry (policy ``TarMlpPolicy`` with sparse ``policy_kwargs``).
    :param method: one of ``METHODS``.
    :param width: units in each of the two hidden layers.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not a study method; allowed: {list(METHODS)}")
    entry = copy.deepcopy(entry)
    policy_kwargs = entry["policy_kwargs"]
    policy_kwargs["net_arch"] = [width] * len(policy_kwargs["net_arch"])
    if method in ("dense", "set", "rigl"):
        sparsity = policy_kwargs["sparsity"]
        entry["policy"] = "MlpPolicy"
        entry["policy_kwargs"] = {k: v for k, v in policy_kwargs.items() if k not in SPARSE_POLICY_KEYS}
        if method != "dense":
            entry["callback"] = [{"sb3_tar.DSTCallback": {"method": method, "sparsity": sparsity, **DST_SCHEDULE}}]
        return entry
    criterion, _, tar = method.partition("-")
    policy_kwargs["criterion"] = criterion
    policy_kwargs["recovery_ratio"] = TAR_RECOVERY_RATIO if tar else 0.0
    return entry


def variant_file(algo: str, method: str, width: int) -> str:
    """The text of ``variants/{algo}/w{width}/{method}.yml``."""
    base = yaml.safe_load((HYPERPARAMS / f"{algo}.yml").read_text())
    entries = [
        yaml.safe_dump({task: variant_entry(entry, method, width)}, sort_keys=False, default_flow_style=None, width=1000)
        for task, entry in base.items()
    ]
    header = (
        f"# {algo.upper()}, {method}, width {width}: generated from hyperparams/{algo}.yml by\n"
        "# hyperparams/generate_variants.py (do not edit: edit the base file or the script, then re-run it).\n"
        f"#\n#   python -m rl_zoo3.train --algo {algo} --env HalfCheetah-v4 --gym-packages sb3_tar \\\n"
        f"#       -conf hyperparams/variants/{algo}/w{width}/{method}.yml\n\n"
    )
    return header + "\n".join(entries)


def all_variant_files() -> dict[Path, str]:
    """Every variant file's path (under ``hyperparams/``) and text."""
    return {
        HYPERPARAMS / "variants" / algo / f"w{width}" / f"{method}.yml": variant_file(algo, method, width)
        for algo in ALGOS
        for width in WIDTHS
        for method in METHODS
    }


def main() -> None:
    for path, text in all_variant_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path.relative_to(HYPERPARAMS.parent))


if __name__ == "__main__":
    main()
