"""`cocoon stake` against a local chain: a node's stake through its life, the list of a
`cocoon up` network's stakes, and bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cocoon.chain.local import LocalChainClient
from cocoon.chain.root import RootParams, deploy_root
from cocoon.chain.stake import stake_address
from cocoon.chain.wallet import WalletV4, load_key_file, new_mnemonic, save_key_file
from cocoon.crypto.identity import NodeIdentity

from .cli import error_line, ok, run_cli
from .marks import needs_local_chain

TON = 1_000_000_000
NETWORK = 42
DELAY = 900  # the root's unbonding delay


async def _node_dir(client: LocalChainClient, path: Path, funds: int) -> tuple[bytes, str]:
    """A node's data folder as `cocoon up` leaves it: an identity and a funded wallet key."""
    key = NodeIdentity.load_or_create(path).public_key
    save_key_file(path / "wallet.key", new_mnemonic())
    wallet = WalletV4(client, load_key_file(path / "wallet.key"))
    if funds:
        await client.faucet(wallet.raw_address, funds)
    return key, wallet.raw_address


@needs_local_chain
async def test_a_node_stake_life(client: LocalChainClient, tmp_path: Path) -> None:
    node = tmp_path / "worker1"
    key, owner = await _node_dir(client, node, 10 * TON)
    root = await deploy_root(client, owner, NETWORK, RootParams(unbonding_delay=DELAY))
    where = ["--node-dir", str(node), "--root", root, "--endpoint", client.endpoint]
    address = stake_address(NETWORK, root, owner, key)

    out = ok(await run_cli("stake", "show", *where))
    assert f"stake: {address}" in out and "not deployed" in out
    out = ok(await run_cli("stake", "deposit", "2.5", *where))
    assert "deposited 2.5 TON" in out and "bonded: 2.5 TON" in out
    assert f"unbond delay: {DELAY} s" in out  # the root's delay by default
    out = ok(await run_cli("stake", "deposit", "0.000000001", *where, "--unbond-delay", "60"))
    assert "bonded: 2.500000001 TON" in out and f"unbond delay: {DELAY} s" in out

    shown = json.loads(ok(await run_cli("stake", "show", *where, "--json")))
    assert shown["stake"] == address and shown["owner"] == owner
    assert shown["node_key"] == key.hex() and shown["deployed"]
    assert (shown["bonded_nano"], shown["unbonding_nano"], shown["slashed_nano"]) == (
        2 * TON + TON // 2 + 1,
        0,
        0,
    )

    line = error_line(await run_cli("stake", "unbond", "3", *where))
    assert "exit code 306" in line and "more than is bonded" in line
    assert "exit code 307" in error_line(await run_cli("stake", "withdraw", *where))
    out = ok(await run_cli("stake", "unbond", "1", *where))
    assert "unbonding 1 TON" in out and "unbonding: 1 TON (withdrawable from" in out
    line = error_line(await run_cli("stake", "withdraw", *where))
    assert "exit code 308" in line and "withdrawable from" in line

    await client.advance(DELAY)
    out = ok(await run_cli("stake", "withdraw", *where))
    assert "withdrawn 1 TON" in out and "bonded: 1.500000001 TON" in out
    assert "unbonding: 0 TON" in out

    # The root may come from the environment.
    env = {"COCOON_ROOT": root, "COCOON_CHAIN_ENDPOINT": client.endpoint}
    shown = json.loads(
        ok(await run_cli("stake", "show", "--node-dir", str(node), "--json", env=env))
    )
    assert shown["stake"] == address

    # The same stake named by hand, without reading the root.
    by_hand = ["--key-file", str(node / "wallet.key"), "--node-key", key.hex()]
    by_hand += ["--authority", root, "--network-id", str(NETWORK), "--endpoint", client.endpoint]
    shown = json.loads(ok(await run_cli("stake", "show", *by_hand, "--json")))
    assert shown["stake"] == address and shown["bonded_nano"] == TON + TON // 2 + 1
    # The key as a v5r1 wallet is another owner, so another (empty) stake.
    v5 = json.loads(
        ok(await run_cli("stake", "show", *by_hand, "--wallet-version", "v5r1", "--json"))
    )
    assert v5["owner"] != owner and v5["stake"] != address and not v5["deployed"]


@needs_local_chain
async def test_the_stakes_of_an_up_network(
    client: LocalChainClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    up = Path(".cocoon")
    nodes = {name: await _node_dir(client, up / name, 5 * TON) for name in ("worker1", "proxy1")}
    nodes["worker2"] = await _node_dir(client, up / "worker2", 0)
    await _node_dir(client, up / "client", 0)  # clients do not stake
    root = await deploy_root(client, nodes["proxy1"][1], NETWORK, RootParams(unbonding_delay=DELAY))
    (up / "run").mkdir()
    # What a running `cocoon up` leaves for these commands.
    (up / "run" / "chain.ready").write_text(json.dumps({"endpoint": client.endpoint}))
    (up / "run" / "root.json").write_text(json.dumps({"root": root, "endpoint": client.endpoint}))

    out = ok(await run_cli("stake", "deposit", "3", "--node-dir", str(up / "worker1")))
    assert "bonded: 3 TON" in out

    rows = json.loads(ok(await run_cli("stake", "show", "--json")))
    assert [r["node"] for r in rows] == ["proxy1", "worker1", "worker2"]
    for r in rows:
        key, owner = nodes[r["node"]]
        assert r["stake"] == stake_address(NETWORK, root, owner, key)
    assert [(r["deployed"], r["bonded_nano"]) for r in rows] == [
        (False, 0),
        (True, 3 * TON),
        (False, 0),
    ]
    table = ok(await run_cli("stake", "show")).splitlines()
    assert table[0].split()[:5] == ["node", "stake", "bonded", "TON", "unbonding"]
    assert [line.split()[0] for line in table[1:]] == ["proxy1", "worker1", "worker2"]
    assert "not staked" in table[1] and " 3 " in table[2] + " "

    # worker2's wallet holds nothing: its deposit cannot leave the wallet.
    line = error_line(await run_cli("stake", "deposit", "1", "--node-dir", str(up / "worker2")))
    assert "holds 0 TON: not enough for 1 TON" in line


async def test_bad_input_is_one_line(tmp_path: Path) -> None:
    where = ["--root", "0:" + "11" * 32, "--network-id", "1"]
    where += ["--endpoint", "http://127.0.0.1:9/api/v2/", "--data-dir", str(tmp_path)]
    line = error_line(await run_cli("stake", "deposit", "1.0000000001", "--node-dir", "x", *where))
    assert "at most 9 decimals" in line
    line = error_line(await run_cli("stake", "show", "--node-dir", str(tmp_path / "none"), *where))
    assert "holds no node identity" in line
    node = tmp_path / "n"
    NodeIdentity.load_or_create(node)
    both = ["--node-dir", str(node), "--node-key", "00" * 32]
    assert "not both" in error_line(await run_cli("stake", "show", *both, *where))
    line = error_line(await run_cli("stake", "show", "--node-dir", str(node), *where))
    assert "wallet.key does not exist" in line
    line = error_line(await run_cli("stake", "show", "--key-file", "k", "--node-key", "ab", *where))
    assert "64 hex digits" in line
    save_key_file(node / "wallet.key", new_mnemonic())
    bad_root = ["--node-dir", str(node), "--root", "nope", "--data-dir", str(tmp_path)]
    assert "not a TON address" in error_line(await run_cli("stake", "show", *bad_root))
    no_root = ["--node-dir", str(node), "--data-dir", str(tmp_path)]
    assert "give --root" in error_line(await run_cli("stake", "show", *no_root))
    # No node named and no `cocoon up` here: say how to name one.
    assert "name the node" in error_line(await run_cli("stake", "show", *where))
    line = error_line(await run_cli("stake", "show", "--node-dir", str(node), *where))
    assert line.startswith("cocoon: error: chain: ")
