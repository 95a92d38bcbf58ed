r"""GRPO: the recipe (YAML, overrides, errors), the data, the real reward functions on hand-written
completions, and a 2-step run of TRL's GRPOTrainer on SmolLM2-135M (skipped where its GGUF is not
installed) that must move every weight, log each step and save a model that loads and generates.

The run's prompts are single-digit sums, which the 135M model gets partly right; a character-count
reward is added so the rewards of a group always differ (with equal rewards GRPO's advantages are
zero and no weight moves, shared/MODELS.md). One torch thread: far faster than two on busy cores.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")
torch = pytest.importorskip("torch")
pytest.importorskip("datasets")
pytest.importorskip("yaml")

import typer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ponder.core.errors import ConfigError, ModelNotFound, UnknownName  # noqa: E402
from ponder.tasks import get_task  # noqa: E402
from ponder.tasks.arith import arith_task  # noqa: E402
from ponder.train.commands import grpo_command  # noqa: E402
from ponder.train.grpo import build_dataset, build_rewards, recipe_task  # noqa: E402
from ponder.train.recipe import GRPORecipe, load_recipe, recipe_from_dict  # noqa: E402
from ponder.verifiers.rewards import completion_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GSM8K_TRAIN = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"


def chat(text: str) -> list[dict[str, str]]:
    """A completion as TRL passes it for conversational prompts."""
    return [{"role": "assistant", "content": text}]


# --- the recipe ---------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    recipe = load_recipe(None)
    assert recipe == GRPORecipe()
    assert recipe.weights == {"correctness": 1.0, "format": 0.1}


def test_yaml_then_overrides_in_order(tmp_path: Path) -> None:
    path = write(tmp_path, "task: gsm8k\nlearning_rate: 1e-6\nrewards: {correctness: 1}\n"
                           "max_steps: 10\ndata: x.jsonl\n")
    recipe = load_recipe(path, ["learning_rate=2e-5", "rewards.length=0.5", "data=null",
                                "use_vllm=true", "model=Qwen/Qwen2.5-0.5B-Instruct",
                                "max_steps=3", "max_steps=4"])
    assert recipe.task == "gsm8k"
    assert recipe.learning_rate == pytest.approx(2e-5)  # PyYAML reads 2e-5 as a string
    assert recipe.rewards == {"correctness": 1.0, "length": 0.5}
    assert recipe.data is None and recipe.use_vllm is True and recipe.max_steps == 4
    # text fields keep the raw text where YAML would read a list or an alias
    assert load_recipe(None, ["operators=-"]).operators == "-"
    assert load_recipe(None, ["operators=*"]).operators == "*"
    assert load_recipe(None, ["instruction="]).instruction == ""


def test_correctness_is_always_scored() -> None:
    recipe = recipe_from_dict({"rewards": {"format": 1.0}})
    assert recipe.weights == {"correctness": 0.0, "format": 1.0}


@pytest.mark.parametrize(("yaml_text", "overrides", "error", "names"), [
    ("bogus: 1\n", [], ConfigError, "bogus"),
    ("", ["num_gen=4"], ConfigError, "num_gen"),
    ("", ["num_generations=1"], ConfigError, "num_generations"),
    ("", ["temperature=0"], ConfigError, "temperature"),
    ("", ["batch_size=3"], ConfigError, "batch_size"),
    ("", ["max_steps=soon"], ConfigError, "max_steps"),
    ("", ["use_vllm=maybe"], ConfigError, "use_vllm"),
    ("", ["learning_rate=-1"], ConfigError, "learning_rate"),
    ("", ["rewards.format=lots"], ConfigError, "rewards.format"),
    ("", ["rewards={correctness: 0}"], ConfigError, "rewards"),
    ("", ["rewards.brevity=1"], UnknownName, "brevity"),
    ("", ["task=nope"], UnknownName, "nope"),
    ("", ["vllm_mode=remote"], ConfigError, "vllm_mode"),
    ("", ["use_vllm=true"], ConfigError, "model"),  # the default model is a GGUF
    ("", ["no-equals-sign"], ConfigError, "--set"),
    ("- a\n- b\n", [], ConfigError, "recipe"),
    ("model: [unclosed\n", [], ConfigError, "recipe"),
], ids=["unknown-yaml-key", "unknown-set-key", "one-generation", "greedy", "partial-group",
        "not-a-number", "not-a-bool", "negative-lr", "weight-not-a-number", "all-weights-zero",
        "unknown-reward", "unknown-task", "vllm-mode", "vllm-gguf", "set-without-equals",
        "not-a-mapping", "bad-yaml"])
def test_bad_recipes_are_one_line_errors(tmp_path: Path, yaml_text: str, overrides: list[str],
                                         error: type[Exception], names: str) -> None:
    with pytest.raises(error) as info:
        load_recipe(write(tmp_path, yaml_text), overrides)
    message = str(info.value)
    assert names in message and "\n" not in message


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_recipe(tmp_path / "absent.yaml")


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("grpo_*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_recipes_parse(path: Path) -> None:
    assert isinstance(load_recipe(path), GRPORecipe)


def test_command_reports_the_bad_key() -> None:
    app = typer.Typer()
    app.command()(grpo_command)
    result = CliRunner().invoke(app, ["--set", "bogus=1"])
    assert isinstance(result.exception, ConfigError)
    assert "bogus" in str(result.exception)


def test_importing_the_module_stays_light() -> None:
    code = ("import sys, ponder, ponder.train.grpo, ponder.train.recipe\n"
            "heavy = {'torch', 'trl', 'transformers', 'datasets', 'yaml'} & set(sys.modules)\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- data ---------------------------------------------------------------------------------------


def test_arith_is_generated_from_the_recipe() -> None:
    recipe = recipe_from_dict({"operand_min": 2, "operand_max": 5, "operators": "-*",
                               "seed": 3})
    task = recipe_task(recipe)
    assert task.name == "arith" and task.instruction == ""
    records = task.load()
    assert records == arith_task(2, 5, "-*", seed=3).load()
    assert len(records) == 10 + 16  # a >= b for -, every pair for *
    # the table's arith is what the default recipe trains on
    assert recipe_task(GRPORecipe()).load() == get_task("arith").load()
    with pytest.raises(ConfigError, match="limit"):
        build_dataset(recipe_from_dict({"limit": 100}))  # 1..9 with + make only 81


def test_build_dataset_holds_out_the_last_records() -> None:
    recipe = recipe_from_dict({"limit": 20, "eval_size": 5})
    data = build_dataset(recipe)
    train, heldout = data["train"], data["heldout"]
    assert (len(train), len(heldout)) == (15, 5)
    row = train[0]
    assert row["prompt"] == [{"role": "user", "content": row["prompt"][0]["content"]}]
    assert row["prompt"][0]["content"].startswith("What is ")
    assert not {r["prompt"][0]["content"] for r in train} & {
        r["prompt"][0]["content"] for r in heldout}
    assert "heldout" not in build_dataset(recipe_from_dict({"limit": 4}))
    with pytest.raises(ConfigError, match="eval_size"):
        build_dataset(recipe_from_dict({"limit": 4, "eval_size": 4}))


def test_build_dataset_from_a_task_file(tmp_path: Path) -> None:
    if not GSM8K_TRAIN.is_file():
        pytest.skip(f"{GSM8K_TRAIN} is not here")
    recipe = recipe_from_dict({"task": "gsm8k", "data": str(GSM8K_TRAIN), "limit": 3})
    row = build_dataset(recipe)["train"][0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert "\\boxed{}" in row["prompt"][0]["content"]
    assert row["gold"] == "72" and row["id"] == "gsm8k-0"
    with pytest.raises(ConfigError, match="data"):  # a directory would resolve to the test file
        build_dataset(recipe_from_dict({"task": "gsm8k", "data": str(GSM8K_TRAIN.parent)}))


# --- the real reward functions ------------------------------------------------------------------

REWARD_CASES = [
    # (task, completion, gold, correctness, format)
    ("arith", "3 + 5 = 8", "8", 1.0, 0.0),
    ("arith", "The answer is 8.", "8", 1.0, 1.0),
    ("arith", "So the sum is \\boxed{9}.", "8", 0.0, 1.0),
    ("arith", "To add 3 and 5, we first", "8", 0.0, 0.0),
    ("arith", "I cannot say.", "8", 0.0, 0.0),
    ("gsm8k", "48 / 2 = 24 in May, 48 + 24 = 72.\n#### 72", "72", 1.0, 1.0),
    ("gsm8k", "She has 1,018 dollars.", "1018", 1.0, 0.0),
    ("game24", "\\boxed{(4 + 8) * (6 - 4)}", "4 4 6 8", 1.0, 1.0),
    ("game24", "\\boxed{4 * 6}", "4 4 6 8", 0.0, 1.0),  # must use every number
    ("math500", "\\boxed{\\frac{1}{2}}", "0.5", 1.0, 1.0),
]


@pytest.mark.parametrize(("task_name", "text", "gold", "correct", "formatted"), REWARD_CASES,
                         ids=["sum-written", "answer-is", "boxed-wrong", "cut-off", "no-number",
                              "gsm8k-hashes", "gsm8k-last-number", "game24-solves",
                              "game24-misses-numbers", "math-fraction"])
def test_rewards_on_hand_written_completions(task_name: str, text: str, gold: str,
                                             correct: float, formatted: float) -> None:
    recipe = recipe_from_dict({"task": task_name, "rewards": {"correctness": 1, "format": 0.5}})
    funcs, weights = build_rewards(recipe, get_task(task_name))
    assert [f.__name__ for f in funcs] == ["correctness", "format"] and weights == [1.0, 0.5]
    scores = [f(prompts=[[]], completions=[chat(text)], gold=[gold], id=["x"]) for f in funcs]
    assert scores == [[correct], [formatted]]


def test_missing_gold_is_not_scored() -> None:
    (correctness,), _ = build_rewards(recipe_from_dict({"rewards": {"correctness": 1}}),
                                      get_task("arith"))
    assert correctness(prompts=[[], []], completions=[chat("8"), chat("8")],
                       gold=["8", None]) == [1.0, None]


def test_length_penalty_reads_trl_token_ids() -> None:
    recipe = recipe_from_dict({"rewards": {"correctness": 1, "length": 1},
                               "max_completion_length": 16, "length_buffer": 4})
    funcs, _ = build_rewards(recipe, get_task("arith"))
    length = {f.__name__: f for f in funcs}["length"]
    ids = [[0] * n for n in (10, 12, 14, 16)]
    assert length(prompts=[[]] * 4, completions=[chat("")] * 4, completion_ids=ids,
                  gold=["1"] * 4) == [0.0, 0.0, -0.5, -1.0]


def test_zero_weights_drop_rewards_except_correctness() -> None:
    recipe = recipe_from_dict({"rewards": {"correctness": 0, "format": 1, "length": 0}})
    funcs, weights = build_rewards(recipe, get_task("arith"))
    assert [f.__name__ for f in funcs] == ["correctness", "format"] and weights == [0.0, 1.0]


# --- a real run ---------------------------------------------------------------------------------


def char_count(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """A synthetic reward with variance in every group: completions differ in length."""
    return [len(completion_text(c)) / 64 for c in completions]


@pytest.fixture(scope="module")
def smollm2() -> tuple[Any, Any]:
    from ponder.models.torch_gguf import load_trainable

    try:
        return load_trainable("smollm2-135m")
    except ModelNotFound as e:
        pytest.skip(f"SmolLM2-135M is not installed ({e})")


@pytest.mark.slow
def test_two_grpo_steps_move_every_weight_and_save(smollm2: tuple[Any, Any],
                                                   tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ponder.train.grpo import train

    model, tokenizer = smollm2
    before = {name: p.detach().clone() for name, p in model.named_parameters()
              if p.requires_grad}
    recipe = recipe_from_dict({
        "limit": 12, "eval_size": 4, "max_steps": 2, "batch_size": 4, "num_generations": 4,
        "max_completion_length": 16, "learning_rate": 1e-5, "save_steps": 1,
        "save_only_model": True, "save_total_limit": None, "output_dir": str(tmp_path / "run"),
        "cpu_threads": 1, "seed": 0,
    })
    lines: list[str] = []
    result = train(recipe, model=model, tokenizer=tokenizer, extra_rewards=[(char_count, 1.0)],
                   echo=lines.append)

    # every trainable tensor moved. SmolLM2 ties lm_head to embed_tokens, so named_parameters()
    # lists that matrix once; through the tied head every row gets a gradient (the softmax
    # spans the whole vocabulary), so even the rows of tokens never sampled change.
    unchanged = [n for n, p in model.named_parameters() if p.requires_grad
                 and torch.equal(p.detach(), before[n])]
    assert not unchanged, unchanged
    assert model.config.tie_word_embeddings and len(before) == 272

    steps = [r for r in result.records if r["event"] == "train"]
    assert [r["step"] for r in steps] == [1, 2] and result.steps == 2
    for r in steps:
        assert math.isfinite(r["loss"]) and math.isfinite(r["reward"])
        assert set(r["rewards"]) == {"correctness", "format", "char_count"}
        assert 0.0 <= r["accuracy"] <= 1.0 and r["accuracy"] == r["rewards"]["correctness"]
        assert 0 < r["completion_length"] <= 16 and r["step_seconds"] > 0
    heldout = [r for r in result.records if r["event"] == "heldout"]
    assert [(r["step"], r["size"]) for r in heldout] == [(0, 4), (2, 4)]
    assert result.heldout_before == heldout[0]["accuracy"]

    out = tmp_path / "run"
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert logged == json.loads(json.dumps(result.records))
    assert len(lines) == len(logged) and lines[1].startswith("step 1/2  loss ")
    assert (out / "checkpoint-1").is_dir() and (out / "checkpoint-2").is_dir()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["seconds_per_step"] > 0
    assert load_recipe(out / "recipe.yaml") == recipe

    saved = AutoModelForCausalLM.from_pretrained(result.final_dir)
    saved_tokenizer = AutoTokenizer.from_pretrained(result.final_dir)
    for name, p in saved.named_parameters():
        assert torch.equal(p, dict(model.named_parameters())[name]), name
    prompt = saved_tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}],
                                                 add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
    with torch.no_grad():
        generated = saved.generate(**prompt, max_new_tokens=6, do_sample=False,
                                   pad_token_id=saved_tokenizer.pad_token_id)
    text = saved_tokenizer.decode(generated[0, prompt["input_ids"].shape[1]:],
                                  skip_special_tokens=True)
    assert text.strip()
