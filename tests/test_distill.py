r"""Distillation: the rejection-sampling filter on a scripted teacher, the dataset file, and a few
SFT steps (full and LoRA) on a tiny random Llama with a real tokenizer, through the command too.

The tokenizer is SmolLM2's (read from its GGUF) where the package is installed, else a word-level
one with a ChatML template built here. The student is a 2-layer Llama of hidden size 32 over that
vocabulary: seconds a step on two CPU cores.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

import typer  # noqa: E402
from tiny_hf import tiny_llama_config  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ponder.core.errors import ConfigError, DataError, UnknownName  # noqa: E402
from ponder.models.fake import ScriptedModel  # noqa: E402
from ponder.tasks import Record, get_task  # noqa: E402
from ponder.train.commands import distill_command  # noqa: E402
from ponder.train.distill import Journal, collect  # noqa: E402
from ponder.train.sft import read_dataset, sft, write_dataset  # noqa: E402

GSM8K = get_task("gsm8k")
CLIPS = "Natalia sold 48 clips in April and half as many in May. How many in all?"
WAGE = "Weng earns $12 an hour. She worked 50 minutes. How much did she earn?"
RECORDS = [Record("clips", CLIPS, "72"), Record("wage", WAGE, "10")]

# Four samples per question, in sample order. Clips: two right chains that differ only in
# whitespace, one wrong, one right and shorter. Wage: a right answer cut off by max_tokens=24,
# one right, two wrong.
CHAINS = {
    CLIPS: ["In May she sold 48 / 2 = 24.\nSo 48 + 24 = 72.\nThe answer is \\boxed{72}.",
            "48 + 48 = 96.\n\\boxed{96}",
            "In May she sold  48 / 2 = 24.\n\nSo 48 + 24 = 72.\nThe answer is \\boxed{72}.",
            "48 + 24 = 72. \\boxed{72}"],
    WAGE: ["\\boxed{10} dollars, since 12 / 60 = 0.2 a minute and 0.2 * 50 = 10, as I will "
           "now explain again at great length to be sure of it",
           "She earns 12 / 60 = 0.2 a minute, 0.2 * 50 = 10. \\boxed{10}",
           "12 * 50 = 600. \\boxed{600}",
           "\\boxed{12}"],
}


def teacher() -> ScriptedModel:
    def script(prompt: str, i: int) -> str:
        [question] = [q for q in CHAINS if q in prompt]
        return CHAINS[question][i % 4]
    return ScriptedModel(script, name="scripted-teacher")


def kept(examples: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["id"], e["messages"][-1]["content"]) for e in examples]


# --- the filter ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("keep", "prefer", "expected"), [
    pytest.param(2, "shortest", [("clips", CHAINS[CLIPS][3]), ("clips", CHAINS[CLIPS][0]),
                                 ("wage", CHAINS[WAGE][1])], id="keep2-shortest"),
    pytest.param(1, "shortest", [("clips", CHAINS[CLIPS][3]), ("wage", CHAINS[WAGE][1])],
                 id="keep1-shortest"),
    pytest.param(2, "first", [("clips", CHAINS[CLIPS][0]), ("clips", CHAINS[CLIPS][3]),
                              ("wage", CHAINS[WAGE][1])], id="keep2-first"),
    pytest.param(5, "first", [("clips", CHAINS[CLIPS][0]), ("clips", CHAINS[CLIPS][3]),
                              ("wage", CHAINS[WAGE][1])], id="keep5-all-distinct"),
])
def test_filter_keeps_verified_distinct_complete_chains(
        keep: int, prefer: str, expected: list[tuple[str, str]]) -> None:
    examples, stats = collect(GSM8K, RECORDS, teacher(), "self-consistency@4:max_tokens=24",
                              keep=keep, prefer=prefer)
    assert kept(examples) == expected
    assert stats.to_dict() == {"problems": 2, "chains": 8, "verified": 5, "truncated": 1,
                               "duplicates": 1, "kept": len(expected), "solved": 2}
    first = examples[0]
    assert first["messages"][:-1] == [dict(m) for m in GSM8K.problem(RECORDS[0]).messages]
    assert first["messages"][-1]["role"] == "assistant"
    assert {k: first[k] for k in ("id", "answer", "gold", "teacher", "scheme")} == {
        "id": "clips", "answer": "72", "gold": "72", "teacher": "scripted-teacher",
        "scheme": "self-consistency@4:max_tokens=24"}


def test_filter_reads_tree_paths_and_rejects_bad_settings() -> None:
    """A step-tree scheme's chain is the path from the root to the node with the answer."""
    from ponder.core.types import Trace
    from ponder.train.distill import chains

    trace = Trace()
    root = trace.add("48 / 2 = 24.\n\n", depth=1)
    trace.add("48 + 24 = 72. \\boxed{72}", parent=root.id, answer="72", depth=2,
              finish_reason="stop")
    [chain] = chains(trace)
    assert chain.text == "48 / 2 = 24.\n\n48 + 24 = 72. \\boxed{72}"
    with pytest.raises(ConfigError, match="keep"):
        collect(GSM8K, RECORDS, teacher(), "self-consistency@4", keep=0)
    with pytest.raises(UnknownName, match="shortest"):
        collect(GSM8K, RECORDS, teacher(), "self-consistency@4", prefer="longest")
    with pytest.raises(DataError, match="gold"):
        collect(GSM8K, [Record("x", CLIPS, None)], teacher(), "self-consistency@4")


# --- the dataset file ----------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_dataset_file_loads_with_datasets_in_chat_format(tmp_path: Path, suffix: str) -> None:
    examples, _ = collect(GSM8K, RECORDS, teacher(), "self-consistency@4:max_tokens=24")
    path = write_dataset(examples, tmp_path / f"dataset{suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    builder = "parquet" if suffix == ".parquet" else "json"
    table = datasets.load_dataset(builder, data_files=str(path), split="train",
                                  cache_dir=str(tmp_path / "cache"))
    assert table.num_rows == 3
    assert [m["role"] for m in table[0]["messages"]] == ["system", "user", "assistant"]
    assert table[0]["messages"][-1]["content"] == CHAINS[CLIPS][3]
    assert read_dataset(path) == examples
    with pytest.raises(ConfigError, match="dataset path"):
        write_dataset(examples, tmp_path / "dataset.csv")
    (tmp_path / "bad.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(DataError, match="assistant"):
        read_dataset(tmp_path / "bad.jsonl")


def test_journal_resumes_and_cuts_a_torn_line(tmp_path: Path) -> None:
    path, header = tmp_path / "collect.jsonl", {"teacher": "t", "scheme": "s"}
    journal = Journal(path, header)
    examples, stats = collect(GSM8K, RECORDS[:1], teacher(), "self-consistency@4")
    journal.add("clips", examples, stats)
    with path.open("a") as fh:
        fh.write('{"id": "wage", "stats": {"prob')  # killed mid-write
    again = Journal(path, header)
    assert list(again.done) == ["clips"] and again.done["clips"][0] == examples
    assert path.read_text().endswith("}\n")
    with pytest.raises(ConfigError, match="scheme"):
        Journal(path, {"teacher": "t", "scheme": "other"})


# --- SFT on a tiny model -------------------------------------------------------------------------

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
          "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")


def word_tokenizer() -> Any:
    """A word-level stand-in for machines without the SmolLM2 package."""
    pytest.importorskip("tokenizers")
    from tiny_hf import word_tokenizer as build  # needs tokenizers

    words = {w for chain in [CLIPS, WAGE, *CHAINS[CLIPS], *CHAINS[WAGE],
                             GSM8K.instruction] for w in chain.replace("\\", " ").split()}
    special = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]
    return build(special + sorted(words) + list("0123456789"), bos=None, eos="<|im_end|>",
                 specials=["<|im_start|>"], chat_template=CHATML)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tokenizer, saved once for the module (reading it from the GGUF takes seconds)."""
    from ponder.core.errors import ModelNotFound
    from ponder.models.gguf_files import embedded_gguf

    try:
        gguf = embedded_gguf("smollm2-135m")
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent),
                                                               gguf_file=gguf.name)
    except ModelNotFound:
        tokenizer = word_tokenizer()
    path = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(path)
    return path


def tiny_student(tokenizer_dir: Path) -> tuple[Any, Any]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = tiny_llama_config(tokenizer, tie_word_embeddings=True,
                               eos_token_id=tokenizer.eos_token_id)
    return transformers.AutoModelForCausalLM.from_config(config), tokenizer


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    examples, _ = collect(GSM8K, RECORDS, teacher(), "self-consistency@4:max_tokens=24")
    return write_dataset(examples, tmp_path_factory.mktemp("data") / "dataset.jsonl")


def snapshot(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def generates(path: Path) -> Any:
    """Load a saved student with transformers alone and let it write a few tokens."""
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": CLIPS}],
                                           add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    out = model.generate(**prompt, max_new_tokens=4, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    assert isinstance(tokenizer.decode(out[0]), str)
    return model


def test_sft_full_changes_every_weight_logs_and_saves(tokenizer_dir: Path, dataset: Path,
                                                      tmp_path: Path) -> None:
    model, tokenizer = tiny_student(tokenizer_dir)
    before = snapshot(model)
    lines: list[str] = []
    out = tmp_path / "student"
    outcome = sft(model, dataset, out, tokenizer=tokenizer, lr=1e-2, batch_size=2,
                  max_length=64, max_steps=3, echo=lines.append)

    assert outcome.steps == 3 and len(outcome.losses) == 3 and len(lines) == 3
    assert all(loss == loss and loss < float("inf") for loss in outcome.losses)  # finite
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log if "loss" in row] == [1, 2, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["student"]  # no .partial / .old left

    trained = generates(out)
    after = trained.state_dict()
    unchanged = [k for k, v in before.items() if torch.equal(v, after[k])]
    assert unchanged == []
    assert json.loads((out / "distill.json").read_text())["steps"] == 3


def test_sft_lora_merges_the_adapter(tokenizer_dir: Path, dataset: Path, tmp_path: Path) -> None:
    model, tokenizer = tiny_student(tokenizer_dir)
    before = snapshot(model)
    out = tmp_path / "student"
    outcome = sft(model, dataset, out, tokenizer=tokenizer, lora=True, lora_r=4, lr=5e-2,
                  batch_size=2, max_length=64, max_steps=3, echo=lambda line: None)
    assert outcome.steps == 3 and all(loss == loss for loss in outcome.losses)

    assert not (out / "adapter_config.json").exists()  # a plain model, adapter merged
    after = generates(out).state_dict()
    assert set(after) == set(before)  # no lora_A / lora_B keys
    changed = {k for k, v in before.items() if not torch.equal(v, after[k])}
    linear = {k for k in before if k.endswith("proj.weight")}
    assert changed == linear  # every LoRA-targeted weight moved through the merge, nothing else


# --- the command ---------------------------------------------------------------------------------

def test_command_collects_resumes_and_trains(tokenizer_dir: Path, tmp_path: Path) -> None:
    """`ponder distill` end to end with the fake teacher (it always answers \\boxed{42})."""
    app = typer.Typer()
    app.command()(distill_command)
    app.command("noop")(lambda: None)  # two commands: the name stays a subcommand
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {q}?", "answer": f"#### {a}"})
                            + "\n" for q, a in [("6 * 7", 42), ("40 + 2", 42), ("3 + 4", 7)]))
    model, tokenizer = tiny_student(tokenizer_dir)
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    out = tmp_path / "run"
    args = ["distill-command", "gsm8k", "--data", str(data), "--teacher", "fake", "--scheme",
            "self-consistency@2", "--out", str(out), "--student", str(tmp_path / "tiny"),
            "--max-steps", "1", "--max-length", "64", "--lr", "1e-3"]
    runner = CliRunner()

    result = runner.invoke(app, [*args, "--dataset-only"])
    assert result.exit_code == 0, result.output
    rows = read_dataset(out / "dataset.jsonl")
    assert [r["id"] for r in rows] == ["gsm8k-0", "gsm8k-1"]  # one distinct chain each; 7 fails
    assert "3 questions, 6 chains, 4 verified" in result.output

    result = runner.invoke(app, args)  # resumes: nothing left for the teacher
    assert result.exit_code == 0, result.output
    assert "teacher fake" not in result.output and "student: 1 steps" in result.output
    assert (out / "student" / "config.json").exists()

    if importlib.util.find_spec("ponder.models.transformers_lm") is not None:
        from ponder.models.transformers_lm import TransformersModel
        from ponder.schemes import get_scheme

        student = TransformersModel(str(out / "student"))  # back as a ponder LanguageModel
        answer = get_scheme("cot", max_tokens=3)(GSM8K.problem(RECORDS[0]), model=student)
        assert answer.usage.completion_tokens >= 1

    result = runner.invoke(app, args)
    assert isinstance(result.exception, ConfigError) and "--overwrite" in str(result.exception)
    result = runner.invoke(app, [*args, "--keep", "3", "--overwrite"])
    assert isinstance(result.exception, ConfigError) and "keep" in str(result.exception)
    result = runner.invoke(app, [*args[:3], str(tmp_path), *args[4:]])
    assert isinstance(result.exception, ConfigError) and "training JSONL" in str(result.exception)


def test_command_takes_the_teachers_chains_from_an_eval_store(tmp_path: Path) -> None:
    """`--from RESULTS.db`: the chains `ponder eval` stored are filtered as if sampled now, and
    nothing is generated (the loop: one store feeds the verifier and the student)."""
    from ponder.cli import app

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {q}?", "answer": f"#### {a}"})
                            + "\n" for q, a in [("6 * 7", 42), ("40 + 2", 42), ("3 + 4", 7)]))
    db = tmp_path / "teacher.db"
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "gsm8k", "--data", str(data), "--model", "fake",
                                 "--schemes", "self-consistency@2", "--out", str(db),
                                 "--limit", "2"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    args = ["distill", "gsm8k", "--data", str(data), "--from", str(db), "--out", str(out),
            "--scheme", "self-consistency@2", "--dataset-only", "--format", "think"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = read_dataset(out / "dataset.jsonl")
    assert [r["id"] for r in rows] == ["gsm8k-0", "gsm8k-1"] and rows[0]["teacher"] == "fake"
    assert rows[0]["messages"][-1]["content"].startswith("<think>")
    assert "2 questions (1 of the 3 asked are not in it)" in result.output
    assert not (out / "collect.jsonl").exists()  # nothing asked, nothing to resume

    result = runner.invoke(app, [*args[:-5], "--scheme", "cot", "--dataset-only"])
    assert isinstance(result.exception, DataError) and "holds no cot rows" in str(result.exception)
    math = tmp_path / "math.jsonl"
    math.write_text(json.dumps({"problem": "What is 6 * 7?", "answer": "42",
                                "unique_id": "m/0"}) + "\n")
    result = runner.invoke(app, ["distill", "math500", "--data", str(math), "--from", str(db),
                                 "--out", str(out), "--scheme", "self-consistency@2",
                                 "--dataset-only"])
    assert isinstance(result.exception, ConfigError) and "not 'math500'" in str(result.exception)


# --- forced text: carried into the dataset, left out of the loss ---------------------------------

def test_forced_spans_reach_the_dataset_and_the_labels(tokenizer_dir: Path, tmp_path: Path) -> None:
    """A chain with inserted text (a tool's output) keeps its span in the distilled example;
    SFT then labels those tokens -100, as it does the prompt, and still trains."""
    from test_contracts import TOOL, TOOL_OUTPUT, tool_model

    from ponder.train.distill import collect_one
    from ponder.train.sft import _prompt_completion

    [example], _ = collect_one(GSM8K, Record("six", "What is 6 * 7?", "42"), tool_model(), TOOL,
                               keep=1)
    reply = example["messages"][-1]["content"]
    [[a, b]] = example["forced"]
    assert reply[a:b] == TOOL_OUTPUT
    path = write_dataset([example, {**example, "forced": []}], tmp_path / "d.jsonl")
    rows = read_dataset(path)
    assert rows[0]["forced"] == [[a, b]]

    model, tokenizer = tiny_student(tokenizer_dir)
    dataset, dropped = _prompt_completion(rows, tokenizer, 256)
    assert dropped == 0 and set(dataset.column_names) == {"input_ids", "labels"}
    with_forced, without = dataset[0], dataset[1]
    assert with_forced["input_ids"] == without["input_ids"]
    masked = [i for i, (x, y) in enumerate(zip(with_forced["labels"], without["labels"],
                                               strict=True)) if x != y]
    assert masked and all(with_forced["labels"][i] == -100 for i in masked)
    shown = tokenizer.decode([with_forced["input_ids"][i] for i in masked])
    assert "42" in shown and "output" in shown and "boxed" not in shown
    prompt_len = with_forced["labels"].index(next(x for x in with_forced["labels"] if x != -100))
    assert prompt_len > 0  # the prompt is masked too
    outcome = sft(model, path, tmp_path / "student", tokenizer=tokenizer, lr=1e-2,
                  batch_size=2, max_length=256, max_steps=2, echo=lambda line: None)
    assert outcome.steps == 2 and all(loss == loss for loss in outcome.losses)


# --- the thinking format -------------------------------------------------------------------------

TOOL_CHAIN = "Let me run it.\n\n```output\n42\n```\n\nSo \\boxed{42}."
TOOL_SPAN = (TOOL_CHAIN.index("```output"), TOOL_CHAIN.index("```\n\nSo") + 3)


@pytest.mark.parametrize(("chain", "forced", "expected"), [
    pytest.param(CHAINS[CLIPS][0], [], "<think>\n" + CHAINS[CLIPS][0]
                 + "\n</think>\n\nThe answer is \\boxed{72}.", id="one-paragraph-sentence"),
    pytest.param(CHAINS[CLIPS][2], [], "<think>\nIn May she sold  48 / 2 = 24.\n</think>\n\n"
                 "So 48 + 24 = 72.\nThe answer is \\boxed{72}.", id="last-paragraph-reply"),
    pytest.param("48 / 2 = 24.\n\n\\boxed{72}\n\nHope that helps.", [],
                 "<think>\n48 / 2 = 24.\n\n\\boxed{72}\n\nHope that helps.\n</think>\n\n"
                 "The answer is \\boxed{72}.", id="last-paragraph-without-the-answer"),
    pytest.param("<think>\n24 + 48\n</think>\n\nIt is \\boxed{72}.", [],
                 "<think>\n24 + 48\n</think>\n\nIt is \\boxed{72}.", id="native-thinker-kept"),
    pytest.param(TOOL_CHAIN, [TOOL_SPAN], "<think>\nLet me run it.\n\n```output\n42\n```\n"
                 "</think>\n\nSo \\boxed{42}.", id="forced-span-moves"),
])
def test_think_format_splits_reasoning_from_the_reply(chain: str, forced: list[tuple[int, int]],
                                                      expected: str) -> None:
    from ponder.train.distill import think_format

    example = {"messages": [{"role": "user", "content": "q"},
                            {"role": "assistant", "content": chain}],
               "answer": "42" if "42" in chain else "72", "forced": [list(s) for s in forced]}
    written = think_format(example)
    content = written["messages"][-1]["content"]
    assert content == expected
    assert [content[a:b] for a, b in written["forced"]] == [chain[a:b] for a, b in forced]
    assert example["messages"][-1]["content"] == chain  # the journal's example is untouched
