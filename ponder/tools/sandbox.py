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

The process tree: ponder -> bootstrap (this file run as a script, in a new session) -> init of
the new PID namespace (builds the root, reaps) -> the program (drops root, sets the limits,
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

Beyond the issue's sketch: the bootstrap is this file run as a script (linted and typed, not
a string); the chroot, PID, IPC and UTS namespaces and the working directory's tmpfs; and
`Execution.isolation`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

log = logging.getLogger(__name__)

SANDBOX_UID = 65534  # nobody: the uid (and gid) a program runs as when ponder runs as root
SANDBOX_GID = 65534
FILE_MB = 1  # RLIMIT_FSIZE: the largest file a program may write
DISK_MB = 16  # the working directory's tmpfs (namespaced runs)
PROCESSES = 32  # RLIMIT_NPROC: counted over the uid, so sandboxes running at once share it
OPEN_FILES = 64  # RLIMIT_NOFILE
NAMESPACES = True  # try the kernel's isolation first; False runs the Python-level fallback
TRUNCATED = "\n[output truncated]"
_REFUSED: list[str] = []  # why namespaces were refused in this process, once known

# What the chroot shows of the host, read-only; the interpreter's prefix is added to these.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")

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
    from ponder.core.errors import ConfigError  # here: the child runs this file without ponder

    smallest = {"timeout": 0.01, "cpu_seconds": 1, "memory_mb": 64, "max_output": 1}
    for name, value in values.items():
        whole = name != "timeout"
        if isinstance(value, bool) or (whole and not isinstance(value, int)) \
                or not value >= smallest[name]:
            raise ConfigError(name, value, f"give a {'whole ' * whole}number >= {smallest[name]}")


def _cannot_run(why: str) -> NoReturn:
    """The sandbox itself cannot run here (never raised for what a program does)."""
    from ponder.core.errors import PonderError  # see _check

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
                [_interpreter(), "-I", "-S", "-B", "-X", "utf8", os.path.realpath(__file__),
                 json.dumps(config)],
                stdin=stdin_file, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=work,
                env=env, start_new_session=True, pass_fds=(status_w,))
    finally:
        os.close(status_w)  # the child holds it now; its end is EOF for nobody
    return proc, start


def _interpreter() -> str:
    """The base interpreter's real file, not a venv's link or copy: the chroot shows only the
    interpreter's own prefix."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


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


# ----------------------------------------------------------------------- the child (bootstrap)
# Everything below runs in the bootstrap process, this file run as a script by a fresh
# interpreter: the standard library only, nothing of ponder imported.

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
# Flags a bind mount keeps from its source (the kernel refuses to drop them in a user namespace).
KEPT_FLAGS = (os.ST_NOSUID | os.ST_NODEV | os.ST_NOEXEC | os.ST_NOATIME | os.ST_NODIRATIME
              | os.ST_RELATIME)


def _bootstrap(config: dict[str, Any]) -> NoReturn:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.umask(0o022)
    os.set_inheritable(config["status"], False)  # the program's interpreter never holds it
    with open("main.py", encoding="utf-8") as fh:
        code = fh.read()
    if not config["isolate"]:
        _run_guarded(config, code)
    flags = CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    why = _unshare(flags if os.geteuid() == 0 else flags | CLONE_NEWUSER)
    if why:
        _report(config, f"unavailable ({why})")
        os._exit(0)
    report_r, report_w = os.pipe()
    init = os.fork()  # pid 1 of the new PID namespace
    if init == 0:
        os.close(report_r)
        _init(config, code, report_w)
    os.close(report_w)
    os.waitpid(init, 0)
    with os.fdopen(report_r) as fh:
        report = fh.read()
    if report.startswith("status "):
        _exit_as(int(report.split()[1]))
    if report:  # it could not build the root, and started nothing: the parent falls back
        _report(config, f"unavailable ({report})")
    else:
        _report(config, "error the PID namespace's init died")
    os._exit(0)


def _unshare(flags: int) -> str:
    """Enter new namespaces; return why not ("" on success)."""
    uid, gid = os.geteuid(), os.getegid()
    if _libc().unshare(flags) != 0:
        return f"refused: {os.strerror(ctypes.get_errno())}"
    if flags & CLONE_NEWUSER:  # map our own ids, so files keep their owner
        try:
            for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"),
                               ("gid_map", f"{gid} {gid} 1")):
                with open(f"/proc/self/{name}", "w") as fh:
                    fh.write(text)
        except OSError as exc:
            return f"refused: {exc}"
    return ""


def _init(config: dict[str, Any], code: str, report_w: int) -> NoReturn:
    """pid 1: build the root, start the program, reap until it ends. When this process ends
    the kernel kills everything left in the namespace."""
    try:
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the bootstrap killed: die
        if _libc().unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        _build_root(config, code)
    except Exception as exc:  # e.g. a user namespace that may not mount: nothing started yet
        os.write(report_w, f"cannot build the root: {type(exc).__name__}: {exc}".encode())
        os._exit(0)
    try:
        program = os.fork()
        if program == 0:
            os.close(report_w)
            _start_program(config)
        while True:  # as init, every orphan of the namespace is ours to reap
            pid, status = os.wait()
            if pid == program:
                os.write(report_w, f"status {status}".encode())
                break
    finally:
        os._exit(0)


def _build_root(config: dict[str, Any], code: str) -> None:
    # The host's working directory becomes the new root; inside it, the same path is the
    # working directory again, a tmpfs (so the program sees the path the parent made).
    work = root = config["work"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for path in _exposed():
        target = root + path
        if os.path.islink(path):  # /bin -> usr/bin on merged-/usr systems
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.readlink(path), target)
        elif os.path.isdir(path):
            os.makedirs(target, exist_ok=True)
            _bind(path, target, MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.makedirs(f"{root}/dev")
    for name in DEVICES:
        open(f"{root}/dev/{name}", "w").close()
        _bind(f"/dev/{name}", f"{root}/dev/{name}", MS_NOSUID | MS_NOEXEC)
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                       ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(link, f"{root}/dev/{name}")
    os.makedirs(f"{root}/proc")
    with contextlib.suppress(OSError):  # a user namespace may refuse; Python runs without it
        _mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(root + work)
    _mount("tmpfs", root + work, "tmpfs", MS_NOSUID | MS_NODEV,
           f"mode=0700,uid={config['uid']},gid={config['gid']},size={DISK_MB}m")
    with open(f"{root}{work}/main.py", "w", encoding="utf-8") as fh:
        fh.write(code)
    os.chown(f"{root}{work}/main.py", config["uid"], config["gid"])
    _mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chroot(root)
    os.chdir(work)


def _exposed() -> list[str]:
    """SYSTEM_DIRS and the interpreter's prefix, leaving out any inside another."""
    paths = {*SYSTEM_DIRS, *(os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)),
             os.path.dirname(_interpreter())}
    kept: list[str] = []
    for path in sorted(paths):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def _start_program(config: dict[str, Any]) -> NoReturn:
    try:
        _limit_and_drop(config)
        _report(config, "namespaces")
        os.execv(_interpreter(), [_interpreter(), "-I", "-S", "-B", "-X", "utf8", "main.py"])
    except Exception as exc:
        print(f"ponder sandbox: cannot start the program: {exc}", file=sys.stderr, flush=True)
    finally:
        os._exit(126)


def _limit_and_drop(config: dict[str, Any]) -> None:
    cpu = config["cpu"]
    for res, soft, hard in ((resource.RLIMIT_CPU, cpu, cpu + 1),
                            (resource.RLIMIT_AS, config["memory"], config["memory"]),
                            (resource.RLIMIT_FSIZE, FILE_MB << 20, FILE_MB << 20),
                            (resource.RLIMIT_NOFILE, OPEN_FILES, OPEN_FILES),
                            (resource.RLIMIT_NPROC, PROCESSES, PROCESSES)):
        ceiling = resource.getrlimit(res)[1]  # a hard limit can be lowered, never raised
        if ceiling != resource.RLIM_INFINITY:
            soft, hard = min(soft, ceiling), min(hard, ceiling)
        resource.setrlimit(res, (soft, hard))
    if os.geteuid() == 0:  # last: setrlimit above needs no privilege, setuid ends it
        os.setgroups([])
        os.setgid(config["gid"])
        os.setuid(config["uid"])
    _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    def c(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    if _libc().mount(c(source), c(target), c(fstype), flags, c(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _bind(source: str, target: str, flags: int) -> None:
    _mount(source, target, None, MS_BIND | MS_REC)
    kept = os.statvfs(source).f_flag & KEPT_FLAGS  # ST_* and MS_* share these bits
    _mount(None, target, None, MS_REMOUNT | MS_BIND | flags | kept)


_LIBC: list[ctypes.CDLL] = []


def _libc() -> ctypes.CDLL:
    if not _LIBC:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                               ctypes.c_ulong, ctypes.c_char_p]
        _LIBC.append(libc)
    return _LIBC[0]


def _report(config: dict[str, Any], status: str) -> None:
    os.write(config["status"], f"{status}\n".encode())


def _exit_as(status: int) -> NoReturn:
    """End this process as the program ended: its exit code, or its signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)  # a signal whose default is to carry on
    os._exit(os.WEXITSTATUS(status))


# -------------------------------------------------------------- the fallback: Python-level guards

NETWORK_EVENTS = frozenset({"socket.bind", "socket.connect", "socket.getaddrinfo",
                            "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo",
                            "socket.sendto", "socket.sendmsg"})
# Without a PID namespace nothing would end a forked or setsid()'d process: no new processes.
PROCESS_EVENTS = frozenset({"os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn",
                            "os.system", "subprocess.Popen"})
# audit event -> the positions of the paths it writes
PATH_EVENTS = {"os.chmod": (0,), "os.chown": (0,), "os.link": (1,), "os.mkdir": (0,),
               "os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "os.symlink": (1,),
               "os.truncate": (0,), "os.utime": (0,)}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _run_guarded(config: dict[str, Any], code: str) -> NoReturn:
    """The fallback: limits and uid drop here, then the program in this interpreter under an
    audit hook."""
    if os.geteuid() == 0 and config["uid"] != 0 and not _readable_by_others(sys.base_prefix):
        _report(config, f"error uid {config['uid']} cannot read the interpreter under "
                        f"{sys.base_prefix} and no namespaces are allowed to show it; install "
                        "Python where all users can read it")
        os._exit(125)
    sys.dont_write_bytecode = True
    _libc()  # loaded before the hook refuses ctypes
    _limit_and_drop(config)
    sys.addaudithook(_guard(os.path.realpath(config["work"])))
    _report(config, "python")
    os.close(config["status"])
    module = types.ModuleType("__main__")
    module.__file__ = "main.py"
    sys.modules["__main__"], sys.argv = module, ["main.py"]
    try:
        exec(compile(code, "main.py", "exec"), module.__dict__)
    except SystemExit:
        raise
    except SyntaxError as exc:
        traceback.print_exception(type(exc), exc, None)
        sys.exit(1)
    except BaseException as exc:  # the program's exception, printed without this frame
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)  # type: ignore[union-attr]
        sys.exit(1)
    sys.exit(0)


def _guard(work: str) -> Callable[[str, tuple[Any, ...]], None]:
    def inside(path: object) -> bool:
        if isinstance(path, int):  # a file descriptor: already open
            return True
        real = os.path.realpath(os.fsdecode(path))  # type: ignore[arg-type]
        return real == work or real.startswith(work + "/")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in NETWORK_EVENTS:
            raise PermissionError("no network in the sandbox")
        if event in PROCESS_EVENTS:
            raise PermissionError(f"no new processes in the sandbox ({event})")
        if event == "ctypes.dlopen":
            raise PermissionError("no ctypes in the sandbox")
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(flags, int) and flags & WRITE_FLAGS) or \
                (isinstance(mode, str) and any(c in mode for c in "wax+"))
            paths: tuple[object, ...] = (path,) if writes and path is not None else ()
        else:
            paths = tuple(args[i] for i in PATH_EVENTS.get(event, ()))
        for path in paths:
            if not inside(path):
                raise PermissionError(f"writing {path!r} outside the working directory is not "
                                      "allowed in the sandbox")

    return hook


def _readable_by_others(path: str) -> bool:
    """Whether any user can reach `path` (x on every folder above it) and read it (r+x)."""
    parts = os.path.realpath(path).split("/")
    above = ("/".join(parts[:i]) or "/" for i in range(1, len(parts)))
    return all(os.stat(p).st_mode & 0o001 for p in above) and \
        os.stat(path).st_mode & 0o005 == 0o005


if __name__ == "__main__":
    _bootstrap(json.loads(sys.argv[1]))
