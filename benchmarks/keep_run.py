"""Keeps a long measurement's results database in the repository, so a run survives a new machine.

    .venv/bin/python benchmarks/keep_run.py runs/search_gsm8k100.db docs/results/search_gsm8k100.db

The runs/ folder is not tracked: a session that ends on one machine and a next one on another lose
it, and with it hours of CPU. This writes a consistent, compact copy of the database (SQLite's
`VACUUM INTO`, a read transaction: safe beside the running evaluation, which keeps writing) to a
tracked path, atomically (a temporary file renamed over the old copy). A script that finds no
working database starts from the kept copy (`benchmarks/search_gsm8k100.sh`), and `--resume`
carries on from the questions it holds.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path

from ponder.core.files import fsync_dir


def keep(source: Path, target: Path) -> int:
    """Copy `source` to `target` compacted; the copy's size in bytes."""
    if not source.is_file():
        sys.exit(f"{source}: no such database; run the measurement first")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as conn:
        conn.execute("VACUUM INTO ?", (str(partial),))
    conn.close()
    with sqlite3.connect(partial) as copy:  # a self-contained file: no -wal beside it
        copy.execute("PRAGMA journal_mode=DELETE")
    copy.close()
    os.replace(partial, target)
    fsync_dir(target.parent)
    return target.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the running measurement's database")
    parser.add_argument("target", type=Path, help="the tracked copy to write")
    args = parser.parse_args()
    size = keep(args.source, args.target)
    print(f"kept {args.source} as {args.target} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
