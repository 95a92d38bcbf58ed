"""Math-Shepherd labels on a scripted policy, the TRL-format data set, and PRM training on a tiny
random Llama with a word-level tokenizer, read back through `get_scorer("prm:...")`.

The scripted policy knows, for every prefix of its one solution, how many of its samples finish
right, so the MC labels have exact expected values. Training runs a few steps of 2 layers × 32
dimensions on CPU (seconds).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("accelerate")  # transformers.Trainer needs it
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
datasets = pytest.importorskip("datasets")

from tiny_hf import tiny_llama_config, word_tokenizer  # noqa: E402

from ponder.core.errors import ConfigError, DataError  # noqa: E402
from ponder.models.fake import ASSISTANT, ScriptedModel  # noqa: E402
from ponder.schemes import get_scheme  # noqa: E402
from ponder.scorers import get_scorer  # noqa: E402
from ponder.scorers.prm import PRMScorer  # noqa: E402
from ponder.tasks import Record, get_task  # noqa: E402
from ponder.train.prm import IGNORE, encode_row, token_classifier, train_prm  # noqa: E402
from ponder.train.prm_labels import (  # noqa: E402
    build_dataset,
    hard_labels,
    mc_labels,
    split_steps,
)

TASK = get_task("gsm8k")
QUESTION = "what is two plus three ?"
STEPS = ["we add two and three\n\n", "so we get five\n\n", "the answer is 5"]
K = 4  # rollouts
# Prefix "steps 1..i" (i = 1, 2) -> how many of the K rollouts from it end in the right answer.
RIGHT_FROM = {1: 1, 2: 3}


def script(prompt: str, sample: int) -> str:
    """Continues whatever part of STEPS is already written. From the empty prefix (a fresh
    solution), sample 0 writes STEPS; sample 1 writes a wrong 2-step solution. From a prefix of
    i steps, the first RIGHT_FROM[i] samples end right, the others wrong."""
    written = prompt.rsplit(ASSISTANT, 1)[1]
    if not written:
        return "".join(STEPS) if sample % 2 == 0 else "we add them\n\nthe answer is 6"
    i = next((i for i in range(1, len(STEPS)) if written == "".join(STEPS[:i])), None)
    right = i is not None and sample < RIGHT_FROM[i]  # the wrong solution's prefix: never
    return written + ("the answer is 5" if right else "the answer is 7")


def problem() -> Any:
    return TASK.problem(Record(id="q0", question=QUESTION, gold="5"))


# -- steps and labels ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, steps", [
    ("a\n\nb\n\nc", ["a\n\n", "b\n\n", "c"]),
    ("a\n\nb\n\n", ["a\n\n", "b\n\n"]),
    ("a\n\n\n\nb", ["a\n\n", "\n\nb"]),
    ("\n\na\n\nb", ["\n\na\n\n", "b"]),
    ("one step", ["one step"]),
    ("  \n\n ", []),
], ids=["three", "trailing-delimiter", "doubled-delimiter", "leading-delimiter", "one", "blank"])
def test_split_steps_keeps_the_text(text: str, steps: list[str]) -> None:
    assert split_steps(text, "\n\n") == steps
    if steps:
        assert "".join(steps) == text


def test_mc_labels_are_the_fractions_of_right_rollouts() -> None:
    model = ScriptedModel(script)
    soft = mc_labels(model, problem(), STEPS, "5", TASK.check, rollouts=K, seed=1)
    # steps 1 and 2: rollouts; step 3 (the last): the solution's own answer, 5, is right
    assert soft == [RIGHT_FROM[1] / K, RIGHT_FROM[2] / K, 1.0]
    wrong = mc_labels(model, problem(), STEPS, "6", TASK.check, rollouts=K, seed=1)
    assert wrong == [0.0, 0.0, 0.0]  # no rollout and not the solution says 6


def test_one_batched_call_per_solution_one_request_per_prefix() -> None:
    model = ScriptedModel(script)
    mc_labels(model, problem(), STEPS, "5", TASK.check, rollouts=K, max_tokens=64,
              temperature=0.5, seed=3)
    [requests] = model.calls
    prompt = model.render_chat(problem().messages)
    assert [r.prefix for r in requests] == [prompt + STEPS[0], prompt + STEPS[0] + STEPS[1]]
    assert {(r.params.n, r.params.max_tokens, r.params.temperature, r.params.seed)
            for r in requests} == {(K, 64, 0.5, 3)}
    model.calls.clear()
    assert mc_labels(model, problem(), ["the answer is 5"], "5", TASK.check) == [1.0]
    assert model.calls == []  # a one-step solution needs no rollouts


@pytest.mark.parametrize("threshold, expected", [
    (None, [False, True, True, True]), (0.5, [False, False, True, True]),
    (1.0, [False, False, False, True]),
], ids=["any-rollout", "half", "all"])
def test_hard_labels(threshold: float | None, expected: list[bool]) -> None:
    assert hard_labels([0.0, 0.25, 0.5, 1.0], threshold) == expected


# -- the data set ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "labels.jsonl"
    records = [Record(id="q0", question=QUESTION, gold="5"),
               Record(id="q1", question="no gold here", gold=None)]
    stats = build_dataset(TASK, records, ScriptedModel(script), out=path, samples_per_problem=2,
                          rollouts=K, seed=0)
    # q0 only: 2 solutions + rollouts for (3 - 1) + (2 - 1) non-final steps
    assert (stats.problems, stats.solutions, stats.right, stats.steps) == (1, 2, 1, 5)
    assert stats.generations == 2 + (2 + 1) * K
    assert stats.completion_tokens > 0
    return path


def test_the_data_set_is_trl_stepwise_supervision(labels: Path) -> None:
    table = datasets.load_dataset("json", data_files=str(labels), split="train")
    assert table.features["prompt"] == datasets.Value("string")
    assert table.features["completions"].feature == datasets.Value("string")
    assert table.features["labels"].feature == datasets.Value("bool")
    right, wrong = table[0], table[1]
    assert right["prompt"] == QUESTION
    assert right["completions"] == [s.strip() for s in STEPS]
    assert right["soft_labels"] == [0.25, 0.75, 1.0]
    assert right["labels"] == [True, True, True]
    assert wrong["completions"] == ["we add them", "the answer is 6"]
    assert wrong["labels"] == [False, False]  # the prefix "we add them" ends in 7 every time
    assert (right["id"], right["sample"], right["gold"], wrong["answer"]) == ("q0", 0, "5", "6")


def test_labelling_needs_gold_answers(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="gold"):
        build_dataset(TASK, [Record(id="x", question="?", gold=None)], ScriptedModel(script),
                      out=tmp_path / "l.jsonl")
    with pytest.raises(ConfigError, match="threshold"):
        build_dataset(TASK, [], ScriptedModel(script), out=tmp_path / "l.jsonl", threshold=0.0)
    assert not (tmp_path / "l.jsonl").exists()


# -- training --------------------------------------------------------------------------------------

WORDS = ["what", "is", "two", "plus", "three", "?", "we", "add", "and", "so", "get", "five",
         "the", "answer", "5", "6", "them", "no", "gold", "here"]


def tiny_causal() -> tuple[Any, Any]:
    """BOS added; "\\n" an added token so TRL's default separator survives (as in test_prm)."""
    torch.manual_seed(0)
    tokenizer = word_tokenizer(["<pad>", "<s>", "</s>", "<unk>", "\n", *WORDS], newline=True)
    config = tiny_llama_config(tokenizer, max_position_embeddings=128)
    return transformers.AutoModelForCausalLM.from_config(config), tokenizer


def test_the_classifier_starts_from_the_causal_backbone() -> None:
    causal, _ = tiny_causal()
    model = token_classifier(causal)
    assert type(model).__name__ == "LlamaForTokenClassification"
    assert model.config.num_labels == 2
    backbone = causal.model.state_dict()
    assert all(torch.equal(v, backbone[k]) for k, v in model.model.state_dict().items())


def test_training_moves_every_weight_and_saves_a_ponder_scorer(labels: Path,
                                                               tmp_path: Path) -> None:
    causal, tokenizer = tiny_causal()
    model = token_classifier(causal)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    logged: list[tuple[int, float]] = []
    out = tmp_path / "prm"
    result = train_prm((model, tokenizer), labels, out, steps=3, lr=1e-2, batch_size=2,
                       log=lambda step, loss: logged.append((step, loss)))

    # Every trainable tensor moved (the embedding's pad row alone gets no gradient; its tensor
    # still changes through the other rows).
    unchanged = [n for n, p in model.named_parameters()
                 if p.requires_grad and torch.equal(p.detach(), before[n])]
    assert unchanged == []
    assert [step for step, _ in logged] == [1, 2, 3]
    assert result.losses == [loss for _, loss in logged]
    assert all(math.isfinite(loss) for loss in result.losses)
    assert json.loads((out / "training.json").read_text())["losses"] == result.losses

    scorer = get_scorer("prm:" + str(out), None)  # type: ignore[arg-type]
    assert isinstance(scorer, PRMScorer) and scorer.separator == "\n"
    steps = [s.strip() for s in STEPS]
    [scores] = scorer.step_scores([QUESTION], ["".join(STEPS)], steps=[steps])
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)

    # ... and steers a tree search (as `beam@2:scorer=prm:PATH` would).
    result = get_scheme("beam@2")(problem(), model=ScriptedModel(script), scorer=scorer)
    assert result.answer in {"5", "7"}
    assert all(n.score is not None and 0.0 <= n.score <= 1.0 for n in result.trace.nodes)

    # What was trained on is what the scorer reads: the same ids, labels at its step marks.
    ids, targets = encode_row(tokenizer, QUESTION, steps, [1.0, 0.0, 1.0])
    row = scorer._pieces(QUESTION, steps)
    assert ids == row.prefix + row.body
    assert [i for i, t in enumerate(targets) if t != IGNORE] == [
        len(row.prefix) + m for m in row.marks]


def test_soft_targets_from_a_saved_causal_folder(labels: Path, tmp_path: Path) -> None:
    causal, tokenizer = tiny_causal()
    causal.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    result = train_prm(str(tmp_path / "base"), labels, tmp_path / "prm", steps=1, lr=1e-3,
                       target="soft", separator="?")
    assert len(result.losses) == 1 and math.isfinite(result.losses[0])
    assert PRMScorer(tmp_path / "prm").separator == "?"  # saved as config.step_separator


@pytest.mark.parametrize("kwargs, param", [
    ({"steps": 0}, "steps"), ({"lr": 0.0}, "lr"), ({"target": "fuzzy"}, "target"),
    ({"batch_size": 0}, "batch_size"),
], ids=["steps", "lr", "target", "batch"])
def test_bad_training_settings_name_the_parameter(labels: Path, tmp_path: Path,
                                                  kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(ConfigError, match=param):
        train_prm("unused", labels, tmp_path, **kwargs)


def test_a_file_that_is_not_prm_rows_is_a_data_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "q", "completions": ["a", "b"], "labels": [True]}) + "\n")
    with pytest.raises(DataError, match="row 1"):
        train_prm("unused", bad, tmp_path / "prm", steps=1)


def test_the_command_labels_then_trains(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from ponder.train.commands import prm_command

    app = typer.Typer()
    app.command()(prm_command)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}", "answer": f"so #### {a}"}) + "\n"
                            for i, a in enumerate([42, 7])))
    causal, tokenizer = tiny_causal()
    causal.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    run = CliRunner().invoke(app, ["gsm8k", "--data", str(data), "--policy", "fake",
                                   "--samples", "2", "--base", str(tmp_path / "base"),
                                   "--steps", "2", "--out", str(tmp_path / "run")])
    assert run.exit_code == 0, run.output
    rows = [json.loads(line) for line in (tmp_path / "run/labels.jsonl").read_text().splitlines()]
    # the fake's one-step "The answer is \boxed{42}.": right for q0, wrong for q1
    assert [(r["id"], r["labels"]) for r in rows] == [
        ("gsm8k-0", [True]), ("gsm8k-0", [True]), ("gsm8k-1", [False]), ("gsm8k-1", [False])]
    assert "step 2/2 loss" in run.output
    assert isinstance(get_scorer("prm:" + str(tmp_path / "run/final"), None),  # type: ignore[arg-type]
                      PRMScorer)
