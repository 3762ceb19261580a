"""Errors a user can act on: each names the file, line, field, what was expected and what was found."""

from __future__ import annotations

from pathlib import Path


class FinsentError(Exception):
    """Base class: the CLI prints the message and exits with code 2, without a traceback."""


def locate(path: str | Path | None = None, line: int | None = None, field: str | None = None) -> str:
    """Return a compiler-style location prefix such as ``recipes/x.yaml:14: grpo.plateau.patience``."""
    where = str(path) if path is not None else ""
    if line is not None:
        where = f"{where}:{line}" if where else f"line {line}"
    if field:
        where = f"{where}: {field}" if where else field
    return where


_UNSET = object()


class _LocatedError(FinsentError):
    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        expected: str | None = None,
        got: object = _UNSET,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.expected = expected
        self.got = got
        parts = [locate(path, line, field)] if (path or line or field) else []
        detail = message
        if expected is not None:
            detail = f"{message}: expected {expected}" if message else f"expected {expected}"
            if got is not _UNSET:
                detail += f", got {_short_repr(got)}"
        parts.append(detail)
        super().__init__(": ".join(p for p in parts if p))


class ConfigError(_LocatedError):
    """A recipe or override is wrong: unknown key, wrong type, bad combination."""


class DataError(_LocatedError):
    """An input file is wrong: missing, undecodable, a missing column, an unknown label."""


def _short_repr(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
