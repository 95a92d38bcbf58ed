"""The llama.cpp backend: sampling and streamed text (fast, no model), then real-model behaviour
(slow: SmolLM2-135M, and the 0.5B default where the batch arithmetic matters)."""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np
import pytest

from ponder.core.errors import ConfigError, ModelLoadError
from ponder.core.types import Completion, GenerationRequest, SamplingParams, user
from ponder.models._sampling import (
    Sampler,
    TextStream,
    log_normalizer,
    log_normalizers,
    sample,
    sampler_for,
    top_k,
)

# ---- sampling and text, no model ------------------------------------------------------------


@pytest.mark.parametrize("n,k", [(151_936, 40), (49_152, 1), (1000, 7), (130, 5), (12_345, 64),
                                 (300, 300)],
                         ids=["qwen-40", "smol-1", "small", "tiny", "ragged", "all"])
def test_top_k_is_exact(n, k):
    rng = np.random.default_rng(n)
    row = rng.standard_normal(n).astype(np.float32) * 4
    row[rng.integers(n, size=3)] = row.max()  # ties at the top
    ids, vals = top_k(row, k)
    assert ids.size == k and np.all(np.diff(vals) <= 0)
    assert np.allclose(vals, np.sort(row)[::-1][:k])
    assert np.array_equal(row[ids], vals)


def test_sampler_follows_top_k_top_p_and_seed():
    row = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    draws = lambda params, seed: [sampler_for(params, seed, i)(row) for i in range(400)]  # noqa: E731
    assert set(draws(SamplingParams(temperature=1.0, top_k=2), 0)) == {0, 1}
    assert set(draws(SamplingParams(temperature=1.0, top_p=0.7), 0)) == {0, 1}  # 0.5 + 0.3 >= 0.7
    assert set(draws(SamplingParams(temperature=1.0), 0)) == {0, 1, 2, 3}  # top_k=0: full vocab
    assert draws(SamplingParams(temperature=1.0), 5) == draws(SamplingParams(temperature=1.0), 5)
    assert draws(SamplingParams(temperature=1.0), 5) != draws(SamplingParams(temperature=1.0), 6)
    assert Sampler(SamplingParams())(row) == 0  # greedy is argmax
    counts = np.bincount(draws(SamplingParams(temperature=1.0), 1), minlength=4) / 400
    assert np.allclose(counts, [0.5, 0.3, 0.15, 0.05], atol=0.07)


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=0.8, top_k=40, top_p=0.9), SamplingParams(temperature=1.0),
    SamplingParams(temperature=0.5, top_p=0.5), SamplingParams(),
], ids=["k-p", "full", "p", "greedy"])
def test_block_draws_equal_row_draws(params):
    rows = np.random.default_rng(1).standard_normal((5, 49_152)).astype(np.float32) * 3
    block = [sampler_for(params, 3, i) for i in range(5)]
    one_by_one = [sampler_for(params, 3, i) for i in range(5)]
    for _ in range(3):
        assert sample(block, rows) == [s(row) for s, row in zip(one_by_one, rows, strict=True)]


def test_full_vocabulary_nucleus():
    rng = np.random.default_rng(0)
    row = rng.standard_normal(151_936).astype(np.float32)  # flat: the nucleus is most of the row
    s = sampler_for(SamplingParams(temperature=0.7, top_p=0.9), seed=1, index=0)
    assert all(0 <= s(row) < row.size for _ in range(3))
    assert np.isclose(log_normalizer(np.zeros(4, np.float32)), np.log(4))


def test_block_log_normalizers_match_float64_and_feed_the_same_draws():
    rows = np.random.default_rng(2).standard_normal((6, 151_936)).astype(np.float32) * 4
    exact = [np.log(np.exp(r.astype(np.float64)).sum()) for r in rows]
    lse = log_normalizers(rows)
    assert np.allclose(lse, exact, rtol=0, atol=1e-6)
    params = SamplingParams(temperature=0.7, top_p=0.95)
    given = [sampler_for(params, 5, i) for i in range(6)]
    computed = [sampler_for(params, 5, i) for i in range(6)]
    assert given[0].nucleus and not sampler_for(SamplingParams(), 5, 0).nucleus
    assert sample(given, rows, lse) == sample(computed, rows)


def stream_all(stop, pieces):
    ts, deltas = TextStream(stop), []
    stopped = False
    for p in pieces:
        stopped = ts.push(p)
        if stopped:
            break
        deltas.append(ts.delta())
    ts.close()
    deltas.append(ts.delta(final=True))
    return ts, "".join(deltas), stopped


@pytest.mark.parametrize("stop,pieces,text,stop_string", [
    ((), [b"Hel", b"lo"], "Hello", None),
    (("\n\n",), [b"a\n", b"\nb"], "a", "\n\n"),  # a stop string split across two tokens
    (("STOP", "ST"), [b"xxS", b"T"], "xx", "ST"),  # earliest match wins
    (("</s>",), [b"ok </", b"x"], "ok </x", None),  # a held-back start that did not become a stop
    ((), ["é".encode()[:1], "é".encode()[1:] + b"!"], "é!", None),  # UTF-8 split across tokens
    ((), [b"\xe2\x82"], "\ufffd", None),  # an unfinished character at the end
], ids=["plain", "split-stop", "earliest", "false-start", "utf8-split", "utf8-cut"])
def test_text_stream(stop, pieces, text, stop_string):
    ts, streamed, _ = stream_all(stop, pieces)
    assert ts.text == text and streamed == text and ts.stop_string == stop_string


def test_text_stream_holds_back_possible_stop():
    ts = TextStream(("###",))
    ts.push(b"answer #")
    assert ts.delta() == "answer "  # "#" might start "###"
    ts.push(b"# no")
    assert ts.delta() == "## no"  # no suffix of "answer ## no" can grow into "###"
    ts.push(b" ##")
    assert ts.delta() == " " and not ts.push(b"!") and ts.delta() == "##!"


# ---- real models ----------------------------------------------------------------------------

llama_cpp = pytest.importorskip("llama_cpp")
# One thread: on a shared CPU, llama.cpp's spinning thread barriers stall badly whenever another
# process takes a core, and SmolLM2 is fast enough alone. PONDER_TEST_THREADS overrides.
THREADS = int(os.environ.get("PONDER_TEST_THREADS", "1"))


def _gguf(name):
    from ponder.core.errors import ModelNotFound
    from ponder.models.gguf_files import embedded_gguf
    try:
        return embedded_gguf(name)
    except ModelNotFound as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def smol():
    from ponder.models.llamacpp import LlamaCppModel
    lm = LlamaCppModel(_gguf("smollm2-135m"), name="smollm2-135m", n_ctx=1024, n_seq_max=8,
                       n_threads=THREADS)
    yield lm
    lm.close()


@contextlib.contextmanager
def small_model(**kwargs):
    from ponder.models.llamacpp import LlamaCppModel
    lm = LlamaCppModel(_gguf("smollm2-135m"), **{"n_ctx": 1024, "n_threads": THREADS, **kwargs})
    try:
        yield lm
    finally:
        lm.close()


@pytest.fixture
def decodes(monkeypatch):
    """Every llama_decode call as (number of tokens, the sequence ids in it)."""
    calls = []
    real = llama_cpp.llama_decode

    def spy(ctx, batch):
        calls.append((batch.n_tokens, [batch.seq_id[i][0] for i in range(batch.n_tokens)]))
        return real(ctx, batch)

    monkeypatch.setattr(llama_cpp, "llama_decode", spy)
    return calls


Q = user("Natalia sold 48 clips in April and half as many in May. How many clips in total?")


def req(messages=Q, **params):
    return GenerationRequest(SamplingParams(**params), messages=messages)


@pytest.mark.slow
@pytest.mark.parametrize("kv_unified", [False, True], ids=["streams", "unified"])
def test_n_samples_share_one_prefill(kv_unified, decodes):
    with small_model(kv_unified=kv_unified, n_seq_max=4) as lm:
        out = lm.generate([req(n=4, max_tokens=8, ignore_eos=True)])[0]
    prompt = out[0].prompt_tokens
    prefills = [c for c in decodes if len(set(c[1])) == 1 and c[0] > 1]
    steps = [c for c in decodes if c not in prefills]
    assert sum(n for n, _ in prefills) == prompt  # the prompt was decoded once
    assert sorted(c.cached_tokens for c in out) == [0, prompt, prompt, prompt]
    # the first token comes from the prefill; then one decode per step carries all four
    assert [n for n, _ in steps] == [4] * 7 and all(len(set(ids)) == 4 for _, ids in steps)
    assert all(c.completion_tokens == 8 and c.finish_reason == "length" for c in out)


@pytest.mark.slow
def test_requests_share_each_step(smol, decodes):
    other = user("Name three colours.")
    out = smol.generate([req(n=2, max_tokens=6, ignore_eos=True),
                         req(other, n=3, max_tokens=6, ignore_eos=True, temperature=0.8, seed=1),
                         req(n=1, max_tokens=6, ignore_eos=True)])
    assert [len(cs) for cs in out] == [2, 3, 1]
    assert [n for n, ids in decodes if len(set(ids)) > 1][-5:] == [6] * 5  # all six together
    assert out[2][0].cached_tokens == out[2][0].prompt_tokens  # same prompt as request 0


@pytest.mark.slow
@pytest.mark.parametrize("kv_unified", [False, True], ids=["streams", "unified"])
def test_more_samples_than_slots(kv_unified, decodes):
    with small_model(kv_unified=kv_unified, n_seq_max=2, cache_prompts=1) as lm:
        out = lm.generate([req(n=5, max_tokens=12)])[0]
    assert max(n for n, ids in decodes if len(set(ids)) > 1) <= 2
    assert len(out) == 5 and len({c.text for c in out}) == 1  # greedy: five equal texts
    assert sum(c.cached_tokens for c in out) == 4 * out[0].prompt_tokens  # one prefill


@pytest.mark.slow
def test_prompt_cache_across_calls(smol):
    first = smol.generate([req(n=2, max_tokens=4)])[0]
    again = smol.generate([req(n=2, max_tokens=4)])[0]
    assert [c.cached_tokens for c in again] == [first[0].prompt_tokens] * 2
    assert [c.text for c in again] == [c.text for c in first]
    longer = smol.render_chat(Q) + "First,"
    cont = smol.generate([GenerationRequest(SamplingParams(max_tokens=4), prefix=longer)])[0][0]
    assert cont.cached_tokens >= first[0].prompt_tokens - 1  # the held prompt is a prefix


@pytest.mark.slow
def test_stop_strings(smol):
    text = smol.generate([req(max_tokens=40)])[0][0].text
    words = text.split()
    assert len(words) > 3
    stop = " " + words[2]
    c = smol.generate([req(max_tokens=40, stop=(stop, "zzz-never"))])[0][0]
    assert c.text == text[: text.index(stop)]
    assert c.finish_reason == "stop" and c.stop_string == stop


@pytest.mark.slow
def test_seeds(smol):
    """Sample i of a request draws from its own generator, seeded from (seed, i), and in
    separate KV streams (the default) its logits do not depend on what the rest of the batch
    holds, so other requests, even ones that end early, do not change it here. (Logits are
    not bit-for-bit repeatable across batches, though: long sampled chains drawn again in other
    batches often diverge somewhere, docs/eval.md.)"""
    sampled = dict(temperature=1.0, top_p=0.95, top_k=40, max_tokens=24, ignore_eos=True)
    a = smol.generate([req(n=3, seed=7, **sampled)])[0]
    assert [c.text for c in smol.generate([req(n=3, seed=7, **sampled)])[0]] == [c.text for c in a]
    company = req(user("Say hi."), n=2, temperature=1.0, max_tokens=3)  # ends after 3 tokens
    b = smol.generate([company, req(n=3, seed=7, **sampled)])[1]
    assert [c.text for c in a] == [c.text for c in b]  # same seed, other batch company
    c = smol.generate([req(n=3, seed=8, **sampled)])[0]
    assert [x.text for x in a] != [x.text for x in c]
    assert len({x.text for x in a}) > 1  # samples of one request differ from each other
    later = smol.generate([req(n=2, seed=7, first_sample=1, **sampled)])[0]
    assert [x.text for x in later] == [x.text for x in a[1:]]  # samples 1, 2 of seed 7
    assert all(x.seconds is not None and x.seconds > 0 for x in a)


@pytest.mark.slow
def test_finish_reasons(smol):
    length = smol.generate([req(max_tokens=3)])[0][0]
    assert length.finish_reason == "length" and length.completion_tokens == 3
    eos = smol.generate([req(user("Reply with the single word: yes"), max_tokens=200)])[0][0]
    assert eos.finish_reason == "stop" and eos.stop_string is None and eos.completion_tokens < 200
    polls = iter(range(1000))
    out = smol.generate([req(n=3, max_tokens=100, ignore_eos=True)],
                        should_stop=lambda: next(polls) >= 5)[0]
    assert all(c.finish_reason == "cancelled" and 0 < c.completion_tokens < 10 for c in out)
    assert smol.generate([req(max_tokens=3)])[0][0].text == length.text  # slots were freed


@pytest.mark.slow
def test_logprobs(smol):
    c = smol.generate([req(max_tokens=10, logprobs=3)])[0][0]
    assert c.token_logprobs is not None and c.top_logprobs is not None
    assert len(c.token_logprobs) == len(c.top_logprobs) == len(c.token_ids)
    assert all(lp <= 0 for lp in c.token_logprobs)
    for lp, top in zip(c.token_logprobs, c.top_logprobs, strict=True):
        assert 1 <= len(top) <= 3 and all(v <= 0 for v in top.values())
        assert np.isclose(lp, max(top.values()), atol=1e-4)  # greedy took the most likely
    c0 = smol.generate([req(max_tokens=4, logprobs=0, temperature=1.0, seed=1)])[0][0]
    assert len(c0.token_logprobs or []) == 4 and c0.top_logprobs is None
    assert smol.generate([req(max_tokens=2)])[0][0].token_logprobs is None


@pytest.mark.slow
def test_streamed_deltas_concatenate(smol):
    got: dict[tuple[int, int], str] = {}
    on_text = lambda r, i, d: got.__setitem__((r, i), got.get((r, i), "") + d)  # noqa: E731
    out = smol.generate([req(n=2, max_tokens=30, temperature=0.9, seed=3, stop=("\n\n", ". ")),
                         req(user("Write a word with an accent, like café."), max_tokens=20)],
                        on_text=on_text)
    for r, cs in enumerate(out):
        for i, c in enumerate(cs):
            assert got.get((r, i), "") == c.text


@pytest.mark.slow
def test_bos_is_not_doubled(smol, monkeypatch):
    monkeypatch.setattr(smol, "_add_bos", True)  # as if SmolLM2 wanted BOS (<|im_start|>, id 1)
    chat = smol.tokenize(smol.render_chat(Q))  # the template already starts with it
    assert chat[0] == smol._bos and chat[1] != smol._bos
    assert smol.tokenize("hello")[0] == smol._bos
    assert smol.count_tokens("hello") == len(smol.tokenize("hello")) - 1


@pytest.mark.slow
def test_threads_share_the_model(smol):
    results = []
    jobs = [threading.Thread(target=lambda: results.append(smol.generate([req(max_tokens=5)])))
            for _ in range(3)]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    assert len({r[0][0].text for r in results}) == 1


def _in_thread(fn):
    """Start fn() on a thread; returns (thread, box) where box gets ("ok", value) or ("err", e)
    and the time it returned."""
    import time
    box = {}

    def target():
        try:
            box["out"] = ("ok", fn())
        except BaseException as e:
            box["out"] = ("err", e)
        box["t"] = time.perf_counter()

    t = threading.Thread(target=target)
    t.start()
    return t, box


@pytest.mark.slow
def test_concurrent_calls_share_steps_and_a_short_call_is_not_blocked(decodes):
    """A call made while another runs joins its decode steps and returns first if it is shorter;
    neither call's text changes (separate KV streams, per-sample seeds)."""
    long_req = req(n=2, max_tokens=48, ignore_eos=True, temperature=0.8, seed=5)
    short_req = req(user("Name a colour."), n=1, max_tokens=4, ignore_eos=True)
    with small_model(n_seq_max=4) as lm:
        alone_long = lm.generate([long_req])[0]
        alone_short = lm.generate([short_req])[0]
        decodes.clear()
        started = threading.Event()
        t1, long_box = _in_thread(lambda: lm.generate(
            [long_req], on_text=lambda r, i, d: started.set())[0])
        assert started.wait(30)
        t2, short_box = _in_thread(lambda: lm.generate([short_req])[0])
        t1.join(60), t2.join(60)
    assert long_box["out"][0] == short_box["out"][0] == "ok"
    assert [c.text for c in long_box["out"][1]] == [c.text for c in alone_long]
    assert [c.text for c in short_box["out"][1]] == [c.text for c in alone_short]
    assert short_box["t"] < long_box["t"]  # the short call did not wait for the long one
    assert any(n == 3 and len(set(ids)) == 3 for n, ids in decodes)  # 2 + 1 in one decode


@pytest.mark.slow
def test_free_slots_go_to_the_call_with_fewest_running():
    """Two slots, a call of 4 samples holds both; a 1-sample call made meanwhile takes the
    second slot that frees up, before the long call's 4th sample: it is not queued behind."""
    with small_model(n_seq_max=2) as lm:
        started = threading.Event()
        t1, long_box = _in_thread(lambda: lm.generate(
            [req(n=4, max_tokens=40, ignore_eos=True)], on_text=lambda r, i, d: started.set()))
        assert started.wait(30)
        t2, short_box = _in_thread(lambda: lm.generate([req(max_tokens=4, ignore_eos=True)]))
        t1.join(60), t2.join(60)
    assert long_box["out"][0] == short_box["out"][0] == "ok"
    assert short_box["t"] < long_box["t"]


@pytest.mark.slow
def test_a_failing_callback_fails_only_its_own_call(smol):
    def boom(r, i, d):
        raise ValueError("client went away")

    started = threading.Event()
    t1, good = _in_thread(lambda: smol.generate(
        [req(n=2, max_tokens=30, ignore_eos=True)], on_text=lambda r, i, d: started.set()))
    assert started.wait(30)
    t2, bad = _in_thread(lambda: smol.generate([req(n=2, max_tokens=30)], on_text=boom))
    t1.join(60), t2.join(60)
    assert good["out"][0] == "ok" and all(c.completion_tokens == 30 for c in good["out"][1][0])
    assert bad["out"][0] == "err" and isinstance(bad["out"][1], ValueError)
    assert smol._scheduler.live == {} and len(smol._scheduler.free_slots) == 8  # all freed
    assert smol.generate([req(max_tokens=3)])[0][0].completion_tokens == 3


@pytest.mark.slow
@pytest.mark.parametrize("kv_unified", [False, True], ids=["streams", "unified"])
def test_context_limits(kv_unified, decodes):
    with small_model(kv_unified=kv_unified, n_ctx=128, n_seq_max=4) as lm:
        with pytest.raises(ConfigError, match="n_ctx=128"):
            lm.generate([req(user("word " * 200))])
        out = lm.generate([req(n=4, max_tokens=100, ignore_eos=True)])[0]
    # each sequence stops at prompt + completion = n_ctx
    assert [c.prompt_tokens + c.completion_tokens for c in out] == [128] * 4
    assert all(c.finish_reason == "length" and c.text for c in out)
    # four of them cannot share one pool of 128 cells: the newest are preempted, wait, and
    # resume with their tokens decoded again into their slot (0-3; holders are 4-7)
    refills = [ids[0] for n, ids in decodes if n > 1 and set(ids) == {ids[0]} and ids[0] < 4]
    assert bool(refills) == kv_unified


@pytest.mark.slow
def test_corrupt_gguf(tmp_path):
    from ponder.models.catalog import load_model
    from ponder.models.llamacpp import LlamaCppModel
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + bytes(range(256)) * 4)
    with pytest.raises(ModelLoadError, match="could not load"):
        LlamaCppModel(bad)
    bad.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        load_model(str(bad))
    with small_model() as lm:
        pass
    with pytest.raises(ModelLoadError, match="closed"):
        lm.generate([req(max_tokens=1)])


@pytest.mark.slow
def test_qwen_template_and_greedy_batches():
    """The default model: its own chat template, and greedy equal across batch sizes.

    Checked: the batch size does not change llama.cpp's logits (bit for bit), so n=4 greedy
    gives four copies of n=1 greedy (200 tokens here; 24 in the test). In a unified KV pool,
    cells freed by sequences that end early are reused out of position order; attention then
    sums in another order and logits move by ~1e-2, enough to flip a near-tie after some tens
    of tokens. Separate streams (the default) keep every sequence's cells in order."""
    from ponder.models.llamacpp import LlamaCppModel
    lm = LlamaCppModel(_gguf("default"), name="default", n_ctx=2048, n_seq_max=4,
                       n_threads=THREADS)
    try:
        chat = lm.render_chat(Q)
        assert chat.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud")
        assert chat.endswith("<|im_start|>assistant\n")
        one = lm.generate([req(max_tokens=24)])[0][0]
        lm.clear_cache()
        four = lm.generate([req(n=4, max_tokens=24)])[0]
        assert one.prompt_tokens == lm.count_tokens(chat)
    finally:
        lm.close()
    assert all(c.token_ids == one.token_ids for c in four), [c.text for c in four] + [one.text]


def assert_same_greedy_text_up_to_a_near_tie(a: Completion, b: Completion,
                                              tie: float = 0.05) -> None:
    """Two greedy decodes of one prefix agree token for token, or part only where each one's
    two likeliest tokens are the same pair, within `tie` of each other in probability: an
    argmax that rounding can flip. Where they part, the rest is not compared."""
    assert a.top_logprobs is not None and b.top_logprobs is not None
    for i, (x, y) in enumerate(zip(a.token_ids, b.token_ids, strict=False)):
        if x == y:
            continue
        tops = [sorted(c.top_logprobs[i].items(), key=lambda kv: -kv[1])[:2] for c in (a, b)]
        assert {t for t, _ in tops[0]} == {t for t, _ in tops[1]}, (i, tops)
        assert all(abs(np.exp(p) - np.exp(q)) < tie for (_, p), (_, q) in tops), (i, tops)
        return
    assert a.text == b.text


@pytest.mark.slow
def test_kept_kv_continues_a_path_without_prefilling_it_again(decodes):
    """Tree search: expand a node (a step kept with keep_kv), then continue prompt + step.
    The continuation is prefilled only from where the kept KV ends, and gives the same next-token
    distribution as a model that prefills the whole prefix, top-5 probabilities within 0.01
    (measured: 0.0023 for the top token), and the same greedy text up to a near-tie. The path's
    KV was computed one token at a time rather than in one prefill; with 4-bit weights the
    kernels round differently, and later tokens' logprobs drift (by up to ~0.3 on SmolLM2 Q4_1),
    which can flip an argmax between two tokens of nearly equal probability: on an AVX-512 CPU
    the two continuations part at " So" / "\n" (0.31 / 0.30 and 0.29 / 0.32), 9 tokens in."""
    step = dict(max_tokens=24, stop=("\n\n",), logprobs=5)
    with small_model(n_seq_max=4, cache_prompts=4) as lm:
        prompt = lm.render_chat(Q)
        first = lm.generate([GenerationRequest(SamplingParams(**step), prefix=prompt,
                                               keep_kv=True)])[0][0]
        path = prompt + first.text + ("\n\n" if first.stop_string else "")
        decodes.clear()
        cont = lm.generate([GenerationRequest(SamplingParams(**step), prefix=path)])[0][0]
        prefilled = sum(n for n, ids in decodes if n > 1)
    with small_model(n_seq_max=4) as fresh:
        full = fresh.generate([GenerationRequest(SamplingParams(**step), prefix=path)])[0][0]
    assert cont.prompt_tokens == full.prompt_tokens
    assert cont.cached_tokens >= cont.prompt_tokens - 3 and full.cached_tokens == 0
    assert prefilled <= 3  # only the tail of the path, not the path
    assert cont.top_logprobs is not None and full.top_logprobs is not None
    assert_same_greedy_text_up_to_a_near_tie(cont, full)
    kept, fresh_top = cont.top_logprobs[0], full.top_logprobs[0]
    assert set(kept) == set(fresh_top)
    assert max(abs(np.exp(kept[t]) - np.exp(fresh_top[t])) for t in kept) < 0.01


@pytest.mark.slow
def test_reasoning_parser_from_the_template_or_the_flag(smol):
    """SmolLM2's template opens no thinking: no parser, chat text whole. Told it thinks like
    R1 (the template opens the thinking), its chat output is all thinking until `</think>`:
    with none written, it is reasoning and the reply is empty; a raw prefix stays whole."""
    from ponder.models.llamacpp import LlamaCppModel
    assert smol.reasoning_parser is None
    [[plain]] = smol.generate([req(max_tokens=8)])
    assert plain.reasoning is None and plain.text
    r1 = LlamaCppModel(_gguf("smollm2-135m"), n_ctx=512, n_seq_max=2, n_threads=THREADS,
                       reasoning_parser="deepseek-r1")
    try:
        assert r1.reasoning_parser is not None and r1.reasoning_parser.name == "deepseek-r1"
        [[chat], [raw]] = r1.generate([req(max_tokens=8), GenerationRequest(
            SamplingParams(max_tokens=8), prefix="1, 2, 3,")])
        assert (chat.reasoning, chat.text) == (plain.text, "")
        assert raw.reasoning is None and raw.text
    finally:
        r1.close()
