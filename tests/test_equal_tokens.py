"""`ponder report --equal-tokens`: one long chain set against a parallel curve at its tokens."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_eval import row
from typer.testing import CliRunner

from ponder.cli import app
from ponder.eval.equal_tokens import at_equal_tokens, curves, to_markdown
from ponder.eval.report import SchemeSummary
from ponder.eval.store import Store


def summary(scheme: str, accuracy: float, tokens: float) -> SchemeSummary:
    return SchemeSummary(
        scheme=scheme, family=scheme.split("@")[0].split(":")[0], size=None, rows=100,
        questions=100, seeds=1, correct=round(100 * accuracy), accuracy=accuracy, ci_low=0.0,
        ci_high=1.0, mean_completion_tokens=tokens, mean_seconds=1.0, mean_wall_seconds=1.0,
        seconds_are_model_time=True, mean_model_calls=1.0, baseline=None,
        tokens_vs_baseline=None)


SC = [summary("self-consistency@2:budget=256", 0.30, 500),
      summary("self-consistency@4:budget=256", 0.40, 1000),
      summary("self-consistency@8:budget=256", 0.44, 2000)]


def test_curves_group_sizes_with_equal_settings_only() -> None:
    other = summary("self-consistency@8", 0.5, 2000)  # other settings: a line of one point
    lines = curves([*SC, other, summary("cot", 0.28, 270)])
    assert [c.name for c in lines] == ["self-consistency@k:budget=256"]
    assert [p.scheme for p in lines[0].points] == [s.scheme for s in SC]


@pytest.mark.parametrize(("tokens", "expected", "inside"), [
    pytest.param(1000, 0.40, True, id="on-a-point"),
    pytest.param(math.sqrt(1000 * 2000), 0.42, True, id="halfway-in-log-tokens"),
    pytest.param(4000, 0.44, False, id="beyond-the-curve"),
    pytest.param(250, 0.30, False, id="below-the-curve"),
])
def test_a_chain_is_read_against_the_curve_in_log_tokens(tokens: float, expected: float,
                                                         inside: bool) -> None:
    [m] = at_equal_tokens([*SC, summary("budget:waits=2", 0.35, tokens)])
    assert m.curve_accuracy == pytest.approx(expected)
    assert m.inside is inside and m.gain == pytest.approx(0.35 - expected)


def test_no_curve_no_comparison_and_markdown_names_the_sizes() -> None:
    assert at_equal_tokens([SC[0], summary("cot", 0.3, 300)]) == []
    [m] = at_equal_tokens([*SC, summary("budget:waits=1", 0.33, 700)])
    text = to_markdown([m])
    assert "self-consistency@2:budget=256 … self-consistency@4:budget=256" in text
    assert "| budget:waits=1 | 700 | 33.0% |" in text


def test_report_equal_tokens_on_a_stored_run(tmp_path: Path) -> None:
    """cot (100 tokens, 5/10) against self-consistency@2 (50 tokens, 3/10) and @4 (200, 7/10):
    at 100 tokens, halfway in log tokens, the curve reads 50%."""
    path = tmp_path / "run.db"
    meta = {"model": "m", "task": "gsm8k", "split": "test"}
    with Store.create(path, meta, resume=False) as store:
        for scheme, right, tokens in (("cot", 5, 100), ("self-consistency@2", 3, 50),
                                      ("self-consistency@4", 7, 200)):
            for q in range(10):
                store.add(row(q, scheme, 0, int(q < right), tokens))
    result = CliRunner().invoke(app, ["report", str(path), "--markdown", "--equal-tokens"])
    assert result.exit_code == 0, result.output
    assert "| cot | 100 | 50.0% | self-consistency@k | 50.0% | +0.0 |" in result.stdout
    result = CliRunner().invoke(app, ["report", str(path), "--json", "--equal-tokens"])
    [m] = json.loads(result.stdout)["equal_tokens"]
    assert (m["scheme"], m["curve_accuracy"], m["inside"]) == ("cot", pytest.approx(0.5), True)
    alone = tmp_path / "alone.db"
    with Store.create(alone, meta, resume=False) as store:
        store.add(row(0, "cot", 0, 1, 100))
    result = CliRunner().invoke(app, ["report", str(alone), "--equal-tokens"])
    assert result.exit_code == 0 and "no parallel curve" in result.output
