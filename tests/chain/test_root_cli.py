"""`cocoon root` against a local chain: deploy, show, every change, refusals, defaults."""

from __future__ import annotations

import asyncio
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cocoon.chain.local import LocalChainClient
from cocoon.chain.root import RootParams
from cocoon.chain.wallet import WalletV4, load_key_file
from cocoon.cli import app
from cocoon.commands.root_args import ParamFlags, param_changes, parse_endpoint, parse_hash

from .cli import error_line, ok, run_cli
from .marks import needs_local_chain

TON = 1_000_000_000
H1, H2, H3 = "11" * 32, "22" * 32, "33" * 32


@pytest.fixture(autouse=True)
def _no_ambient_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing from the environment or a `cocoon up` in the current folder leaks in."""
    for var in ("COCOON_ROOT", "COCOON_CHAIN_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


async def _cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return await run_cli("root", *args, env=env)


def _json(r: Result) -> dict[str, Any]:
    return json.loads(ok(r))  # type: ignore[no-any-return]


def test_one_param_flag_per_root_param() -> None:
    # set-params and deploy name each flag after its RootParams field.
    assert [f.name for f in fields(ParamFlags)] == [f.name for f in fields(RootParams)]
    given = ParamFlags(prompt_bp=20_000, min_worker_stake="1.5")
    assert param_changes(given) == {"prompt_bp": 20_000, "min_worker_stake": 1_500_000_000}


def test_hashes_and_endpoints_parse() -> None:
    assert parse_hash("model", "llama@sha256:" + H1) == (3, H1)
    assert parse_hash("worker-image", "sha256:" + H2.upper()) == (2, H2)
    assert parse_hash("proxy-image", H3) == (1, H3)
    for kind, text, msg in [
        ("image", H1, "expected one of"),
        ("model", "ab" * 31, "64 hex digits or name@sha256"),
        ("proxy-image", "x@sha256:" + H1, "expected 64 hex digits"),
        ("model", "x@sha256:" + "g" * 64, "name@sha256"),
    ]:
        with pytest.raises(Exception, match=msg):
            parse_hash(kind, text)
    assert parse_endpoint("proxy.example:08443") == "proxy.example:8443"
    assert parse_endpoint("[::1]:443") == "[::1]:443"
    for bad in ("proxy.example", ":443", "h:0", "h:65536", "::1:443", "h:x"):
        with pytest.raises(Exception, match="endpoint"):
            parse_endpoint(bad)


async def _wallet(client: LocalChainClient, key_file: Path, funds: int) -> str:
    r = await asyncio.to_thread(
        CliRunner().invoke, app, ["wallet", "new", "--key-file", str(key_file), "--json"]
    )
    address: str = json.loads(ok(r))["address"]
    if funds:
        await client.faucet(address, funds)
    return address


@needs_local_chain
async def test_operator_runs_the_root(client: LocalChainClient, tmp_path: Path) -> None:
    ep = ["--endpoint", client.endpoint]
    owner_key, stranger_key = tmp_path / "owner.key", tmp_path / "stranger.key"
    owner = await _wallet(client, owner_key, 10 * TON)
    stranger = await _wallet(client, stranger_key, 2 * TON)
    as_owner = ["--key-file", str(owner_key), *ep]

    # An unfunded owner cannot deploy: said before anything is sent.
    poor = tmp_path / "poor.key"
    await _wallet(client, poor, 0)
    line = error_line(await _cli("deploy", "--network-id", "7", "--key-file", str(poor), *ep))
    assert "has 0 TON" in line and "fund it" in line

    deploy = ["deploy", "--network-id", "7", *as_owner]
    deploy += ["--min-worker-stake", "2.5", "--tier-gpu-bp", "12500", "--base-price-nano", "9"]
    shown = _json(await _cli(*deploy, "--json"))
    root = shown["root"]
    assert shown["deployed"] and shown["owner"] == owner and shown["network_id"] == 7
    assert shown["params"]["min_worker_stake"] == 2_500_000_000
    assert (shown["params"]["tier_gpu_bp"], shown["params"]["base_price_nano"]) == (12_500, 9)
    assert shown["params"]["min_proxy_stake"] == 10 * TON  # the default
    assert "already deployed" in ok(await _cli(*deploy))
    on_root = ["--root", root, *as_owner]

    # Params: only those given change.
    out = ok(
        await _cli("set-params", "--unbonding-delay", "60", "--min-proxy-stake", "1", *on_root)
    )
    assert "set min_proxy_stake=1 TON, unbonding_delay=60; root version 1" in out
    shown = _json(await _cli("show", "--root", root, *ep, "--json"))
    p = shown["params"]
    assert (p["unbonding_delay"], p["min_proxy_stake"], p["min_worker_stake"]) == (
        60,
        TON,
        2_500_000_000,
    )
    assert "at least one param" in error_line(await _cli("set-params", *on_root))
    line = error_line(await _cli("set-params", "--tier-tee-bp", "0", *on_root))
    assert "params out of range (exit 105)" in line
    line = error_line(await _cli("set-params", "--min-worker-stake", "1.0000000001", *on_root))
    assert "at most 9 decimals" in line
    assert "tier_gpu_bp" in error_line(
        await _cli("set-params", "--tier-gpu-bp", str(2**32), *on_root)
    )

    # Lists: a model by its full id, an image with the sha256: prefix, removal.
    assert f"allowed model {H1}" in ok(
        await _cli("allow", "model", f"smollm@sha256:{H1}", *on_root)
    )
    ok(await _cli("allow", "worker-image", f"sha256:{H2.upper()}", *on_root))
    ok(await _cli("allow", "worker-image", H3, *on_root))
    ok(await _cli("allow", "proxy-image", H3, *on_root))
    assert "disallowed" in ok(await _cli("disallow", "worker-image", H3, *on_root))
    assert "expected one of" in error_line(await _cli("allow", "image", H1, *on_root))
    assert "64 hex digits" in error_line(await _cli("allow", "model", "abc", *on_root))

    # Proxies: register, replace, remove; bad input refused before sending.
    p1, p2 = "0:" + "a1" * 32, "0:" + "b2" * 32
    base = ["--root", root, "--key-file", str(owner_key), "--chain-endpoint", client.endpoint]
    add = ["add-proxy", p1, "--endpoint", "proxy1.example:8443", "--node-key", "01" * 32]
    assert "registered proxy" in ok(await _cli(*add, *base))
    ok(await _cli("add-proxy", p2, "--endpoint", "[::1]:9443", "--node-key", "02" * 32, *base))
    ok(await _cli("add-proxy", p2, "--endpoint", "p2.example:443", "--node-key", "03" * 32, *base))
    bad_ep = ["add-proxy", p1, "--endpoint", "nowhere", "--node-key", "01" * 32, *base]
    assert "expected host:port" in error_line(await _cli(*bad_ep))
    bad_key = ["add-proxy", p1, "--endpoint", "a:1", "--node-key", "01" * 31, *base]
    assert "node key" in error_line(await _cli(*bad_key))
    bad_wallet = ["add-proxy", "nope", "--endpoint", "a:1", "--node-key", "01" * 32, *base]
    assert "not a TON address" in error_line(await _cli(*bad_wallet))
    zero_key = ["add-proxy", p1, "--endpoint", "a:1", "--node-key", "00" * 32, *base]
    assert "zero node key" in error_line(await _cli(*zero_key))
    assert "removed proxy" in ok(await _cli("remove-proxy", p1, *on_root))

    shown = _json(await _cli("show", "--root", root, *ep, "--json"))
    assert shown["version"] == 10
    assert (shown["models"], shown["worker_images"], shown["proxy_images"]) == ([H1], [H2], [H3])
    assert shown["proxies"] == [{"wallet": p2, "endpoint": "p2.example:443", "node_key": "03" * 32}]
    text = ok(await _cli("show", "--root", root, *ep))
    assert f"owner: {owner}" in text and "version: 10" in text
    assert "minimum stakes: worker 2.5 TON, proxy 1 TON" in text
    assert f"  {p2}  p2.example:443  node key {'03' * 32}" in text

    # Someone else is refused by the root itself; ownership moves by set-owner.
    as_stranger = ["--root", root, "--key-file", str(stranger_key), *ep]
    line = error_line(await _cli("allow", "model", H2, *as_stranger))
    assert "not the owner (exit 102)" in line
    assert f"owner is now {stranger}" in ok(await _cli("set-owner", stranger, *on_root))
    assert "exit 102" in error_line(await _cli("allow", "model", H2, *on_root))
    out = _json(await _cli("allow", "model", H2, *as_stranger, "--json"))
    assert out["owner"] == stranger and out["models"] == sorted([H1, H2]) and out["version"] == 12


@needs_local_chain
async def test_the_root_of_cocoon_up_here_is_the_default(
    client: LocalChainClient, tmp_path: Path
) -> None:
    run = tmp_path / ".cocoon" / "run"
    run.mkdir(parents=True)
    # Without a root anywhere: one line saying where it may come from.
    assert "which root?" in error_line(await _cli("show", "--endpoint", client.endpoint))

    # The owner key where `cocoon up` keeps it, the root and endpoint in root.json.
    owner = await _wallet(client, tmp_path / ".cocoon" / "owner.key", 10 * TON)
    root = _json(
        await _cli("deploy", "--network-id", "42", "--endpoint", client.endpoint, "--json")
    )["root"]
    (run / "root.json").write_text(
        json.dumps({"root": root, "endpoint": client.endpoint, "owner_key": ".cocoon/owner.key"})
    )
    assert _json(await _cli("show", "--json"))["owner"] == owner
    assert "root version 1" in ok(await _cli("allow", "model", H1))
    # $COCOON_ROOT wins over root.json; a root that is not there is one line.
    env = {"COCOON_ROOT": "0:" + "ab" * 32}
    assert "no root contract" in error_line(await _cli("show", env=env))
    wallet = WalletV4(client, load_key_file(tmp_path / ".cocoon" / "owner.key"))
    assert wallet.raw_address == owner


def test_unreachable_chain_is_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        app,
        ["root", "show", "--root", "0:" + "ab" * 32, "--endpoint", "http://127.0.0.1:9/api/v2/"],
    )
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cocoon: error: chain: "), r.stderr


@needs_local_chain
async def test_a_v5r1_owner(client: LocalChainClient, tmp_path: Path) -> None:
    key = tmp_path / "owner.key"
    new = ["wallet", "new", "--key-file", str(key), "--wallet-version", "v5r1"]
    new += ["--endpoint", client.endpoint, "--json"]
    owner = json.loads(ok(await asyncio.to_thread(CliRunner().invoke, app, new)))["address"]
    await client.faucet(owner, 5 * TON)
    as_owner = ["--key-file", str(key), "--wallet-version", "v5r1", "--endpoint", client.endpoint]
    root = _json(await _cli("deploy", "--network-id", "3", *as_owner, "--json"))
    assert root["owner"] == owner
    out = _json(await _cli("allow", "proxy-image", H1, "--root", root["root"], *as_owner, "--json"))
    assert (out["proxy_images"], out["version"]) == ([H1], 1)
