"""Files written whole or not at all: a reader (or a crash) never sees half of one.

    with atomic_file(path, "wb") as fh:   # a hidden temporary file beside `path`
        fh.write(data)                    # ... fsync'd, given the umask's permissions, renamed
    write_text_atomic(path, text)         # the same for a string

Traces, datasets, label files and plots go through here. `check_writable` says, before any
work is done, in one line, why a path could not be written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ponder.core.errors import DataError


@contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path` (mode "w" or "wb"); on a clean exit it is flushed,
    fsync'd, made readable as a plain file would be (mkstemp makes it 0600) and renamed over
    `path`, and the rename made durable; on an error it is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def check_writable(path: Path, option: str) -> None:
    """A one-line DataError, before anything runs, where `path` could not be written (as a
    file, its missing folders made): it is a folder, a file stands where a folder must be, or
    the folder that would hold it is not writable. `option` names the flag that gave it."""
    if path.is_dir():
        raise DataError(f"{option} {path} is a folder; give a file in it, e.g. {option} "
                        f"{path / 'out'}")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise DataError(f"cannot write {path} (permission denied); choose another {option}")
    folder = next(p for p in path.absolute().parents if p.exists())  # `/` always does
    if not folder.is_dir():
        raise DataError(f"cannot write {path}: {folder} is a file, not a folder; choose "
                        f"another {option}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(f"cannot write {path}: the folder {folder} is not writable; choose "
                        f"another {option}")


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_file(path) as fh:
        fh.write(text)


def fsync_dir(path: Path) -> None:
    """Make the renames in a folder durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
