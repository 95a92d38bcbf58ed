"""The transformers backend on a tiny random Llama (2 layers, hidden 32) with a word-level
tokenizer built here: the LanguageModel contract (n, seeds, stop strings, finish reasons,
cancellation, logprobs against a forward pass written out here), then the catalog's specs, then
SmolLM2-135M (slow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from tiny_hf import tiny_llama_config, word_tokenizer  # noqa: E402

from ponder.core.types import Completion, GenerationRequest, SamplingParams, user  # noqa: E402
from ponder.models.catalog import load_model  # noqa: E402
from ponder.models.transformers_lm import TransformersModel  # noqa: E402

ROLES = ["<|system|>", "<|user|>", "<|assistant|>"]
WORDS = ["what", "is", "two", "plus", "three", "add", "the", "numbers", "so", "answer", "five",
         "we", "get", "a", "an", "sum", "of", "and", "then", "it", "2", "3", "5", "6", "+", "="]
# BOS is written by the template; the tokenizer's post-processor would add it too.
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} "
            "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
CHAT = user("what is two plus three")


def make_tokenizer() -> Any:
    return word_tokenizer(["<pad>", "<s>", "</s>", "<unk>", *ROLES, *WORDS], specials=ROLES,
                          split_punctuation=False, spaced_decode=True, chat_template=TEMPLATE)


def make_model(tokenizer: Any) -> Any:
    torch.manual_seed(0)
    config = tiny_llama_config(tokenizer, initializer_range=0.5,
                               bos_token_id=tokenizer.bos_token_id,
                               eos_token_id=tokenizer.eos_token_id)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(scope="module")
def lm() -> TransformersModel:
    tokenizer = make_tokenizer()
    return TransformersModel(make_model(tokenizer), tokenizer, name="tiny")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = make_tokenizer()
    make_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def ask(lm: TransformersModel, **params: Any) -> list[Completion]:
    [out] = lm.generate([GenerationRequest(SamplingParams(**params), messages=CHAT)])
    return out


def texts(completions: list[Completion]) -> list[str]:
    return [c.text for c in completions]


# ---- the LanguageModel contract ---------------------------------------------------------------


def test_the_chat_template_writes_the_only_bos(lm: TransformersModel) -> None:
    text = lm.render_chat(CHAT)
    assert text == "<s><|user|> what is two plus three <|assistant|>"
    ids = lm.tokenize(text)
    assert ids.count(lm._bos) == 1 and ids[0] == lm._bos
    assert lm.tokenize("what is")[0] == lm._bos  # a raw prefix gets one added
    assert lm.count_tokens("what is two") == 3


def test_n_samples_per_request_and_their_counts(lm: TransformersModel) -> None:
    out = ask(lm, n=4, temperature=1.0, max_tokens=8, ignore_eos=True, seed=1)
    assert len(out) == 4 and len(set(texts(out))) > 1
    prompt = len(lm.tokenize(lm.render_chat(CHAT)))
    for c in out:
        assert c.finish_reason == "length" and c.completion_tokens == len(c.token_ids) == 8
        assert c.prompt_tokens == prompt and c.text and c.seconds is not None


def test_greedy_is_deterministic_and_batching_does_not_change_it(lm: TransformersModel) -> None:
    alone = ask(lm, n=3, max_tokens=10, ignore_eos=True)
    assert len(set(texts(alone))) == 1 and ask(lm, max_tokens=10, ignore_eos=True)[0].text == \
        alone[0].text
    other = GenerationRequest(SamplingParams(max_tokens=10), prefix="so the answer is")
    [_, batched] = lm.generate([other, GenerationRequest(SamplingParams(max_tokens=10,
                                                                        ignore_eos=True),
                                                         messages=CHAT)])
    assert batched[0].token_ids == alone[0].token_ids  # left padding leaves the row alone


def test_seeds_are_reproducible_per_request(lm: TransformersModel) -> None:
    params = {"n": 3, "temperature": 1.0, "max_tokens": 8, "ignore_eos": True}
    first = texts(ask(lm, seed=7, **params))
    assert texts(ask(lm, seed=7, **params)) == first
    assert texts(ask(lm, seed=8, **params)) != first
    others = GenerationRequest(SamplingParams(n=2, temperature=1.0), prefix="we get")
    mine = GenerationRequest(SamplingParams(seed=7, **params), messages=CHAT)
    assert texts(lm.generate([others, mine, others])[1]) == first  # the others change nothing
    before = torch.random.get_rng_state()
    ask(lm, seed=7, **params)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is untouched


def test_stop_strings_cut_the_text_and_end_generation(lm: TransformersModel) -> None:
    [full] = ask(lm, max_tokens=12, ignore_eos=True)
    words = full.text.split()
    stop = words[4]
    [c] = ask(lm, max_tokens=12, ignore_eos=True, stop=(stop, "no-such-word"))
    assert (c.text, c.finish_reason, c.stop_string) == (full.text[:full.text.find(stop)], "stop",
                                                        stop)
    assert c.completion_tokens <= 5 and c.token_ids == full.token_ids[:c.completion_tokens]
    [both] = ask(lm, max_tokens=12, ignore_eos=True, stop=(words[4], words[2]))
    k, first = min((full.text.find(s), s) for s in (words[4], words[2]))
    assert (both.stop_string, both.text) == (first, full.text[:k])  # the earliest one wins


def test_eos_ends_with_stop_and_max_tokens_with_length(lm: TransformersModel) -> None:
    [full] = ask(lm, max_tokens=6, ignore_eos=True)
    assert full.finish_reason == "length" and full.completion_tokens == 6
    tokenizer = make_tokenizer()
    model = make_model(tokenizer)
    model.generation_config.eos_token_id = full.token_ids[2]  # its third token ends a turn now
    [[c]] = TransformersModel(model, tokenizer).generate([GenerationRequest(
        SamplingParams(max_tokens=6), messages=CHAT)])
    first = full.token_ids.index(full.token_ids[2]) + 1
    assert c.finish_reason == "stop" and c.stop_string is None
    assert c.token_ids == full.token_ids[:first]  # the EOS is counted, as in llama.cpp


def test_the_models_generation_config_does_not_change_sampling(lm: TransformersModel) -> None:
    tokenizer = make_tokenizer()
    model = make_model(tokenizer)
    model.generation_config.update(repetition_penalty=5.0, no_repeat_ngram_size=1, top_k=1,
                                   do_sample=True, temperature=0.1, min_p=0.5)
    odd = TransformersModel(model, tokenizer)
    for params in ({"max_tokens": 8}, {"n": 2, "temperature": 1.0, "max_tokens": 8, "seed": 3}):
        assert texts(ask(odd, ignore_eos=True, **params)) == \
            texts(ask(lm, ignore_eos=True, **params))


def test_should_stop_cancels_the_call(lm: TransformersModel) -> None:
    polls = iter(range(1000))
    stop_after_3 = lambda: next(polls) >= 3  # noqa: E731
    small = TransformersModel(lm._model, lm._tokenizer, max_batch=2)
    [out] = small.generate([GenerationRequest(SamplingParams(n=5, temperature=1.0,
                                                             max_tokens=50, ignore_eos=True),
                                              messages=CHAT)], should_stop=stop_after_3)
    assert [c.finish_reason for c in out] == ["cancelled"] * 5
    assert 0 < out[0].completion_tokens < 50 and out[0].completion_tokens == \
        out[1].completion_tokens
    assert [c.text for c in out[2:]] == ["", "", ""]  # later batches never started


def test_token_logprobs_equal_a_forward_pass(lm: TransformersModel) -> None:
    [c] = ask(lm, max_tokens=8, ignore_eos=True, logprobs=3)
    prompt = lm.tokenize(lm.render_chat(CHAT))
    with torch.no_grad():
        logits = lm._model(torch.tensor([prompt + c.token_ids])).logits[0]
    reference = logits[len(prompt) - 1: -1].log_softmax(-1)  # (T, V): predicts each new token
    expected = reference.gather(1, torch.tensor(c.token_ids)[:, None])[:, 0]
    assert c.token_logprobs is not None and len(c.token_logprobs) == c.completion_tokens == 8
    assert torch.allclose(torch.tensor(c.token_logprobs), expected, atol=1e-4)
    assert c.top_logprobs is not None and len(c.top_logprobs) == 8
    assert all(len(top) == 3 for top in c.top_logprobs)
    assert max(c.top_logprobs[0].values()) == pytest.approx(c.token_logprobs[0], abs=1e-4)
    assert ask(lm, max_tokens=2)[0].token_logprobs is None  # only when asked for


def test_mixed_settings_in_one_call_are_grouped(lm: TransformersModel) -> None:
    requests = [
        GenerationRequest(SamplingParams(max_tokens=6, ignore_eos=True), messages=CHAT),
        GenerationRequest(SamplingParams(n=3, temperature=0.8, top_k=5, max_tokens=4, seed=2),
                          messages=CHAT),
        GenerationRequest(SamplingParams(n=2, temperature=1.0, top_p=0.9, max_tokens=3,
                                         ignore_eos=True), prefix="so the answer"),
        GenerationRequest(SamplingParams(n=2, max_tokens=5, logprobs=0), prefix="we get"),
    ]
    out = lm.generate(requests)
    assert [len(o) for o in out] == [1, 3, 2, 2]
    assert out[0][0].token_ids == ask(lm, max_tokens=6, ignore_eos=True)[0].token_ids
    assert texts(out[1]) == texts(lm.generate([requests[1]])[0])
    assert all(c.completion_tokens <= 4 for c in out[1])
    assert all(c.completion_tokens == 3 for c in out[2])
    assert all(c.token_logprobs is not None and c.top_logprobs is None for c in out[3])


def test_on_text_gets_each_whole_text_and_close_frees(lm: TransformersModel) -> None:
    got: list[tuple[int, int, str]] = []
    out = lm.generate([GenerationRequest(SamplingParams(n=2, max_tokens=4, ignore_eos=True),
                                         messages=CHAT)], on_text=lambda r, i, t: got.append(
                                             (r, i, t)))
    assert got == [(0, 0, out[0][0].text), (0, 1, out[0][1].text)]
    closing = TransformersModel(lm._model, lm._tokenizer)
    closing.close()
    with pytest.raises(Exception, match="was closed"):
        closing.generate([GenerationRequest(messages=CHAT)])


# ---- through the catalog ---------------------------------------------------------------------


def test_load_model_reads_a_folder_and_hf_specs(folder: Path, lm: TransformersModel) -> None:
    for spec in (str(folder), "hf:" + str(folder)):
        model = load_model(spec)
        assert isinstance(model, TransformersModel)
        [[c]] = model.generate([GenerationRequest(SamplingParams(max_tokens=5, ignore_eos=True),
                                                  messages=CHAT)])
        assert c.token_ids == ask(lm, max_tokens=5, ignore_eos=True)[0].token_ids


# ---- a real model (slow) ---------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_answers_and_runs_a_scheme() -> None:
    from ponder.core.errors import ModelNotFound
    from ponder.core.problem import Problem
    from ponder.models.gguf_files import embedded_gguf
    from ponder.schemes import get_scheme
    from ponder.verifiers.answers import extract_answer

    try:
        embedded_gguf("smollm2-135m")
    except ModelNotFound as e:
        pytest.skip(str(e))
    lm = TransformersModel("smollm2-135m")
    [[c]] = lm.generate([GenerationRequest(SamplingParams(max_tokens=16),
                                           messages=user("What is 2 + 3?"))])
    assert c.text.strip() and c.finish_reason in ("stop", "length")
    assert c.completion_tokens == len(c.token_ids) <= 16
    problem = Problem(question="What is 2 + 3?", messages=user("What is 2 + 3?"),
                      extract=extract_answer)
    result = get_scheme("self-consistency@2", max_tokens=16)(problem, model=lm)
    assert len(result.trace.roots()) == 2 and result.usage.completion_tokens > 0
    lm.close()


@pytest.mark.slow
def test_the_embedded_qwen_loads_as_a_trainable_model() -> None:
    """Issue 6's CPU models: the 0.5B Q4_K_M GGUF dequantised into a plain torch model whose
    weights all train (requires_grad) and that writes text."""
    from ponder.core.errors import ModelNotFound
    from ponder.models.gguf_files import embedded_gguf
    from ponder.models.torch_gguf import load_trainable
    try:
        embedded_gguf("qwen-0.5b")
    except ModelNotFound as e:
        pytest.skip(str(e))
    model, tokenizer = load_trainable("qwen-0.5b")
    assert getattr(model.config, "quantization_config", None) is None
    assert all(p.requires_grad for p in model.parameters())
    # 630M: 494M plus an untied output matrix (151,936 x 896), which this GGUF stores apart
    assert 400e6 < sum(p.numel() for p in model.parameters()) < 700e6
    ids = tokenizer("2 + 3 =", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3
