"""OpenAIModel against a real OpenAI-compatible server: llama-cpp-python's `llama_cpp.server`
serving SmolLM2-135M-Instruct on a free loopback port (a few seconds on CPU).

Needs `pip install 'llama-cpp-python[server]' 'ponder[smollm2]'`; skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ponder.core.errors import BackendError, ModelNotFound
from ponder.core.types import GenerationRequest, SamplingParams, user
from ponder.models.openai_http import OpenAIModel

pytestmark = pytest.mark.server

READY_TIMEOUT = 60.0  # seconds for the server to load the model and answer /v1/models


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    missing = [m for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")
               if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: pip install 'llama-cpp-python[server]'")
    from ponder.models.gguf_files import embedded_gguf

    try:
        gguf = embedded_gguf("smollm2-135m")
    except ModelNotFound as e:
        pytest.skip(str(e))
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
             "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "2048", "--n_threads", "2"],
            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_ready(url, proc, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n"
                        f"{log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/models", timeout=1.0).is_success:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"llama_cpp.server not ready after {READY_TIMEOUT:g}s:\n"
                f"{log_path.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def model(base_url: str) -> Iterator[OpenAIModel]:
    with OpenAIModel(base_url, timeout=60.0) as m:  # model=None: the first served one
        yield m


def test_served_model_is_discovered(model: OpenAIModel) -> None:
    assert (model.model, model.name) == ("smollm2", "smollm2")


def test_catalog_builds_it_from_url_and_model_name(base_url: str) -> None:
    from ponder.models.catalog import load_model

    model = load_model(f"{base_url}#smollm2", timeout=30.0)
    try:
        assert isinstance(model, OpenAIModel) and model.model == "smollm2"
    finally:
        model.close()


def test_chat_and_raw_prefix_in_one_call(model: OpenAIModel) -> None:
    chat = GenerationRequest(SamplingParams(max_tokens=24), messages=user("What is 2+2?"))
    raw = GenerationRequest(SamplingParams(max_tokens=8), prefix="1, 2, 3, 4,")
    [[c]], [[r]] = model.generate([chat]), model.generate([raw])
    [[c2], [r2]] = model.generate([chat, raw])
    assert c.text.strip() and c.prompt_tokens > 0 and 0 < c.completion_tokens <= 24
    assert r.text.startswith(" 5")  # the raw prefix is continued verbatim, no chat template
    assert r.finish_reason == "length" and r.completion_tokens == 8
    assert (c2.text, r2.text) == (c.text, r.text)  # greedy, batched or not


def test_n_samples_arrive_even_where_the_server_ignores_n(model: OpenAIModel) -> None:
    params = SamplingParams(n=3, temperature=1.0, seed=1, max_tokens=12)
    [out] = model.generate([GenerationRequest(params, messages=user("Say hi."))])
    assert len(out) == 3 and all(c.text for c in out)
    assert len({c.text for c in out}) > 1  # seeds 1, 2, 3: different samples


def test_seeded_sampling_is_reproducible(model: OpenAIModel) -> None:
    req = GenerationRequest(SamplingParams(temperature=1.0, seed=123, max_tokens=16),
                            messages=user("Tell me about the sea."))
    assert model.generate([req])[0][0].text == model.generate([req])[0][0].text


def test_stop_strings(model: OpenAIModel) -> None:
    req = GenerationRequest(SamplingParams(max_tokens=40, stop=("\n",)),
                            prefix="1. apple\n2. banana\n3.")
    [[c]] = model.generate([req])
    assert c.text.strip() and "\n" not in c.text and c.finish_reason == "stop"


@pytest.mark.parametrize("prompt", [{"messages": user("Hi")}, {"prefix": "The capital of"}],
                         ids=["chat", "raw"])
def test_logprobs(model: OpenAIModel, prompt: dict) -> None:
    [[c]] = model.generate([GenerationRequest(SamplingParams(max_tokens=6, logprobs=2), **prompt)])
    assert c.token_logprobs is not None and c.top_logprobs is not None
    assert len(c.token_logprobs) == len(c.top_logprobs) == c.completion_tokens == 6
    assert all(lp <= 0 for lp in c.token_logprobs)


def test_streaming_and_cancelling(model: OpenAIModel) -> None:
    req = GenerationRequest(SamplingParams(max_tokens=24), messages=user("Count to twenty."))
    deltas: list[str] = []
    [[c]] = model.generate([req], on_text=lambda r, i, d: deltas.append(d))
    assert len(deltas) > 1 and "".join(deltas) == c.text
    assert c.text == model.generate([req])[0][0].text  # the same greedy text as unstreamed
    cut: list[str] = []
    [[c]] = model.generate([req], on_text=lambda r, i, d: cut.append(d),
                           should_stop=lambda: len(cut) >= 3)
    assert c.finish_reason == "cancelled" and c.text == "".join(cut) and len(cut) == 3


def test_count_tokens_uses_the_server_tokenizer(model: OpenAIModel) -> None:
    [[c]] = model.generate([GenerationRequest(SamplingParams(max_tokens=8), prefix="1, 2, 3, 4,")])
    assert model.count_tokens(c.text) == c.completion_tokens == 8  # " 5, 6, 7": one per char
    assert model.count_tokens("Hello world") == 2  # a 4-chars-per-token estimate would say 3


def test_unreachable_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(BackendError, match=rf"^cannot reach {url} \(connection refused\); start "
                                           "the server or check the URL$"):
        OpenAIModel(url, model="m", max_retries=1, backoff=0.0).generate(
            [GenerationRequest(messages=user("Hi"))])
