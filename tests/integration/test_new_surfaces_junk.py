"""The surfaces added after issue 16, attacked over real HTTP on 127.0.0.1 against an
in-process network: the Responses API, tools and JSON schemas on chat, the web
app's files, answers and wallet actions, Telegram initData. The attacks are the
ones `python -m cocoon.bench.attack_gateway` sends to a `cocoon up` network;
each must come back as a 4xx OpenAI error with a short message (or the 2xx
its valid twin gets), and nothing refused is sealed."""

from __future__ import annotations

import json
import time

import aiohttp

from cocoon.bench.attack_cases import JSON, MODEL, single_attacks
from cocoon.bench.attack_gateway import MAX_MESSAGE_CHARS, _send
from cocoon.config import TelegramConfig
from cocoon.telegram_initdata import sign_init_data
from harness.network import InProcessNetwork

KEY = "sk-junk"
BOT = "123:junk-token"


async def _network(inproc: InProcessNetwork) -> str:
    await inproc.start_proxy()
    await inproc.start_worker("w")
    base_url = await inproc.start_client(
        api_keys=[KEY], telegram=TelegramConfig(bot_token=BOT, requests_per_minute=0)
    )
    return base_url.removesuffix("/v1")


async def test_every_attack_gets_a_short_4xx_openai_error_and_nothing_refused_is_sealed(
    inproc: InProcessNetwork,
) -> None:
    url = await _network(inproc)
    assert inproc.session is not None
    init_data = sign_init_data(
        {"auth_date": str(int(time.time())), "user": json.dumps({"id": 7})}, BOT
    )
    attacks = single_attacks({"Authorization": f"Bearer {KEY}"}, init_data, keyed=True)
    sealed = len(inproc.session._recent)
    answered = 0
    async with aiohttp.ClientSession() as http:
        for attack in attacks:
            outcome = await _send(http, url, attack)
            assert outcome.ok, (attack.name[:60], outcome.status, outcome.why)
            answered += outcome.status == 200
        async with http.get(url + "/jsonstats") as response:
            requests = (await response.json())["requests"]
    assert not [key for key in requests if key.endswith(" 500")], requests
    # Only the valid requests among the attacks reached a worker.
    assert answered >= 2
    assert len(inproc.session._recent) - sealed == answered


async def test_error_messages_do_not_echo_what_the_app_sent(inproc: InProcessNetwork) -> None:
    url = await _network(inproc)
    marker = "ECHO" * 5000
    auth = {"Authorization": f"Bearer {KEY}", **JSON}
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    tool = {"type": "function", "function": {"name": "f"}}
    requests = [
        ("POST", "/v1/responses", {"model": MODEL, "input": "x", "previous_response_id": marker}),
        ("POST", "/v1/responses", {"model": MODEL, "input": [{"role": marker, "content": "x"}]}),
        ("POST", "/v1/responses", {"model": MODEL, "input": "x", "include": [marker]}),
        (
            "POST",
            "/v1/chat/completions",
            {**chat, "tools": [{**tool, "function": {"name": marker}}]},
        ),
        (
            "POST",
            "/v1/chat/completions",
            {
                **chat,
                "tools": [tool],
                "tool_choice": {"type": "function", "function": {"name": marker}},
            },
        ),
        ("POST", "/v1/wallet/top-up", {"amount_ton": marker[:30]}),
        ("GET", "/v1/responses/" + marker[:2000], None),
        ("GET", "/v1/answers/" + marker[:2000], None),
        ("GET", "/app/" + marker[:2000], None),
    ]
    async with aiohttp.ClientSession() as http:
        for method, path, body in requests:
            data = json.dumps(body).encode() if body is not None else None
            async with http.request(method, url + path, data=data, headers=auth) as response:
                assert 400 <= response.status < 500, (path, response.status)
                message = (await response.json())["error"]["message"]
            # At most a recognisable excerpt (64 characters) of what was sent.
            assert marker[:100] not in message, (path, message[:120])
            assert len(message) <= MAX_MESSAGE_CHARS


async def test_recent_calls_and_evidence_stay_within_their_budget(
    inproc: InProcessNetwork,
) -> None:
    """Big requests one after another: the client keeps its recent calls within the
    byte budget, and no answer keeps its sealed request as audit evidence."""
    url = await _network(inproc)
    session = inproc.session
    assert session is not None
    session._recent.budget_bytes = 2 << 20
    body = {
        "model": MODEL,
        "max_tokens": 2,
        "messages": [{"role": "user", "content": "x" * 300_000}],
    }
    headers = {"Authorization": f"Bearer {KEY}", **JSON}
    async with aiohttp.ClientSession() as http:
        for _ in range(8):
            async with http.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
                assert r.status == 200, await r.text()
            for path, item in (("/v1/responses", {"model": MODEL, "input": "x" * 300_000}),):
                async with http.post(url + path, json=item, headers=headers) as r:
                    assert r.status == 200, await r.text()
    assert session._recent.bytes <= 2 << 20
    assert len(session._recent) < 16
    assert all(not r.envelope and not r.sealed for r in session.results.values())
