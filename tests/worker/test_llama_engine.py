"""The llama backend in-process, and the openai backend against a real third-party server.

The server is llama-cpp-python's own OpenAI server (`python -m
llama_cpp.server`) on the very GGUF file the built-in engine runs, so the two
must agree on what a request costs.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cocoon.inference import AnswerChunk, ChatMessage, GenerationRequest
from cocoon.worker.backends import BackendError, OpenAIBackend, OpenAIConfig
from cocoon.worker.backends.llama import LlamaBackend, LlamaConfig, bundled_model_file
from harness.ports import free_port

pytestmark = pytest.mark.engine

SERVER_MODEL = "smollm2"
QUESTION = [
    ChatMessage("system", "You are a helpful assistant."),
    ChatMessage("user", "What is the capital of France?"),
]


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaBackend]:
    cache = tmp_path_factory.mktemp("llama") / "model-ids.json"
    backend = LlamaBackend(LlamaConfig(max_queue=0, id_cache=str(cache)))
    yield backend
    asyncio.run(backend.aclose())


def _chat(model: str, **fields: object) -> GenerationRequest:
    return GenerationRequest(kind="chat", model=model, messages=QUESTION, **fields)  # type: ignore[arg-type]


async def _answer(chunks: AsyncIterator[AnswerChunk]) -> tuple[str, AnswerChunk]:
    texts, last = [], None
    async for chunk in chunks:
        texts.append(chunk.text)
        last = chunk
    assert last is not None
    return "".join(texts), last


async def _until_idle(llama: LlamaBackend, timeout_s: float) -> bool:
    """Whether every engine context is free again within `timeout_s`."""
    try:
        await asyncio.wait_for(llama._pool.wait_idle(), timeout_s)
    except TimeoutError:
        return False
    return True


def test_the_model_id_is_the_merkle_root_of_the_gguf_file(llama: LlamaBackend) -> None:
    from cocoon.tee.model_id import model_id

    assert llama.models() == [model_id(bundled_model_file(), "SmolLM2-135M-Instruct")]


async def test_a_client_going_away_stops_the_generation(llama: LlamaBackend) -> None:
    model = llama.models()[0]
    story = GenerationRequest(
        kind="completion", model=model, prompt="Once upon a time", max_tokens=1500
    )
    chunks = llama.generate(story)
    async for _ in chunks:
        break
    await chunks.aclose()
    # 1500 tokens take half a minute here; a stopped thread frees its
    # context within a token or two.
    assert await _until_idle(llama, 5.0)


async def test_requests_past_the_engine_and_its_queue_get_503(llama: LlamaBackend) -> None:
    model = llama.models()[0]
    running = llama.generate(
        GenerationRequest(kind="completion", model=model, prompt="Once", max_tokens=200)
    )
    await running.__anext__()  # it holds the only context; max_queue is 0
    with pytest.raises(BackendError) as info:
        await _answer(llama.generate(_chat(model, max_tokens=4)))
    assert (info.value.code, info.value.status, info.value.retryable) == ("no_capacity", 503, True)
    await running.aclose()
    assert await _until_idle(llama, 5.0)


async def test_an_embeddings_request_is_refused(llama: LlamaBackend) -> None:
    request = GenerationRequest(kind="embedding", model=llama.models()[0], input=["x"])
    with pytest.raises(BackendError, match="does not make embeddings"):
        await _answer(llama.generate(request))


# -- the openai backend against llama_cpp.server --------------------------------


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    # It takes a port number, not 0; one found free can be taken before it binds it
    # (the suite runs on several processes), so a port taken is tried again.
    for _ in range(3):
        port = free_port()
        command = [
            *(sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_file())),
            *("--model_alias", SERVER_MODEL, "--n_ctx", "2048", "--interrupt_requests", "false"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ]
        with open(log, "wb") as out:
            server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            if _serving(base_url, server, log):
                break
        except BaseException:
            server.kill()
            server.wait(10)
            raise
    else:
        raise AssertionError("llama_cpp.server found its port taken three times")
    try:
        yield base_url
    finally:
        server.terminate()
        server.wait(10)


def _serving(base_url: str, server: subprocess.Popen[bytes], log: Path) -> bool:
    """True once the server answers; False if it stopped because its port was taken."""
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            text = log.read_text(errors="replace")
            assert "address already in use" in text.lower(), text
            return False
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=1):
                # Ours, not whoever took the port first: ours says it bound it.
                if "Uvicorn running on" in log.read_text(errors="replace"):
                    return True
        except OSError:
            pass
        assert time.monotonic() < deadline, "llama_cpp.server did not start"
        time.sleep(0.1)


@pytest.fixture
async def server_backend(llama_server: str) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend(OpenAIConfig(base_url=llama_server, models=[SERVER_MODEL]))
    yield backend
    await backend.aclose()


async def test_a_whole_answer_from_llama_cpp_server_with_its_usage(
    server_backend: OpenAIBackend, llama: LlamaBackend
) -> None:
    text, last = await _answer(
        server_backend.generate(_chat(SERVER_MODEL, temperature=0, max_tokens=32, stream=False))
    )
    assert "Paris" in text
    assert last.finish_reason == "stop"
    # The same file, the same template, the same tokenizer: the built-in
    # engine bills exactly what the server counts.
    builtin_text, builtin = await _answer(
        llama.generate(_chat(llama.models()[0], temperature=0, max_tokens=32))
    )
    assert builtin_text == text
    assert last.usage == builtin.usage


async def test_a_streamed_answer_from_llama_cpp_server(server_backend: OpenAIBackend) -> None:
    chunks = [
        chunk
        async for chunk in server_backend.generate(
            _chat(SERVER_MODEL, temperature=0, max_tokens=6, stream=True)
        )
    ]
    last = chunks[-1]
    texts = [chunk.text for chunk in chunks[:-1] if chunk.text]
    assert last.finish_reason == "length"
    assert "".join(texts).startswith("The capital of France")
    # llama_cpp.server ignores stream_options.include_usage: no usage event
    # arrives, so the worker counts a token per content delta (which is how
    # it streams) and cannot count the prompt.
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (0, len(texts)) == (0, 6)
