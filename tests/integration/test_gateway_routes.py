"""The gateway's own routing: what a path or method it does not serve gets, and how
requests are counted; all over real HTTP on 127.0.0.1."""

from __future__ import annotations

import aiohttp
import openai

from cocoon.client.gateway import MAX_BODY

from .conftest import InProcessNetwork

CHAT = {"model": "synthetic-small", "messages": [{"role": "user", "content": "hi"}]}


async def test_unknown_paths_and_methods_get_openai_errors(inproc: InProcessNetwork) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("w")
    base_url = await inproc.start_client()
    async with aiohttp.ClientSession() as http:
        for method, path, status in [
            ("POST", "/v1/no/such/route", 404),
            ("GET", "/v1/receipts/", 404),
            ("GET", "/v1/models/a/b", 404),
            ("GET", "/v1/chat/completions", 405),
            ("DELETE", "/v1/models", 405),
        ]:
            async with http.request(method, base_url.removesuffix("/v1") + path) as response:
                assert response.status == status, (method, path)
                assert response.content_type == "application/json"
                error = (await response.json())["error"]
                assert error["message"]
        # A GET route answers HEAD, with no body.
        async with http.head(f"{base_url}/models") as response:
            assert response.status == 200
            assert await response.read() == b""


async def test_a_body_over_the_limit_is_413_and_the_gateway_serves_on(
    inproc: InProcessNetwork,
) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("w")
    base_url = await inproc.start_client()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base_url}/chat/completions",
            data=b" " * (MAX_BODY + 1),
            headers={"Content-Type": "application/json"},
        ) as response,
    ):
        assert response.status == 413
        assert (await response.json())["error"]["message"]
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    answer = await client.chat.completions.create(**CHAT, max_tokens=3)  # type: ignore[call-overload]
    assert answer.choices[0].message.content
    await client.close()


async def test_requests_are_counted_by_route_not_by_path(inproc: InProcessNetwork) -> None:
    await inproc.start_proxy()
    await inproc.start_worker("w")
    base_url = await inproc.start_client()
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    await client.chat.completions.create(**CHAT, max_tokens=3)  # type: ignore[call-overload]
    await client.models.retrieve("synthetic-small")
    await client.close()
    async with aiohttp.ClientSession() as http:
        for request_id in ("one", "two", "three"):
            async with http.get(f"{base_url}/receipts/{request_id}") as response:
                assert response.status == 404
        async with http.get(base_url.removesuffix("/v1") + "/jsonstats") as response:
            requests = (await response.json())["requests"]
    assert requests["/v1/chat/completions 200"] == 1
    assert requests["/v1/models/{model} 200"] == 1
    assert requests["/v1/receipts/{request_id} 404"] == 3
    assert not any("one" in key or "two" in key for key in requests)
