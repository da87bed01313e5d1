"""A Telegram user's spending cap, counted from what the client owes for each of
their answers (payment channels on the local chain), refused as an OpenAI 429."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from cocoon.config import TelegramConfig
from cocoon.telegram_initdata import sign_init_data
from harness.chain import NEEDS_LOCAL_CHAIN, paid_network
from harness.network import InProcessNetwork

pytestmark = NEEDS_LOCAL_CHAIN

BOT_TOKEN = "515151:spend-cap-token"
MODEL = "synthetic-small"


def user(user_id: int, base_url: str) -> openai.AsyncOpenAI:
    init = sign_init_data(
        {"auth_date": str(int(time.time())), "user": json.dumps({"id": user_id})}, BOT_TOKEN
    )
    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key="none",
        default_headers={"X-Telegram-Init-Data": init},
        max_retries=0,
        timeout=20,
    )


async def ask(client: openai.AsyncOpenAI) -> openai.types.chat.ChatCompletion:
    return await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "pay me"}], max_tokens=5
    )


@pytest.fixture
async def paid_gateway(tmp_path: Path) -> AsyncIterator[tuple[InProcessNetwork, str]]:
    async with paid_network(tmp_path) as (network, settings):
        await network.start_proxy(payments=settings("proxy"))
        await network.start_worker("worker1", payments=settings("worker1"))
        # An answer of 5 tokens costs 20,000 + 1,000 a prompt token (the root's
        # default prices): a cap of 50,000 lets two answers through, not three.
        telegram = TelegramConfig(bot_token=BOT_TOKEN, requests_per_minute=0, spend_cap_nano=50_000)
        base_url = await network.start_client(payments=settings("client"), telegram=telegram)
        yield network, base_url


async def test_a_user_is_stopped_at_their_spending_cap(
    paid_gateway: tuple[InProcessNetwork, str],
) -> None:
    network, base_url = paid_gateway
    alice = user(31, base_url)
    first = await ask(alice)
    assert first.usage is not None
    price = first.usage.prompt_tokens * 1_000 + first.usage.completion_tokens * 4_000
    assert 25_000 <= price < 50_000
    # What the gateway counts is what the client owed for the answer.
    pool = network.pool
    assert pool is not None
    assert pool.results[first.id.removeprefix("chatcmpl-")].amount_nano == price
    await ask(alice)  # 1 x price < cap: served, and now past it
    with pytest.raises(openai.RateLimitError) as refused:
        await ask(alice)
    assert refused.value.status_code == 429
    assert refused.value.code == "spending_cap_reached"
    assert f"spent {2 * price} of 50000 nanotons" in refused.value.message
    # Bob has his own cap.
    await ask(user(32, base_url))
