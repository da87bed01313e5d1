"""Slashing on the local chain: an equivocating worker's stake is slashed and the prover
paid; a verdict signed by a quorum of the root's verifiers waits out the dispute window
and is executed, or is cancelled by the root's owner; refusals carry their exit codes."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytoniq_core.boc import Address, Builder

from cocoon.chain.local import LocalChainClient
from cocoon.chain.root import (
    RootErr,
    RootOp,
    RootParams,
    RootSlashing,
    RootUpdateRefused,
    cancel_slash_body,
    deploy_root,
    root_data,
    set_slashing_body,
    set_verifier_body,
    submit_verdict_body,
)
from cocoon.chain.slashing import (
    PendingSlash,
    SlashError,
    cancel_slash,
    execute_slash,
    is_proven,
    read_root_slashing,
    read_stake_slashing,
    set_slashing,
    set_verifier,
    submit_equivocation,
    submit_verdicts,
)
from cocoon.chain.stake import StakeErr, StakeRefused, deposit_stake, read_stake, request_unbond
from cocoon.chain.stake_cells import (
    EQUIVOCATION_BP,
    FEE_PROOF,
    REWARD_BP,
    StakeOp,
    slash_equivocation_body,
)
from cocoon.chain.wallet import WalletV4
from cocoon.crypto import Receipt, ReceiptError, sha256, sign_receipt
from cocoon.crypto.receipts import equivocation_proof
from cocoon.crypto.verdict_cell import sign_verdict
from harness.chain import funded_wallet

from .marks import needs_local_chain

TON = 1_000_000_000
NETWORK_ID = 42
NETWORK = "local-test"
UNBOND = 600
DISPUTE = 300
# A worker's 64-bit seq: (boot << 48) | (run << 16) | index; the stake keys slots by all 64 bits.
SEQ = (1 << 48) | (2 << 16) | 1


def _receipt(key: Ed25519PrivateKey, **changes: object) -> bytes:
    fields: dict[str, object] = {
        "network": NETWORK,
        "request_id": "req-7",
        "model": "m",
        "worker_key": key.public_key().public_bytes_raw(),
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "request_hash": sha256(b"envelope"),
        "answer_hash": sha256(b"answer"),
        "answer_chunks": 3,
        "final": False,
        "started_ms": 1_000,
        "finished_ms": 1_500,
        "seq": SEQ,
    }
    fields.update(changes)
    return sign_receipt(key, Receipt(**fields))  # type: ignore[arg-type]


async def _staked_worker(
    client: LocalChainClient, root: str, amount: int = 10 * TON
) -> tuple[Ed25519PrivateKey, WalletV4, str]:
    key = Ed25519PrivateKey.generate()
    owner = await funded_wallet(client, amount + 2 * TON)
    address = await deposit_stake(
        owner,
        network_id=NETWORK_ID,
        authority=root,
        node_key=key.public_key().public_bytes_raw(),
        amount_nano=amount,
        unbond_delay=UNBOND,
    )
    return key, owner, address


@needs_local_chain
async def test_equivocation_slashes_the_stake_and_pays_the_prover(
    client: LocalChainClient,
) -> None:
    root_owner = await funded_wallet(client, 2 * TON)
    root = await deploy_root(
        client, root_owner.raw_address, NETWORK_ID, RootParams(unbonding_delay=UNBOND)
    )
    key, _, stake = await _staked_worker(client, root)
    a = _receipt(key, completion_tokens=20)
    b = _receipt(key, completion_tokens=25)  # the same request and seq, another body
    prover = await funded_wallet(client, 2 * TON)
    root_before = (await client.get_address_information(root)).balance

    before = await prover.balance()
    result = await submit_equivocation(prover, stake, a, b)
    taken = 10 * TON * EQUIVOCATION_BP // 10_000
    assert (result.stake, result.slashed_nano) == (stake, taken)
    assert result.reward_nano == taken * REWARD_BP // 10_000 == TON
    gained = await prover.balance() - before
    # the reward, less what the wallet's send and the proof's gas cost
    assert result.reward_nano - FEE_PROOF < gained < result.reward_nano, gained
    st = await read_stake(client, stake)
    assert (st.bonded_nano, st.slashed_nano) == (10 * TON - taken, taken)
    root_gained = (await client.get_address_information(root)).balance - root_before
    assert taken - result.reward_nano - TON // 100 < root_gained <= taken - result.reward_nano
    assert await is_proven(client, stake, NETWORK, "req-7", SEQ)
    assert not await is_proven(client, stake, NETWORK, "req-7", SEQ + 1)
    assert not await is_proven(client, stake, NETWORK, "req-7", SEQ & 0xFFFF_FFFF)

    # the same pair again, or another pair for the same slot: refused, nothing taken
    with pytest.raises(StakeRefused) as e:
        await submit_equivocation(prover, stake, a, b)
    assert e.value.exit_code == StakeErr.ALREADY_PROVEN and "already" in e.value.meaning
    with pytest.raises(StakeRefused) as e:
        await submit_equivocation(prover, stake, b, _receipt(key, completion_tokens=26))
    assert e.value.exit_code == StakeErr.ALREADY_PROVEN
    assert (await read_stake(client, stake)).slashed_nano == taken

    # what proves nothing is refused before anything is sent
    with pytest.raises(ReceiptError):
        await submit_equivocation(prover, stake, a, _receipt(key, seq=SEQ + 1))
    other = Ed25519PrivateKey.generate()
    _, _, other_stake = await _staked_worker(client, root)
    with pytest.raises(SlashError, match="signed by"):
        await submit_equivocation(
            prover, other_stake, _receipt(other), _receipt(other, completion_tokens=1)
        )
    with pytest.raises(SlashError):
        await submit_equivocation(prover, other_stake, a, b)


@needs_local_chain
async def test_verdicts_of_a_quorum_slash_after_the_dispute_window(
    client: LocalChainClient,
) -> None:
    owner = await funded_wallet(client, 5 * TON)
    root = await deploy_root(
        client, owner.raw_address, NETWORK_ID, RootParams(unbonding_delay=UNBOND)
    )
    verifiers = [Ed25519PrivateKey.generate() for _ in range(3)]
    for v in verifiers:
        await set_verifier(owner, root, v.public_key().public_bytes_raw(), True)
    assert await set_slashing(owner, root, DISPUTE, 2) == 4
    terms = await read_root_slashing(client, root)
    assert (terms.dispute_delay, terms.quorum) == (DISPUTE, 2)
    assert terms.verifiers == {v.public_key().public_bytes_raw() for v in verifiers}

    key, worker_wallet, stake = await _staked_worker(client, root)
    worker_key = key.public_key().public_bytes_raw()
    evidence = sha256(b"sealed audit report")

    def verdicts(nonce: int, signers: list[Ed25519PrivateKey], bp: int = 2_500) -> list[bytes]:
        return [
            sign_verdict(v, NETWORK_ID, worker_key, stake, evidence, bp, nonce) for v in signers
        ]

    # one signature, or an unlisted verifier: refused by the root
    with pytest.raises(RootUpdateRefused) as r:
        await submit_verdicts(owner, root, verdicts(1, verifiers[:1]))
    assert r.value.exit_code == RootErr.NO_QUORUM
    outsider = Ed25519PrivateKey.generate()
    with pytest.raises(RootUpdateRefused) as r:
        await submit_verdicts(owner, root, verdicts(1, [verifiers[0], outsider]))
    assert r.value.exit_code == RootErr.NOT_VERIFIER
    assert (await read_stake_slashing(client, stake)).pending is None

    # 2 of 3: pending for the dispute window; the worker cannot leave meanwhile
    submitter = await funded_wallet(client, 2 * TON)
    now = await client.advance(0)
    pending = await submit_verdicts(submitter, root, verdicts(1, verifiers[1:]))
    assert pending == PendingSlash(2_500, now + DISPUTE, 1, evidence, submitter.raw_address)
    with pytest.raises(StakeRefused) as e:
        await request_unbond(worker_wallet, stake, TON)
    assert e.value.exit_code == StakeErr.SLASH_PENDING
    with pytest.raises(StakeRefused) as e:
        await execute_slash(owner, stake)
    assert e.value.exit_code == StakeErr.IN_DISPUTE
    await client.advance(DISPUTE)
    before = await submitter.balance()
    result = await execute_slash(owner, stake)  # anyone executes; the submitter is paid
    assert result.slashed_nano == 10 * TON * 2_500 // 10_000
    gained = await submitter.balance() - before
    assert result.reward_nano - TON // 100 < gained <= result.reward_nano
    st = await read_stake(client, stake)
    assert (st.bonded_nano, st.slashed_nano) == (7_500_000_000, 2_500_000_000)
    state = await read_stake_slashing(client, stake)
    assert state.pending is None and state.verdict_nonce == 1

    # the same verdict cannot come back
    with pytest.raises(StakeRefused) as e:
        await submit_verdicts(submitter, root, verdicts(1, verifiers[:2]))
    assert e.value.exit_code == StakeErr.STALE_NONCE

    # a disputed verdict: the root's owner cancels it, nothing is taken
    await submit_verdicts(submitter, root, verdicts(2, verifiers[:2], bp=10_000))
    with pytest.raises(RootUpdateRefused) as r:
        await cancel_slash(submitter, root, stake, 2)
    assert r.value.exit_code == RootErr.NOT_OWNER
    with pytest.raises(StakeRefused) as e:
        await cancel_slash(owner, root, stake, 3)
    assert e.value.exit_code == StakeErr.NO_PENDING
    await cancel_slash(owner, root, stake, 2)
    assert (await read_stake_slashing(client, stake)).pending is None
    await client.advance(DISPUTE)
    with pytest.raises(StakeRefused) as e:
        await execute_slash(owner, stake)
    assert e.value.exit_code == StakeErr.NO_PENDING
    assert (await read_stake(client, stake)).slashed_nano == 2_500_000_000
    await request_unbond(worker_wallet, stake, TON)  # free again


# -- offline: the bodies as the contracts parse them ----------------------------------


def test_equivocation_body_carries_both_signed_cells() -> None:
    key = Ed25519PrivateKey.generate()
    proof = equivocation_proof(_receipt(key), _receipt(key, completion_tokens=21))
    s = slash_equivocation_body(proof, query_id=9).begin_parse()
    assert (s.load_uint(32), s.load_uint(64)) == (StakeOp.SLASH_EQUIVOCATION, 9)
    for data, sig in ((proof.data_a, proof.signature_a), (proof.data_b, proof.signature_b)):
        signed = s.load_ref().begin_parse()
        assert signed.load_bytes(64) == sig
        cell = signed.load_ref()
        assert cell.begin_parse().load_bytes(108) == data and not cell.refs
    assert s.remaining_bits == 0 and s.remaining_refs == 0


def test_root_bodies_and_init_data() -> None:
    owner = "0:" + "02" * 32
    data = root_data(owner, NETWORK_ID, RootParams())
    assert len(data.refs) == 4  # params, lists, market, slashing
    sl = data.refs[3].begin_parse()
    assert (sl.load_bit(), sl.load_uint(32), sl.load_uint(8)) == (0, 1_800, 2)
    s = set_verifier_body(b"\x07" * 32, True, 1).begin_parse()
    assert (s.load_uint(32), s.load_uint(64), s.load_bytes(32), s.load_bit()) == (
        RootOp.SET_VERIFIER,
        1,
        b"\x07" * 32,
        1,
    )
    s = set_slashing_body(600, 3).begin_parse()
    assert (s.load_uint(32), s.load_uint(64), s.load_uint(32), s.load_uint(8)) == (
        RootOp.SET_SLASHING,
        0,
        600,
        3,
    )
    with pytest.raises(ValueError):
        set_slashing_body(600, 1)
    with pytest.raises(ValueError):
        RootSlashing(verifiers=frozenset({b"short"}))
    s = cancel_slash_body(owner, 5).begin_parse()
    assert (s.load_uint(32), s.load_uint(64)) == (RootOp.CANCEL_SLASH, 0)
    assert s.load_address() == Address(owner) and s.load_uint(64) == 5
    sigs = [(bytes([i]) * 32, bytes([i]) * 64) for i in (1, 2, 3)]
    body = submit_verdict_body(Builder().store_uint(1, 8).end_cell(), sigs).begin_parse()
    assert body.load_uint(32) == RootOp.SUBMIT_VERDICT and body.load_uint(64) == 0
    body.load_ref()
    node = body.load_ref().begin_parse()
    seen = []
    while True:
        seen.append((node.load_bytes(32), node.load_bytes(64)))
        nxt = node.load_maybe_ref()
        if nxt is None:
            break
        node = nxt.begin_parse()
    assert seen == sigs
    with pytest.raises(ValueError):
        submit_verdict_body(Builder().end_cell(), [])
