"""The checks every setting goes through, wherever it comes from (a flag, a YAML file, a keyword argument).

One place, so that a number, an integer, a seed or a misspelt name is accepted or refused the same
way by the engine, the policies, the callbacks, run configs and sweeps. Refusals are ``UserError``s
that name the setting, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Sequence

from sb3_tar.engine.errors import UserError


def plain_number(value: object) -> object:
    """``value`` as a Python number if it is a NumPy (or other) real scalar, else unchanged.

    ``np.float32(0.8)`` becomes ``0.800000011920929`` (the float32's exact value), ``np.int64(3)``
    becomes ``3``; booleans, strings and everything else are returned as they are, for the checks
    to refuse.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or type(value) in (int, float):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer (NumPy's included), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    """Whether ``value`` is a finite real number (Python or NumPy), not a bool."""
    value = plain_number(value)
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_number(setting: str, value: object) -> float:
    """``value`` as a float; raises unless it is a finite real number (Python or NumPy), not a bool."""
    if not is_finite_number(value):
        raise UserError(f"{setting}={plain_number(value)!r} must be a finite number")
    return float(plain_number(value))


def check_fraction(setting: str, value: object) -> float:
    """``value`` as a float in [0, 1] (Python or NumPy, not a bool)."""
    if not is_finite_number(value):
        raise UserError(f"{setting}={plain_number(value)!r} must be a finite number in [0, 1]")
    value = float(plain_number(value))
    if not 0.0 <= value <= 1.0:
        raise UserError(f"{setting}={value!r} must be in [0, 1]")
    return value


def check_integer(setting: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int; raises unless it is an integer (Python or NumPy, not a bool) >= ``minimum``."""
    value = plain_number(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{setting}={value!r} must be an integer >= {minimum}")
    return value


def check_seed(seed: object) -> None:
    """Refuse anything but a non-negative integer (Python or NumPy) or ``None``, before any work is done."""
    if seed is not None and (not is_int(seed) or seed < 0):
        raise UserError(f"seed={seed!r} must be a non-negative integer or None")


def closest(name: object, known: Sequence[str], cutoff: float = 0.6) -> str | None:
    """The known name ``name`` most likely misspells, or ``None``."""
    matches = difflib.get_close_matches(str(name), list(known), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def did_you_mean(unknown: Sequence[str], known: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for misspelt names, or ``""`` when none is close to a known one."""
    hints = [(name, match) for name in unknown if (match := closest(name, known)) is not None]
    if len(unknown) == 1 and hints:
        return f" (did you mean {hints[0][1]!r}?)"
    return f" (did you mean {', '.join(f'{match!r} for {name!r}' for name, match in hints)}?)" if hints else ""
