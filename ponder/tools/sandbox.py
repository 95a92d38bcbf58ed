"""A sandbox for model-written Python: one contained process per run (STYLE.md 15).

    ex = run_python("print(sum(range(10)))", timeout=2)
    ex.stdout == "45\\n" and ex.exit_code == 0 and ex.error is None

Each call writes the code to a fresh temporary working directory and runs it in a fresh
interpreter (`python -I -S -B -X utf8`: the standard library only, no site-packages, no PYTHON*
variables) with a minimal environment (PATH, HOME and TMPDIR the working directory, LANG; none
of ponder's variables, so no API keys). The directory is removed afterwards. What contains it:

    wall time   the parent kills the process group, and with it the PID namespace, at `timeout`
    CPU         RLIMIT_CPU: SIGXCPU at cpu_seconds, SIGKILL a second later (each process)
    memory      RLIMIT_AS: an allocation past memory_mb raises MemoryError
    output      the parent keeps max_output characters of each stream; a flood is killed
    files       RLIMIT_FSIZE (FILE_MB a file), RLIMIT_NOFILE, RLIMIT_CORE 0
    processes   RLIMIT_NPROC (counted per uid), and a PID namespace: when the program ends,
                every process it started ends too, setsid() or not
    network     a new network namespace with no interface up (127.0.0.1 included)
    filesystem  a new mount namespace and a chroot holding only read-only binds of /usr, /bin,
                /lib*, /etc and the interpreter's own prefix, five devices (/dev/null, ...),
                its own /proc, and a tmpfs of DISK_MB as the working directory: the rest of the
                host (/root, /home, /tmp, the project) is not there, and nothing is writable
                but the working directory, whose contents vanish with the namespace
    privileges  run as root, the program runs as uid/gid SANDBOX_UID (nobody) with no
                supplementary groups and no new privileges (setuid binaries do nothing)

The process tree: ponder -> bootstrap (sandbox_child.py run as a script, in a new session) ->
init of the new PID namespace (builds the root, reaps) -> the program (drops root, sets the limits,
execs the interpreter on main.py). The bootstrap reports to the parent on a status pipe which
containment the program got, before the program starts.

As root the namespaces are the kernel's; as another user they come from a user namespace
(the program keeps that user's uid, and loses its namespace capabilities at exec). Where
neither is allowed (a container without CAP_SYS_ADMIN, unprivileged user namespaces switched
off) the fallback is Python-level and logged once as a warning: the rlimits and the uid drop
still hold, and an audit hook (PEP 578) in the program's own interpreter refuses sockets
("no network in the sandbox"), writes outside the working directory, new processes (nothing
would end a forked one) and ctypes. A determined program can get around an audit hook: it
stops accidents, not attacks. `Execution.isolation` says which level a run had. Where root
cannot drop to SANDBOX_UID there (the interpreter unreadable by it), `run_python` raises a
one-line PonderError rather than run model code as root.

Beyond the issue's sketch: the bootstrap is a module run as a script (sandbox_child.py: linted
and typed, not a string); the chroot, PID, IPC and UTS namespaces and the working
directory's tmpfs; and `Execution.isolation`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from ponder.core.errors import ConfigError, PonderError
from ponder.tools import sandbox_child

log = logging.getLogger(__name__)

SANDBOX_UID = 65534  # nobody: the uid (and gid) a program runs as when ponder runs as root
SANDBOX_GID = 65534
NAMESPACES = True  # try the kernel's isolation first; False runs the Python-level fallback
TRUNCATED = "\n[output truncated]"
_REFUSED: list[str] = []  # why namespaces were refused in this process, once known

# The last exception line in a failed program's stderr -> the limit it ran into. The last
# exception line, not the last line: processes dying at once interleave their tracebacks. A
# program that catches the error and goes on is not reported: its exit code is its own.
EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(error|exception|exit|interrupt)\b", re.IGNORECASE)
LIMIT_MESSAGES = (
    ("MemoryError", "memory limit"),
    ("[Errno 11] Resource temporarily unavailable", "process limit"),  # fork past RLIMIT_NPROC
    ("[Errno 27] File too large", "file size limit"),
    ("[Errno 28] No space left on device", "disk limit"),  # the working directory's DISK_MB
    ("[Errno 24] Too many open files", "open files limit"),
    ("[Errno 101] Network is unreachable", "no network"),
    ("[Errno -3] Temporary failure in name resolution", "no network"),
    ("no network in the sandbox", "no network"),
    ("no new processes in the sandbox", "process limit"),
    ("[Errno 30] Read-only file system", "write outside the working directory"),
    ("outside the working directory", "write outside the working directory"),
)


@dataclass(frozen=True)
class Execution:
    """What one run of a program did. `error` is None for a run that ended on its own, an
    exception included (its traceback is in stderr, exit_code != 0); otherwise one line saying
    which limit stopped it: "timeout", "cpu limit", "memory limit", "output limit" (killed for
    a flood, or its output cut), "process limit", "file size limit", "disk limit", "open files
    limit", "no network", "write outside the working directory", or "killed (SIGNAME)"."""

    stdout: str  # cut to max_output characters, then TRUNCATED appended
    stderr: str  # likewise
    exit_code: int  # the program's; -N when signal N ended it (subprocess's convention)
    error: str | None
    seconds: float  # wall time, start to reaped
    isolation: str  # "namespaces" (the kernel's) or "python" (the audit-hook fallback)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.error is None


def run_python(code: str, *, timeout: float = 5.0, cpu_seconds: int = 5, memory_mb: int = 512,
               max_output: int = 10_000, stdin: str = "") -> Execution:
    """Run `code` as a script (main.py) in a fresh contained process and return what it did.

    timeout: wall seconds, the interpreter's start included; cpu_seconds: CPU seconds of each
    process; memory_mb: the address space of each process; max_output: characters kept of
    stdout and of stderr; stdin: the program's standard input. Thread-safe: no preexec_fn.
    """
    _check(timeout=timeout, cpu_seconds=cpu_seconds, memory_mb=memory_mb, max_output=max_output)
    limits = {"cpu": cpu_seconds, "memory": memory_mb << 20}
    if NAMESPACES and not _REFUSED:
        status, ex = _execute(code, limits, timeout, max_output, stdin, isolate=True)
        if not status.startswith("unavailable"):
            return ex
        _REFUSED.append(status)  # the kernel said no before the program ran: ask once only
        log.warning("ponder sandbox: namespaces %s; running model code under Python-level "
                    "guards only (see ponder/tools/sandbox.py)", status)
    return _execute(code, limits, timeout, max_output, stdin, isolate=False)[1]


def _check(**values: float) -> None:
    smallest = {"timeout": 0.01, "cpu_seconds": 1, "memory_mb": 64, "max_output": 1}
    for name, value in values.items():
        whole = name != "timeout"
        if isinstance(value, bool) or (whole and not isinstance(value, int)) \
                or not value >= smallest[name]:
            raise ConfigError(name, value, f"give a {'whole ' * whole}number >= {smallest[name]}")


def _cannot_run(why: str) -> NoReturn:
    """The sandbox itself cannot run here (never raised for what a program does)."""
    raise PonderError(f"the sandbox cannot run here: {why}")


# ---------------------------------------------------------------------------------- the parent

def _execute(code: str, limits: dict[str, int], timeout: float, max_output: int, stdin: str,
             *, isolate: bool) -> tuple[str, Execution]:
    """One run: a fresh directory, the bootstrap in a new session, the streams read until the
    deadline, the whole group killed and the directory removed whatever happened. Returns the
    bootstrap's status line with the execution."""
    work = tempfile.mkdtemp(prefix="ponder-sandbox-")
    status_r, status_w = os.pipe()
    proc = None
    try:
        proc, start = _start(code, work, limits, stdin, isolate=isolate, status_w=status_w)
        deadline = start + timeout
        out, err, timed_out, flooded = _collect(proc, deadline, 4 * max_output)
        if timed_out or flooded:
            _kill_group(proc.pid)
        elif not _exited(proc.pid, deadline):  # both streams closed, the program still runs
            timed_out = True
        _kill_group(proc.pid)  # what is left; the leader, not yet reaped, keeps the group ours
        _, wait_status, usage = os.wait4(proc.pid, 0)
        proc.returncode = exit_code = os.waitstatus_to_exitcode(wait_status)
        seconds = time.monotonic() - start
        status = _read_status(status_r)
    finally:
        if proc is not None:
            if proc.returncode is None:  # interrupted: leave nothing running
                _kill_group(proc.pid)
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                stream.close()  # type: ignore[union-attr]
        os.close(status_r)
        _remove(work)
    (stdout, cut_out), (stderr, cut_err) = _shown(out, max_output), _shown(err, max_output)
    if status.startswith("error ") or (not status and not timed_out):
        _cannot_run(status[6:] or f"the bootstrap failed: {stderr.strip()[-500:]}")
    error = _reason(exit_code, stderr, timed_out=timed_out, flooded=flooded,
                    cut=cut_out or cut_err,
                    cpu_spent=usage.ru_utime + usage.ru_stime >= limits["cpu"])
    return status, Execution(stdout, stderr, exit_code, error, seconds,
                             "python" if status == "python" else "namespaces")


def _start(code: str, work: str, limits: dict[str, int], stdin: str, *, isolate: bool,
           status_w: int) -> tuple[subprocess.Popen[bytes], float]:
    root = os.geteuid() == 0
    uid, gid = (SANDBOX_UID, SANDBOX_GID) if root else (os.geteuid(), os.getegid())
    try:
        with open(os.path.join(work, "main.py"), "w", encoding="utf-8") as fh:
            fh.write(code)
        if root:  # the fallback runs the program in this directory as `uid`
            for path in (work, os.path.join(work, "main.py")):
                os.chown(path, uid, gid)
        config = {"work": work, "uid": uid, "gid": gid, "isolate": isolate, "status": status_w,
                  **limits}
        env = {"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"}
        with tempfile.TemporaryFile() as stdin_file:
            stdin_file.write(stdin.encode())
            stdin_file.seek(0)
            start = time.monotonic()
            proc = subprocess.Popen(
                [sandbox_child.interpreter(), "-I", "-S", "-B", "-X", "utf8",
                 os.path.realpath(sandbox_child.__file__), json.dumps(config)],
                stdin=stdin_file, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=work,
                env=env, start_new_session=True, pass_fds=(status_w,))
    finally:
        os.close(status_w)  # the child holds it now; its end is EOF for nobody
    return proc, start


def _collect(proc: subprocess.Popen[bytes], deadline: float,
             cap: int) -> tuple[bytes, bytes, bool, bool]:
    """Read stdout and stderr until both close, the deadline passes, or one holds more than
    `cap` bytes (4 per character: past max_output characters for sure). Returns the bytes,
    whether the deadline passed and whether a stream flooded."""
    assert proc.stdout is not None and proc.stderr is not None
    streams = proc.stdout.fileno(), proc.stderr.fileno()
    bufs = {fd: bytearray() for fd in streams}
    timed_out = flooded = False
    with selectors.DefaultSelector() as sel:
        for fd in streams:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map() and not flooded:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fd)
                buf = bufs[key.fd]
                buf += chunk[:cap + 1 - len(buf)]
                flooded |= len(buf) > cap
    return bytes(bufs[streams[0]]), bytes(bufs[streams[1]]), timed_out, flooded


def _read_status(fd: int) -> str:
    """The bootstrap's one line ("namespaces", "python", "unavailable (...)", "error ...");
    empty if it never wrote one."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 4096).decode(errors="replace").strip()
    except BlockingIOError:
        return ""


def _exited(pid: int, deadline: float) -> bool:
    """Wait, until the deadline, for `pid` to exit, without reaping it (WNOWAIT)."""
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _remove(path: str) -> None:
    """rmtree, even where the program took its own permissions away (non-root fallback)."""
    def retry(_func: Callable[..., Any], failed: str, _exc: object) -> None:
        os.chmod(os.path.dirname(failed), 0o700)
        if os.path.isdir(failed) and not os.path.islink(failed):
            os.chmod(failed, 0o700)
            shutil.rmtree(failed, onerror=retry)
        else:
            os.unlink(failed)

    shutil.rmtree(path, onerror=retry)


def _shown(data: bytes, max_output: int) -> tuple[str, bool]:
    """The text, cut to max_output characters and marked; and whether it was cut."""
    text = data.decode("utf-8", errors="replace")
    cut = len(text) > max_output
    return (text[:max_output] + TRUNCATED if cut else text), cut


def _reason(exit_code: int, stderr: str, *, timed_out: bool, flooded: bool, cut: bool,
            cpu_spent: bool) -> str | None:
    """Which limit stopped the program, if one did. `flooded`: killed for its output; `cut`:
    it ended on its own, but its output was cut to max_output."""
    if timed_out:
        return "timeout"
    if flooded:
        return "output limit"
    if exit_code == -signal.SIGXCPU or (exit_code == -signal.SIGKILL and cpu_spent):
        return "cpu limit"
    if exit_code < 0:
        with contextlib.suppress(ValueError):
            return f"killed ({signal.Signals(-exit_code).name})"
        return f"killed (signal {-exit_code})"
    if exit_code != 0:
        last = next((line for line in reversed(stderr.splitlines())
                     if EXCEPTION_LINE.match(line)), "")
        limit = next((reason for text, reason in LIMIT_MESSAGES if text in last), None)
        if limit:
            return limit
    return "output limit" if cut else None
