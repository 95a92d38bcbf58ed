"""PRM / ORM scorers on tiny random models saved to disk, read back through `get_scorer`.

The models are 2-layer Llamas with a word-level tokenizer (tests/tiny_hf.py; no weights to
download).

Each format is checked against a forward pass written out here by hand from its reference
recipe (TRL's PRMTrainer layout, Math-Shepherd's tags, a sequence classifier's pooled logits),
so the scorer reads the same positions and classes those models were trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from tiny_hf import tiny_llama_config, word_tokenizer  # noqa: E402

from ponder.core.errors import ConfigError, ModelNotFound, UnknownName  # noqa: E402
from ponder.core.problem import Problem  # noqa: E402
from ponder.core.protocols import Candidate  # noqa: E402
from ponder.scorers import get_scorer  # noqa: E402
from ponder.scorers.prm import PRMScorer  # noqa: E402

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "\n", "ки", "<extra_0>", "+", "-", "?", ":", "="]
WORDS = ["what", "is", "two", "plus", "three", "add", "the", "numbers", "so", "answer", "five",
         "wrong", "six", "we", "get", "2", "3", "5", "6"]
QUESTION = "what is two plus three ?"
GOOD = ["add the numbers : 2 + 3", "we get 5", "so the answer is five"]
BAD = ["add the numbers", "we get 6 wrong"]


def make_tokenizer() -> Any:
    """BOS added; "\\n" an added token so the TRL default separator survives pre-tokenization."""
    return word_tokenizer(SPECIAL + WORDS, specials=["<extra_0>"], newline=True)


def save(tmp: Path, name: str, auto_class: Any, **config: Any) -> Path:
    torch.manual_seed(0)
    tokenizer = make_tokenizer()
    model = auto_class.from_config(tiny_llama_config(tokenizer, initializer_range=0.5, **config))
    path = tmp / name
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("prm")
    return {
        "token": save(tmp, "token", transformers.AutoModelForTokenClassification, num_labels=2),
        "token-extra0": save(tmp, "token-extra0", transformers.AutoModelForTokenClassification,
                             num_labels=2, step_separator="<extra_0>"),
        "tags": save(tmp, "tags", transformers.AutoModelForCausalLM),
        "orm1": save(tmp, "orm1", transformers.AutoModelForSequenceClassification, num_labels=1),
        "orm2": save(tmp, "orm2", transformers.AutoModelForSequenceClassification, num_labels=2),
    }


def forward(path: Path, text: str) -> tuple[list[int], Any]:
    """The model's logits for `text` tokenized whole (BOS added), one sequence, no padding."""
    ids = transformers.AutoTokenizer.from_pretrained(path)(text)["input_ids"]
    config = transformers.AutoConfig.from_pretrained(path)
    auto = {"LlamaForTokenClassification": transformers.AutoModelForTokenClassification,
            "LlamaForCausalLM": transformers.AutoModelForCausalLM,
            "LlamaForSequenceClassification": transformers.AutoModelForSequenceClassification}
    model = auto[config.architectures[0]].from_pretrained(path).float().eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    return ids, logits


def manual(models: dict[str, Path], kind: str, steps: list[str]) -> list[float]:
    """Step scores computed from each format's recipe."""
    path = models[kind]
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    if kind.startswith("token"):  # TRL: prompt, then each step followed by the separator
        sep = "<extra_0>" if kind == "token-extra0" else "\n"
        ids, logits = forward(path, QUESTION + " " + "".join(s + sep for s in steps))
        marks = [i for i, t in enumerate(ids) if t == tokenizer.convert_tokens_to_ids(sep)]
        return logits[marks].softmax(-1)[:, 1].tolist()
    if kind == "tags":  # Math-Shepherd: "question step ки\nstep ки", P(+) against P(-)
        ids, logits = forward(path, f"{QUESTION} " + "\n".join(f"{s} ки" for s in steps))
        marks = [i for i, t in enumerate(ids) if t == tokenizer.convert_tokens_to_ids("ки")]
        plus, minus = tokenizer.convert_tokens_to_ids(["+", "-"])
        return logits[marks][:, [plus, minus]].softmax(-1)[:, 0].tolist()
    ids, logits = forward(path, QUESTION + " ".join(steps))  # an ORM: the whole completion
    return [float(logits[0].sigmoid() if kind == "orm1" else logits.softmax(-1)[1])]


KINDS = ["token", "token-extra0", "tags", "orm1", "orm2"]
PROBLEM = Problem(question=QUESTION, messages=(), extract=lambda text: None)


def candidates(completions: list[str], paths: list[list[str]]) -> list[Candidate]:
    return [Candidate(QUESTION, c, tuple(p), PROBLEM) for c, p in zip(completions, paths,
                                                                    strict=True)]


@pytest.mark.parametrize("kind", KINDS)
def test_step_scores_match_the_reference_forward_pass(models: dict[str, Path], kind: str) -> None:
    scorer = get_scorer(("orm:" if kind.startswith("orm") else "prm:") + str(models[kind]),
                        None)  # type: ignore[arg-type]
    assert isinstance(scorer, PRMScorer)
    for steps in (GOOD, BAD):
        [got] = scorer.step_scores([QUESTION], [" ".join(steps)], steps=[steps])
        assert got == pytest.approx(manual(models, kind, steps), abs=1e-5)
        assert all(0.0 <= s <= 1.0 for s in got)


@pytest.mark.parametrize("kind", KINDS)
def test_one_score_per_completion_and_batching_changes_nothing(models: dict[str, Path],
                                                               kind: str) -> None:
    scorer = get_scorer("prm:" + str(models[kind]), None)  # type: ignore[arg-type]
    paths = [GOOD, BAD, GOOD[:1]]
    completions = ["\n\n".join(p) for p in paths]
    together = scorer.score(candidates(completions, paths))
    alone = [scorer.score(candidates([c], [p]))[0] for c, p in zip(completions, paths,
                                                                   strict=True)]
    assert len(together) == 3
    assert all(s is not None and 0.0 <= s <= 1.0 for s in together)
    assert together == pytest.approx(alone, abs=1e-5)


def test_a_three_step_path_has_three_step_scores(models: dict[str, Path]) -> None:
    for kind in ("token", "tags"):
        scorer = PRMScorer(models[kind])
        [scores] = scorer.step_scores([QUESTION], ["\n\n".join(GOOD)], steps=[GOOD])
        assert len(scores) == 3
        assert scorer.score(candidates(["\n\n".join(GOOD)], [GOOD])) == [scores[-1]]


def test_steps_default_to_the_problem_delimiter(models: dict[str, Path]) -> None:
    scorer = PRMScorer(models["token"])
    problem = Problem(question=QUESTION, messages=(), extract=lambda text: None)
    completion = "\n\n".join(GOOD) + "\n\n"  # a trailing delimiter adds no step
    [from_text] = scorer.step_scores(["ignored"], [completion], problems=[problem])
    [given] = scorer.step_scores([QUESTION], [completion], steps=[GOOD])
    assert from_text == pytest.approx(given, abs=1e-6)
    assert scorer.score(candidates([" \n\n "], [[]])) == [None]  # no step: no score


def test_formats_are_read_off_the_config(models: dict[str, Path]) -> None:
    assert PRMScorer(models["token"]).format == "token-classification"
    assert PRMScorer(models["tags"]).format == "causal-lm-tags"
    assert PRMScorer(models["orm2"]).format == "sequence-classification"
    assert PRMScorer(models["token-extra0"]).separator == "<extra_0>"


def test_too_long_cuts_the_earliest_steps_and_keeps_the_last(models: dict[str, Path]) -> None:
    scorer = PRMScorer(models["token"], max_length=14)
    [scores] = scorer.step_scores([QUESTION], [""], steps=[GOOD])
    assert 1 <= len(scores) < 3
    full = PRMScorer(models["token"]).step_scores([QUESTION], [""], steps=[GOOD])[0]
    assert len(full) == 3


def test_errors_are_one_line_with_the_fix(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound) as missing:
        get_scorer("prm:" + str(tmp_path / "no-such-model"), None)  # type: ignore[arg-type]
    assert "\n" not in str(missing.value) and "save_pretrained" in str(missing.value)
    with pytest.raises(ModelNotFound, match=r"no config\.json"):
        PRMScorer(tmp_path)
    with pytest.raises(ConfigError, match="format"):
        PRMScorer(models["token"], format="regression")
    with pytest.raises(ConfigError, match="dtype"):
        PRMScorer(models["token"], dtype="float33")
    with pytest.raises(UnknownName, match="prm:PATH"):
        get_scorer("prm", None)  # type: ignore[arg-type]
