"""`ponder eval` / `ponder report` on the scripted fake: the grid, the store, resume after
SIGKILL, the report's numbers and its plot."""

from __future__ import annotations

import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ponder.cli_args import parse_fields, parse_model_args
from ponder.core.errors import ConfigError, DataError, UnknownName
from ponder.core.types import Trace
from ponder.eval.__main__ import app
from ponder.eval.report import (
    headers,
    paired_difference,
    parse_positions,
    plot,
    plot_lines,
    read_rows,
    summarize,
    table_cells,
    to_json,
    wilson,
)
from ponder.eval.runner import EvalConfig, LogLines, run_eval, task_of
from ponder.eval.store import Row, Store, StoreExists, StoreMismatch, cpu_model
from ponder.models.fake import ScriptedModel

# The fake always answers 42 unless scripted otherwise, so a question is right iff its gold is 42.
GOLDS = ["42", "4", "42", "7", "42", "9"]


def write_questions(path: Path, golds: list[str] = GOLDS) -> Path:
    lines = [json.dumps({"question": f"Question {i}: what is the answer?", "answer": f"#### {g}"})
             for i, g in enumerate(golds)]
    path.write_text("\n".join(lines) + "\n")
    return path


def config(tmp_path: Path, **changes: object) -> EvalConfig:
    settings: dict[str, object] = dict(
        task="gsm8k", schemes=("cot", "self-consistency@3", "adaptive@4", "best-of-n@2"),
        out=tmp_path / "run.db", model="fake", data=write_questions(tmp_path / "q.jsonl"),
        seeds=2)
    settings.update(changes)
    return EvalConfig(**settings)  # type: ignore[arg-type]


def test_a_log_file_gets_plain_progress_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Where stderr is not a terminal (nohup, CI) the bar cannot draw: plain lines instead."""
    monkeypatch.setattr(LogLines, "every", 0.0)
    run_eval(config(tmp_path, schemes=("cot", "self-consistency@3"), seeds=1))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 12 and "\x1b" not in "".join(lines)  # one per row, no bar drawing
    assert lines[0].startswith("gsm8k · 1/12 rows · acc ") and " elapsed · ETA " in lines[0]
    assert lines[-1].startswith("gsm8k · 12/12 rows · acc ") and lines[-1].endswith("0:00:00")


def stored(path: Path) -> list[Row]:
    with Store.read(path) as store:
        return list(store.rows())


def test_grid_has_one_row_per_question_scheme_seed_and_cot_runs_once(tmp_path: Path) -> None:
    outcome = run_eval(config(tmp_path), progress=False)
    rows = stored(tmp_path / "run.db")
    # cot is greedy: one run per question; the three sampled schemes: 2 seeds each.
    assert outcome.planned == outcome.written == len(rows) == 6 + 3 * 6 * 2
    seeds = {s: {r.seed for r in rows if r.scheme == s} for s in {r.scheme for r in rows}}
    assert seeds == {"cot": {0}, "self-consistency@3": {0, 1}, "adaptive@4": {0, 1},
                     "best-of-n@2": {0, 1}}
    assert [r.position for r in rows] == sorted(r.position for r in rows)


def test_rows_record_correctness_answer_usage_and_trace(tmp_path: Path) -> None:
    def script(prompt: str, _i: int) -> str:  # question 3 is answered 7 (right), others 42
        return "so \\boxed{7}" if "Question 3:" in prompt else "so \\boxed{42}"

    model = ScriptedModel(script)
    run_eval(config(tmp_path), model_factory=lambda: model, progress=False)
    rows = stored(tmp_path / "run.db")
    for r in rows:
        assert r.gold == GOLDS[r.position]
        assert r.answer == ("7" if r.position == 3 else "42")
        assert r.correct == int(r.answer == r.gold)
        assert r.completion_tokens == r.reasoning_tokens > 0 and r.prompt_tokens > 0
        assert r.model_calls >= 1 and r.seconds >= 0 and r.finish_reason == "stop"
        assert json.loads(r.config)["seed"] == r.seed
        assert Trace.from_dict(json.loads(r.trace)).nodes
    assert sum(r.correct for r in rows if r.scheme == "cot") == 4  # 42, 42, 7 and 42
    # The seed reaches the model: self-consistency@3's calls carry seeds 0 and 1.
    sc_seeds = {req.params.seed for call in model.calls for req in call if req.params.n == 3}
    assert sc_seeds == {0, 1}


def test_existing_results_need_resume(tmp_path: Path) -> None:
    run_eval(config(tmp_path, schemes=("cot",)), progress=False)
    with pytest.raises(StoreExists, match="pass --resume"):
        run_eval(config(tmp_path, schemes=("cot",)), progress=False)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"model": "default"}, "model", id="other-model"),
        pytest.param({"task": "math"}, "task", id="other-task"),
        pytest.param({"split": "train"}, "split", id="other-split"),
        pytest.param({"max_tokens": 64}, "settings", id="other-settings"),
    ],
)
def test_resume_refuses_a_different_run(tmp_path: Path, change: dict[str, object],
                                        field: str) -> None:
    run_eval(config(tmp_path, schemes=("cot",)), progress=False)
    with pytest.raises(StoreMismatch, match=f"cannot resume .* holds {field}="):
        run_eval(config(tmp_path, schemes=("cot",), resume=True, **change), progress=False)


def test_resume_runs_only_what_is_missing(tmp_path: Path) -> None:
    run_eval(config(tmp_path, limit=2), progress=False)
    outcome = run_eval(config(tmp_path, limit=4, resume=True), progress=False)
    assert (outcome.resumed, outcome.written) == (2 * 7, 2 * 7)

    def no_model() -> ScriptedModel:
        raise AssertionError("nothing left to do: the model must not be loaded")

    outcome = run_eval(config(tmp_path, limit=4, resume=True), model_factory=no_model,
                       progress=False)
    assert (outcome.resumed, outcome.written) == (4 * 7, 0)
    with Store.read(tmp_path / "run.db") as store:
        assert store.meta()["limit"] == 4  # the run's shape is the latest session's
        assert store.conn.execute("SELECT COUNT(*) FROM sessions").fetchone() == (3,)
        with pytest.raises(StoreExists, match="another `ponder eval`"):
            store.add(stored(tmp_path / "run.db")[0])  # the unique key holds


@pytest.mark.parametrize(
    ("change", "error"),
    [
        pytest.param({"schemes": ("magic",)}, UnknownName, id="unknown-scheme"),
        pytest.param({"schemes": ("cot", "cot")}, ConfigError, id="duplicate-scheme"),
        pytest.param({"seeds": 0}, ConfigError, id="zero-seeds"),
        pytest.param({"limit": 0}, ConfigError, id="zero-limit"),
    ],
)
def test_bad_config_fails_before_anything_runs(tmp_path: Path, change: dict[str, object],
                                               error: type[Exception]) -> None:
    with pytest.raises(error):
        config(tmp_path, **change)


def another_apps_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: p.write_text("not sqlite " * 200), id="not-sqlite"),
        pytest.param(another_apps_database, id="another-apps-sqlite"),
    ],
)
def test_a_file_that_is_not_ours_is_a_one_line_error_and_left_alone(
        tmp_path: Path, make: Callable[[Path], object]) -> None:
    make(tmp_path / "run.db")
    before = (tmp_path / "run.db").read_bytes()
    with pytest.raises(DataError, match="not a ponder results database"):
        run_eval(config(tmp_path), progress=False)
    with pytest.raises(DataError, match="not a ponder results database"):
        Store.read(tmp_path / "run.db")
    assert (tmp_path / "run.db").read_bytes() == before


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        pytest.param(["delay_per_token=0.01"], {"delay_per_token": 0.01}, id="number"),
        pytest.param(["name=qwen"], {"name": "qwen"}, id="bare-string"),
        pytest.param(['script=["a", "b"]', "flag=true"], {"script": ["a", "b"], "flag": True},
                     id="json-values"),
    ],
)
def test_model_args_parse_as_json_or_text(items: list[str], expected: dict[str, object]) -> None:
    assert parse_model_args(items) == expected


def test_model_arg_without_equals_is_an_error() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_model_args(["n_ctx"])


# --- report ------------------------------------------------------------------------------------


def row(q: int, scheme: str, seed: int, correct: int, tokens: int) -> Row:
    return Row(question_id=f"q{q}", scheme=scheme, seed=seed, position=q, config="{}",
               correct=correct, answer="1", gold="1", prompt_tokens=10, completion_tokens=tokens,
               reasoning_tokens=tokens, cached_tokens=0, model_calls=1, seconds=0.5,
               finish_reason="stop", trace="{}")


@pytest.fixture
def hand_db(tmp_path: Path) -> Path:
    """cot: 7 of 10 questions right at 100 tokens; self-consistency@4: 5 questions × 2 seeds,
    8 of 10 rows right at 400 tokens (1 s each)."""
    path = tmp_path / "hand.db"
    meta = {"model": "m", "task": "gsm8k", "split": "test",
            "schemes": ["cot", "self-consistency@4"]}
    with Store.create(path, meta, resume=False) as store:
        for q in range(10):
            store.add(row(q, "cot", 0, int(q < 7), 100))
        for q in range(5):
            for seed in (0, 1):
                r = row(q, "self-consistency@4", seed, int(q < 4), 400)
                r.seconds = 1.0
                store.add(r)
    return path


def test_wilson_matches_hand_computation() -> None:
    # 7/10: p = .7, z² = 3.8415; centre (.7 + .19207)/1.38415 = .64449;
    # half = 1.95996/1.38415 · sqrt(.021 + .0096036) = .24771  ->  [.39678, .89220]
    assert wilson(7, 10) == pytest.approx((0.39678, 0.89220), abs=1e-5)
    # 8/10: centre (.8 + .19207)/1.38415 = .71674; half = 1.41600 · sqrt(.016 + .0096036) = .22658
    assert wilson(8, 10) == pytest.approx((0.49016, 0.94332), abs=1e-5)
    # All right or all wrong: the interval ends exactly at 1 or 0 (rounding left 1e-17 in, and
    # the plot's error bars refused a negative length).
    for n in range(1, 40):
        assert wilson(0, n)[0] == 0.0 and wilson(n, n)[1] == 1.0


def test_report_numbers_on_a_hand_made_db(hand_db: Path) -> None:
    cot, sc = summarize(stored(hand_db), order=["cot", "self-consistency@4"])
    assert (cot.rows, cot.questions, cot.seeds, cot.accuracy) == (10, 10, 1, 0.7)
    assert (sc.rows, sc.questions, sc.seeds, sc.accuracy) == (10, 5, 2, 0.8)
    assert (cot.ci_low, cot.ci_high) == pytest.approx((0.39678, 0.89220), abs=1e-5)
    assert (sc.ci_low, sc.ci_high) == pytest.approx((0.49016, 0.94332), abs=1e-5)
    assert (cot.mean_completion_tokens, sc.mean_completion_tokens) == (100, 400)
    assert (cot.mean_seconds, sc.mean_seconds) == (0.5, 1.0)
    assert (cot.tokens_vs_baseline, sc.tokens_vs_baseline) == (1.0, 4.0)
    assert (sc.family, sc.size) == ("self-consistency", 4)
    # Paired on q0-q4, where cot is always right and sc misses q4 on both seeds: d = 0,0,0,0,-1
    assert cot.gain_vs_baseline is None
    assert (sc.gain_vs_baseline, sc.gain_questions, sc.gain_high) == (pytest.approx(-0.2), 5, 0.0)
    assert sc.gain_low is not None and sc.gain_low < -0.2
    assert round(sc.gain_low * 5, 9).is_integer()  # a resample's mean of five 0/-1 values


def test_paired_difference_averages_seeds_and_keeps_shared_questions_only() -> None:
    base = [row(q, "cot", 0, 0, 10) for q in range(4)]
    # q0: 2 of 2 seeds right (+1), q1: 1 of 2 (+0.5), q2: 0 of 2 (0), q9: not run by cot
    rows = [row(q, "sc", seed, int(seed < k), 10)
            for q, k in ((0, 2), (1, 1), (2, 0), (9, 2)) for seed in (0, 1)]
    gain, low, high, questions = paired_difference(rows, base) or (0, 0, 0, 0)
    assert (gain, questions) == (pytest.approx(0.5), 3) and 0 <= low < 0.5 < high <= 1
    assert paired_difference(rows, [row(5, "cot", 0, 1, 10)]) is None


def test_cost_is_relative_to_cot_run_with_settings(hand_db: Path) -> None:
    # `cot:max_tokens=512` is still the baseline when no plain `cot` was run.
    rows = [replace(r, scheme="cot:max_tokens=512") if r.scheme == "cot" else r
            for r in stored(hand_db)]
    cot, sc = summarize(rows, order=["cot:max_tokens=512", "self-consistency@4"])
    assert (cot.tokens_vs_baseline, sc.tokens_vs_baseline) == (1.0, 4.0)


def test_report_compares_to_another_baseline(hand_db: Path) -> None:
    cot, sc = summarize(stored(hand_db), baseline="self-consistency@4")
    assert (cot.baseline, cot.tokens_vs_baseline, sc.tokens_vs_baseline) == (
        "self-consistency@4", 0.25, 1.0)
    assert sc.gain_vs_baseline is None and cot.gain_vs_baseline == pytest.approx(0.2)
    assert cot.gain_questions == 5  # sc ran q0-q4 only

    result = CliRunner().invoke(app, ["report", str(hand_db), "--markdown",
                                      "--baseline", "self-consistency@4"])
    assert result.exit_code == 0, result.output
    assert "| vs self-consistency@4 | Δ vs self-consistency@4 (points) |" in result.stdout
    assert "| 0.2× | +20.0 [" in result.stdout and "on 5 q |" in result.stdout
    alone = summarize([r for r in stored(hand_db) if r.scheme != "cot"])  # no cot: no baseline
    assert json.loads(to_json(alone, {}, "wilson"))["baseline"] is None
    assert alone[0].tokens_vs_baseline is None and "vs cot" in headers(alone)
    with pytest.raises(UnknownName, match="unknown baseline scheme 'beam@4'; valid names: "
                       "cot, self-consistency@4"):
        summarize(stored(hand_db), baseline="beam@4")


def test_bootstrap_resamples_questions_and_is_reproducible(hand_db: Path) -> None:
    first = summarize(stored(hand_db), ci="bootstrap")
    again = summarize(stored(hand_db), ci="bootstrap")
    assert [(s.ci_low, s.ci_high) for s in first] == [(s.ci_low, s.ci_high) for s in again]
    for s in first:
        assert s.ci_low <= s.accuracy <= s.ci_high
    # self-consistency@4: questions are all-right or all-wrong, so every resample is a multiple
    # of 1/5 (whole questions), never of 1/10 (single rows).
    sc = next(s for s in first if s.scheme == "self-consistency@4")
    assert round(sc.ci_low * 5, 9).is_integer() and round(sc.ci_high * 5, 9).is_integer()
    with pytest.raises(UnknownName, match="bootstrap, wilson"):
        summarize(stored(hand_db), ci="nope")


def test_report_command_json_markdown_and_plot(hand_db: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(hand_db), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ci"]["method"] == "wilson" and payload["meta"]["model"] == "m"
    assert payload["baseline"] == "cot"
    assert [s["scheme"] for s in payload["schemes"]] == ["cot", "self-consistency@4"]

    result = CliRunner().invoke(app, ["report", str(hand_db), "--markdown", "--plot",
                                      str(tmp_path / "plot.png")])
    assert result.exit_code == 0, result.output
    assert "| cot | 70.0% | 39.7%–89.2% | 10 |" in result.stdout
    assert "| 4.0× | -20.0 [" in result.stdout and "paired" in result.stdout
    assert "Wilson score interval" in result.stdout
    png = (tmp_path / "plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR" and len(png) > 5000
    result = CliRunner().invoke(app, ["report", str(hand_db), "--plot-x", "seconds", "--plot",
                                      str(tmp_path / "seconds.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "seconds.png").read_bytes() != png  # another axis, another picture
    result = CliRunner().invoke(app, ["report", str(hand_db), "--plot-x", "watts", "--plot",
                                      str(tmp_path / "w.png")])
    assert isinstance(result.exception, UnknownName) and not (tmp_path / "w.png").exists()


def test_plot_has_a_line_per_family_and_settings() -> None:
    rows = [row(0, spec, 0, 1, 100) for spec in (
        "self-consistency@4", "self-consistency@8", "adaptive@16",
        "adaptive@16:give_up_after=4", "beam@4:scorer=rule:max_tokens=64")]
    lines = plot_lines(summarize(rows))
    assert {label: [s.scheme for s in members] for label, members in lines.items()} == {
        "self-consistency": ["self-consistency@4", "self-consistency@8"],
        "adaptive (defaults)": ["adaptive@16"],
        "adaptive (give_up_after=4)": ["adaptive@16:give_up_after=4"],
        "beam": ["beam@4:scorer=rule:max_tokens=64"]}


@pytest.mark.parametrize("ci", ["wilson", "bootstrap"])
def test_plot_draws_schemes_that_got_everything_right_or_wrong(tmp_path: Path, ci: str) -> None:
    rows = [row(q, scheme, 0, int(scheme == "cot"), 100) for q in range(7)
            for scheme in ("cot", "beam@4")]
    beam, cot = summaries = summarize(rows, ci=ci)
    assert (beam.accuracy, beam.ci_low, cot.accuracy, cot.ci_high) == (0.0, 0.0, 1.0, 1.0)
    plot(summaries, tmp_path / "p.png", "all or nothing")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_joins_files_of_one_run_and_keeps_a_position_range(hand_db: Path,
                                                                  tmp_path: Path) -> None:
    search = tmp_path / "search.db"
    meta = {"model": "m", "task": "gsm8k", "split": "test", "schemes": ["beam@4"]}
    with Store.create(search, meta, resume=False) as store:
        for q in range(3, 8):
            store.add(row(q, "beam@4", 0, int(q % 2 == 0), 900))
    result = CliRunner().invoke(app, ["report", str(hand_db), str(search), "--json",
                                      "--positions", "3:6"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    got = {s["scheme"]: (s["questions"], s["correct"]) for s in payload["schemes"]}
    # positions 3, 4, 5: cot right on all three (q < 7); sc has q3 (right), q4 (wrong) × 2 seeds;
    # beam right on the even one, q4.
    assert got == {"cot": (3, 3), "self-consistency@4": (2, 2), "beam@4": (3, 1)}
    assert [s["scheme"] for s in payload["schemes"]] == ["cot", "self-consistency@4", "beam@4"]
    assert payload["meta"]["files"] == [str(hand_db), str(search)]
    assert payload["schemes"][2]["tokens_vs_baseline"] == 9.0


@pytest.mark.parametrize(("text", "message"), [
    ("100", "write START:STOP"), ("5:2", "START must be"), ("a:b", "write START:STOP"),
    ("-1:", "START must be"),
])
def test_report_rejects_a_bad_position_range(hand_db: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_rows([hand_db], text)
    assert parse_positions(":100") == range(0, 100) and parse_positions("900:").start == 900


def test_report_refuses_files_of_different_models_or_the_same_row_twice(hand_db: Path,
                                                                        tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with Store.create(other, {"model": "m2", "task": "gsm8k", "split": "test"},
                      resume=False) as store:
        store.add(row(0, "beam@4", 0, 1, 10))
    with pytest.raises(DataError, match=r"holds model='m2' but .* holds 'm'"):
        read_rows([hand_db, other])
    with pytest.raises(DataError, match=r"both hold \('q0', 'cot', 0\)"):
        read_rows([hand_db, hand_db])


# --- a real process, killed mid-run and resumed --------------------------------------------------


def ponder_eval(*args: str) -> list[str]:
    return [sys.executable, "-m", "ponder.eval", "eval", *args]


def count_rows(path: Path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(path, timeout=10)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
    except sqlite3.OperationalError:  # the table is not created yet
        return 0
    finally:
        conn.close()


def comparable(rows: list[Row]) -> list[dict[str, object]]:
    """Rows without their timings."""
    return [{k: v for k, v in asdict(r).items() if k not in {"seconds", "created"}}
            for r in rows]


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    data = write_questions(tmp_path / "q.jsonl")
    schemes = ("cot", "self-consistency@3", "adaptive@4")
    db = tmp_path / "killed.db"
    args = ["gsm8k", "--data", str(data), "--model", "fake", "--model-arg",
            "delay_per_token=0.01", "--schemes", ",".join(schemes), "--seeds", "2",
            "--out", str(db)]
    planned = 6 + 2 * 6 * 2
    proc = subprocess.Popen(ponder_eval(*args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while count_rows(db) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert 8 <= count_rows(db) < planned

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()

    resumed = subprocess.run(ponder_eval(*args, "--resume"), capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"already stored, {planned} planned" in resumed.stderr

    reference = tmp_path / "reference.db"
    run_eval(EvalConfig(task="gsm8k", schemes=schemes, out=reference, model="fake", data=data,
                        seeds=2), progress=False)
    assert comparable(stored(db)) == comparable(stored(reference))
    assert len(stored(db)) == planned
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT COUNT(*) FROM sessions").fetchone() == (2,)
    conn.close()


def test_cli_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    data = write_questions(tmp_path / "q.jsonl")
    args = ["gsm8k", "--data", str(data), "--model", "fake", "--schemes", "cot",
            "--out", str(tmp_path / "r.db")]
    assert subprocess.run(ponder_eval(*args), capture_output=True, timeout=60).returncode == 0
    again = subprocess.run(ponder_eval(*args), capture_output=True, text=True, timeout=60)
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0 and "--resume" in again.stderr


def ponder(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m ponder.cli ARGS` in `cwd`, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "ponder.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    ("out", "message"),
    [
        pytest.param("file.txt/run.db", "file.txt is a file, not a folder", id="under-a-file"),
        pytest.param("file.txt/deeper/run.db", "file.txt is a file, not a folder",
                     id="deeper-under-a-file"),
        pytest.param("folder", "--out folder is a folder; give a file in it", id="a-folder"),
    ],
)
def test_eval_to_an_unusable_out_is_one_line_and_writes_nothing(tmp_path: Path, out: str,
                                                                message: str) -> None:
    write_questions(tmp_path / "q.jsonl")
    (tmp_path / "file.txt").write_text("notes\n")
    (tmp_path / "folder").mkdir()
    before = listing(tmp_path)
    proc = ponder("eval", "gsm8k", "--data", "q.jsonl", "--model", "fake", "--schemes", "cot",
                  "--out", out, cwd=tmp_path)
    assert_one_line_error(proc, message)
    assert listing(tmp_path) == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes to a read-only folder")
def test_eval_into_a_read_only_folder_is_one_line(tmp_path: Path) -> None:
    write_questions(tmp_path / "q.jsonl")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    proc = ponder("eval", "gsm8k", "--data", "q.jsonl", "--model", "fake", "--schemes", "cot",
                  "--out", "locked/sub/run.db", cwd=tmp_path)
    assert_one_line_error(proc, "is not writable; choose another --out")
    assert listing(locked) == []


def test_a_failed_create_leaves_no_file_or_folder_behind(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "run.db"
    with pytest.raises(TypeError):  # the meta cannot be written: after the file was created
        Store.create(path, {"model": object()}, resume=False)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["missing.db"], "no results database at missing.db", id="missing"),
        pytest.param(["folder"], "folder is a folder; give a results file", id="a-folder"),
        pytest.param(["file.txt"], "file.txt is not a ponder results database",
                     id="not-a-database"),
        pytest.param(["hand.db", "file.txt/more.db"], "no results database at file.txt/more.db",
                     id="under-a-file"),
        pytest.param(["hand.db", "--plot", "folder"], "invalid plot='folder': give a file",
                     id="plot-to-a-folder"),
        pytest.param(["hand.db", "--plot", "file.txt/plot.png"], "cannot write the plot to "
                     "file.txt/plot.png", id="plot-under-a-file"),
    ],
)
def test_report_on_an_unusable_path_is_one_line_and_writes_nothing(
        hand_db: Path, args: list[str], message: str) -> None:
    folder = hand_db.parent
    (folder / "file.txt").write_text("notes\n")
    (folder / "folder").mkdir()
    before = listing(folder)
    assert_one_line_error(ponder("report", *args, cwd=folder), message)
    assert listing(folder) == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads a file without read permission")
def test_report_on_an_unreadable_file_is_one_line(hand_db: Path) -> None:
    hand_db.chmod(0)
    assert_one_line_error(ponder("report", hand_db.name, cwd=hand_db.parent),
                          "cannot read hand.db (permission denied)")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes to a read-only folder")
def test_report_reads_a_file_in_a_read_only_folder(hand_db: Path) -> None:
    """A reader of a WAL database makes files beside it: where it cannot, it reads in place."""
    hand_db.parent.chmod(0o555)
    try:
        proc = ponder("report", hand_db.name, "--json", cwd=hand_db.parent)
    finally:
        hand_db.parent.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert [s["rows"] for s in json.loads(proc.stdout)["schemes"]] == [10, 10]


# ---- concurrency and shared samples ---------------------------------------------------------

def by_index(prompt: str, i: int) -> str:
    """A different answer per sample index (and question), so sharing mistakes show."""
    q = int(prompt.split("Question ")[1].split(":")[0])
    return f"step {i} \\boxed{{{(q * 7 + i * i) % 5 + 40}}}"


GRID = ("cot", "self-consistency@2", "self-consistency@4", "adaptive@4:batch=2", "best-of-n@4")


@pytest.mark.parametrize("share", [False, True], ids=["own-samples", "shared-samples"])
def test_concurrent_questions_give_the_same_rows(tmp_path: Path, share: bool) -> None:
    one = config(tmp_path, schemes=GRID, out=tmp_path / "one.db")
    run_eval(one, model_factory=lambda: ScriptedModel(by_index), progress=False)
    many = config(tmp_path, schemes=GRID, out=tmp_path / "many.db", concurrency=3,
                  share_samples=share)
    run_eval(many, model_factory=lambda: ScriptedModel(by_index, delay_per_token=0.001),
             progress=False)
    assert comparable(stored(one.out)) == comparable(stored(many.out))


def test_shared_samples_generate_each_sample_once(tmp_path: Path) -> None:
    """Per question and seed, the sampled schemes need samples 0-3 only: 4 are generated."""
    model = ScriptedModel(by_index)
    cfg = config(tmp_path, schemes=GRID, share_samples=True)
    run_eval(cfg, model_factory=lambda: model, progress=False)
    sampled = [req for call in model.calls for req in call if not req.params.greedy]
    per_seed = len(GOLDS) * 2
    assert sum(req.params.n for req in sampled) == 4 * per_seed
    with Store.read(cfg.out) as store:
        assert store.meta()["settings"] == {"max_tokens": None, "share_samples": True}
    with pytest.raises(StoreMismatch, match="settings"):  # a pooled run is another experiment
        run_eval(config(tmp_path, schemes=GRID, resume=True), progress=False)


def test_a_failing_question_stops_the_run_and_keeps_finished_rows(tmp_path: Path) -> None:
    def script(prompt: str, i: int) -> str:
        if "Question 4:" in prompt:
            raise RuntimeError("backend fell over")
        return by_index(prompt, i)

    cfg = config(tmp_path, schemes=("cot",), concurrency=2)
    with pytest.raises(RuntimeError, match="fell over"):
        run_eval(cfg, model_factory=lambda: ScriptedModel(script), progress=False)
    positions = sorted(r.position for r in stored(cfg.out))
    assert 4 not in positions and len(positions) >= 2
    resumed = run_eval(config(tmp_path, schemes=("cot",), resume=True),
                       model_factory=lambda: ScriptedModel(by_index), progress=False)
    assert resumed.resumed + resumed.written == len(GOLDS)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_resumed_run_reuses_the_samples_a_failed_run_drew(tmp_path: Path,
                                                            concurrency: int) -> None:
    """Question 4 fails while drawing samples 2-3 (self-consistency@4, after @2 drew 0-1 for both
    seeds). The resumed run draws only what is missing, and its rows equal an unbroken run's."""
    def script(prompt: str, i: int) -> str:
        if "Question 4:" in prompt and i >= 2:
            raise RuntimeError("backend fell over")
        return by_index(prompt, i)

    broken = config(tmp_path, schemes=GRID, share_samples=True, concurrency=concurrency)
    with pytest.raises(RuntimeError, match="fell over"):
        run_eval(broken, model_factory=lambda: ScriptedModel(script), progress=False)
    ids = [f"gsm8k-{i}" for i in range(len(GOLDS))]
    with Store.read(broken.out) as store:
        kept = store.samples(ids)
        rows = [r.question_id for r in store.rows()]
    assert sorted(sorted(pool) for pool in kept["gsm8k-4"].values()) == [[0, 1], [0, 1]]
    # Each question needs samples 0-3 of 2 seeds (9 rows: cot + 4 schemes x 2 seeds); the
    # unfinished ones need only those that were not kept.
    missing = sum(2 * 4 - sum(map(len, kept.get(q, {}).values()))
                  for q in ids if rows.count(q) < 9)

    model = ScriptedModel(by_index)
    run_eval(replace(broken, resume=True), model_factory=lambda: model, progress=False)
    drawn = sum(req.params.n for call in model.calls for req in call if not req.params.greedy)
    assert drawn == missing and missing < len(GOLDS) * 2 * 4

    whole = config(tmp_path, schemes=GRID, share_samples=True, out=tmp_path / "whole.db")
    run_eval(whole, model_factory=lambda: ScriptedModel(by_index), progress=False)
    assert comparable(stored(broken.out)) == comparable(stored(whole.out))


def test_a_file_from_before_samples_and_model_seconds_reads_and_resumes(tmp_path: Path) -> None:
    cfg = config(tmp_path, schemes=("cot", "self-consistency@2"), limit=2, share_samples=True)
    run_eval(replace(cfg, limit=1), progress=False)
    conn = sqlite3.connect(cfg.out)  # as a file written before either existed
    conn.executescript("DROP TABLE samples; ALTER TABLE results DROP COLUMN model_seconds;")
    conn.close()
    with Store.read(cfg.out) as store:
        assert store.samples(["gsm8k-0"]) == {} and "model_seconds" not in store.columns
        assert len(list(store.rows())) == 3
    run_eval(replace(cfg, resume=True), progress=False)
    with Store.read(cfg.out) as store:
        assert len(list(store.rows())) == 6 and "model_seconds" in store.columns
        assert [sorted(p) for p in store.samples(["gsm8k-1"])["gsm8k-1"].values()] == [[0, 1]] * 2


def test_zero_concurrency_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        config(tmp_path, concurrency=0)


def test_temperature_applies_to_sampled_schemes_only(tmp_path: Path) -> None:
    cfg = config(tmp_path, temperature=0.3,
                 schemes=("cot", "self-consistency@3", "self-consistency@2:temperature=0.9"))
    assert cfg.scheme("cot", 0).config.temperature == 0.0
    assert cfg.scheme("self-consistency@3", 1).config.temperature == 0.3
    assert cfg.scheme("self-consistency@2:temperature=0.9", 0).config.temperature == 0.9
    assert cfg.meta()["settings"] == {"max_tokens": None, "temperature": 0.3}


def test_start_skips_questions_and_keeps_their_positions(tmp_path: Path) -> None:
    cfg = config(tmp_path, schemes=("cot",), start=2, limit=3)
    run_eval(cfg, progress=False)
    rows = stored(cfg.out)
    assert [r.position for r in rows] == [2, 3, 4]
    assert [r.gold for r in rows] == GOLDS[2:5]
    assert cfg.meta()["settings"] == {"max_tokens": None, "start": 2}


# ---- a task given as a JSONL file and a field mapping ------------------------------------------

def test_a_jsonl_task_file_runs_through_a_field_mapping(tmp_path: Path) -> None:
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"uid": f"s{i}", "problem": f"Question {i}: sum?",
                                        "solution": gold}) + "\n"
                            for i, gold in enumerate(["42", "4", "42.0"])))
    db = tmp_path / "sums.db"
    args = ["eval", str(data), "--field", "question=problem", "--field", "answer=solution",
            "--field", "id=uid", "--checker", "numeric", "--model", "fake", "--schemes", "cot",
            "--out", str(db)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = stored(db)
    assert [(r.question_id, r.gold, r.correct) for r in rows] == [
        ("s0", "42", 1), ("s1", "4", 0), ("s2", "42.0", 1)]
    with Store.read(db) as store:
        meta = store.meta()
    assert meta["task"] == str(data.resolve())
    assert meta["settings"]["fields"] == {"question": "problem", "answer": "solution", "id": "uid"}
    task = task_of(meta)  # what report scripts rebuild the task from
    assert task.name == "sums" and task.check("42", "42.0") and not task.check("4", "42")

    other = subprocess.run(ponder_eval(*args[1:], "--checker", "exact", "--resume"),
                           capture_output=True, text=True, timeout=60)
    assert other.returncode == 2 and other.stderr.strip().count("\n") == 0
    assert "cannot resume" in other.stderr and "checker" in other.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"data": Path("x.jsonl")}, "its own data; drop --data", id="data-too"),
        pytest.param({"task": "gsm8k", "checker": "exact"}, "its own fields",
                     id="checker-on-gsm8k"),
    ],
)
def test_a_task_file_config_error_comes_before_anything_runs(
        tmp_path: Path, change: dict[str, object], message: str) -> None:
    data = write_questions(tmp_path / "q.jsonl")
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, **{"task": str(data), "data": None, **change})


def test_fields_are_key_equals_column() -> None:
    assert parse_fields(["question = problem", "id=uid"]) == {"question": "problem", "id": "uid"}
    for bad in ("question", "=problem", "question="):
        with pytest.raises(ConfigError, match="write KEY=COLUMN"):
            parse_fields([bad])


def task_file_run(tmp_path: Path, **changes: object) -> EvalConfig:
    # (not q.jsonl, which `config` writes afresh on every call)
    settings: dict[str, object] = dict(task=str(tmp_path / "tasks.jsonl"), data=None,
                                       schemes=("cot",), seeds=1)
    settings.update(changes)
    return config(tmp_path, **settings)


def test_a_task_file_run_resumes_under_the_same_reading_however_it_is_spelled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_questions(tmp_path / "tasks.jsonl")
    run_eval(task_file_run(tmp_path, limit=2), progress=False)
    # the defaults spelled out, and the file named by a relative path from elsewhere
    monkeypatch.chdir(tmp_path)
    spelled = task_file_run(tmp_path, task="tasks.jsonl", limit=4, resume=True, checker="math",
                            fields={"question": "question", "answer": "answer"})
    assert run_eval(spelled, progress=False).written == 2
    with Store.read(tmp_path / "run.db") as store:
        settings = store.meta()["settings"]
    assert settings["fields"] == {"question": "question", "answer": "answer", "id": None}
    assert settings["checker"] == "math" and len(settings["sha256"]) == 64
    assert "instruction" not in settings

    with pytest.raises(StoreMismatch, match="settings="):  # another checker
        run_eval(task_file_run(tmp_path, resume=True, checker="exact"), progress=False)
    with pytest.raises(StoreMismatch, match="settings="):  # no system message now
        run_eval(task_file_run(tmp_path, resume=True, instruction=""), progress=False)
    data.write_text(data.read_text() + json.dumps({"question": "Q?", "answer": "1"}) + "\n")
    with pytest.raises(StoreMismatch, match="sha256"):  # the file changed under the run
        run_eval(task_file_run(tmp_path, resume=True), progress=False)


def test_an_empty_instruction_asks_no_system_message_and_is_kept(tmp_path: Path) -> None:
    write_questions(tmp_path / "tasks.jsonl")
    seen: list[str] = []

    def answer(prompt: str, i: int) -> str:
        seen.append(prompt)
        return "\\boxed{42}"

    cfg = task_file_run(tmp_path, instruction="", limit=1)
    run_eval(cfg, model_factory=lambda: ScriptedModel(answer), progress=False)
    assert seen and "boxed{}" not in seen[0] and "Question 0" in seen[0]
    with Store.read(cfg.out) as store:
        assert store.meta()["settings"]["instruction"] == ""
        assert task_of(store.meta()).render("Q?") == ({"role": "user", "content": "Q?"},)
    resumed = task_file_run(tmp_path, instruction="", limit=2, resume=True)
    assert run_eval(resumed, progress=False).written == 1


def test_a_task_file_missing_a_column_names_the_flag(tmp_path: Path) -> None:
    write_questions(tmp_path / "tasks.jsonl")
    with pytest.raises(DataError, match=r"no field 'problem' .* --field question=COLUMN"):
        run_eval(task_file_run(tmp_path, fields={"question": "problem"}), progress=False)


def test_report_refuses_runs_that_judged_the_questions_differently(tmp_path: Path) -> None:
    write_questions(tmp_path / "tasks.jsonl")
    run_eval(task_file_run(tmp_path, out=tmp_path / "a.db"), progress=False)
    run_eval(task_file_run(tmp_path, out=tmp_path / "b.db", checker="exact",
                           schemes=("self-consistency@2",)), progress=False)
    with pytest.raises(DataError, match="read its questions with checker='exact'"):
        read_rows([tmp_path / "a.db", tmp_path / "b.db"])


def test_the_gain_cell_says_when_cot_covers_fewer_questions(hand_db: Path) -> None:
    rows = [r for r in stored(hand_db) if not (r.scheme == "cot" and r.position < 2)]
    sc = summarize(rows, order=["cot", "self-consistency@4"])[1]
    assert sc.gain_questions == 3 and table_cells(sc)[-1].endswith(" on 3 q")


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        pytest.param("model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 avx512f avx512bw\n",
                     "AMD EPYC (avx512f)", id="avx512"),
        pytest.param("model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nflags\t\t: fpu avx avx2 fma\n"
                     "model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n",
                     "Intel(R) Xeon(R) CPU @ 2.20GHz (avx2)", id="avx2-two-cores"),
        pytest.param("processor\t: 0\nFeatures\t: fp asimd\n", platform.machine(), id="arm"),
    ],
)
def test_each_session_records_the_cpu_that_ran_it(tmp_path: Path, cpuinfo: str,
                                                  expected: str) -> None:
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert cpu_model(tmp_path / "cpuinfo") == expected
    assert cpu_model(tmp_path / "absent") == (platform.processor() or None)
    run_eval(config(tmp_path, schemes=("cot",), limit=1), progress=False)
    with Store.read(tmp_path / "run.db") as store:
        (machine,) = store.conn.execute("SELECT machine FROM sessions").fetchone()
    assert json.loads(machine)["cpu"] == cpu_model()
