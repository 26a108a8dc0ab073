"""A user's YAML or JSON file (a run configuration, a sweep grid, random-policy returns), read as a mapping.

Whatever is wrong with it (missing, not YAML, not a mapping) becomes a ``ValueError`` naming the
file and what it should hold, which the command line prints as its error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from sb3_tar.engine.errors import UserError


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping in the YAML or JSON file ``path``; ``what`` says what the file should be, for errors.

    A ``.json`` file is read as JSON: PyYAML follows YAML 1.1, which reads JSON's ``1e-05`` as a string.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{what} {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{what} {str(path)!r} cannot be read: {error}") from None
    is_json = path.suffix.lower() == ".json"
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as error:  # json.JSONDecodeError is a ValueError, as are some YAML values
        raise UserError(f"{what} {str(path)!r} is not valid {'JSON' if is_json else 'YAML'}: {error}") from None
    if not isinstance(data, dict):
        shown = "empty" if data is None else f"a {type(data).__name__}"
        raise UserError(f"{what} {str(path)!r} must hold a mapping of names to values; it is {shown}")
    return data
