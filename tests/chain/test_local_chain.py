"""The local chain (contracts/chain/server.mjs) driven from Python through the toncenter client."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from cocoon.chain.channel import ChannelConfig, channel_init, raw_address
from cocoon.chain.local import LocalChain, LocalChainError
from cocoon.chain.toncenter import ChainError, TonCenterClient
from harness.chain import NEEDS_LOCAL_CHAIN

pytestmark = NEEDS_LOCAL_CHAIN

TON = 1_000_000_000
USER = "0:" + "07" * 32
PAYEE = "0:" + "08" * 32
PAYER_KEY = bytes(range(32))


def _channel_init() -> tuple[bytes, bytes]:
    cfg = ChannelConfig(1, 5, USER, PAYEE, PAYER_KEY, 3600)
    code, data, _ = channel_init(cfg)
    return code.to_boc(), data.to_boc()


async def test_faucet_deploy_get_methods_and_restart(tmp_path: Path) -> None:
    code, data = _channel_init()
    chain = LocalChain(tmp_path / "chain")
    await chain.start()
    try:
        async with chain.client() as c:
            # Faucet → balance, visible through getAddressInformation and getTransactions.
            await c.faucet(USER, 3 * TON)
            info = await c.get_address_information(USER)
            assert info.balance == 3 * TON
            assert info.state == "uninitialized"
            txs = await c.get_transactions(USER, limit=5)
            assert len(txs) == 1
            assert txs[0].in_msg is not None and txs[0].in_msg.value == 3 * TON
            assert txs[0].transaction_id == info.last_transaction_id

            # The clock moves only on request.
            t0 = int((await c.health())["now"])
            assert await c.advance(600) == t0 + 600
            assert int((await c.health())["now"]) == t0 + 600

            # Deploy a channel and read it back through runGetMethod.
            d = await c.deploy(code, data, TON)
            assert d["state"] == "active", d
            channel = d["address"]
            assert raw_address(channel) == raw_address(
                channel_init(ChannelConfig(1, 5, USER, PAYEE, PAYER_KEY, 3600))[2]
            )
            assert (await c.get_address_information(channel)).active
            params = await c.run_get_method(channel, "params")
            assert params.exit_code == 0
            assert params.int_at(0) == 1  # networkId
            assert params.int_at(1) == 5  # channelId
            assert params.int_at(4) == int.from_bytes(PAYER_KEY, "big")
            assert params.int_at(5) == 3600
            state = await c.run_get_method(channel, "state")
            assert [state.int_at(i) for i in range(5)] == [0, 0, 0, 0, 3600]
            assert 0 < state.int_at(5) <= TON  # balance, fees taken
            # The JSON-RPC form answers the same.
            raw = await c.json_rpc("runGetMethod", {"address": channel, "method": "unredeemed"})
            assert msgspec.json.decode(raw)["stack"] == [["num", "0x0"]]
            missing = await c.run_get_method(channel, "no_such_method")
            assert missing.exit_code != 0

            with pytest.raises(ChainError) as err:
                await c.get_address_information("not-an-address")
            assert err.value.code == 416
            with pytest.raises(ChainError) as err:
                await c.send_boc(b"\x00")
            assert err.value.code == 400
            balance = (await c.get_address_information(channel)).balance
    finally:
        await chain.stop()

    # Restart on the same data dir: accounts, balances, transactions and clock survive.
    async with LocalChain(tmp_path / "chain") as again:
        assert again.ready is not None and again.ready.loaded
        async with TonCenterClient(again.endpoint, api_key="ignored-locally") as c:
            assert await c.get_balance(USER) == 3 * TON
            assert (await c.get_address_information(channel)).balance == balance
            assert len(await c.get_transactions(USER)) == 1
            state = await c.run_get_method(channel, "state")
            assert state.int_at(4) == 3600
        async with again.client() as dev:
            assert int((await dev.health())["now"]) >= t0 + 600


async def test_clear_error_without_node_modules(tmp_path: Path) -> None:
    fake = tmp_path / "contracts"
    (fake / "chain").mkdir(parents=True)
    (fake / "chain" / "server.mjs").write_text("")
    with pytest.raises(LocalChainError, match=r"npm ci --prefix contracts"):
        await LocalChain(tmp_path / "data", contracts=fake).start()


async def test_unreachable_endpoint_is_a_chain_error() -> None:
    async with TonCenterClient("http://127.0.0.1:9/api/v2", timeout_s=5) as c:
        with pytest.raises(ChainError) as err:
            await c.get_balance(USER)
    assert err.value.code == 0


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_cli_runs_in_foreground_and_prints_endpoint(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "cocoon.cli", "chain", "--port", "0"]
    cmd += ["--data-dir", str(tmp_path / "chain"), "--manual-clock"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
        # As from a terminal: a suite started in the background (`nohup ... &`) has
        # SIGINT ignored, and a child inherits that, so Ctrl+C never reached it.
        preexec_fn=_interruptible,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("http://127.0.0.1:") and line.endswith("/api/v2/"), line

        async def check() -> None:
            async with TonCenterClient(line) as c:
                info = await c.get_address_information(USER)
                assert info.balance == 0

        asyncio.run(check())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert (tmp_path / "chain" / "state.json").is_file()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
