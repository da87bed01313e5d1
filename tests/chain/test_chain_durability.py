"""The local chain's journal: what was answered survives kill -9; a torn last line is
dropped, a corrupt middle one refused; compaction folds the journal into the snapshot."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.chain.local import LocalChainClient, contracts_dir, find_node
from cocoon.chain.wallet import InternalMessage, WalletV4
from harness.chain import NEEDS_LOCAL_CHAIN

pytestmark = NEEDS_LOCAL_CHAIN

TON = 1_000_000_000


@asynccontextmanager
async def _server(data_dir: Path, *extra: str) -> AsyncIterator[tuple[LocalChainClient, int]]:
    """The service as a bare process, so the test can kill -9 it; (client, pid)."""
    server = contracts_dir() / "chain" / "server.mjs"
    proc = await asyncio.create_subprocess_exec(
        find_node(),
        str(server),
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        *extra,
        cwd=contracts_dir(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        client = LocalChainClient(ready["endpoint"])
        try:
            yield client, proc.pid
        finally:
            await client.close()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def _snapshot(c: LocalChainClient, addresses: list[str]) -> dict[str, object]:
    """What a restart must reproduce: balances, last transactions, counts, the clock."""
    out: dict[str, object] = {"health": await c.health()}
    for a in addresses:
        info = await c.get_address_information(a)
        txs = await c.get_transactions(a, 50)
        out[a] = (info.balance, info.state, info.last_transaction_id, [t.data for t in txs])
    return out


async def test_kill_9_loses_nothing_answered(tmp_path: Path) -> None:
    data = tmp_path / "chain"
    keys = [Ed25519PrivateKey.generate() for _ in range(6)]
    async with _server(data) as (c, pid):
        wallets = [WalletV4(c, k) for k in keys]
        addresses = [w.raw_address for w in wallets]
        await asyncio.gather(*(c.faucet(a, 5 * TON) for a in addresses))
        # Concurrent transfers (group-committed together), then the clock moves.
        await asyncio.gather(
            *(
                w.send([InternalMessage(addresses[(i + 1) % 6], TON // 3, bounce=False)])
                for i, w in enumerate(wallets)
            )
        )
        await c.advance(100)
        before = await _snapshot(c, addresses)
        os.kill(pid, signal.SIGKILL)
    assert (data / "journal.jsonl").stat().st_size > 0  # the changes are in the journal
    assert json.loads((data / "state.json").read_text())["seq"] == 0  # and only there

    # Torn last line (a write cut by the kill): dropped, nothing else lost.
    with (data / "journal.jsonl").open("a") as f:
        f.write('{"seq": 99999, "lt": "1')
    async with _server(data) as (c, _):
        assert await _snapshot(c, addresses) == before
        # And the chain goes on from there.
        await WalletV4(c, keys[0]).send([InternalMessage(addresses[1], 1, bounce=False)])


async def test_corrupt_journal_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "chain"
    async with _server(data) as (c, pid):
        await c.faucet("0:" + "07" * 32, TON)
        await c.faucet("0:" + "08" * 32, TON)
        os.kill(pid, signal.SIGKILL)
    lines = (data / "journal.jsonl").read_text().splitlines()
    assert len(lines) >= 2
    lines[0] = lines[0][:20]
    (data / "journal.jsonl").write_text("\n".join(lines) + "\n")
    # The service exits before its ready line (nothing to decode).
    with pytest.raises(json.JSONDecodeError):
        async with _server(data):
            pass


async def test_compaction_keeps_everything(tmp_path: Path) -> None:
    data = tmp_path / "chain"
    addresses = ["0:" + f"{i:02x}" * 32 for i in range(1, 30)]
    async with _server(data, "--compact-bytes", "4000") as (c, pid):
        for a in addresses:
            await c.faucet(a, TON)
        before = await _snapshot(c, addresses)
        os.kill(pid, signal.SIGKILL)
    # Each record is > 1 kB: the journal was folded into the snapshot several times.
    assert (data / "journal.jsonl").stat().st_size < 4000 + 4000
    saved = json.loads((data / "state.json").read_text())
    assert saved["seq"] > 0
    async with _server(data) as (c, _):
        after = await _snapshot(c, addresses)
    assert after == before
