"""The root contract governs running nodes (issue 13), on the local chain.

Real nodes in one event loop, each following the root with a follower of its
own; the root is changed by its owner as an operator would, and every
change must reach the nodes within a poll.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from cocoon.chain.local import LocalChain
from cocoon.chain.root import (
    HashKind,
    read_root_state,
    send_root_update,
    set_hash_body,
    set_params_body,
)
from cocoon.chain.stake import ensure_stake, request_unbond, stake_address
from cocoon.chain.wallet import WalletV4, load_key_file
from cocoon.config import PaymentsConfig, SyntheticBackendConfig
from cocoon.localnet import LocalRoot, node_key, set_up_root
from cocoon.payments.devnet import LOCAL_NETWORK_ID
from cocoon.registry.follower import RootFollower
from cocoon.registry.rules import model_hash
from harness.chain import NEEDS_LOCAL_CHAIN
from harness.network import InProcessNetwork, until

pytestmark = NEEDS_LOCAL_CHAIN

MODEL = "synthetic-small"
MESSAGES: Any = [{"role": "user", "content": "who governs?"}]
POLL_S = 0.1
TON = 1_000_000_000


@dataclass
class Governed:
    chain: LocalChain
    local: LocalRoot
    net: InProcessNetwork
    followers: list[RootFollower]
    tasks: list[asyncio.Task[None]]

    async def follower(self, *, check_stakes: bool = True) -> RootFollower:
        follower = RootFollower(
            self.chain.client(),
            self.local.root,
            poll_interval_s=POLL_S,
            check_stakes=check_stakes,
        )
        await follower.start()
        self.followers.append(follower)
        self.tasks.append(asyncio.create_task(follower.run()))
        return follower

    async def update(self, body: Any) -> None:
        async with self.chain.client() as client:
            owner = WalletV4(client, load_key_file(self.local.owner_key_file))
            await send_root_update(owner, self.local.root, body)

    def payments(self, name: str) -> PaymentsConfig:
        return PaymentsConfig(
            chain_endpoint=self.chain.endpoint,
            root=self.local.root,
            key_file=str(self.local.wallets[name].key_file),
        )


@pytest.fixture
async def governed(tmp_path: Path) -> AsyncIterator[Governed]:
    async with LocalChain(tmp_path / "chain") as chain:
        async with chain.client() as client:
            local = await set_up_root(
                client,
                tmp_path,
                ["proxy", "worker1", "lazy", "client"],
                images=[],
                models=[MODEL],
                proxy_endpoints={},
            )
        g = Governed(chain, local, InProcessNetwork(tmp_path), [], [])
        try:
            yield g
        finally:
            await g.net.stop()
            for task in g.tasks:
                task.cancel()
            for follower in g.followers:
                await follower.client.close()


def sdk(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=20)


async def ask(client: openai.AsyncOpenAI) -> str:
    answer = await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3)
    return answer.choices[0].message.content or ""


async def refused_with(client: openai.AsyncOpenAI, code: str) -> bool:
    try:
        await ask(client)
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        return bool(body.get("code") == code)
    return False


async def eventually(check: Callable[[], Any], limit_s: float = 15.0) -> None:
    """Poll an async check until it holds, bounded (changes land within polls)."""
    async with asyncio.timeout(limit_s):
        while not await check():  # noqa: ASYNC110 - the check is a request, not a flag
            await asyncio.sleep(POLL_S / 2)


async def test_a_model_the_root_withdraws_is_refused_with_the_reason_and_comes_back(
    governed: Governed,
) -> None:
    g = governed
    proxy = await g.net.start_proxy(follower=await g.follower(check_stakes=False))
    await g.net.start_worker("worker1", follower=await g.follower(check_stakes=False))
    client = sdk(await g.net.start_client(follower=await g.follower(check_stakes=False)))
    assert await ask(client)

    await g.update(set_hash_body(HashKind.MODEL, model_hash(MODEL), False))
    # The proxy drops the worker, the client says why.
    await until(lambda: not proxy.router.workers, 15)
    assert "model_not_on_root" in next(iter(proxy.admission.refused.values()))
    await eventually(lambda: refused_with(client, "model_not_on_root"))

    await g.update(set_hash_body(HashKind.MODEL, model_hash(MODEL), True))
    await eventually(lambda: _answers(client))
    assert not proxy.admission.refused


async def _answers(client: openai.AsyncOpenAI) -> bool:
    try:
        return bool(await ask(client))
    except openai.APIStatusError:
        return False


async def test_a_worker_below_the_minimum_stake_is_refused_until_it_stakes(
    governed: Governed,
) -> None:
    g = governed
    proxy = await g.net.start_proxy(payments=g.payments("proxy"), follower=await g.follower())
    staked = await g.net.start_worker(
        "worker1", payments=g.payments("worker1"), follower=await g.follower()
    )
    # "lazy" has a funded wallet but no stake.
    lazy = g.net.launch_worker(
        "lazy",
        payee=await _payee(g, "lazy"),
        payments=g.payments("lazy"),
        follower=await g.follower(),
    )
    await until(lambda: lazy.credentials.key_id in proxy.admission.refused, 15)
    assert proxy.admission.refused[lazy.credentials.key_id].startswith("stake_too_low")
    assert set(proxy.router.workers) == {staked.credentials.key_id}

    async with g.chain.client() as client:
        state = await read_root_state(client, g.local.root)
        wallet = WalletV4(client, load_key_file(g.local.wallets["lazy"].key_file))
        await client.faucet(wallet.raw_address, 2 * state.params.min_worker_stake)
        await ensure_stake(
            wallet,
            network_id=LOCAL_NETWORK_ID,
            authority=g.local.root,
            node_key=node_key(g.net.root / "lazy"),
            minimum_nano=state.params.min_worker_stake,
            unbond_delay=state.params.unbonding_delay,
        )
    await until(lambda: lazy.credentials.key_id in proxy.router.workers, 20)

    # Unbonding takes the stake below the minimum at once: the proxy lets it go.
    async with g.chain.client() as client:
        wallet = WalletV4(client, load_key_file(g.local.wallets["worker1"].key_file))
        address = stake_address(
            LOCAL_NETWORK_ID,
            g.local.root,
            wallet.raw_address,
            staked.credentials.identity.public_key,
        )
        await request_unbond(wallet, address, state.params.min_worker_stake)
    await until(lambda: staked.credentials.key_id not in proxy.router.workers, 15)
    assert proxy.admission.refused[staked.credentials.key_id].startswith("stake_too_low")


async def _payee(g: Governed, name: str) -> Any:
    from cocoon.config import WorkerConfig
    from cocoon.role_payments import worker_payee

    config = WorkerConfig(data_dir=str(g.net.root / name), payments=g.payments(name))
    return await worker_payee(config)


async def test_prices_follow_versions_so_a_request_keeps_the_price_it_was_sealed_at(
    governed: Governed,
) -> None:
    g = governed
    follower = await g.follower()
    before = follower.version
    old = follower.prices_at(before)
    params = follower.rules.state.params
    await g.update(set_params_body(_with(params, base_price_nano=params.base_price_nano * 3)))
    await until(lambda: follower.version > before, 15)
    assert follower.prices_at(before) == old
    assert follower.prices_at(follower.version).base_nano_per_token == 3 * old.base_nano_per_token
    # A request that names no version is billed at the current prices.
    assert follower.prices_at(0) == follower.prices_at(follower.version)


def _with(params: Any, **changes: object) -> Any:
    return dataclasses.replace(params, **changes)


async def test_a_price_change_on_the_root_applies_to_new_requests_not_to_one_in_flight(
    governed: Governed,
) -> None:
    g = governed
    proxy = await g.net.start_proxy(payments=g.payments("proxy"), follower=await g.follower())
    slow = SyntheticBackendConfig(tokens_per_second=40)
    worker = await g.net.start_worker(
        "worker1", payments=g.payments("worker1"), follower=await g.follower(), synthetic=slow
    )
    client_follower = await g.follower()
    client = sdk(await g.net.start_client(payments=g.payments("client"), follower=client_follower))
    params = client_follower.rules.state.params
    before = client_follower.version

    stream = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, max_tokens=80, stream=True
    )
    in_flight = stream.headers["x-request-id"]
    chunks = stream.parse()
    await anext(aiter(chunks))  # running on the worker
    await g.update(set_params_body(_with(params, base_price_nano=params.base_price_nano * 3)))
    await until(lambda: min(f.version for f in g.followers) > before, 15)
    assert proxy.inflight.running == 1  # still in flight when every node saw the change
    async for _ in chunks:
        pass
    after = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, max_tokens=80
    )
    new = after.headers["x-request-id"]

    # The proxy's ledger, the client's and the worker's books agree, request by request:
    # the one in flight at the old price, the next at three times it.
    old_charge, new_charge = proxy.ledger.charge(in_flight), proxy.ledger.charge(new)
    assert old_charge is not None and new_charge is not None
    same_tokens = old_charge["completion_tokens"] == new_charge["completion_tokens"]
    assert same_tokens and old_charge["prompt_tokens"] == new_charge["prompt_tokens"]
    assert new_charge["amount_nano"] == 3 * old_charge["amount_nano"]
    session = g.net.session
    assert session is not None and session.payer is not None
    owed = _owed(session.payer.book, "payer")
    assert owed[in_flight] == old_charge["amount_nano"]
    assert owed[new] == new_charge["amount_nano"]
    assert worker.payee is not None
    earned = _owed(worker.payee.book, "payee")
    assert earned[new] == 3 * earned[in_flight] > 0


def _owed(book: Any, side: str) -> dict[str, int]:
    """What a book records per request (the amount its receipts prove)."""
    with book.transaction() as db:
        rows = db.execute(
            "SELECT r.request_id, r.amount_nano FROM pay_requests r"
            " JOIN pay_channels c ON c.channel = r.channel WHERE c.side = ?",
            (side,),
        ).fetchall()
    return {request_id: amount for request_id, amount in rows}


async def test_a_client_takes_proxies_from_the_root_and_replaces_one_that_stays_down(
    governed: Governed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cocoon.chain.root import RegisteredProxy, set_proxy_body
    from cocoon.client import proxies as pool_module

    monkeypatch.setattr(pool_module, "DOWN_GRACE_S", 0.5)
    monkeypatch.setattr(pool_module, "REBALANCE_S", 0.1)
    g = governed
    nets = [InProcessNetwork(tmp_path / f"p{i}") for i in range(3)]
    try:
        started = [await net.start_proxy() for net in nets]
        endpoints = [f"127.0.0.1:{p.port}" for p in started]
        for i, proxy in enumerate(started):
            wallet = "0:" + f"{i + 1:02x}" * 32  # a stand-in: the client checks no stake here
            entry = RegisteredProxy(wallet, endpoints[i], proxy.credentials.identity.public_key)
            await g.update(set_proxy_body(wallet, entry))
        nets[0].launch_worker("worker1", proxies=endpoints)
        await until(lambda: all(len(p.router.workers) == 1 for p in started), 15)
        follower = await g.follower(check_stakes=False)
        base_url = await nets[0].start_client(proxies=["root"], max_proxies=2, follower=follower)
        client = sdk(base_url)
        pool = nets[0].pool
        assert pool is not None
        await until(lambda: len([s for s in pool.sessions.values() if s.channel]) == 2, 15)
        assert await ask(client)
        held = set(pool.sessions)
        (spare,) = set(endpoints) - held
        gone = next(p for p in started if f"127.0.0.1:{p.port}" in held)
        await gone.stop()
        # The unreachable one gives way to the registered proxy the client did not hold.
        await until(lambda: spare in pool.sessions and pool.sessions[spare].channel is not None, 15)
        assert f"127.0.0.1:{gone.port}" not in pool.sessions
        assert await ask(client)
    finally:
        for net in nets:
            await net.stop()
