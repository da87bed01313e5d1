"""One Idempotency-Key sent several times at once (issue 16, item 2): one request runs;
the others get its answer (the same bytes when it was answered whole) or run after
it as retries that the proxy answers from its stored run; none hangs, and the
worker runs it once. Real HTTP on 127.0.0.1 against an in-process network."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from cocoon.client.gateway import Gateway
from cocoon.config import SyntheticBackendConfig
from harness.network import until

from .conftest import InProcessNetwork

BODY = {
    "model": "synthetic-small",
    "messages": [{"role": "user", "content": "say it once"}],
    "max_tokens": 20,
}
# Slow enough that every copy arrives while the first runs.
SLOW = SyntheticBackendConfig(tokens_per_second=100.0)


def served(net: InProcessNetwork) -> int:
    assert net.proxy is not None
    workers = net.proxy.snapshot()["workers"]
    return sum(w["served"] for w in workers)  # type: ignore[attr-defined]


async def post(
    http: aiohttp.ClientSession, url: str, key: str, body: dict[str, object]
) -> tuple[int, bytes]:
    async with http.post(url, json=body, headers={"Idempotency-Key": key}) as response:
        return response.status, await response.read()


async def test_copies_of_a_whole_answer_get_the_same_bytes_and_it_runs_once(
    inproc: InProcessNetwork,
) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("w", synthetic=SLOW)
    base_url = await inproc.start_client()
    url = f"{base_url}/chat/completions"
    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        answers = await asyncio.gather(*(post(http, url, "invoice-1", BODY) for _ in range(6)))
        assert {status for status, _ in answers} == {200}, answers
        assert len({body for _, body in answers}) == 1
        text = json.loads(answers[0][1])["choices"][0]["message"]["content"]
        assert len(text.split()) == 20
        # A later retry is the proxy's to replay: the same text, still one run.
        status, again = await post(http, url, "invoice-1", BODY)
        assert status == 200
        assert json.loads(again)["choices"][0]["message"]["content"] == text
    assert served(inproc) == 1


async def test_copies_of_a_streamed_answer_each_get_the_whole_stream_from_one_run(
    inproc: InProcessNetwork,
) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("w", synthetic=SLOW)
    base_url = await inproc.start_client()
    url = f"{base_url}/chat/completions"
    body = {**BODY, "stream": True}

    async def stream() -> str:
        status, raw = await post(http, url, "stream-1", body)
        assert status == 200, raw
        events = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]", events[-3:]
        chunks = [json.loads(event) for event in events[:-1]]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)

    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        texts = await asyncio.gather(*(stream() for _ in range(4)))
    assert len(set(texts)) == 1
    assert len(texts[0].split()) == 20
    assert served(inproc) == 1


async def test_a_different_body_under_a_running_id_is_409_and_the_first_is_answered(
    inproc: InProcessNetwork,
) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("w", synthetic=SLOW)
    base_url = await inproc.start_client()
    url = f"{base_url}/chat/completions"
    other = {**BODY, "messages": [{"role": "user", "content": "something else"}]}
    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        first, second = await asyncio.gather(
            post(http, url, "mixed-1", BODY), post(http, url, "mixed-1", other)
        )
    assert first[0] == 200, first
    assert second[0] == 409, second
    assert json.loads(second[1])["error"]["code"] == "duplicate_request_id"
    assert served(inproc) == 1


async def test_a_copy_whose_first_was_cut_by_its_app_is_409_and_a_later_retry_answers(
    inproc: InProcessNetwork,
) -> None:
    """The first caller goes away: the copy waiting behind it is told at once (409; the
    cut run's last frames may still be in flight on the proxy connection), and a
    retry a moment later is answered."""
    await inproc.start_proxy()
    await inproc.start_worker("w", synthetic=SLOW)
    base_url = await inproc.start_client()
    url = f"{base_url}/chat/completions"
    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        first = asyncio.create_task(post(http, url, "cut-1", BODY))
        # The copy is sent once the first is running at the worker.
        await until(lambda: _active(inproc))
        second = asyncio.create_task(post(http, url, "cut-1", BODY))
        await until(lambda: gateway(inproc).runs.waiting == 1)
        first.cancel()
        status, body = await second
        assert status == 409, body
        assert json.loads(body)["error"]["code"] == "duplicate_request_id"
        await until(lambda: not _active(inproc))
        status, body = await post(http, url, "cut-1", BODY)
    assert status == 200, body
    assert len(json.loads(body)["choices"][0]["message"]["content"].split()) == 20


def gateway(net: InProcessNetwork) -> Gateway:
    assert net.gateway is not None
    return net.gateway


def _active(net: InProcessNetwork) -> int:
    assert net.proxy is not None
    workers = net.proxy.snapshot()["workers"]
    return sum(w["active"] for w in workers)  # type: ignore[attr-defined]


async def test_a_retry_right_after_a_cut_stream_cuts_no_other_request(
    inproc: InProcessNetwork,
) -> None:
    """The app reads a few chunks of a stream, goes away and sends the same id again at
    once, while another request streams on the same proxy connection: the retry is
    answered or refused cleanly, and the other request is not cut (the cut run's last
    frames, still in flight, used to close the whole connection)."""
    await inproc.start_proxy()
    # Fast: many of the cut run's frames are in flight when the retry goes out.
    await inproc.start_worker("w", synthetic=SyntheticBackendConfig(tokens_per_second=5000.0))
    base_url = await inproc.start_client()
    url = f"{base_url}/chat/completions"
    body = {**BODY, "stream": True, "max_tokens": 2000}
    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        other = asyncio.create_task(post(http, url, "other-1", body))
        async with http.post(url, json=body, headers={"Idempotency-Key": "again-1"}) as response:
            assert response.status == 200
            await response.content.readuntil(b"\n\n")
            await response.content.readuntil(b"\n\n")
            response.close()  # the app goes away mid-stream
        status, again = await post(http, url, "again-1", body)
        assert status in (200, 409, 499), again
        status, answer = await other
    assert status == 200
    assert answer.rstrip().endswith(b"data: [DONE]"), answer[-200:]
