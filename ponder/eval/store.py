"""The results store: one SQLite file per evaluation run, safe to kill at any moment.

Three tables of facts and one of history:

    meta(key, value)      what was evaluated: model, model args, task, split, data, settings,
                          plus the first command line, ponder version and machine (JSON values)
    sessions(...)         one row per invocation (started, command, version, machine), so a
                          resumed run records every process that wrote to the file
    results(...)          one row per (question id × scheme spec × seed), PRIMARY KEY on those
                          three, so a resumed run can never write a row twice
    samples(...)          with --share-samples, every sample drawn into a question's pool, so a
                          resumed run reuses the samples of questions it had not finished
                          instead of drawing them again (a pool is the hash of what decides a
                          sample's text apart from its index: prompt, sampling settings, seed)

Durability: WAL journal with `synchronous=FULL`, and every result row committed in its own
transaction. With WAL, a commit appends the row's pages to the -wal file; the database file is
only rewritten at checkpoints, which are themselves crash-safe. A SIGKILL therefore loses at
most the row in flight and never corrupts the file (kill -9 does not lose data the OS already
has, even with synchronous=NORMAL). FULL also fsyncs the WAL at each commit, so a committed row
survives a power cut too. The price, one fsync per row, is nothing next to a model call.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ponder.core.errors import DataError, PonderError
from ponder.core.files import check_writable
from ponder.core.types import Completion, RoleUsage

SCHEMA_VERSION = 1
# Meta keys that define *what* is evaluated: a resumed run must match them exactly.
IDENTITY = ("model", "model_args", "task", "split", "data", "settings", "roles")
# Meta keys a resumed run may change (add schemes, seeds, questions): the latest run's are kept.
# The rest (created, command, version, machine) describe the first run; `sessions` has them all.
LATEST = ("schemes", "seeds", "limit")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY, started TEXT NOT NULL, command TEXT NOT NULL,
    version TEXT NOT NULL, machine TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    question_id TEXT NOT NULL, scheme TEXT NOT NULL, seed INTEGER NOT NULL,
    position INTEGER NOT NULL,           -- the question's index in the task split
    config TEXT NOT NULL,                -- the scheme's full config, JSON
    correct INTEGER NOT NULL,            -- 0 or 1
    answer TEXT, gold TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
    model_calls INTEGER NOT NULL, seconds REAL NOT NULL,
    finish_reason TEXT NOT NULL,
    trace TEXT NOT NULL,                 -- ponder.core.types.Trace.to_dict(), JSON
    created TEXT NOT NULL,
    model_seconds REAL,                  -- Usage.model_seconds; NULL in files before it
    by_role TEXT,                        -- Usage.by_role, JSON; NULL in files before it
    PRIMARY KEY (question_id, scheme, seed));
CREATE TABLE IF NOT EXISTS samples (
    question_id TEXT NOT NULL, pool TEXT NOT NULL, idx INTEGER NOT NULL,
    completion TEXT NOT NULL,            -- ponder.core.types.Completion, JSON
    PRIMARY KEY (question_id, pool, idx));
"""
REQUIRED = {"meta", "sessions", "results"}  # `samples` came later: older files lack it
TABLES = REQUIRED | {"samples"}


class StoreExists(PonderError):
    """A new run pointed at a database that already holds results."""


class StoreMismatch(PonderError):
    """A --resume into a database that holds a different evaluation."""


@dataclass
class Row:
    """One scheme run on one question with one seed."""

    question_id: str
    scheme: str
    seed: int
    position: int
    config: str
    correct: int
    answer: str | None
    gold: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cached_tokens: int
    model_calls: int
    seconds: float
    finish_reason: str
    trace: str
    created: str = ""
    model_seconds: float | None = None  # model time (batched-step shares); wall is `seconds`
    by_role: str | None = None  # Usage.by_role as JSON: the cost of each (role, model)

    def usage_by_role(self) -> list[RoleUsage]:
        """What each (role, model) cost in this row; [] in files written before roles."""
        return [RoleUsage(**part) for part in json.loads(self.by_role or "[]")]

    @property
    def key(self) -> tuple[str, str, int]:
        return self.question_id, self.scheme, self.seed


COLUMNS = tuple(f.name for f in fields(Row))
# Columns added after the first files were written, with their SQL types: an older file gets
# them when it is next written to, and reads them as NULL until then.
ADDED_COLUMNS = {"model_seconds": "REAL", "by_role": "TEXT"}


def machine_info() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "cpu": cpu_model()}


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's model name and widest x86 vector extension, e.g. "AMD EPYC (avx512f)": what
    decides a CPU backend's speed, so that seconds from a run resumed on other machines can be
    told apart. Read from Linux's cpuinfo; elsewhere whatever `platform` knows, or None."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return platform.processor() or None
    name = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    have = set(flags[1].split()) if flags else set()
    simd = next((f for f in ("avx512f", "avx2", "avx") if f in have), None)
    model = name[1].strip() if name else platform.machine()
    return f"{model} ({simd})" if simd else model or None


def ponder_version() -> str:
    from ponder import __version__
    return __version__


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Store:
    """An open results database. Use `Store.create` to start or resume a run, `Store.read` to
    report on one."""

    def __init__(self, path: Path, conn: sqlite3.Connection, columns: set[str]) -> None:
        self.path, self.conn, self.columns = path, conn, columns

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def _connect(cls, path: Path, *, write: bool) -> Store:
        fix = "choose another --out" if write else "check the file's permissions"
        try:  # isolation_level=None: autocommit, so each INSERT is its own transaction
            conn = sqlite3.connect(path if write else _read_uri(path), uri=not write,
                                   isolation_level=None, timeout=30)
        except sqlite3.Error as e:
            raise DataError(f"cannot open {path} ({e}); {fix}") from e
        try:
            tables = {name for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if write and tables <= TABLES:  # a new file, or one of ours: never another app's
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(_SCHEMA)
                tables = TABLES
            if not tables >= REQUIRED:
                raise sqlite3.DatabaseError("it has no results table")
            columns = {c for (_, c, *_) in conn.execute("PRAGMA table_info(results)")}
            for column, kind in ADDED_COLUMNS.items():  # written before the column existed
                if write and column not in columns:
                    conn.execute(f"ALTER TABLE results ADD COLUMN {column} {kind}")
                    columns.add(column)
        except sqlite3.OperationalError as e:  # it is a database, but cannot be read/written
            conn.close()
            raise DataError(f"cannot {'write' if write else 'read'} {path} ({e}); {fix}") from e
        except sqlite3.DatabaseError as e:
            conn.close()
            raise DataError(f"{path} is not a ponder results database ({e}); "
                            + ("choose another --out" if write else "give the --out of a "
                               "`ponder eval` run")) from e
        return cls(path, conn, columns)

    @classmethod
    def create(cls, path: Path, meta: Mapping[str, Any], *, resume: bool,
               command: str = "") -> Store:
        """Open `path` for writing the evaluation described by `meta`.

        Without `resume`, a database that already holds results is an error (never overwrite);
        with it, the stored identity (model, task, split, ...) must equal `meta`'s. A file (or
        folder) this call made is removed again if it fails."""
        check_out(path)
        made = ([] if path.exists() else [path]) + _missing_parents(path)  # what a failure removes
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            store = cls._connect(path, write=True)
        except OSError as e:
            _remove(made)
            raise DataError(f"cannot write {path} ({e.strerror or e}); choose another --out"
                            ) from e
        except BaseException:
            _remove(made)
            raise
        try:
            count = store.count()
            stored = store.meta()
            if count and not resume:
                raise StoreExists(f"{path} already holds {count} results; pass --resume to "
                                  "continue that run, or choose another --out")
            if count and resume:
                store._check_identity(stored, meta)
            with store.conn:  # one transaction: meta and session appear together or not at all
                store.conn.execute("BEGIN")
                if not count:  # a new run, or an empty file left by one killed before a row
                    store.conn.execute("DELETE FROM meta")
                    stored = {}
                for key, value in {"schema_version": SCHEMA_VERSION, "created": _now(),
                                   "command": command, "version": ponder_version(),
                                   "machine": machine_info(), **meta}.items():
                    if key not in stored or key in LATEST:
                        store.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                           (key, json.dumps(value)))
                store.conn.execute(
                    "INSERT INTO sessions (started, command, version, machine) VALUES (?,?,?,?)",
                    (_now(), command, ponder_version(), json.dumps(machine_info())))
        except BaseException:
            store.close()
            _remove(made)
            raise
        return store

    @classmethod
    def read(cls, path: Path) -> Store:
        if path.is_dir():
            raise DataError(f"{path} is a folder; give a results file written by `ponder eval "
                            "--out FILE`")
        if not path.is_file():
            raise DataError(f"no results database at {path}; run `ponder eval ... --out {path}`")
        if not os.access(path, os.R_OK):
            raise DataError(f"cannot read {path} (permission denied); check its permissions")
        return cls._connect(path, write=False)

    def _check_identity(self, stored: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        for key in IDENTITY:
            if stored.get(key) != meta.get(key):
                raise StoreMismatch(
                    f"cannot resume {self.path}: it holds {key}={stored.get(key)!r}, this run "
                    f"has {key}={meta.get(key)!r}; use the same settings or another --out")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing and reading ---------------------------------------------------------------

    def add(self, row: Row) -> None:
        """Write one row, committed on return (its own transaction)."""
        values = asdict(row)
        values["created"] = values["created"] or _now()
        marks = ", ".join("?" for _ in COLUMNS)
        try:
            self.conn.execute(f"INSERT INTO results ({', '.join(COLUMNS)}) VALUES ({marks})",
                              [values[c] for c in COLUMNS])
        except sqlite3.IntegrityError as e:  # the resume logic skips stored keys: a 2nd writer
            raise StoreExists(f"{self.path} already has the row {row.key}; is another "
                              "`ponder eval` writing to it?") from e

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def count(self) -> int:
        [(n,)] = self.conn.execute("SELECT COUNT(*) FROM results")
        return int(n)

    def done(self) -> dict[tuple[str, str, int], int]:
        """The keys already stored (what a resumed run skips), each with its `correct`."""
        return {(q, s, int(seed)): int(ok) for q, s, seed, ok in self.conn.execute(
            "SELECT question_id, scheme, seed, correct FROM results")}

    def add_sample(self, question_id: str, pool: str, index: int, sample: Completion) -> None:
        """Keep one sample of a question's shared pool, committed on return."""
        self.conn.execute("INSERT OR IGNORE INTO samples VALUES (?, ?, ?, ?)",
                          (question_id, pool, index, json.dumps(asdict(sample))))

    def samples(self, question_ids: Iterable[str]) -> dict[str, dict[str, dict[int, Completion]]]:
        """The stored pools of these questions: question id -> pool -> sample index -> sample."""
        out: dict[str, dict[str, dict[int, Completion]]] = {}
        if "samples" not in self.tables():
            return out
        for q in set(question_ids):
            for pool, index, text in self.conn.execute(
                    "SELECT pool, idx, completion FROM samples WHERE question_id = ?", (q,)):
                out.setdefault(q, {}).setdefault(pool, {})[int(index)] = Completion(
                    **json.loads(text))
        return out

    def tables(self) -> set[str]:
        return {name for (name,) in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}

    def rows(self, *, traces: bool = True) -> Iterator[Row]:
        """All rows in question order; `traces=False` leaves traces out (reports do not need
        them, and a large run's traces are hundreds of megabytes)."""
        columns = [c if c in self.columns and (traces or c != "trace")
                   else "'' AS trace" if c == "trace" else f"NULL AS {c}" for c in COLUMNS]
        cursor = self.conn.execute(f"SELECT {', '.join(columns)} FROM results "
                                   "ORDER BY position, scheme, seed")
        for values in cursor:
            yield Row(**dict(zip(COLUMNS, values, strict=True)))


def _read_uri(path: Path) -> str:
    """How to open `path` to read it. mode=rw: a file deleted since `Store.read` checked is an
    error, not a new empty database. A WAL database's reader must create the -shm (and -wal)
    files beside it, so in a folder it cannot write to, where no -wal file says a writer is
    at work, it opens the file as immutable: no locks, no journal, just the pages."""
    uri = path.absolute().as_uri()
    wal = path.with_name(path.name + "-wal")
    if not os.access(path.absolute().parent, os.W_OK | os.X_OK) and not wal.exists():
        return f"{uri}?mode=ro&immutable=1"
    return f"{uri}?mode=rw"


def check_out(path: Path) -> None:
    """Fail in one line, before anything runs, where `path` cannot become a results file (the
    folder that holds it must also take the WAL journal beside it). Reads only;
    `Store.create` makes the missing folders."""
    if path.is_dir():
        raise DataError(f"--out {path} is a folder; give a file in it, e.g. --out "
                        f"{path / 'run.db'}")
    check_writable(path, "--out")


def _missing_parents(path: Path) -> list[Path]:
    """The folders `path.parent.mkdir(parents=True)` would make, deepest first."""
    return [p for p in path.absolute().parents if not p.exists()]


def _remove(made: list[Path]) -> None:
    """Remove what a failed `Store.create` made: the database with its WAL files, then the
    folders made for it (deepest first), each only if nothing else has appeared in it."""
    for p in made:
        if p.is_dir():
            with contextlib.suppress(OSError):  # not empty: something else wrote there meanwhile
                p.rmdir()
        else:
            for part in (p, p.with_name(p.name + "-wal"), p.with_name(p.name + "-shm"),
                         p.with_name(p.name + "-journal")):
                part.unlink(missing_ok=True)


def command_line() -> str:
    """The command that started this process, as a user would retype it."""
    import shlex
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = (f"python -m {spec.name.removesuffix('.__main__')}" if spec is not None
            else Path(sys.argv[0]).name)
    return " ".join([head, *(shlex.quote(a) for a in sys.argv[1:])])
