"""SB3's and sb3-contrib's own tests, run as a user switching one word would: ``"MlpPolicy"`` -> ``"TarMlpPolicy"``.

Run (from the repository root; about an hour on 2 cores):

    python -m benchmarks.sb3_compat [--workers 2] [--only sb3|contrib]

For each host library the script downloads its source distribution (the installed version, from
PyPI), copies its ``tests/`` folder twice and runs the selected test files in both copies with the
installed packages:

- ``baseline``: the tests as shipped;
- ``swap``: every policy string (``"MlpPolicy"``, ``"MultiInputPolicy"``, ``"MlpLstmPolicy"``,
  ``"MultiInputLstmPolicy"``) replaced by sb3-tar's (``"TarMlpPolicy"``, ...), and a pytest plugin
  (``benchmarks/sb3_compat_plugin.py``) that gives every sparse policy built without a sparsity
  ``sparsity=0.8`` and nothing else (the README's "one word changed" promise) and counts them.

Every test that passes in the baseline and fails with the swap must be one of ``BY_DESIGN``,
each with its reason; anything else is a compatibility defect. The record goes to
``benchmarks/results/sb3_compat.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ElementTree
from importlib import metadata
from pathlib import Path

from benchmarks.environment import describe_environment, environment_markdown

RESULTS = Path(__file__).parent / "results"
PLUGIN = Path(__file__).parent / "sb3_compat_plugin.py"
HOSTS = {
    "sb3": ("stable-baselines3", "stable_baselines3",
            ["test_run.py", "test_callbacks.py", "test_save_load.py", "test_predict.py", "test_dict_env.py",
             "test_her.py", "test_deterministic.py", "test_train_eval_mode.py", "test_sde.py", "test_spaces.py",
             "test_custom_policy.py", "test_gae.py", "test_n_step_replay.py"]),
    "contrib": ("sb3-contrib", "sb3_contrib",
                ["test_run.py", "test_save_load.py", "test_dict_env.py", "test_lstm.py", "test_invalid_actions.py",
                 "test_train_eval_mode.py", "test_deterministic.py"]),
}
SWAPS = {"MlpPolicy": "TarMlpPolicy", "MultiInputPolicy": "TarMultiInputPolicy", "MlpLstmPolicy": "TarMlpLstmPolicy",
         "MultiInputLstmPolicy": "TarMultiInputLstmPolicy"}
# Tests that by design cannot pass with a sparse policy, by test-id prefix, and why.
SAVE_LOAD = ("fills every state-dict entry with random values and loads it (dense layout: every entry a float): "
             "the random fill fails on sb3-tar's bool masks and int64 mask seed; with the float entries alone "
             "randomised, the load refuses them (random values where the masks prune; docs/sb3-compatibility.md)")
BY_DESIGN = {
    "test_save_load.py::test_save_load[": SAVE_LOAD,
    "test_save_load.py::test_save_load_policy[": SAVE_LOAD,
    "test_her.py::test_save_load[": SAVE_LOAD,
    "test_save_load.py::test_save_load_q_net[": "as test_save_load, into the Q-network alone: a sub-module's load is "
                                                "checked against the masks as the policy's own load is",
    "test_run.py::test_ppo_warnings": "expects SB3's advice to run PPO on the CPU, which SB3 keys to the class name "
                                      "ActorCriticPolicy",
    "test_her.py::test_performance_her": "a learning threshold tuned for a dense network",
    "test_run.py::test_infinite_horizon": "a learning threshold tuned for a dense network",
    "test_invalid_actions.py::test_identity": "a learning threshold tuned for a dense network",
}


def swap_policies(text: str) -> str:
    """Every quoted policy string replaced by its sparse alias (class names and other words untouched)."""
    pattern = re.compile(r"""(["'])(%s)\1""" % "|".join(sorted(SWAPS, key=len, reverse=True)))
    return pattern.sub(lambda match: f"{match[1]}{SWAPS[match[2]]}{match[1]}", text)


def host_tests(package: str, folder: Path) -> Path:
    """The ``tests/`` folder of the installed version's source distribution, downloaded into ``folder``."""
    version = metadata.version(package)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                    f"{package}=={version}", "-d", str(folder)], check=True)
    (archive,) = folder.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    (tests,) = folder.glob("*/tests")
    return tests


def run_suite(tests: Path, files: list[str], workers: int, swap: bool) -> dict[str, object]:
    """Run ``files`` of a copy of ``tests`` and return the outcome of every test id."""
    work = Path(tempfile.mkdtemp(prefix="sb3-compat-"))
    copy = work / "tests"
    shutil.copytree(tests, copy)
    if swap:
        for path in copy.glob("*.py"):
            path.write_text(swap_policies(path.read_text()))
        shutil.copy(PLUGIN, work / "sb3_compat_plugin.py")
    report, count_file = work / "junit.xml", work / "sparse_models.txt"
    command = [sys.executable, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
               "-n", str(workers), "-o", "addopts=", "-W", "ignore::DeprecationWarning"]
    if swap:
        command += ["-p", "sb3_compat_plugin"]
    python_path = os.pathsep.join(filter(None, [str(work), os.environ.get("PYTHONPATH")]))
    environment = {"PYTHONPATH": python_path, "SB3_COMPAT_COUNT_FILE": str(count_file), "OMP_NUM_THREADS": "1"}
    log = work / "pytest.log"  # follow a long run with `tail -f /tmp/sb3-compat-*/pytest.log`
    with log.open("w") as output:
        completed = subprocess.run(command, cwd=copy, stdout=output, stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, **environment})
    outcomes = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '').rsplit('.', 1)[-1]}.py::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                message = (child.get("message") or "").splitlines()[0][:300] if child.get("message") else ""
                outcomes.setdefault("_messages", {})[test_id] = message  # type: ignore[index]
            elif child.tag == "skipped":
                outcome = "skipped"
        outcomes[test_id] = outcome
    built = sum(int(line) for line in count_file.read_text().split()) if count_file.exists() else 0
    tail = log.read_text()[-400:]
    shutil.rmtree(work, ignore_errors=True)
    return {"outcomes": outcomes, "sparse_models_built": built, "exit_code": completed.returncode, "tail": tail}


# Algorithms sb3-tar does not register (README: "TRPO, ARS: no"): their tests name them in the test id.
UNSUPPORTED = re.compile(r"(ARS|TRPO|ars_|_ars|trpo)")
UNSUPPORTED_REASON = ("an algorithm sb3-tar does not register: TRPO updates its actor by a line search and ARS by an "
                      "evolution strategy, so no optimizer step would keep a mask")


def by_design_reason(test_id: str) -> str | None:
    if UNSUPPORTED.search(test_id.split("::", 1)[1]):
        return UNSUPPORTED_REASON
    return next((reason for prefix, reason in BY_DESIGN.items() if test_id.startswith(prefix)), None)


def unswapped(test_id: str) -> str:
    """A swapped test's id as the baseline names it (parametrised ids carry the policy string)."""
    for dense, sparse in SWAPS.items():
        test_id = test_id.replace(sparse, dense)
    return test_id


def summarise(name: str, baseline: dict, swapped: dict) -> dict[str, object]:
    base = baseline["outcomes"]
    swap = {unswapped(test) if test != "_messages" else test: state for test, state in swapped["outcomes"].items()}
    swap["_messages"] = {unswapped(test): message for test, message in swapped["outcomes"].get("_messages", {}).items()}
    messages = swap.get("_messages", {})
    counts = {label: {state: sum(1 for key, value in run.items() if key != "_messages" and value == state)
                      for state in ("passed", "failed", "skipped")} for label, run in (("baseline", base), ("swap", swap))}
    broken = sorted(test for test, state in swap.items()
                    if test != "_messages" and state == "failed" and base.get(test) == "passed")
    return {
        "host": name, "counts": counts, "sparse_models_built": swapped["sparse_models_built"],
        "outcomes": {"baseline": base, "swap": swap},
        "failed_by_design": {test: by_design_reason(test) for test in broken if by_design_reason(test)},
        "failed_otherwise": {test: messages.get(test, "") for test in broken if not by_design_reason(test)},
    }


def markdown(records: list[dict], environment: dict) -> str:
    lines = ["# SB3's and sb3-contrib's own tests with the sparse policies", "",
             "`python -m benchmarks.sb3_compat`: each host's own test files, as shipped (baseline) and with every "
             "policy string swapped for sb3-tar's and only `sparsity=0.8` given (swap).", "",
             "| host | baseline passed / failed / skipped | swap passed / failed / skipped | sparse models built "
             "| failed by design | failed otherwise |", "|---|---|---|---:|---:|---:|"]
    for record in records:
        base, swap = record["counts"]["baseline"], record["counts"]["swap"]
        unsupported = sum(reason == UNSUPPORTED_REASON for reason in record["failed_by_design"].values())
        lines.append(f"| {record['host']} | {base['passed']} / {base['failed']} / {base['skipped']} | "
                     f"{swap['passed']} / {swap['failed']} / {swap['skipped']} | {record['sparse_models_built']} | "
                     f"{len(record['failed_by_design'])} ({unsupported} of unsupported algorithms) | "
                     f"{len(record['failed_otherwise'])} |")
    for record in records:
        lines += ["", f"## {record['host']}: failing with the swap by design", ""]
        lines += [f"- `{test}`: {reason}" for test, reason in record["failed_by_design"].items()] or ["- none"]
        lines += ["", f"## {record['host']}: failing with the swap otherwise (defects)", ""]
        lines += [f"- `{test}`: {message}" for test, message in record["failed_otherwise"].items()] or ["- none"]
        if record.get("fixed_since"):  # defects fixed after the run, each checked by running its test again
            lines += ["", f"## {record['host']}: defects fixed since this run", ""]
            lines += [f"- `{test}`: {note}" for test, note in record["fixed_since"].items()]
    return "\n".join([*lines, "", "## Where it ran", "", environment_markdown(environment), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=sorted(HOSTS))
    parser.add_argument("--render", type=Path, help="write the Markdown of a saved JSON record again, with today's "
                                                    "classification, and exit")
    args = parser.parse_args()
    if args.render:
        saved = json.loads(args.render.read_text())
        for record in saved["hosts"]:
            failing = {**record["failed_by_design"], **record["failed_otherwise"]}
            record["failed_by_design"] = {test: by_design_reason(test) for test in failing if by_design_reason(test)}
            record["failed_otherwise"] = {test: message for test, message in failing.items()
                                          if not by_design_reason(test)}
        args.render.write_text(json.dumps(saved, indent=2) + "\n")
        args.render.with_suffix(".md").write_text(markdown(saved["hosts"], saved["environment"]))
        return
    records = []
    for name, (package, _, files) in HOSTS.items():
        if args.only and name != args.only:
            continue
        with tempfile.TemporaryDirectory() as folder:
            tests = host_tests(package, Path(folder))
            swapped = run_suite(tests, files, args.workers, swap=True)
            baseline = run_suite(tests, files, args.workers, swap=False)
        records.append({**summarise(name, baseline, swapped), "package": package,
                        "version": metadata.version(package), "files": files})
        print(json.dumps(records[-1]["counts"]), records[-1]["sparse_models_built"], "sparse models")
    environment = describe_environment()
    suffix = f"_{args.only}" if args.only else ""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"sb3_compat{suffix}.json").write_text(json.dumps({"hosts": records, "environment": environment},
                                                                 indent=2) + "\n")
    (RESULTS / f"sb3_compat{suffix}.md").write_text(markdown(records, environment))


if __name__ == "__main__":
    main()
