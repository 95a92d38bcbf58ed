"""One exception base, a short hierarchy (shaped after httpx's `_exceptions.py`).

Every error a user can cause is a `PonderError` whose message is one line that says what went
wrong and what to do. The CLI prints exactly that line; the server maps each class to an HTTP
status. Programming errors stay asserts and ordinary exceptions.

    PonderError
    ├── ConfigError          a bad parameter value (names the parameter, the value, the fix)
    ├── ModelError           a model cannot be found, installed, loaded or reached
    │   ├── ModelNotFound    unknown catalog name / missing file / missing package
    │   ├── ModelLoadError   a corrupt or truncated weights file
    │   └── BackendError     a backend failed while generating (server down, timeout, ...)
    ├── UnknownName          an unknown scheme / task / scorer name (lists the valid names)
    └── DataError            a dataset file that cannot be read
"""

from __future__ import annotations

from collections.abc import Iterable

SHOWN = 80  # characters of an offending value an error message repeats


def shown(value: object) -> str:
    """`repr(value)`, cut to SHOWN characters: a 100 kB value is not echoed back in full."""
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[:SHOWN - 1]}…"


class PonderError(Exception):
    """Base of every error ponder raises on purpose; `str(err)` is one line for the user."""


class ConfigError(PonderError, ValueError):
    def __init__(self, param: str, value: object, fix: str) -> None:
        self.param, self.value, self.fix = param, value, fix
        super().__init__(f"invalid {param}={shown(value)}: {fix}")


class ModelError(PonderError):
    pass


class ModelNotFound(ModelError):
    pass


class ModelLoadError(ModelError):
    pass


class BackendError(ModelError):
    pass


class UnknownName(PonderError, KeyError):
    def __init__(self, kind: str, name: str, valid: Iterable[str], *, also: str = "") -> None:
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {shown(name)}; valid names: {', '.join(self.valid)}"
                         + (f", {also}" if also else ""))

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataError(PonderError):
    pass
