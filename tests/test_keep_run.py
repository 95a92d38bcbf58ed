"""benchmarks/keep_run.py: the kept copy of a running measurement is whole, self-contained, and a
run resumes from it as from the original."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

import pytest
from test_eval import config

from ponder.eval.runner import run_eval
from ponder.eval.store import Store

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "keep_run.py"
spec = importlib.util.spec_from_file_location("keep_run", SCRIPT)
assert spec is not None and spec.loader is not None
keep_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(keep_run)


def results(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
    finally:
        conn.close()


def test_a_run_resumes_from_its_kept_copy_on_a_new_machine(tmp_path: Path) -> None:
    work = tmp_path / "runs"
    work.mkdir()
    run_eval(config(work, limit=2, share_samples=True), progress=False)
    kept = tmp_path / "kept.db"
    keep_run.keep(work / "run.db", kept)
    for leftover in work.glob("run.db*"):  # the runs/ folder is gone with the old machine
        leftover.unlink()
    outcome = run_eval(config(work, limit=3, share_samples=True, resume=True, out=kept),
                       progress=False)
    assert (outcome.resumed, outcome.written) == (2 * 7, 7)
    with Store.read(kept) as store:
        assert {row.position for row in store.rows()} == {0, 1, 2}


def test_rows_a_writer_holds_in_its_wal_are_kept_and_the_copy_has_no_wal(tmp_path: Path) -> None:
    run_eval(config(tmp_path, limit=2), progress=False)
    source = tmp_path / "run.db"
    before = results(source)
    writer = sqlite3.connect(source)  # a running evaluation: its last commit is in the -wal
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("DELETE FROM results WHERE position = 1")
    writer.commit()
    try:
        assert Path(f"{source}-wal").stat().st_size > 0
        target = tmp_path / "kept" / "run.db"
        target.parent.mkdir()
        target.write_bytes(b"an older copy")
        keep_run.keep(source, target)
    finally:
        writer.close()
    assert results(target) == before - 7
    assert sorted(p.name for p in target.parent.iterdir()) == ["run.db"]  # no -wal, no partial
    conn = sqlite3.connect(target)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()


def test_a_missing_database_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no such database; run the measurement first"):
        keep_run.keep(tmp_path / "absent.db", tmp_path / "kept.db")
    assert not (tmp_path / "kept.db").exists()
