"""`cocoon stake slash-equivocation | execute-slash | show` and `cocoon root add-verifier |
remove-verifier | set-slashing | submit-verdicts | cancel-slash | show` on a local chain."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.chain.local import LocalChainClient
from cocoon.chain.root import RootParams, deploy_root
from cocoon.chain.wallet import WalletV4, load_key_file, new_mnemonic, save_key_file
from cocoon.crypto import Receipt, sha256, sign_receipt
from cocoon.crypto.identity import NodeIdentity
from cocoon.crypto.verdict_cell import sign_verdict

from .cli import error_line, ok, run_cli
from .marks import needs_local_chain

TON = 1_000_000_000
NETWORK_ID = 42
UNBOND = 900


async def _wallet_file(client: LocalChainClient, path: Path, funds: int) -> WalletV4:
    save_key_file(path, new_mnemonic())
    wallet = WalletV4(client, load_key_file(path))
    await client.faucet(wallet.raw_address, funds)
    return wallet


def _receipt(identity: NodeIdentity, completion_tokens: int) -> bytes:
    receipt = Receipt(
        network="cli-net",
        request_id="req-1",
        model="m",
        worker_key=identity.public_key,
        prompt_tokens=5,
        completion_tokens=completion_tokens,
        request_hash=sha256(b"e"),
        answer_hash=sha256(b"a"),
        answer_chunks=1,
        final=True,
        started_ms=0,
        finished_ms=1,
        seq=0,
    )
    return sign_receipt(identity.signing_key, receipt)


@needs_local_chain
async def test_slashing_from_the_command_line(client: LocalChainClient, tmp_path: Path) -> None:
    owner = await _wallet_file(client, tmp_path / "owner.key", 5 * TON)
    root = await deploy_root(
        client, owner.raw_address, NETWORK_ID, RootParams(unbonding_delay=UNBOND)
    )
    chain = ["--endpoint", client.endpoint]
    as_owner = ["--root", root, "--key-file", str(tmp_path / "owner.key"), *chain]

    # a worker with 10 TON at stake
    node = tmp_path / "worker1"
    identity = NodeIdentity.load_or_create(node)
    await _wallet_file(client, node / "wallet.key", 12 * TON)
    where = ["--node-dir", str(node), "--root", root, *chain]
    ok(await run_cli("stake", "deposit", "10", *where))
    stake = json.loads(ok(await run_cli("stake", "show", *where, "--json")))["stake"]

    # equivocation: one receipt as a file, the other as hex
    prover = await _wallet_file(client, tmp_path / "prover.key", 2 * TON)
    (tmp_path / "a.receipt").write_bytes(_receipt(identity, 3))
    b_hex = _receipt(identity, 4).hex()
    slasher = ["--stake", stake, "--key-file", str(tmp_path / "prover.key"), *chain]
    before = await prover.balance()
    out = json.loads(
        ok(
            await run_cli(
                "stake",
                "slash-equivocation",
                str(tmp_path / "a.receipt"),
                b_hex,
                *slasher,
                "--json",
            )
        )
    )
    assert (out["stake"], out["slashed_nano"], out["reward_nano"]) == (stake, 5 * TON, TON)
    assert out["bonded_nano"] == 5 * TON and out["sender"] == prover.raw_address
    assert TON - TON // 10 < await prover.balance() - before < TON
    shown = ok(await run_cli("stake", "show", *where))
    assert "slashed: 5 TON" in shown and "pending slash: none" in shown
    line = error_line(
        await run_cli("stake", "slash-equivocation", str(tmp_path / "a.receipt"), b_hex, *slasher)
    )
    assert "exit code 315" in line and "already" in line
    line = error_line(
        await run_cli("stake", "slash-equivocation", "zz-not-a-receipt", b_hex, *slasher)
    )
    assert "RECEIPT_A" in line
    line = error_line(await run_cli("stake", "slash-equivocation", b_hex, b_hex, *slasher))
    assert "same body" in line

    # verifiers and a verdict
    verifiers = [Ed25519PrivateKey.generate() for _ in range(3)]
    keys = [v.public_key().public_bytes_raw().hex() for v in verifiers]
    for k in keys:
        assert "listed verifier" in ok(await run_cli("root", "add-verifier", k, *as_owner))
    ok(await run_cli("root", "add-verifier", "ab" * 32, *as_owner))
    ok(await run_cli("root", "remove-verifier", "ab" * 32, *as_owner))
    ok(await run_cli("root", "set-slashing", "--dispute-delay", "300", *as_owner))
    line = error_line(await run_cli("root", "set-slashing", "--dispute-delay", "901", *as_owner))
    assert "exit 115" in line or "115" in line
    state = json.loads(ok(await run_cli("root", "show", "--root", root, *chain, "--json")))
    assert state["slashing"] == {"dispute_delay": 300, "quorum": 2, "verifiers": sorted(keys)}
    assert "verifiers (3):" in ok(await run_cli("root", "show", "--root", root, *chain))

    def verdict_files(nonce: int, signers: list[Ed25519PrivateKey]) -> list[str]:
        files = []
        for i, v in enumerate(signers):
            f = tmp_path / f"verdict-{nonce}-{i}.bin"
            f.write_bytes(
                sign_verdict(v, NETWORK_ID, identity.public_key, stake, sha256(b"r"), 1_000, nonce)
            )
            files.append(str(f))
        return files

    submitter = ["--root", root, "--key-file", str(tmp_path / "prover.key"), *chain]
    line = error_line(
        await run_cli("root", "submit-verdicts", *verdict_files(1, verifiers[:1]), *submitter)
    )
    assert "quorum" in line
    out = json.loads(
        ok(
            await run_cli(
                "root", "submit-verdicts", *verdict_files(1, verifiers[1:]), *submitter, "--json"
            )
        )
    )
    assert (out["stake"], out["bp"], out["nonce"], out["beneficiary"]) == (
        stake,
        1_000,
        1,
        prover.raw_address,
    )
    shown = json.loads(ok(await run_cli("stake", "show", *where, "--json")))
    assert shown["pending_slash"]["bp"] == 1_000 and shown["verdict_nonce"] == 1
    assert "pending slash: 1000 bp" in ok(await run_cli("stake", "show", *where))
    line = error_line(await run_cli("stake", "execute-slash", *slasher))
    assert "exit code 321" in line
    await client.advance(300)
    out = json.loads(ok(await run_cli("stake", "execute-slash", *slasher, "--json")))
    assert out["slashed_nano"] == 5 * TON // 10 and out["total_slashed_nano"] == 5 * TON + TON // 2

    # a disputed verdict, cancelled by the owner
    ok(await run_cli("root", "submit-verdicts", *verdict_files(2, verifiers[:2]), *submitter))
    line = error_line(await run_cli("root", "cancel-slash", stake, "2", *submitter))
    assert "exit 102" in line or "not the owner" in line
    assert "cancelled" in ok(await run_cli("root", "cancel-slash", stake, "2", *as_owner))
    assert json.loads(ok(await run_cli("stake", "show", *where, "--json")))["pending_slash"] is None
