"""A client gateway started with `--api-key`: OpenAI-style 401s without the right key."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from .conftest import Network, get_json

pytestmark = pytest.mark.slow

KEY = "sekret"
MODEL = "synthetic-small"


def _client(base_url: str, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)


def _status_and_error(request: urllib.request.Request) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {}
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())["error"]


def test_api_key_required(network: Network) -> None:
    network.start_proxy()
    network.start_worker("worker1")
    network.wait_workers(1)
    base_url = network.start_client("client", "--api-key", KEY)

    for bad in ("wrong-key", KEY + "x", KEY[:-1]):
        client = _client(base_url, bad)
        with pytest.raises(openai.AuthenticationError) as info:
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3
            )
        assert info.value.status_code == 401
        assert info.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
        with pytest.raises(openai.AuthenticationError):
            client.completions.create(model=MODEL, prompt="hi", stream=True)

    # No Authorization header at all, as a bare curl sends it.
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    status, error = _status_and_error(request)
    assert status == 401
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "authentication_error"
    status, error = _status_and_error(urllib.request.Request(f"{base_url}/models"))
    assert status == 401 and error["code"] == "invalid_api_key"
    # An empty bearer token is no key either.
    request.add_header("Authorization", "Bearer ")
    assert _status_and_error(request)[0] == 401

    # The right key works for every route.
    client = _client(base_url, KEY)
    assert [m.id for m in client.models.list().data] == [MODEL]
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    assert completion.choices[0].message.content
    chunks = list(client.completions.create(model=MODEL, prompt="hello", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    # Requests refused for their key were never billed.
    assert network.stats()["billing"]["requests"] == 2

    # Health checks outside /v1 stay open for load balancers.
    assert get_json(base_url.removesuffix("/v1") + "/healthz")["ok"] is True
