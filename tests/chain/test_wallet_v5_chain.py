"""Wallet v5r1 on the local chain (the official code, run unmodified by @ton/sandbox):
deployed by its first transfer, seqno, refusals, channels, and the node and CLI paths."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.chain.channel import ChannelConfig
from cocoon.chain.local import LocalChainClient
from cocoon.chain.ops import ChannelOps
from cocoon.chain.toncenter import ChainError, TonCenterClient
from cocoon.chain.wallet import (
    MAINNET_GLOBAL_ID,
    InternalMessage,
    WalletV4,
    WalletV5R1,
    key_from_mnemonic,
    load_key_file,
    new_mnemonic,
    open_wallet,
    save_key_file,
)
from cocoon.config import PaymentsConfig
from cocoon.payments import link as link_module
from cocoon.payments.link import ChainLink
from harness.chain import NEEDS_LOCAL_CHAIN

from .cli import ok, run_cli

pytestmark = NEEDS_LOCAL_CHAIN

TON = 1_000_000_000
PAYEE = "0:" + "0a" * 32
ROOT = "0:" + "01" * 32


async def _now(c: LocalChainClient) -> int:
    return int((await c.health())["now"])


async def test_deploy_send_replay_and_expiry(client: LocalChainClient) -> None:
    c = client
    key = Ed25519PrivateKey.generate()
    # The local chain runs mainnet's configuration: the wallet apps' mainnet address.
    wallet = await open_wallet(c, key, "v5r1")
    assert isinstance(wallet, WalletV5R1) and wallet.network_global_id == MAINNET_GLOBAL_ID
    await c.faucet(wallet.raw_address, 5 * TON)
    assert not await wallet.is_deployed() and await wallet.seqno() == 0

    # The first transfer carries the state init and deploys the wallet.
    assert await wallet.send([InternalMessage(PAYEE, TON, bounce=False)]) == 0
    assert await wallet.is_deployed() and await wallet.seqno() == 1
    assert await c.get_balance(PAYEE) == TON
    info = await c.get_address_information(wallet.raw_address)
    assert info.code and info.data
    for method, want in [
        ("get_subwallet_id", wallet.wallet_id),
        ("get_public_key", int.from_bytes(wallet.public_key, "big")),
        ("is_signature_allowed", -1),
    ]:
        r = await c.run_get_method(wallet.raw_address, method)
        assert r.exit_code == 0 and r.int_at(0) == want, method

    # Several messages in one transfer, in order.
    other = "0:" + "0b" * 32
    await wallet.send(
        [InternalMessage(PAYEE, TON // 2, bounce=False), InternalMessage(other, 1, bounce=False)]
    )
    assert await wallet.seqno() == 2
    assert await c.get_balance(PAYEE) == TON + TON // 2 and await c.get_balance(other) == 1

    # A transfer goes through once: the same external message again is refused.
    ext = wallet.transfer(
        [InternalMessage(PAYEE, TON // 4, bounce=False)], seqno=2, valid_until=await _now(c) + 60
    )
    await c.send_boc(ext.to_boc())
    assert await wallet.seqno() == 3
    with pytest.raises(ChainError):
        await c.send_boc(ext.to_boc())
    assert await wallet.seqno() == 3
    assert await c.get_balance(PAYEE) == TON + TON // 2 + TON // 4

    # Past valid_until (the chain's clock, moved on by hand) it is refused too.
    late = wallet.transfer(
        [InternalMessage(PAYEE, 1, bounce=False)], seqno=3, valid_until=await _now(c) + 60
    )
    await c.advance(61)
    with pytest.raises(ChainError):
        await c.send_boc(late.to_boc())
    # So is one signed by another key for this wallet's address and seqno.
    forged = WalletV5R1(c, Ed25519PrivateKey.generate())
    forged.address, forged.data = wallet.address, wallet.data
    stolen = forged.transfer(
        [InternalMessage(PAYEE, 1, bounce=False)], seqno=3, valid_until=await _now(c) + 60
    )
    with pytest.raises(ChainError):
        await c.send_boc(stolen.to_boc())
    assert await wallet.seqno() == 3
    assert await c.get_balance(PAYEE) == TON + TON // 2 + TON // 4

    # The wallet still works after the refusals.
    assert await wallet.send([InternalMessage(PAYEE, 1, bounce=False)]) == 3


async def test_channel_paid_from_a_v5r1_wallet(client: LocalChainClient) -> None:
    c = client
    payer = WalletV5R1(c, key_from_mnemonic(new_mnemonic()))
    await c.faucet(payer.raw_address, 10 * TON)
    payee = WalletV4(c, Ed25519PrivateKey.generate())
    cfg = ChannelConfig(
        network_id=7,
        channel_id=1,
        payer=payer.address,
        payee=payee.address,
        payer_key=payer.public_key,
        close_delay=600,
    )
    ops = ChannelOps(c, payer, cfg, confirm_timeout_s=20)
    assert await ops.deploy(3 * TON) is True  # also deploys the wallet itself
    await ops.top_up(TON)
    st = await ops.state()
    assert st is not None and st.deposit == 4 * TON
    params = await ops.params()
    assert params is not None and params.payer == payer.address
    assert await payer.seqno() == 2


async def test_node_opens_its_wallet_by_config(
    client: LocalChainClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = client

    async def any_root(_client: TonCenterClient, address: str) -> object:
        return SimpleNamespace(address=address)  # the root's terms are not what this is about

    monkeypatch.setattr(link_module, "read_root", any_root)
    key_file = tmp_path / "wallet.key"
    save_key_file(key_file, new_mnemonic())
    key = load_key_file(key_file)
    base = PaymentsConfig(chain_endpoint=c.endpoint, root=ROOT, key_file=str(key_file))
    links = [await ChainLink.open(base)]
    links.append(await ChainLink.open(msgspec.structs.replace(base, wallet_version="v5r1")))
    try:
        v4, v5 = (link.wallet for link in links)
        assert isinstance(v4, WalletV4) and isinstance(v5, WalletV5R1)
        assert links[0].address == WalletV4(c, key).raw_address
        assert links[1].address == WalletV5R1(c, key).raw_address != links[0].address
        assert links[1].public_key == links[0].public_key  # one key signs vouchers either way
    finally:
        for link in links:
            await link.close()


async def test_cli_wallet_version(client: LocalChainClient, tmp_path: Path) -> None:
    c = client
    ep = ["--endpoint", c.endpoint]
    key_file = tmp_path / "payer.key"
    v5 = ["--wallet-version", "v5r1"]
    new = json.loads(
        ok(await run_cli("wallet", "new", "--key-file", str(key_file), *v5, *ep, "--json"))
    )
    key = load_key_file(key_file)
    assert new["wallet_version"] == "v5r1"
    assert new["address"] == WalletV5R1(c, key).raw_address != WalletV4(c, key).raw_address

    # The same key file: each version shows its own address; v4r2 stays the default.
    show = ["wallet", "show", "--key-file", str(key_file), *ep, "--json"]
    assert json.loads(ok(await run_cli(*show, *v5)))["address"] == new["address"]
    shown = json.loads(ok(await run_cli(*show)))
    assert shown["wallet_version"] == "v4r2" and shown["address"] == WalletV4(c, key).raw_address

    await c.faucet(new["address"], 10 * TON)
    ch = ["--key-file", str(key_file), "--payee", PAYEE, "--network", "7", "--close-delay", "600"]
    out = ok(await run_cli("wallet", "deposit", *ch, *v5, *ep, "--amount", "2"))
    assert "deployed with 2 TON" in out
    by_v5 = json.loads(ok(await run_cli("wallet", "channel", *ch, *v5, *ep, "--json")))
    assert by_v5["deployed"] and by_v5["deposit_nano"] == 2 * TON
    # The v4r2 wallet of that key pays into another channel, not deployed.
    by_v4 = json.loads(ok(await run_cli("wallet", "channel", *ch, *ep, "--json")))
    assert by_v4["channel"] != by_v5["channel"] and not by_v4["deployed"]
