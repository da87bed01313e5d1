// The stake's provable slashes: equivocation (two receipt cells, checked here) and
// verdict proposals from the authority (pending, disputable, then executed by anyone).
import { describe, it, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Address, beginCell, Cell } from '@ton/core';
import { Blockchain, type SandboxContract, type TreasuryContract } from '@ton/sandbox';
import nacl from 'tweetnacl';
import {
    cancelSlashBody, depositBody, EQUIVOCATION_BP, executeSlashBody, getPendingSlash, getStakeState,
    proposeSlashBody, receiptCell, requestUnbondBody, REWARD_BP, signedReceiptCell, slashEquivocationBody,
    StakeErr as E, StakeFee, stakeInit, StakeOp, withdrawBody, type Proposal, type ReceiptFields, type StakeConfig,
} from '../wrappers/Stake.ts';
import { assertExit, exitCodeOf, randomAddress, TON, txFromTo } from './helpers.ts';

const NET = 0x636f636f;
const DELAY = 3600;
const T0 = 1_800_000_000;
const key = nacl.sign.keyPair.fromSeed(Buffer.alloc(32, 7));
const otherKey = nacl.sign.keyPair.fromSeed(Buffer.alloc(32, 8));
const NODE_KEY = Buffer.from(key.publicKey);
const keyInt = (b: Buffer | Uint8Array) => BigInt('0x' + Buffer.from(b).toString('hex'));

// seq is the worker's 64-bit (boot << 48) | (run << 16) | index: every bit is part of the slot
const SEQ = (1n << 48n) | (2n << 16n) | 3n;
const R: ReceiptFields = { network: 0x1111n, requestKey: 0x2222n, seq: SEQ, bodyHash: 0xaaaan };
const signed = (r: ReceiptFields, k = key) => {
    const cell = receiptCell(r);
    return signedReceiptCell(Buffer.from(nacl.sign.detached(cell.hash(), k.secretKey)), cell);
};
const proof = (a: ReceiptFields, b: ReceiptFields, ka = key, kb = key) =>
    slashEquivocationBody(signed(a, ka), signed(b, kb));

interface Ctx {
    bc: Blockchain;
    owner: SandboxContract<TreasuryContract>;
    root: SandboxContract<TreasuryContract>;
    prover: SandboxContract<TreasuryContract>;
    addr: Address;
}

async function setup(): Promise<Ctx> {
    const bc = await Blockchain.create();
    bc.now = T0;
    const owner = await bc.treasury('owner');
    const root = await bc.treasury('root');
    const prover = await bc.treasury('prover');
    const cfg: StakeConfig = { networkId: NET, authority: root.address, owner: owner.address, nodeKey: NODE_KEY };
    const { init, address } = stakeInit(cfg);
    const r = await owner.send({ to: address, value: 10n * TON + StakeFee.deposit, init, body: depositBody(DELAY), bounce: false });
    assertExit(r, address, 0, 'deploy');
    return { bc, owner, root, prover, addr: address };
}

const share = (held: bigint, bp: number) => (held * BigInt(bp) + 9999n) / 10000n;
const reward = (taken: bigint) => (taken * BigInt(REWARD_BP)) / 10000n;

describe('stake: equivocation', () => {
    let c: Ctx;
    const state = () => getStakeState((n, a) => c.bc.runGetMethod(c.addr, n, a ?? []));
    const prove = (body: Cell, value = StakeFee.proof) => c.prover.send({ to: c.addr, value, body });
    const proven = async (r: ReceiptFields) => (await c.bc.runGetMethod(c.addr, 'isProven', [
        { type: 'int', value: r.network }, { type: 'int', value: r.requestKey }, { type: 'int', value: r.seq },
    ])).stackReader.readBoolean();
    beforeEach(async () => { c = await setup(); });

    it('two bodies signed for one slot: half the stake is slashed, 20 % to the prover, the rest to the root', async () => {
        assertExit(await c.owner.send({ to: c.addr, value: StakeFee.control, body: requestUnbondBody(4n * TON) }), c.addr, 0);
        const proverBefore = await c.prover.getBalance();
        const rootBefore = await c.root.getBalance();
        const r = await prove(proof(R, { ...R, bodyHash: 0xbbbbn }));
        assertExit(r, c.addr, 0);
        const taken = share(10n * TON, EQUIVOCATION_BP);
        assert.equal(taken, 5n * TON);
        const s = await state();
        // bonded first, then unbonding
        assert.deepEqual([s.bonded, s.unbonding, s.slashed], [TON, 4n * TON, 5n * TON]);
        const toProver = txFromTo(r, c.addr, c.prover.address).inMessage!;
        assert.ok(toProver.info.type === 'internal' && !toProver.info.bounce);
        const body = toProver.body.beginParse();
        assert.deepEqual([body.loadUint(32), body.loadUintBig(64), body.loadCoins()], [StakeOp.slashReward, 0n, reward(taken)]);
        const gained = (await c.prover.getBalance()) - proverBefore;
        assert.ok(gained > reward(taken) - StakeFee.proof && gained < reward(taken), `${gained}`);
        const toRoot = txFromTo(r, c.addr, c.root.address).inMessage!;
        assert.ok(toRoot.info.type === 'internal' && !toRoot.info.bounce && toRoot.body.bits.length === 0);
        const rootGained = (await c.root.getBalance()) - rootBefore;
        assert.ok(rootGained > taken - reward(taken) - TON / 100n && rootGained <= taken - reward(taken), `${rootGained}`);
        assert.ok(await proven(R));
        assert.ok(!(await proven({ ...R, seq: SEQ + 1n })));
        assert.ok(!(await proven({ ...R, seq: SEQ & 0xffffffffn })));
        assert.ok(s.balance >= 5n * TON, `${s.balance}`);
    });

    it('each slot slashes once (315), whichever pair of bodies; another slot slashes again', async () => {
        assertExit(await prove(proof(R, { ...R, bodyHash: 0xbbbbn })), c.addr, 0);
        assertExit(await prove(proof(R, { ...R, bodyHash: 0xbbbbn })), c.addr, E.alreadyProven);
        assertExit(await prove(proof({ ...R, bodyHash: 0xccccn }, { ...R, bodyHash: 0xbbbbn })), c.addr, E.alreadyProven);
        assertExit(await prove(proof({ ...R, seq: SEQ + 1n }, { ...R, seq: SEQ + 1n, bodyHash: 0xbbbbn })), c.addr, 0);
        const s = await state();
        assert.deepEqual([s.bonded, s.slashed], [10n * TON - 5n * TON - share(5n * TON, EQUIVOCATION_BP), 7_500_000_000n]);
        // the same index in another run (bits 16..47) or boot (48..63): other slots, all 64 bits kept
        const nextRun = SEQ + (1n << 16n);
        const top = (0xffffn << 48n) | 3n;
        for (const seq of [nextRun, top]) {
            assert.ok(!(await proven({ ...R, seq })));
            assertExit(await prove(proof({ ...R, seq }, { ...R, seq, bodyHash: 0xbbbbn })), c.addr, 0);
            assert.ok(await proven({ ...R, seq }));
        }
        assert.equal((await state()).slashed, 7_500_000_000n + 1_250_000_000n + 625_000_000n);
    });

    it('refuses what is not a proof: value (304), tag (311), signature (312), slot (313), body (314), shape (300)', async () => {
        const other = { ...R, bodyHash: 0xbbbbn };
        assertExit(await prove(proof(R, other), StakeFee.proof - 1n), c.addr, E.lowValue);
        const notReceipt = beginCell().storeUint(0x72637075, 32).storeUint(R.network, 256).storeUint(R.requestKey, 256)
            .storeUint(R.seq, 64).storeUint(0xbbbbn, 256).endCell();
        const sig = Buffer.from(nacl.sign.detached(notReceipt.hash(), key.secretKey));
        assertExit(await prove(slashEquivocationBody(signed(R), signedReceiptCell(sig, notReceipt))), c.addr, E.notReceipt);
        assertExit(await prove(proof(R, other, key, otherKey)), c.addr, E.badSignature);
        assertExit(await prove(proof(R, other, otherKey, otherKey)), c.addr, E.badSignature);
        // a signature of another cell
        const wrongSig = signedReceiptCell(Buffer.from(nacl.sign.detached(receiptCell(R).hash(), key.secretKey)), receiptCell(other));
        assertExit(await prove(slashEquivocationBody(signed(R), wrongSig)), c.addr, E.badSignature);
        assertExit(await prove(proof(R, { ...other, seq: SEQ + 1n })), c.addr, E.notSameSlot);
        assertExit(await prove(proof(R, { ...other, seq: SEQ + (1n << 48n) })), c.addr, E.notSameSlot);
        assertExit(await prove(proof(R, { ...other, requestKey: 0x2223n })), c.addr, E.notSameSlot);
        assertExit(await prove(proof(R, { ...other, network: 0x1112n })), c.addr, E.notSameSlot);
        assertExit(await prove(proof(R, R)), c.addr, E.sameBody);
        const oneRef = beginCell().storeUint(StakeOp.slashEquivocation, 32).storeUint(0, 64).storeRef(signed(R)).endCell();
        assertExit(await prove(oneRef), c.addr, E.malformed);
        const shortCell = beginCell().storeUint(0x72637074, 32).storeUint(1, 8).endCell();
        const shortSigned = signedReceiptCell(Buffer.from(nacl.sign.detached(shortCell.hash(), key.secretKey)), shortCell);
        assertExit(await prove(slashEquivocationBody(signed(R), shortSigned)), c.addr, E.malformed);
        // the old layout, seq:uint32 (832 bits), is no receipt cell any more
        const old = beginCell().storeUint(0x72637074, 32).storeUint(R.network, 256).storeUint(R.requestKey, 256)
            .storeUint(3, 32).storeUint(0xbbbbn, 256).endCell();
        const oldSigned = signedReceiptCell(Buffer.from(nacl.sign.detached(old.hash(), key.secretKey)), old);
        assertExit(await prove(slashEquivocationBody(signed(R), oldSigned)), c.addr, E.malformed);
        const s = await state();
        assert.deepEqual([s.bonded, s.slashed], [10n * TON, 0n]);
    });

    it('an empty stake cannot be slashed (309)', async () => {
        // the owner unbonds and withdraws everything
        assertExit(await c.owner.send({ to: c.addr, value: StakeFee.control, body: requestUnbondBody(10n * TON) }), c.addr, 0);
        c.bc.now = T0 + DELAY;
        assertExit(await c.owner.send({ to: c.addr, value: StakeFee.control, body: withdrawBody() }), c.addr, 0);
        assertExit(await prove(proof(R, { ...R, bodyHash: 0xbbbbn })), c.addr, E.nothingStaked);
    });
});

describe('stake: verdict slashes (proposed by the authority, disputable, executed by anyone)', () => {
    let c: Ctx;
    const state = () => getStakeState((n, a) => c.bc.runGetMethod(c.addr, n, a ?? []));
    const pending = () => getPendingSlash((n, a) => c.bc.runGetMethod(c.addr, n, a ?? []));
    const P = (over: Partial<Proposal> = {}): Proposal => ({
        bp: 3000, nodeKey: keyInt(NODE_KEY), nonce: 7n, executeAt: T0 + 600, evidence: 0xe71dn,
        beneficiary: c.prover.address, ...over,
    });
    const byRoot = (body: Cell, value = StakeFee.control) => c.root.send({ to: c.addr, value, body });
    const byOwner = (body: Cell) => c.owner.send({ to: c.addr, value: StakeFee.control, body });
    beforeEach(async () => { c = await setup(); });

    it('propose: authority only (303), value (304), this node (316), 0 < bp ≤ 10000 (317), one at a time (319)', async () => {
        assertExit(await c.prover.send({ to: c.addr, value: TON, body: proposeSlashBody(P()) }), c.addr, E.notAuthority);
        assertExit(await byRoot(proposeSlashBody(P()), StakeFee.control - 1n), c.addr, E.lowValue);
        assertExit(await byRoot(proposeSlashBody(P({ nodeKey: keyInt(otherKey.publicKey) }))), c.addr, E.wrongNode);
        assertExit(await byRoot(proposeSlashBody(P({ bp: 0 }))), c.addr, E.badBp);
        assertExit(await byRoot(proposeSlashBody(P({ bp: 10001 }))), c.addr, E.badBp);
        assert.deepEqual(await pending(), { bp: 0, executeAt: 0, nonce: 0n, evidence: 0n, beneficiary: null, verdictNonce: 0n });
        assertExit(await byRoot(proposeSlashBody(P())), c.addr, 0);
        const p = await pending();
        assert.deepEqual([p.bp, p.executeAt, p.nonce, p.evidence, p.verdictNonce], [3000, T0 + 600, 7n, 0xe71dn, 7n]);
        assert.ok(p.beneficiary!.equals(c.prover.address));
        assertExit(await byRoot(proposeSlashBody(P({ nonce: 8n }))), c.addr, E.slashPending);
        assert.equal((await state()).slashed, 0n, 'nothing is taken before execution');
    });

    it('while a slash is pending the owner can neither unbond nor withdraw (319)', async () => {
        assertExit(await byOwner(requestUnbondBody(4n * TON)), c.addr, 0);
        assertExit(await byRoot(proposeSlashBody(P())), c.addr, 0);
        c.bc.now = T0 + DELAY;
        assertExit(await byOwner(withdrawBody()), c.addr, E.slashPending);
        assertExit(await byOwner(requestUnbondBody(TON)), c.addr, E.slashPending);
        // deposits still go in (and are slashable)
        assertExit(await c.owner.send({ to: c.addr, value: TON + StakeFee.deposit, body: depositBody(DELAY) }), c.addr, 0);
    });

    it('execute: not before executeAt (321), nothing pending (320); then bp of the stake, 20 % to the submitter', async () => {
        assertExit(await c.prover.send({ to: c.addr, value: StakeFee.control, body: executeSlashBody() }), c.addr, E.noPending);
        assertExit(await byOwner(requestUnbondBody(4n * TON)), c.addr, 0);
        assertExit(await byRoot(proposeSlashBody(P())), c.addr, 0);
        const anyone = await c.bc.treasury('anyone');
        c.bc.now = T0 + 599;
        assertExit(await anyone.send({ to: c.addr, value: StakeFee.control, body: executeSlashBody() }), c.addr, E.inDispute);
        c.bc.now = T0 + 600;
        assertExit(await anyone.send({ to: c.addr, value: StakeFee.control - 1n, body: executeSlashBody() }), c.addr, E.lowValue);
        const proverBefore = await c.prover.getBalance();
        const rootBefore = await c.root.getBalance();
        const r = await anyone.send({ to: c.addr, value: StakeFee.control, body: executeSlashBody(9n) });
        assertExit(r, c.addr, 0);
        const taken = share(10n * TON, 3000);
        const s = await state();
        assert.deepEqual([s.bonded, s.unbonding, s.slashed], [6n * TON - taken, 4n * TON, taken]);
        const out = txFromTo(r, c.addr, c.prover.address).inMessage!;
        assert.ok(out.info.type === 'internal' && !out.info.bounce);
        const gained = (await c.prover.getBalance()) - proverBefore;
        assert.ok(gained > reward(taken) - TON / 100n && gained <= reward(taken), `${gained}`);
        const rootGained = (await c.root.getBalance()) - rootBefore;
        assert.ok(rootGained > taken - reward(taken) - TON / 100n && rootGained <= taken - reward(taken));
        assert.equal((await pending()).bp, 0);
        assertExit(await anyone.send({ to: c.addr, value: StakeFee.control, body: executeSlashBody() }), c.addr, E.noPending);
        // the verdict cannot come back, an older one neither; a newer one can
        assertExit(await byRoot(proposeSlashBody(P())), c.addr, E.staleNonce);
        assertExit(await byRoot(proposeSlashBody(P({ nonce: 6n }))), c.addr, E.staleNonce);
        assertExit(await byRoot(proposeSlashBody(P({ nonce: 8n }))), c.addr, 0);
        // withdrawal waits for that one too
        c.bc.now = T0 + DELAY;
        assertExit(await byOwner(withdrawBody()), c.addr, E.slashPending);
    });

    it('cancel: authority only (303), the pending nonce (320); frees the stake; the cancelled verdict cannot return (318)', async () => {
        assertExit(await byRoot(cancelSlashBody(7n)), c.addr, E.noPending);
        assertExit(await byOwner(requestUnbondBody(4n * TON)), c.addr, 0);
        assertExit(await byRoot(proposeSlashBody(P())), c.addr, 0);
        assertExit(await c.owner.send({ to: c.addr, value: TON, body: cancelSlashBody(7n) }), c.addr, E.notAuthority);
        assertExit(await byRoot(cancelSlashBody(7n), StakeFee.control - 1n), c.addr, E.lowValue);
        assertExit(await byRoot(cancelSlashBody(6n)), c.addr, E.noPending);
        assertExit(await byRoot(cancelSlashBody(7n)), c.addr, 0);
        assert.equal((await pending()).bp, 0);
        c.bc.now = T0 + DELAY;
        assertExit(await c.prover.send({ to: c.addr, value: StakeFee.control, body: executeSlashBody() }), c.addr, E.noPending);
        assertExit(await byOwner(withdrawBody()), c.addr, 0);
        assertExit(await byRoot(proposeSlashBody(P())), c.addr, E.staleNonce);
        const s = await state();
        assert.deepEqual([s.bonded, s.unbonding, s.slashed], [6n * TON, 0n, 0n]);
    });

    it('a slash whose reward cannot be delivered is not undone (payouts do not bounce)', async () => {
        const ghost = randomAddress(0x44);
        assertExit(await byRoot(proposeSlashBody(P({ beneficiary: ghost, bp: 10000 }))), c.addr, 0);
        c.bc.now = T0 + 600;
        const r = await c.prover.send({ to: c.addr, value: StakeFee.control, body: executeSlashBody() });
        assertExit(r, c.addr, 0);
        const onStake = r.transactions.filter((t) => t.inMessage?.info.dest instanceof Address
            && (t.inMessage.info.dest as Address).equals(c.addr));
        assert.equal(onStake.length, 1, 'no bounce comes back');
        assert.equal(exitCodeOf(onStake[0]), 0);
        const s = await state();
        assert.deepEqual([s.bonded, s.slashed], [0n, 10n * TON]);
        // executing a verdict on a stake emptied meanwhile just clears it
        assertExit(await byRoot(proposeSlashBody(P({ nonce: 8n }))), c.addr, 0);
        c.bc.now = T0 + 1200;
        const r2 = await c.prover.send({ to: c.addr, value: StakeFee.control, body: executeSlashBody() });
        assertExit(r2, c.addr, 0);
        assert.equal((await pending()).bp, 0);
    });
});
