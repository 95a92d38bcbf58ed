"""The sandbox's child side (ponder/tools/sandbox.py is the parent): this file, run as a script
by a fresh interpreter (`python -I -S -B -X utf8 sandbox_child.py CONFIG`), contains the
program and then runs it. The standard library only: nothing of ponder is imported, so it runs
inside the chroot, where ponder is not.

  _bootstrap     new PID, network, IPC and UTS namespaces (and a user namespace when not root)
  _init          the new PID namespace's init: builds the root, starts the program, reaps
  _build_root    the chroot: read-only binds of the system and the interpreter, five devices,
                 its own /proc, a tmpfs working directory
  _start_program the rlimits, the uid drop, no new privileges, then exec of the interpreter
  _run_guarded   the fallback where namespaces are refused: the rlimits, the uid drop and an
                 audit hook (PEP 578) that refuses the network, writes outside the working
                 directory, new processes and ctypes
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
import traceback
import types
from collections.abc import Callable
from typing import Any, NoReturn

FILE_MB = 1  # RLIMIT_FSIZE: the largest file a program may write
DISK_MB = 16  # the working directory's tmpfs (namespaced runs)
PROCESSES = 32  # RLIMIT_NPROC: counted over the uid, so sandboxes running at once share it
OPEN_FILES = 64  # RLIMIT_NOFILE
# What the chroot shows of the host, read-only; the interpreter's prefix is added to these.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")


CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
# Flags a bind mount keeps from its source (the kernel refuses to drop them in a user namespace).
KEPT_FLAGS = (os.ST_NOSUID | os.ST_NODEV | os.ST_NOEXEC | os.ST_NOATIME | os.ST_NODIRATIME
              | os.ST_RELATIME)


def interpreter() -> str:
    """The base interpreter's real file, not a venv's link or copy: the chroot shows only the
    interpreter's own prefix."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


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
             os.path.dirname(interpreter())}
    kept: list[str] = []
    for path in sorted(paths):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def _start_program(config: dict[str, Any]) -> NoReturn:
    try:
        _limit_and_drop(config)
        _report(config, "namespaces")
        os.execv(interpreter(), [interpreter(), "-I", "-S", "-B", "-X", "utf8", "main.py"])
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
