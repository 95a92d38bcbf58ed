"""ponder.core.files: a file is replaced whole, with a plain file's permissions, or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ponder.core.files import atomic_file, write_text_atomic


def test_a_written_file_is_whole_and_readable_as_the_umask_allows(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "sub" / "a.json", "{}\n")
        with atomic_file(tmp_path / "b.png", "wb") as fh:
            fh.write(b"\x89PNG")
    finally:
        os.umask(old)
    assert (tmp_path / "sub" / "a.json").read_text() == "{}\n"
    assert (tmp_path / "b.png").read_bytes() == b"\x89PNG"
    for name in ("sub/a.json", "b.png"):  # mkstemp's 0600 would hide a plot from a web server
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_file(path) as fh:
        fh.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl"]
