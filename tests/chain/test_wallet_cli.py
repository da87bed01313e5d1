"""`cocoon wallet` against a local chain: keys, balances, a channel's whole life, bad input."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cocoon.chain.local import LocalChainClient
from cocoon.chain.root import RootParams, deploy_root
from cocoon.cli import app
from cocoon.commands.common import format_ton, parse_ton

from .cli import error_line, ok, run_cli
from .marks import needs_local_chain

TON = 1_000_000_000


def test_ton_amounts_are_exact() -> None:
    assert parse_ton("1.5") == 1_500_000_000
    assert parse_ton("0.000000001") == 1
    assert parse_ton("12") == 12 * TON
    assert format_ton(1_500_000_000) == "1.5" and format_ton(1) == "0.000000001"
    assert format_ton(3 * TON) == "3" and format_ton(0) == "0"
    for bad in ("1.0000000001", "-1", "1e9", "", "1,5", ".5"):
        with pytest.raises(Exception, match="amount"):
            parse_ton(bad)


@needs_local_chain
async def test_wallet_and_channel_life(client: LocalChainClient, tmp_path: Path) -> None:
    ep = ["--endpoint", client.endpoint]
    payer_key, payee_key = tmp_path / "payer.key", tmp_path / "payee.key"
    new = json.loads(ok(await run_cli("wallet", "new", "--key-file", str(payer_key), "--json")))
    assert stat.S_IMODE(payer_key.stat().st_mode) == 0o600
    assert len(payer_key.read_text().split()) == 24
    again = await run_cli("wallet", "new", "--key-file", str(payer_key))
    assert "already exists" in error_line(again)
    payee = json.loads(ok(await run_cli("wallet", "new", "--key-file", str(payee_key), "--json")))
    show_payer = ["wallet", "show", "--key-file", str(payer_key), *ep, "--json"]

    shown = json.loads(ok(await run_cli(*show_payer)))
    assert shown["address"] == new["address"] and shown["friendly"] == new["friendly"]
    assert (shown["balance_nano"], shown["deployed"]) == (0, False)

    out = ok(await run_cli("wallet", "faucet", "--address", new["friendly"], "--amount", "10", *ep))
    assert "sent 10 TON" in out
    # The endpoint may come from the environment instead.
    env = {"COCOON_CHAIN_ENDPOINT": client.endpoint}
    out = ok(await run_cli("wallet", "show", "--key-file", str(payer_key), env=env))
    assert "balance: 10 TON (10000000000 nanotons)" in out and "deployed: no" in out

    ch = ["--key-file", str(payer_key), "--payee", payee["address"], "--network", "7"]
    ch += ["--close-delay", "600", *ep]
    assert "state: not deployed" in ok(await run_cli("wallet", "channel", *ch))
    assert "deployed with 2.5 TON" in ok(await run_cli("wallet", "deposit", *ch, "--amount", "2.5"))
    assert "topped up 0.5 TON" in ok(await run_cli("wallet", "deposit", *ch, "--amount", "0.5"))
    out = ok(await run_cli("wallet", "top-up", *ch, "--amount", "1.000000001"))
    assert "deposit: 4.000000001 TON" in out and "unredeemed: 4.000000001 TON" in out
    state = json.loads(ok(await run_cli("wallet", "channel", *ch, "--json")))
    assert state["deployed"] and state["deposit_nano"] == 4 * TON + 1
    assert (state["redeemed_nano"], state["seqno"], state["close_at"]) == (0, 0, 0)

    assert "exit code 212" in error_line(await run_cli("wallet", "withdraw", *ch))
    assert "closing" in ok(await run_cli("wallet", "close", *ch))
    line = error_line(await run_cli("wallet", "withdraw", *ch))
    assert "exit code 213" in line and "close delay" in line
    await client.advance(601)
    out = ok(await run_cli("wallet", "withdraw", *ch))
    assert "withdrawn" in out and "balance: 0 TON" in out
    shown = json.loads(ok(await run_cli(*show_payer)))
    assert shown["deployed"] and 10 * TON - TON // 10 < shown["balance_nano"] < 10 * TON

    # A root gives the network id and close delay: the same channel as giving them by hand.
    root = await deploy_root(client, new["address"], 7, RootParams(client_close_delay=600))
    by_root = ["--key-file", str(payer_key), "--payee", payee["address"], "--root", root, *ep]
    assert (
        json.loads(ok(await run_cli("wallet", "channel", *by_root, "--json")))["channel"]
        == (state["channel"])
    )

    # Bad input: one line each, exit 1.
    bad_payee = ["--key-file", str(payer_key), "--payee", "nope", "--network", "7"]
    bad_payee += ["--close-delay", "600", *ep]
    assert "not a TON address" in error_line(await run_cli("wallet", "channel", *bad_payee))
    missing = ["--key-file", str(tmp_path / "none.key"), "--payee", payee["address"]]
    missing += ["--network", "7", "--close-delay", "600", *ep]
    assert "does not exist" in error_line(await run_cli("wallet", "channel", *missing))
    line = error_line(await run_cli("wallet", "deposit", *ch, "--amount", "0.0000000001"))
    assert "at most 9 decimals" in line
    no_net = ["--key-file", str(payer_key), "--payee", payee["address"], *ep]
    assert "--network" in error_line(await run_cli("wallet", "channel", *no_net))
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    assert "garbage.key" in error_line(await run_cli("wallet", "show", "--key-file", str(garbage)))


def test_unreachable_chain_is_one_line(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    assert CliRunner().invoke(app, ["wallet", "new", "--key-file", str(key)]).exit_code == 0
    cmd = [sys.executable, "-m", "cocoon.cli", "wallet", "show", "--key-file", str(key)]
    cmd += ["--endpoint", "http://127.0.0.1:9/api/v2/"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cocoon: error: chain: "), p.stderr
