"""`ponder train verifier` and the `verifier:PATH` scorer: features, the fit, save and load, the
command on a store sampled from the scripted fake, and one-line errors for bad paths."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ponder.cli import app
from ponder.core.errors import ConfigError, DataError, ModelLoadError, ModelNotFound
from ponder.core.problem import Problem
from ponder.core.protocols import Candidate
from ponder.core.types import user
from ponder.eval.runner import EvalConfig, run_eval
from ponder.models.fake import ScriptedModel
from ponder.schemes import get_scheme
from ponder.scorers import get_scorer
from ponder.scorers.verifier import FEATURES, Chain, Verifier, features
from ponder.train.verifier import Pool, auroc, design, fit, train_verifier


def boxed(text: str) -> str | None:
    found = re.findall(r"\\boxed\{([^}]*)\}", text)
    return found[-1] if found else None


def synthetic_pool(rng: random.Random, qid: str) -> Pool:
    """Six chains for one question: a right chain states the gold answer and mostly computes
    right; a wrong one scatters over other answers and often miscalculates."""
    gold, chains, labels = rng.randint(10, 99), [], []
    for _ in range(6):
        right = rng.random() < 0.45
        answer = gold if right else gold + rng.choice([-3, -1, 2, 5, 9])
        a = rng.randint(2, 9)
        slip = rng.random() < (0.1 if right else 0.6)
        text = (f"{a} * {a} = {a * a + slip}\n\n" + "we go on. " * rng.randint(5, 40)
                + f"\n\nso \\boxed{{{answer}}}")
        chains.append(Chain(text, str(answer), str(answer), len(text.split())))
        labels.append(int(right))
    return Pool(qid, chains, labels)


def test_features_read_agreement_claims_and_format() -> None:
    chains = [Chain("3 * 4 = 13\n\n```python\nprint(1)\n```\n```output\n1\n```\n\\boxed{12}",
                    "12", "12", 20),
              Chain("3 * 4 = 12 so \\boxed{12}", "12", "12", 7),
              Chain("no idea", None, None, 2), Chain("\\boxed{7}", "7", "7", 1)]
    rows = features(chains)
    assert [row[0] for row in rows] == [0.5, 0.5, 0.0, 0.25]  # agreement among the four
    assert rows[0][1:3] == [1.0, 1.0] and rows[1][1:3] == [0.0, 1.0]  # false claims, claims
    assert [row[4] for row in rows] == [1.0, 1.0, 0.0, 1.0]  # an answer extracted
    assert [row[5] for row in rows] == [1.0, 0.0, 0.0, 0.0]  # an invented ```output block
    assert len(rows[0]) == len(FEATURES)


def test_auroc_counts_ties_as_half() -> None:
    assert auroc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert auroc([0.5, 0.5], [1, 0]) == 0.5
    assert auroc([0.1, 0.9], [1, 0]) == 0.0
    assert auroc([0.3, 0.4], [1, 1]) is None


def test_fitted_verifier_saves_reloads_and_beats_chance(tmp_path: Path) -> None:
    rng = random.Random(0)
    train = [synthetic_pool(rng, f"q{i}") for i in range(60)]
    held_out = [synthetic_pool(rng, f"h{i}") for i in range(30)]
    x, y = design(train)
    verifier = fit(x, y)
    verifier.save(tmp_path / "v.json")
    loaded = Verifier.load(tmp_path / "v.json")
    assert loaded == verifier
    hx, hy = design(held_out)
    scores = loaded.probabilities(hx.tolist())
    assert all(0.0 <= s <= 1.0 for s in scores)
    held_auroc = auroc(scores, hy.astype(int).tolist())
    assert held_auroc is not None and held_auroc > 0.7
    by_name = dict(zip(FEATURES, loaded.weights, strict=True))
    assert by_name["agreement"] > 0 and by_name["false_claims"] < 0


def test_scorer_scores_a_batch_with_agreement_across_it(tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    Verifier(weights=[2.0, -1.0, 0, 0, 0, 0], bias=0.0, means=[0.5, 0, 0, 0, 0, 0],
             stds=[0.25, 1, 1, 1, 1, 1]).save(path)
    problem = Problem(question="q", messages=user("q"), extract=boxed)
    texts = ["6 * 7 = 42 \\boxed{42}", "\\boxed{42}", "6 * 7 = 48 \\boxed{48}"]
    scorer = get_scorer(f"verifier:{path}", ScriptedModel(["x"]))
    scores = scorer.score([Candidate("p", t, (t,), problem, boxed(t)) for t in texts])
    assert all(s is not None and 0 <= s <= 1 for s in scores)
    s42, s42b, s48 = (s or 0.0 for s in scores)
    assert s42 == s42b > 0.5 > s48  # two of three agree on 42; 48 also miscalculates


@pytest.mark.parametrize(("content", "error", "message"), [
    pytest.param(None, ModelNotFound, "no verifier at", id="missing"),
    pytest.param("not json", ModelLoadError, "cannot read the verifier", id="not-json"),
    pytest.param('{"format": "other"}', ModelLoadError, "not a ponder-verifier", id="format"),
    pytest.param('{"format": "ponder-verifier/1", "weights": [1], "bias": 0, "means": [0], '
                 '"stds": [1], "features": ["agreement"]}', ModelLoadError, "has features",
                 id="other-features"),
])
def test_bad_verifier_files_are_one_line_errors(tmp_path: Path, content: str | None,
                                                error: type[Exception], message: str) -> None:
    path = tmp_path / "v.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(error, match=message) as caught:
        get_scorer(f"verifier:{path}", ScriptedModel(["x"]))
    assert "\n" not in str(caught.value) and "ponder train verifier" in str(caught.value)


# --- the command, on a store sampled from the fake ---------------------------------------------

CHAINS = ["6 * 7 = 42, so \\boxed{42}", "6 * 7 = 48, so \\boxed{48}",
          "6 + 7 = 42 hence \\boxed{41}", "6 * 7 = 42; the answer is \\boxed{42}"]


def sampled_store(tmp_path: Path, split: str = "train") -> Path:
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": f"Q{i}: 6 * 7?", "answer": "#### 42"}) + "\n"
                            for i in range(5)))
    out = tmp_path / f"{split}.db"
    cfg = EvalConfig(task="gsm8k", schemes=("cot", "self-consistency@4", "best-of-n@4"),
                     out=out, model="fake", split=split, data=data)
    model = ScriptedModel(lambda prompt, i: CHAINS[i % 4])
    run_eval(cfg, model_factory=lambda: model, progress=False)
    return out


def test_train_verifier_command_on_a_sampled_store(tmp_path: Path) -> None:
    store = sampled_store(tmp_path)
    out = tmp_path / "runs" / "verifier.json"
    result = CliRunner().invoke(app, ["train", "verifier", str(store), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"scorer=verifier:{out}" in result.stderr
    stats = Verifier.load(out).stats
    # cot rows hold one chain; best-of-n shares self-consistency's samples: read once
    assert (stats["questions"], stats["chains"], stats["right"]) == (5, 20, 10)
    assert stats["train_auroc"] == 1.0
    problem = Problem(question="q", messages=user("6 * 7?"), extract=boxed, key=str.strip)
    model = ScriptedModel([CHAINS[1], CHAINS[2], CHAINS[0], CHAINS[3]])
    result_bon = get_scheme(f"best-of-n@4:scorer=verifier:{out}:selection=plain")(
        problem, model=model)
    assert result_bon.answer == "42"
    s48, s41, s42, s42b = (n.score or 0.0 for n in result_bon.trace.nodes)
    assert min(s42, s42b) > 0.5 > max(s48, s41)


def test_test_split_results_are_refused_unless_asked(tmp_path: Path) -> None:
    store = sampled_store(tmp_path, split="test")
    with pytest.raises(ConfigError, match="'test'-split results; train on the train split"):
        train_verifier([store], tmp_path / "v.json")
    verifier = train_verifier([store], tmp_path / "v.json", any_split=True)
    assert verifier.stats["chains"] == 20


def test_all_right_chains_are_a_data_error(tmp_path: Path) -> None:
    store = tmp_path / "train.db"
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "Q", "answer": "#### 42"}) + "\n")
    cfg = EvalConfig(task="gsm8k", schemes=("self-consistency@2",), out=store, model="fake",
                     split="train", data=data)
    run_eval(cfg, model_factory=lambda: ScriptedModel([CHAINS[0]]), progress=False)
    with pytest.raises(DataError, match="right and wrong chains"):
        train_verifier([store], tmp_path / "v.json")


@pytest.mark.parametrize("args", [
    pytest.param(["missing.db"], id="missing-store"),
    pytest.param([".", "--out", "v.json"], id="store-is-a-folder"),
])
def test_bad_paths_are_one_line_errors_on_the_command_line(tmp_path: Path,
                                                           args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "ponder.cli", "train", "verifier", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
