"""Wallet v5r1 without a chain: its code and addresses against published values, the
layout of a signed transfer, the version and network plumbing (no Node needed)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import get_args

import msgspec
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytoniq_core.boc import Address, Builder, Cell

from cocoon.chain import wallet as w
from cocoon.chain.toncenter import ChainError, TonCenterClient
from cocoon.config import ClientConfig, ConfigError, PaymentsConfig, load

TON = 1_000_000_000
PAYEE = "0:" + "08" * 32

# Published vectors: one Ed25519 seed and the addresses other SDKs derive for it
# (TonSwift's wallet tests: v4r2 and v5r1 on mainnet), and a second seed with its
# mainnet v5r1 address (Trust Wallet Core's TON tests).
SEED_A = bytes.fromhex("34aebb9ea454967f16c407c0f8877763e86212116468169d93a3dcbcafe530c9")
PUBLIC_A = "5754865e86d0ade1199301bbb0319a25ed6b129c4b0a57f28f62449b3df9c522"
V4R2_A = "EQDnBF4JTFKHTYjulEJyNd4dstLGH1m51UrLdu01_tw4z2Au"
V5R1_A = "UQBiUbwjoB56b7CYtoiPnY5vPh2Fwjva6jEPBhqnttjQKpce"
SEED_B = bytes.fromhex("3570e35f54cfb843f2cfaf2b8cae7ceeb7b32225d7dbbd86f611056d74d9073e")
V5R1_B = "UQAU3o5-Sp1MYRpw3U7b_wmARxqI49LxiFhEoVCxpUKjTYXk"


def _key(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def _offline(key: Ed25519PrivateKey, global_id: int = w.MAINNET_GLOBAL_ID) -> w.WalletV5R1:
    return w.WalletV5R1(None, key, network_global_id=global_id)  # type: ignore[arg-type]


def test_code_and_published_addresses() -> None:
    assert w.WALLET_V5R1_CODE.hash.hex() == w.WALLET_V5R1_CODE_HASH
    a = _key(SEED_A)
    assert w.public_key_bytes(a).hex() == PUBLIC_A
    assert _offline(a).address == Address(V5R1_A)
    assert w.WalletV4(None, a).address == Address(V4R2_A)  # type: ignore[arg-type]
    assert _offline(_key(SEED_B)).address == Address(V5R1_B)

    # wallet_id = global id XOR (1 | workchain 0 | version 0 | subwallet 0): the values
    # wallet apps use on mainnet (0x7fffff11) and testnet (0x7ffffffd).
    assert w.wallet_id_v5r1(w.MAINNET_GLOBAL_ID) == 2147483409 == 0x7FFFFF11
    assert w.wallet_id_v5r1(w.TESTNET_GLOBAL_ID) == 0x7FFFFFFD
    assert w.wallet_id_v5r1(w.MAINNET_GLOBAL_ID, subwallet=1) == 0x7FFFFF10
    for bad in ({"subwallet": 2**15}, {"workchain": 128}):
        with pytest.raises(ValueError):
            w.wallet_id_v5r1(w.MAINNET_GLOBAL_ID, **bad)
    # One key, one address per network: a testnet transfer cannot land on mainnet.
    testnet = _offline(a, w.TESTNET_GLOBAL_ID)
    assert testnet.address != _offline(a).address
    assert testnet.wallet_id == 0x7FFFFFFD

    # Init data: is_signature_allowed, seqno 0, wallet_id, public key, no extensions.
    d = _offline(a).data.begin_parse()
    assert d.load_bit() == 1 and d.load_uint(32) == 0 and d.load_uint(32) == 0x7FFFFF11
    assert d.load_bytes(32).hex() == PUBLIC_A and d.load_bit() == 0 and d.remaining_bits == 0


def _actions(out_list: Cell) -> list[tuple[int, Cell]]:
    """(mode, message) of an OutList, in the order TVM runs them (innermost first)."""
    found: list[tuple[int, Cell]] = []
    cell = out_list
    while cell.bits or cell.refs:
        s = cell.begin_parse()
        prev = s.load_ref()
        assert s.load_uint(32) == 0x0EC3C86D  # action_send_msg
        found.append((s.load_uint(8), s.load_ref()))
        assert s.remaining_bits == 0 and s.remaining_refs == 0
        cell = prev
    return found[::-1]


def test_transfer_is_signed_external_with_the_signature_last() -> None:
    wallet = _offline(_key(SEED_A))
    msgs = [
        w.InternalMessage(PAYEE, TON, body=Builder().store_uint(7, 32).end_cell()),
        w.InternalMessage(PAYEE, 2 * TON, bounce=False, mode=w.IGNORE_ERRORS),
    ]
    ext = wallet.transfer(msgs, seqno=5, valid_until=1000, deploy=True)
    m = Cell.one_from_boc(ext.to_boc()).begin_parse()
    assert m.load_uint(2) == 0b10 and m.load_uint(2) == 0  # ext_in_msg_info, src addr_none
    assert m.load_address() == wallet.address and m.load_coins() == 0
    assert m.load_bit() and m.load_bit()  # state init, as a ref
    assert Address((0, m.load_ref().hash)) == wallet.address
    assert m.load_bit()  # body as a ref
    body = m.load_ref().begin_parse()

    signed_bits = body.load_bits(body.remaining_bits - 512)
    signature = body.load_bytes(64)
    out_list = body.load_ref()
    signed = Builder().store_bits(signed_bits).store_ref(out_list).end_cell()
    wallet.key.public_key().verify(signature, signed.hash)  # over opcode .. has_other_actions

    s = signed.begin_parse()
    assert s.load_uint(32) == 0x7369676E  # signed_external
    assert (s.load_uint(32), s.load_uint(32), s.load_uint(32)) == (0x7FFFFF11, 1000, 5)
    assert s.load_bit() == 1 and s.load_ref().hash == out_list.hash  # Just ^OutList
    assert s.load_bit() == 0 and s.remaining_bits == 0  # no extension actions
    actions = _actions(out_list)
    assert [mode for mode, _ in actions] == [3, 2]
    assert [msg.hash for _, msg in actions] == [w.internal_message(x).hash for x in msgs]

    # Without deploy: no state init.
    plain = Cell.one_from_boc(wallet.transfer(msgs[:1], seqno=6, valid_until=1).to_boc())
    p = plain.begin_parse()
    assert p.load_uint(4) == 0b1000 and p.load_address() == wallet.address
    assert p.load_coins() == 0 and p.load_bit() == 0


def test_transfer_refuses_what_the_contract_would_drop() -> None:
    wallet = _offline(_key(SEED_A))
    with pytest.raises(w.WalletError, match="1 to 255"):
        wallet.transfer([], seqno=0, valid_until=1)
    with pytest.raises(w.WalletError, match="1 to 255"):
        wallet.transfer([w.InternalMessage(PAYEE, 1)] * 256, seqno=0, valid_until=1)
    # The contract would take the seqno and send nothing (exit code 137 after its commit).
    with pytest.raises(w.WalletError, match="send mode"):
        wallet.transfer(
            [w.InternalMessage(PAYEE, 1, mode=w.PAY_FEES_SEPARATELY)], seqno=0, valid_until=1
        )
    assert wallet.transfer([w.InternalMessage(PAYEE, 1)] * 255, seqno=0, valid_until=1)


async def test_open_wallet_by_version() -> None:
    key = _key(SEED_A)
    client = TonCenterClient("http://127.0.0.1:9/api/v2/")  # never reached below
    assert isinstance(await w.open_wallet(client, key), w.WalletV4)
    assert isinstance(await w.open_wallet(client, key, "v4r2"), w.WalletV4)
    v5 = await w.open_wallet(client, key, "v5r1", global_id=w.TESTNET_GLOBAL_ID)
    assert isinstance(v5, w.WalletV5R1) and v5.address == _offline(key, -3).address
    with pytest.raises(w.WalletError, match="unknown wallet version 'v3r2'"):
        await w.open_wallet(client, key, "v3r2")
    # The config takes the same names, and refuses others with the field's name.
    field = next(f for f in msgspec.structs.fields(PaymentsConfig) if f.name == "wallet_version")
    assert get_args(field.type) == w.WALLET_VERSIONS and field.default == "v4r2"


def test_wallet_version_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COCOON_CLIENT_PAYMENTS__WALLET_VERSION", "v5r1")
    assert load(ClientConfig).payments.wallet_version == "v5r1"
    monkeypatch.setenv("COCOON_CLIENT_PAYMENTS__WALLET_VERSION", "v5")
    with pytest.raises(ConfigError, match="wallet_version"):
        load(ClientConfig)


async def _toncenter(global_id: int | None) -> AsyncIterator[str]:
    """A toncenter-shaped server: getConfigParam 19 answers ``global_id`` (None: the
    method is unknown, and there is no local chain's /dev/health either)."""

    async def handle(request: web.Request) -> web.Response:
        if request.match_info["method"] != "getConfigParam" or global_id is None:
            return web.json_response({"ok": False, "error": "not found", "code": 404}, status=404)
        assert request.query["config_id"] == "19"
        cell = Builder().store_int(global_id, 32).end_cell()
        config = {"@type": "tvm.cell", "bytes": base64.b64encode(cell.to_boc()).decode()}
        return web.json_response({"ok": True, "result": {"@type": "configInfo", "config": config}})

    app = web.Application()
    app.router.add_get("/api/v2/{method}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/api/v2/"
    finally:
        await runner.cleanup()


@pytest.fixture
async def testnet() -> AsyncIterator[str]:
    async for endpoint in _toncenter(w.TESTNET_GLOBAL_ID):
        yield endpoint


@pytest.fixture
async def no_config() -> AsyncIterator[str]:
    async for endpoint in _toncenter(None):
        yield endpoint


async def test_v5r1_wallet_follows_the_chains_network(testnet: str, no_config: str) -> None:
    key = _key(SEED_A)
    async with TonCenterClient(testnet) as c:
        assert await w.network_global_id(c) == w.TESTNET_GLOBAL_ID
        wallet = await w.open_wallet(c, key, "v5r1")
    assert wallet.address == _offline(key, w.TESTNET_GLOBAL_ID).address
    assert wallet.address != Address(V5R1_A)
    # A chain that cannot say which network it is gets no guessed (mainnet) address.
    async with TonCenterClient(no_config) as c:
        with pytest.raises(ChainError) as err:
            await w.open_wallet(c, key, "v5r1")
    assert err.value.code == 404


def test_cli_v5r1_key_needs_the_network_and_leaves_no_key_behind(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    cmd = [sys.executable, "-m", "cocoon.cli", "wallet", "new", "--key-file", str(key)]
    cmd += ["--wallet-version", "v5r1", "--endpoint", "http://127.0.0.1:9/api/v2/"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cocoon: error: chain: "), p.stderr
    assert not key.exists()
