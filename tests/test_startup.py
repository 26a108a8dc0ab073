"""``sb3-tar --help`` and ``sb3-tar train --help`` start without importing Stable-Baselines3 or gymnasium."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from sb3_tar.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = [name for name in ("stable_baselines3", "sb3_contrib", "rl_zoo3", "gymnasium") if name in sys.modules]
print("HEAVY", heavy)
"""


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["export", "--help"], ["evaluate", "--help"],
                                  ["sweep", "--help"]])
def test_help_imports_no_sb3(argv):
    result = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage: sb3-tar" in result.stdout
    assert "HEAVY []" in result.stdout, result.stdout[-500:]
