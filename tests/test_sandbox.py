"""ponder.tools.sandbox: model-written code runs contained (STYLE.md 15). The tests are the
hostile snippets themselves: each must end within its limit, be reported as the limit it hit,
and leave no process, no file outside its directory and no directory behind.

Every test runs twice: with the kernel's namespaces (skipped where the kernel refuses them)
and with the Python-level fallback. Where root could not drop to nobody in the fallback (this
interpreter unreadable by nobody), the fallback is tested as root: the audit hook alone.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ponder.core.errors import ConfigError, PonderError
from ponder.tools import sandbox, sandbox_child
from ponder.tools.sandbox import TRUNCATED, run_python

NOBODY = sandbox.SANDBOX_UID
BOOTSTRAP = os.path.realpath(sandbox_child.__file__).encode()
ESCAPES = (Path(tempfile.gettempdir(), "ponder_escape_test"), Path("/root/ponder_escape_test"))
WRITTEN_OUTSIDE = {"write outside the working directory", None}  # None: no such folder there


@functools.cache
def kernel_isolation() -> str:
    return run_python("pass").isolation


@pytest.fixture(params=["namespaces", "python"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "namespaces" and kernel_isolation() != "namespaces":
        pytest.skip("the kernel refuses namespaces here; the fallback is tested instead")
    if request.param == "python":
        monkeypatch.setattr(sandbox, "NAMESPACES", False)
        if os.geteuid() == 0 and not sandbox_child._readable_by_others(sys.base_prefix):
            monkeypatch.setattr(sandbox, "SANDBOX_UID", 0)
            monkeypatch.setattr(sandbox, "SANDBOX_GID", 0)
    return str(request.param)


def sandbox_processes() -> list[str]:
    """Processes of any sandbox still alive: the bootstrap, a program's interpreter or its
    forks (by command line), or anything running as nobody (when we are root)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            uid = int((entry / "status").read_text().split("Uid:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue  # gone while we looked
        if BOOTSTRAP in argv or (b"main.py" in argv and b"-I" in argv) \
                or (os.geteuid() == 0 and uid == NOBODY):
            found.append(f"{entry.name}: {b' '.join(argv)!r}")
    return found


def assert_nothing_left() -> None:
    deadline = time.monotonic() + 2  # SIGKILLed processes take a moment to be gone
    while (left := sandbox_processes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == []
    assert [p for p in ESCAPES if p.exists()] == []


@pytest.fixture(autouse=True)
def no_escape_files() -> None:
    for path in ESCAPES:
        if os.access(path.parent, os.W_OK):
            path.unlink(missing_ok=True)


# id, code, limits, the errors it may be reported as
HOSTILE = [
    ("infinite-loop-wall", "while True: pass", {"timeout": 1.0}, {"timeout"}),
    ("infinite-loop-cpu", "while True: pass", {"timeout": 5.0, "cpu_seconds": 1}, {"cpu limit"}),
    ("fork-bomb", "import os\nwhile True: os.fork()", {},
     {"process limit", "timeout", "cpu limit"}),
    ("bytearray-bomb", "x = bytearray(10**10)", {}, {"memory limit"}),
    ("string-bomb", "x = 'a' * 10**10", {}, {"memory limit"}),
    ("million-lines", "for i in range(10**6): print(i)", {"max_output": 1000}, {"output limit"}),
    ("stderr-flood", "import sys\nwhile True: sys.stderr.write('x' * 999)", {"max_output": 1000},
     {"output limit"}),
    ("write-tmp", f"open({str(ESCAPES[0])!r}, 'w').write('x')", {}, WRITTEN_OUTSIDE),
    ("write-root-home", f"open({str(ESCAPES[1])!r}, 'w').write('x')", {}, WRITTEN_OUTSIDE),
    ("write-parent-dir", "open('../ponder_escape_test', 'w').write('x')", {}, WRITTEN_OUTSIDE),
    ("big-file", "open('big', 'wb').write(b'x' * 2_000_000)", {}, {"file size limit"}),
    ("loopback-dns", "import socket\nsocket.getaddrinfo('example.com', 80)", {}, {"no network"}),
    ("closes-its-streams", "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(60)",
     {"timeout": 1.0}, {"timeout"}),
]


@pytest.mark.parametrize(("code", "limits", "reasons"), [pytest.param(*case[1:], id=case[0])
                                                         for case in HOSTILE])
def test_a_hostile_snippet_is_stopped_reported_and_leaves_nothing(
        mode: str, code: str, limits: dict[str, float], reasons: set[str | None]) -> None:
    limits = {"timeout": 2.0, **limits}
    ex = run_python(code, **limits)  # type: ignore[arg-type]
    assert ex.isolation == mode
    assert ex.error in reasons, ex.stderr[-500:]
    assert ex.exit_code != 0
    assert ex.seconds < min(limits["timeout"], limits.get("cpu_seconds", 5) + 1) + 1
    assert len(ex.stdout) <= 1000 + len(TRUNCATED) or "max_output" not in limits
    assert_nothing_left()


def test_a_flood_is_cut_to_max_output_with_the_marker(mode: str) -> None:
    ex = run_python("for i in range(10**6): print(i)", max_output=1000, timeout=2)
    assert ex.stdout.endswith(TRUNCATED) and len(ex.stdout) == 1000 + len(TRUNCATED)
    assert ex.stdout.startswith("0\n1\n2\n") and ex.error == "output limit"


def test_a_normal_snippet_prints_and_exits_cleanly(mode: str) -> None:
    ex = run_python("print(sum(range(10)))", timeout=2)
    assert (ex.stdout, ex.stderr, ex.exit_code, ex.error, ex.ok) == ("45\n", "", 0, None, True)
    assert 0 < ex.seconds < 2


def test_the_standard_library_works_without_site(mode: str) -> None:
    ex = run_python("import json, math, re, itertools, collections, fractions, decimal, "
                    "statistics, datetime, functools, heapq, random, string, sys\n"
                    "print(fractions.Fraction(1, 3) + 1, math.comb(5, 2), json.dumps([1]), "
                    "sys.flags.isolated, sys.flags.no_site, 'é')", timeout=2)
    assert (ex.stdout, ex.error) == ("4/3 10 [1] 1 1 é\n", None)


@pytest.mark.parametrize(("code", "fragment"), [
    pytest.param("def f(:\n", "SyntaxError", id="syntax-error"),
    pytest.param("1 / 0", "ZeroDivisionError", id="exception"),
    pytest.param("import sys; sys.exit(3)", "", id="exit-code"),
])
def test_a_failing_program_is_its_own_error_not_a_limit(mode: str, code: str,
                                                        fragment: str) -> None:
    ex = run_python(code, timeout=2)
    assert ex.exit_code != 0 and ex.error is None and fragment in ex.stderr
    assert "sandbox.py" not in ex.stderr  # the traceback is the program's only
    if fragment:
        assert 'File "' in ex.stderr and "main.py" in ex.stderr


def test_stdin_is_given_to_the_program(mode: str) -> None:
    ex = run_python("print(input()[::-1]); print(input())", stdin="olleh\nworld\n", timeout=2)
    assert ex.stdout == "hello\nworld\n"


def test_no_network_even_to_a_listening_loopback_port(mode: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        ex = run_python(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 1)",
                        timeout=3)
    assert ex.exit_code != 0 and ex.error == "no network", ex.stderr[-300:]


def test_the_environment_holds_no_secret_and_home_is_the_working_directory(
        mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_SECRET", "hunter2")
    ex = run_python("import glob, os\nprint(sorted(os.environ))\nprint(os.environ['HOME'] == "
                    "os.getcwd() == os.environ['TMPDIR'])\n"
                    "print(glob.glob(os.path.expanduser('~/.ssh/*')))", timeout=2)
    assert ex.stdout == "['HOME', 'LANG', 'PATH', 'TMPDIR']\nTrue\n[]\n"
    assert "hunter2" not in ex.stdout + ex.stderr


def test_the_working_directory_is_fresh_private_and_removed(mode: str) -> None:
    code = ("import os\nprint(os.getcwd())\nprint(sorted(os.listdir('.')))\n"
            "open('left.txt', 'w').write('x')")
    first, second = run_python(code, timeout=2), run_python(code, timeout=2)
    dirs = [ex.stdout.splitlines()[0] for ex in (first, second)]
    assert dirs[0] != dirs[1]
    assert all(d.startswith(os.path.join(tempfile.gettempdir(), "ponder-sandbox-"))
               for d in dirs)
    assert [ex.stdout.splitlines()[1] for ex in (first, second)] == ["['main.py']"] * 2
    assert [d for d in dirs if os.path.exists(d)] == []


def test_namespaces_hide_the_host_and_end_every_process(tmp_path: Path) -> None:
    """What only the kernel's isolation gives: the host's files are not there to read, and a
    setsid()'d orphan dies with the program."""
    if kernel_isolation() != "namespaces":
        pytest.skip("the kernel refuses namespaces here")
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    ex = run_python(f"import os\nprint(os.path.exists({str(secret)!r}), "
                    "os.path.exists('/work'), os.path.exists('/home'), len(os.listdir('/proc')))\n"
                    "if os.fork() == 0:\n    os.setsid()\n    import time; time.sleep(60)\n",
                    timeout=2)
    found, work, home, _ = ex.stdout.split()
    assert (found, work, home, ex.exit_code, ex.error) == ("False", "False", "False", 0, None)
    assert ex.seconds < 1.5  # the orphan did not hold the streams open
    assert_nothing_left()
    if os.geteuid() == 0:
        uid = run_python("import os; print(os.getuid(), os.getgid(), os.getgroups())")
        assert uid.stdout == f"{NOBODY} {sandbox.SANDBOX_GID} []\n"


def test_the_fallback_refuses_to_run_model_code_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root whose interpreter nobody can read, with no namespaces, cannot drop privileges:
    one clear error, not model code running as root."""
    if os.geteuid() != 0 or sandbox_child._readable_by_others(sys.base_prefix):
        pytest.skip("only where root could not drop to nobody")
    monkeypatch.setattr(sandbox, "NAMESPACES", False)
    with pytest.raises(PonderError, match="cannot read the interpreter") as err:
        run_python("print(1)")
    assert "\n" not in str(err.value)


def test_runs_at_once_do_not_mix(mode: str) -> None:
    with ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(lambda i: run_python(f"print({i} * {i})", timeout=5), range(16)))
    assert [ex.stdout for ex in runs] == [f"{i * i}\n" for i in range(16)]


@pytest.mark.parametrize(("name", "value"), [
    ("timeout", 0), ("cpu_seconds", 0), ("cpu_seconds", 1.5), ("memory_mb", 8),
    ("max_output", 0), ("memory_mb", True),
])
def test_bad_limits_are_one_line_config_errors(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"invalid {name}="):
        run_python("print(1)", **{name: value})  # type: ignore[arg-type]


TRACEBACK = 'Traceback (most recent call last):\n  File "main.py", line 2, in <module>\n'


@pytest.mark.parametrize(("exit_code", "stderr", "flags", "reason"), [
    pytest.param(0, "", {}, None, id="clean"),
    pytest.param(1, TRACEBACK + "ZeroDivisionError: division by zero\n", {}, None,
                 id="own-exception"),
    pytest.param(1, TRACEBACK + "MemoryError\n", {}, "memory limit", id="memory"),
    pytest.param(1, TRACEBACK + "BlockingIOError: [Errno 11] Resource temporarily unavailable\n"
                 + TRACEBACK + "Traceback (most recent call last):\n    while True: os.fork()\n",
                 {}, "process limit", id="interleaved-tracebacks"),
    pytest.param(1, TRACEBACK + "socket.gaierror: [Errno -3] Temporary failure in name "
                 "resolution\n", {}, "no network", id="dns"),
    pytest.param(0, "", {"cut": True}, "output limit", id="cut-output"),
    pytest.param(1, TRACEBACK + "MemoryError\n", {"cut": True}, "memory limit",
                 id="cut-output-and-a-limit"),
    pytest.param(-9, "", {"flooded": True}, "output limit", id="killed-for-a-flood"),
    pytest.param(-9, "", {"timed_out": True}, "timeout", id="timeout"),
    pytest.param(-24, "", {}, "cpu limit", id="sigxcpu"),
    pytest.param(-9, "", {"cpu_spent": True}, "cpu limit", id="cpu-hard-limit"),
    pytest.param(-9, "", {}, "killed (SIGKILL)", id="killed"),
    pytest.param(-11, "", {}, "killed (SIGSEGV)", id="crashed"),
])
def test_the_reason_names_the_limit_from_how_the_program_ended(
        exit_code: int, stderr: str, flags: dict[str, bool], reason: str | None) -> None:
    given = {"timed_out": False, "flooded": False, "cut": False, "cpu_spent": False, **flags}
    assert sandbox._reason(exit_code, stderr, **given) == reason
