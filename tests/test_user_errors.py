"""Bad input is a ``UserError`` (one line from the command line); any other exception is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

import sb3_tar
import sb3_tar.cli
from sb3_tar import UserError

PACKAGE = Path(sb3_tar.__file__).parent


def test_sb3_tar_refuses_input_with_user_error_never_a_bare_value_error():
    """Every refusal sb3-tar raises itself is a UserError (a ValueError), so the CLI can tell it from a bug."""
    bare = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                    getattr(node.exc.func, "id", None) == "ValueError":
                bare.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert bare == []
    assert issubclass(UserError, ValueError)


def run_main(monkeypatch, error: Exception) -> None:
    def run(args: argparse.Namespace) -> None:
        raise error

    monkeypatch.setattr(sb3_tar.cli, "parse_arguments", lambda argv: argparse.Namespace(run=run, command="train"))
    sb3_tar.cli.main([])


def test_a_user_error_ends_the_command_with_one_line_naming_it(monkeypatch):
    with pytest.raises(SystemExit, match=r"^sb3-tar train: sparsity=2 must be in \[0, 1\)$"):
        run_main(monkeypatch, UserError("sparsity=2 must be in [0, 1)"))


@pytest.mark.parametrize("error", [ValueError("math domain error"), KeyError("policy"), TypeError("bad operand")])
def test_any_other_error_is_a_bug_and_keeps_its_traceback(monkeypatch, error):
    with pytest.raises(type(error)):
        run_main(monkeypatch, error)


def test_a_bad_setting_on_the_command_line_is_still_one_line(capsys):
    with pytest.raises(SystemExit) as stopped:
        sb3_tar.cli.main(["train", "--algo", "sac", "--env", "Pendulum-v1", "--method", "tar", "--sparsity", "1.5",
                          "--output", "unused"])
    assert str(stopped.value.code).startswith("sb3-tar train: ") and "sparsity" in str(stopped.value.code)
    assert "\n" not in str(stopped.value.code)


def test_a_user_criterions_plain_value_error_becomes_a_user_error():
    from sb3_tar.engine.criteria import check_criterion_options, register_criterion, select

    def check_noise(*, noise: float = 0.0) -> None:
        if noise < 0:
            raise ValueError(f"noise={noise!r} must be >= 0")

    @register_criterion("test_user_error_noise", check_options=check_noise)
    def noisy(target, *, noise: float = 0.0):
        return select(target, target.cpu_weights(), "global", absolute=True)

    with pytest.raises(UserError, match=r"noise=-1 must be >= 0"):
        check_criterion_options("test_user_error_noise", {"noise": -1})


def test_a_user_errors_traceback_names_it_by_its_public_name():
    assert f"{UserError.__module__}.{UserError.__qualname__}" == "sb3_tar.UserError"
