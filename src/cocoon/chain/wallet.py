"""A node's TON wallet: keys, the wallet version, and which network it is on.

Nodes and the CLI open their wallet here (:func:`open_wallet`) from a key file and a
version name, ``"v4r2"`` (the default, :mod:`.wallet_v4`) or ``"v5r1"`` (TON's current
default wallet, :mod:`.wallet_v5`), and then use the :class:`Wallet` interface only.
The same key has a different address under each version, so the version is part of
a node's configuration (``payments.wallet_version``), not something to guess.

A v5r1 address also depends on the network (its wallet id carries the network's
global id): :func:`network_global_id` asks the chain, so a node on testnet gets the
address a wallet app shows for the same key on testnet.

Everything the wallet modules export is re-exported here.
"""

from __future__ import annotations

import base64
from typing import Literal, get_args

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytoniq_core.boc import Cell

from .local import LocalChainClient
from .toncenter import ChainError, TonCenterClient
from .wallet_base import (
    IGNORE_ERRORS,
    PAY_FEES_SEPARATELY,
    InternalMessage,
    Wallet,
    WalletError,
    external_message,
    internal_message,
    public_key_bytes,
)
from .wallet_keys import key_from_mnemonic, load_key_file, new_mnemonic, save_key_file
from .wallet_v4 import DEFAULT_WALLET_ID, WALLET_V4R2_CODE, WALLET_V4R2_CODE_HASH, WalletV4
from .wallet_v5 import (
    MAINNET_GLOBAL_ID,
    TESTNET_GLOBAL_ID,
    WALLET_V5R1_CODE,
    WALLET_V5R1_CODE_HASH,
    WalletV5R1,
    wallet_id_v5r1,
)

__all__ = [
    "DEFAULT_WALLET_ID",
    "DEFAULT_WALLET_VERSION",
    "IGNORE_ERRORS",
    "LOCAL_CHAIN_GLOBAL_ID",
    "MAINNET_GLOBAL_ID",
    "PAY_FEES_SEPARATELY",
    "TESTNET_GLOBAL_ID",
    "WALLET_V4R2_CODE",
    "WALLET_V4R2_CODE_HASH",
    "WALLET_V5R1_CODE",
    "WALLET_V5R1_CODE_HASH",
    "WALLET_VERSIONS",
    "InternalMessage",
    "Wallet",
    "WalletError",
    "WalletV4",
    "WalletV5R1",
    "WalletVersion",
    "external_message",
    "internal_message",
    "key_from_mnemonic",
    "load_key_file",
    "network_global_id",
    "new_mnemonic",
    "open_wallet",
    "public_key_bytes",
    "save_key_file",
    "wallet_id_v5r1",
]

WalletVersion = Literal["v4r2", "v5r1"]
WALLET_VERSIONS: tuple[str, ...] = get_args(WalletVersion)
# Existing key files have funds at their v4r2 address: it stays the default.
DEFAULT_WALLET_VERSION: WalletVersion = "v4r2"

# TON's config param 19 holds the network's global id (``_ global_id:int32``).
GLOBAL_ID_PARAM = 19
# The local chain (@ton/sandbox) runs on a copy of mainnet's configuration.
LOCAL_CHAIN_GLOBAL_ID = MAINNET_GLOBAL_ID


class _TvmCellJson(msgspec.Struct):
    bytes_: str = msgspec.field(name="bytes")


class _ConfigInfo(msgspec.Struct):
    config: _TvmCellJson


async def network_global_id(client: TonCenterClient) -> int:
    """The chain's global id: -239 on mainnet, -3 on testnet (toncenter's
    ``getConfigParam``), :data:`LOCAL_CHAIN_GLOBAL_ID` on the local chain, which does not
    serve that method. Raises :class:`ChainError` when the chain cannot tell."""
    try:
        raw = await client.call("getConfigParam", {"config_id": GLOBAL_ID_PARAM})
    except ChainError as exc:
        # Only a chain known to be the local one (it answers its dev endpoint) gets the
        # default: elsewhere a wrong guess would give another network's address.
        if exc.code == 404 and await _is_local_chain(client):
            return LOCAL_CHAIN_GLOBAL_ID
        raise
    try:
        info = msgspec.json.decode(raw, type=_ConfigInfo)
        cell = Cell.one_from_boc(base64.b64decode(info.config.bytes_))
        return int(cell.begin_parse().load_int(32))
    except (msgspec.DecodeError, ValueError, IndexError) as exc:
        raise ChainError(
            0, f"unexpected answer to getConfigParam {GLOBAL_ID_PARAM}: {exc}"
        ) from None


async def _is_local_chain(client: TonCenterClient) -> bool:
    local = LocalChainClient(client.endpoint, client.api_key)
    try:
        await local.health()
    except ChainError:
        return False
    finally:
        await local.close()
    return True


async def open_wallet(
    client: TonCenterClient,
    key: Ed25519PrivateKey,
    version: str = DEFAULT_WALLET_VERSION,
    *,
    global_id: int | None = None,
) -> Wallet:
    """The wallet of ``key`` in ``version``. A v5r1 wallet is bound to a network: to
    ``global_id`` when given, else to the one ``client`` talks to (asked once)."""
    if version == "v4r2":
        return WalletV4(client, key)
    if version == "v5r1":
        gid = await network_global_id(client) if global_id is None else global_id
        return WalletV5R1(client, key, network_global_id=gid)
    raise WalletError(f"unknown wallet version {version!r} (known: {', '.join(WALLET_VERSIONS)})")
