"""Crash-safe file writes (write to ``*.tmp`` then ``os.replace``, so a crash never leaves a file that looks done) and
the one JSONL line reader whose errors name the file and the line."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from finsent.errors import DataError, FinsentError

# Storage failures a user fixes outside the program: the CLI reports them in one line, without a traceback.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


def cannot_write(path: str | Path, err: OSError) -> FinsentError:
    """Return the error for a failed write of ``path``: the path, then why (full disk, read-only, ...)."""
    return FinsentError(f"{path}: cannot write ({err.strerror or err})")


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a storage failure (``STORAGE_ERRNOS``) while writing ``path``, an append-only log say, into an error
    naming it; other errors of the work in the block pass through as they are."""
    try:
        yield
    except OSError as err:
        if err.errno not in STORAGE_ERRNOS:
            raise
        raise cannot_write(path, err) from err


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on ``path``'s ``*.tmp`` sibling, then rename it over ``path``; errors such as a full disk
    name the path, and leave no ``*.tmp``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # a read-only directory: there is no tmp file to remove either
            pass
        raise cannot_write(path, err) from err
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, flushed to disk before the rename."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    return atomic_write(path, write)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write one JSON object per line, atomically."""
    return atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def json_object(line: str | bytes, path: str | Path, line_no: int) -> dict[str, Any]:
    """Parse one JSONL line into a dict; anything else is a ``DataError`` naming the file and the line."""
    try:
        value = json.loads(line)
    except ValueError as err:
        raise DataError(f"invalid JSON ({err})", path=path, line=line_no) from err
    if not isinstance(value, dict):
        raise DataError("", path=path, line=line_no, expected="a JSON object", got=value)
    return value
