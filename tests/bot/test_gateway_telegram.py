"""The gateway and Telegram users over HTTP: initData admits a Mini App's requests
in place of an API key; a bad or stale one is refused; each user has a rate (and,
with payments, a spending cap: tests/bot/test_spend_cap.py), as OpenAI errors."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest

from cocoon.config import TelegramConfig
from cocoon.telegram_initdata import sign_init_data
from harness.network import InProcessNetwork

BOT_TOKEN = "424242:gateway-test-token"
API_KEY = "sk-app-key"
MODEL = "synthetic-small"


def init_data(user_id: int, *, token: str = BOT_TOKEN, age_s: float = 0) -> str:
    return sign_init_data(
        {
            "auth_date": str(int(time.time() - age_s)),
            "query_id": "AAH",
            "user": json.dumps({"id": user_id, "first_name": "Ann"}),
        },
        token,
    )


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[str]:
    network = InProcessNetwork(tmp_path)
    try:
        await network.start_proxy()
        await network.start_worker("worker1")
        telegram = TelegramConfig(bot_token=BOT_TOKEN, requests_per_minute=3, spend_cap_nano=0)
        yield await network.start_client(api_keys=[API_KEY], telegram=telegram)
    finally:
        await network.stop()


def sdk(base_url: str, headers: dict[str, str], api_key: str = "none") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=api_key, default_headers=headers, max_retries=0, timeout=20
    )


async def ask(client: openai.AsyncOpenAI) -> str:
    answer = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    return answer.choices[0].message.content or ""


async def test_valid_init_data_admits_without_an_api_key(gateway: str) -> None:
    assert await ask(sdk(gateway, {"X-Telegram-Init-Data": init_data(5)}))
    # The Mini App convention: Authorization: tma <initData>.
    client = openai.AsyncOpenAI(
        base_url=gateway,
        api_key="unused",
        default_headers={"Authorization": f"tma {init_data(6)}"},
        max_retries=0,
    )
    assert await ask(client)
    # Without initData and without the key: the API key rule stands.
    with pytest.raises(openai.AuthenticationError) as refused:
        await ask(sdk(gateway, {}))
    assert refused.value.code == "invalid_api_key"


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (init_data(7, token="424242:another-bot"), "not signed for this bot"),
        (init_data(7, age_s=2 * 86_400), "s old"),
        (init_data(7).replace("Ann", "Bob"), "not signed for this bot"),
        ("user=%7B%22id%22%3A7%7D", "no hash"),
    ],
)
async def test_bad_init_data_is_refused_even_with_a_key(
    gateway: str, header: str, why: str
) -> None:
    client = sdk(gateway, {"X-Telegram-Init-Data": header}, api_key=API_KEY)
    with pytest.raises(openai.AuthenticationError) as refused:
        await ask(client)
    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_init_data"
    assert why in refused.value.message


async def test_each_telegram_user_has_a_rate(gateway: str) -> None:
    alice = sdk(gateway, {"X-Telegram-Init-Data": init_data(11)})
    for _ in range(3):
        await ask(alice)
    with pytest.raises(openai.RateLimitError) as refused:
        await ask(alice)
    assert refused.value.status_code == 429
    assert refused.value.code == "rate_limit_exceeded"
    assert "more than 3 requests a minute" in refused.value.message
    # Another user, and the app with its key, are not held back by Alice.
    assert await ask(sdk(gateway, {"X-Telegram-Init-Data": init_data(12)}))
    for _ in range(4):
        assert await ask(sdk(gateway, {}, api_key=API_KEY))
    # Reading is not limited: the models list still answers Alice.
    models = await alice.models.list()
    assert [m.id for m in models.data] == [MODEL]
    async with aiohttp.ClientSession() as http:
        stats = await (await http.get(gateway.removesuffix("/v1") + "/jsonstats")).json()
    assert stats["telegram"]["refused_requests"] == {"rate_limit_exceeded": 1}


async def test_init_data_does_not_move_the_wallet(gateway: str) -> None:
    # Money-moving routes (POST beyond asking a model) still need the API key.
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            gateway + "/wallet/top-up",
            json={"amount_ton": "1"},
            headers={"X-Telegram-Init-Data": init_data(13)},
        )
        assert response.status == 401
        body = await response.json()
    assert body["error"]["code"] == "invalid_api_key"
