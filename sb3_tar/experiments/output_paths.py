"""Where a command will write, checked before it does any work: one clear error instead of a traceback later.

``sb3-tar train`` writes a result folder (and ``.sb3-tar-partial/<name>`` beside it) and
``sb3-tar export`` writes one file. A path that cannot be that (under a file, a file where a folder
goes, a folder where a file goes, a name longer than the file system allows) is refused by name.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from sb3_tar.engine.errors import UserError


def _name_max(path: Path) -> int:
    """The longest file name the file system under ``path`` takes (255 on Linux file systems)."""
    for folder in path.parents:
        try:
            return os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue  # not there (yet), or not a folder
    return 255


def _check_names(path: Path, setting: str, reserve: int = 0) -> None:
    """Each name in ``path`` fits the file system, with ``reserve`` bytes to spare (for a temporary name beside it)."""
    limit = _name_max(path) - reserve
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise UserError(f"{setting}: the name {part[:40]!r}... is {len(os.fsencode(part))} bytes; at most {limit} "
                            "fit here")


def _check_parents(path: Path, setting: str) -> None:
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{setting} {str(path)!r}: {str(parent)!r} is a file, not a folder")


def check_output_folder(path: Path, setting: str = "--output") -> None:
    """A result folder can be created (or replaced) at ``path``.

    :raises ValueError: naming the path and what is in the way.
    """
    _check_names(path, setting)
    _check_parents(path, setting)
    if path.exists() and not path.is_dir():
        raise UserError(f"{setting} {str(path)!r} is a file, not a result folder (--overwrite replaces only a result "
                        "folder); choose another --output")


def check_output_file(path: Path, setting: str = "output") -> None:
    """A file can be written at ``path``.

    :raises ValueError: naming the path and what is in the way.
    """
    _check_names(path, setting, reserve=len(".tmp") + 1)  # written as ".<name>.tmp", then renamed
    _check_parents(path, setting)
    if path.is_dir():
        raise UserError(f"{setting} {str(path)!r} is a folder; give a file name, e.g. {str(path / 'actor.sb3tar')!r}")


def describe_os_error(error: OSError) -> str:
    """An ``OSError`` as one line: what could not be written and why (disk full, read-only, no permission)."""
    reason = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
              errno.EACCES: "permission denied", errno.EDQUOT: "the disk quota is exceeded"}.get(
        error.errno, error.strerror or str(error))
    where = f" {error.filename}" if error.filename else ""
    return f"could not write{where}: {reason}"
