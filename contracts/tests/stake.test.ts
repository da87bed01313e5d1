import { describe, it, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Address, beginCell, Cell } from '@ton/core';
import { Blockchain, type SandboxContract, type TreasuryContract } from '@ton/sandbox';
import {
    depositBody, getStakeParams, getStakeState, MAX_UNBOND_DELAY, requestUnbondBody, slashBody, StakeErr as E,
    StakeFee, stakeInit, StakeOp, withdrawBody, type StakeConfig,
} from '../wrappers/Stake.ts';
import { assertExit, exitCodeOf, randomAddress, sendFrom, TON, txFromTo } from './helpers.ts';

const NET = 0x636f636f;
const DELAY = 3600;
const NODE_KEY = Buffer.alloc(32, 0x5a);
const T0 = 1_800_000_000;

interface Ctx {
    bc: Blockchain;
    owner: SandboxContract<TreasuryContract>;
    root: SandboxContract<TreasuryContract>;
    stranger: SandboxContract<TreasuryContract>;
    addr: Address;
    cfg: StakeConfig;
}

/** A stake deployed by its owner's first deposit of `value` (owner: a treasury, or an
 *  address without an account, to make payouts to it bounce). */
async function setup(opts: { owner?: Address; value?: bigint; delay?: number } = {}): Promise<Ctx> {
    const bc = await Blockchain.create();
    bc.now = T0;
    const owner = await bc.treasury('owner');
    const root = await bc.treasury('root');
    const stranger = await bc.treasury('stranger');
    const cfg: StakeConfig = { networkId: NET, authority: root.address, owner: opts.owner ?? owner.address, nodeKey: NODE_KEY };
    const { init, address } = stakeInit(cfg);
    const value = opts.value ?? 10n * TON + StakeFee.deposit;
    const body = depositBody(opts.delay ?? DELAY);
    const r = opts.owner
        ? await bc.sendMessage({ info: { type: 'internal', ihrDisabled: true, bounce: false, bounced: false,
            src: opts.owner, dest: address, value: { coins: value }, ihrFee: 0n, forwardFee: 0n,
            createdLt: 0n, createdAt: 0 }, init, body })
        : await owner.send({ to: address, value, init, body, bounce: false });
    assertExit(r, address, 0, 'deploy');
    return { bc, owner, root, stranger, addr: address, cfg };
}

const state = (c: Ctx) => getStakeState((n, a) => c.bc.runGetMethod(c.addr, n, a ?? []));
const balanceOf = async (c: Ctx, a: Address) => (await c.bc.getContract(a)).balance;
const byOwner = (c: Ctx, body: Cell, value = StakeFee.control) => c.owner.send({ to: c.addr, value, body });
const byRoot = (c: Ctx, body: Cell, value = StakeFee.control) => c.root.send({ to: c.addr, value, body });
/** The transactions on the stake itself in a send result, in order. */
const onStake = (c: Ctx, r: { transactions: any[] }) =>
    r.transactions.filter((t) => t.inMessage?.info.dest instanceof Address && t.inMessage.info.dest.equals(c.addr));

describe('stake', () => {
    let c: Ctx;
    beforeEach(async () => { c = await setup(); });

    it('deploys with the first deposit: bonds the value less the fee allowance', async () => {
        const s = await state(c);
        assert.deepEqual([s.bonded, s.unbonding, s.unlockAt, s.unbondDelay, s.slashed], [10n * TON, 0n, 0, DELAY, 0n]);
        assert.ok(s.balance > 10n * TON && s.balance <= 10n * TON + StakeFee.deposit, `${s.balance}`);
        const p = await getStakeParams((n, a) => c.bc.runGetMethod(c.addr, n, a ?? []));
        assert.equal(p.networkId, NET);
        assert.ok(p.authority.equals(c.root.address));
        assert.ok(p.owner.equals(c.owner.address));
        assert.deepEqual(p.nodeKey, NODE_KEY);
    });

    it('the address names one node: another key, owner, root or network is another stake', async () => {
        const other = [
            { ...c.cfg, nodeKey: Buffer.alloc(32, 1) }, { ...c.cfg, owner: randomAddress(1) },
            { ...c.cfg, authority: randomAddress(2) }, { ...c.cfg, networkId: NET + 1 },
        ];
        for (const cfg of other) assert.ok(!stakeInit(cfg).address.equals(c.addr));
        assert.ok(stakeInit({ ...c.cfg }).address.equals(c.addr));
    });

    it('deposit: owner only (302), value ≥ the allowance (304), delay only rises, ≤ a year (310)', async () => {
        assertExit(await c.stranger.send({ to: c.addr, value: TON, body: depositBody(DELAY) }), c.addr, E.notOwner);
        assertExit(await c.root.send({ to: c.addr, value: TON, body: depositBody(DELAY) }), c.addr, E.notOwner);
        assertExit(await byOwner(c, depositBody(DELAY), StakeFee.deposit - 1n), c.addr, E.lowValue);
        assertExit(await byOwner(c, depositBody(MAX_UNBOND_DELAY + 1), TON), c.addr, E.delayTooLong);
        assert.equal((await state(c)).bonded, 10n * TON);

        assertExit(await byOwner(c, depositBody(60), 2n * TON + StakeFee.deposit), c.addr, 0);
        let s = await state(c);
        assert.deepEqual([s.bonded, s.unbondDelay], [12n * TON, DELAY], 'a lower delay is ignored');
        // exactly the allowance: bonds nothing, may still raise the delay
        assertExit(await byOwner(c, depositBody(MAX_UNBOND_DELAY), StakeFee.deposit), c.addr, 0);
        s = await state(c);
        assert.deepEqual([s.bonded, s.unbondDelay], [12n * TON, MAX_UNBOND_DELAY]);
    });

    it('a plain transfer is fee buffer, never bonded, from anyone', async () => {
        const before = await state(c);
        assertExit(await c.stranger.send({ to: c.addr, value: TON }), c.addr, 0);
        const s = await state(c);
        assert.equal(s.bonded, before.bonded);
        assert.ok(s.balance > before.balance + TON - 10_000_000n);
    });

    it('request-unbond: owner only, value ≥ allowance, 0 < amount ≤ bonded; a second one restarts the clock', async () => {
        assertExit(await c.stranger.send({ to: c.addr, value: TON, body: requestUnbondBody(TON) }), c.addr, E.notOwner);
        assertExit(await byOwner(c, requestUnbondBody(TON), StakeFee.control - 1n), c.addr, E.lowValue);
        assertExit(await byOwner(c, requestUnbondBody(0n)), c.addr, E.zeroAmount);
        assertExit(await byOwner(c, requestUnbondBody(10n * TON + 1n)), c.addr, E.overBonded);

        assertExit(await byOwner(c, requestUnbondBody(4n * TON)), c.addr, 0);
        let s = await state(c);
        assert.deepEqual([s.bonded, s.unbonding, s.unlockAt], [6n * TON, 4n * TON, T0 + DELAY]);
        c.bc.now = T0 + 100;
        assertExit(await byOwner(c, requestUnbondBody(TON)), c.addr, 0);
        s = await state(c);
        assert.deepEqual([s.bonded, s.unbonding, s.unlockAt], [5n * TON, 5n * TON, T0 + 100 + DELAY]);
        assertExit(await byOwner(c, requestUnbondBody(5n * TON)), c.addr, 0);
        assert.equal((await state(c)).bonded, 0n);
        assertExit(await byOwner(c, requestUnbondBody(1n)), c.addr, E.overBonded);
    });

    it('withdraw: only after unlockAt (308), with something unbonding (307), by the owner (302)', async () => {
        assertExit(await byOwner(c, withdrawBody()), c.addr, E.nothingUnbonding);
        assertExit(await byOwner(c, requestUnbondBody(3n * TON)), c.addr, 0);
        c.bc.now = T0 + DELAY - 1;
        assertExit(await byOwner(c, withdrawBody()), c.addr, E.tooEarly);
        c.bc.now = T0 + DELAY;
        assertExit(await c.stranger.send({ to: c.addr, value: TON, body: withdrawBody() }), c.addr, E.notOwner);
        assertExit(await byOwner(c, withdrawBody(), StakeFee.control - 1n), c.addr, E.lowValue);

        const stakeBefore = await balanceOf(c, c.addr);
        const ownerBefore = await c.owner.getBalance();
        const r = await byOwner(c, withdrawBody());
        assertExit(r, c.addr, 0);
        const out = txFromTo(r, c.addr, c.owner.address).inMessage!;
        assert.ok(out.info.type === 'internal' && out.info.bounce && out.info.value.coins >= 3n * TON);
        const body = out.body.beginParse();
        assert.deepEqual([body.loadUint(32), body.loadCoins()], [StakeOp.release, 3n * TON]);
        const gained = (await c.owner.getBalance()) - ownerBefore;
        assert.ok(gained > 3n * TON - StakeFee.control && gained < 3n * TON, `${gained}`);
        const s = await state(c);
        assert.deepEqual([s.bonded, s.unbonding], [7n * TON, 0n]);
        const spent = stakeBefore - (await balanceOf(c, c.addr));
        assert.ok(spent >= 3n * TON && spent < 3n * TON + 1_000_000n, `${spent}`);
        assertExit(await byOwner(c, withdrawBody()), c.addr, E.nothingUnbonding);
    });

    it('slash: authority only (303), bonded first then unbonding, capped at the stake, pays the beneficiary', async () => {
        const beneficiary = c.stranger.address;
        assertExit(await byOwner(c, slashBody(TON, beneficiary), TON), c.addr, E.notAuthority);
        assertExit(await c.stranger.send({ to: c.addr, value: TON, body: slashBody(TON, beneficiary) }), c.addr, E.notAuthority);
        assertExit(await byRoot(c, slashBody(TON, beneficiary), StakeFee.control - 1n), c.addr, E.lowValue);
        assertExit(await byRoot(c, slashBody(0n, beneficiary)), c.addr, E.zeroAmount);

        assertExit(await byOwner(c, requestUnbondBody(4n * TON)), c.addr, 0);
        const before = await c.stranger.getBalance();
        let r = await byRoot(c, slashBody(5n * TON, beneficiary));
        assertExit(r, c.addr, 0);
        const out = txFromTo(r, c.addr, beneficiary).inMessage!;
        assert.ok(out.info.type === 'internal' && out.info.bounce && out.info.value.coins >= 5n * TON);
        assert.ok((await c.stranger.getBalance()) - before > 5n * TON - StakeFee.control);
        let s = await state(c);
        assert.deepEqual([s.bonded, s.unbonding, s.slashed], [TON, 4n * TON, 5n * TON]);

        r = await byRoot(c, slashBody(2n * TON, beneficiary));
        assertExit(r, c.addr, 0);
        s = await state(c);
        assert.deepEqual([s.bonded, s.unbonding, s.slashed], [0n, 3n * TON, 7n * TON], 'then from unbonding');
        // more than is left: takes what there is
        assertExit(await byRoot(c, slashBody(100n * TON, beneficiary)), c.addr, 0);
        s = await state(c);
        assert.deepEqual([s.bonded, s.unbonding, s.slashed], [0n, 0n, 10n * TON]);
        assert.ok(s.balance > 0n && s.balance < TON / 10n, `the fee buffer stays: ${s.balance}`);
        assertExit(await byRoot(c, slashBody(TON, beneficiary)), c.addr, E.nothingStaked);
        c.bc.now = T0 + DELAY;
        assertExit(await byOwner(c, withdrawBody()), c.addr, E.nothingUnbonding);
    });

    it('a bounced release is undone: the owner can withdraw again', async () => {
        const ghost = randomAddress(0x42); // no account: a bounceable payout to it bounces
        const g = await setup({ owner: ghost });
        assertExit(await sendFrom(g.bc, ghost, g.addr, TON, requestUnbondBody(3n * TON)), g.addr, 0);
        g.bc.now = T0 + DELAY;
        const before = await balanceOf(g, g.addr);
        const r = await sendFrom(g.bc, ghost, g.addr, TON, withdrawBody());
        const txs = onStake(g, r);
        assert.equal(txs.length, 2, 'withdraw + bounce');
        assert.equal(exitCodeOf(txs[0]), 0);
        assert.ok(txs[1].inMessage!.info.type === 'internal' && txs[1].inMessage!.info.bounced);
        assert.equal(exitCodeOf(txs[1]), 0);
        const s = await state(g);
        assert.deepEqual([s.bonded, s.unbonding, s.unlockAt], [7n * TON, 3n * TON, T0 + DELAY]);
        assert.ok((await balanceOf(g, g.addr)) >= before);
        assertExit(await sendFrom(g.bc, ghost, g.addr, TON, withdrawBody()), g.addr, 0);
        assert.equal((await state(g)).unbonding, 3n * TON);
    });

    it('a bounced slash is undone: bonded, unbonding and slashed as before', async () => {
        assertExit(await byOwner(c, requestUnbondBody(8n * TON)), c.addr, 0);
        const ghost = randomAddress(0x43);
        const r = await byRoot(c, slashBody(5n * TON, ghost));
        const txs = onStake(c, r);
        assert.equal(txs.length, 2, 'slash + bounce');
        assert.equal(exitCodeOf(txs[0]), 0);
        assert.ok(txs[1].inMessage!.info.type === 'internal' && txs[1].inMessage!.info.bounced);
        assert.equal(exitCodeOf(txs[1]), 0);
        const s = await state(c);
        assert.deepEqual([s.bonded, s.unbonding, s.slashed], [2n * TON, 8n * TON, 0n]);
        assert.ok(s.balance >= 10n * TON);
        assertExit(await byRoot(c, slashBody(5n * TON, c.stranger.address)), c.addr, 0);
        assert.deepEqual((await state(c)).slashed, 5n * TON);
    });

    it('rejects an unknown op (301) and malformed bodies (300); ignores stray bounces', async () => {
        const send = (body: Cell) => byOwner(c, body, TON);
        assertExit(await send(beginCell().storeUint(0xdeadbeef, 32).storeUint(0, 64).endCell()), c.addr, E.unknownOp);
        assertExit(await send(beginCell().storeUint(0xab, 16).endCell()), c.addr, E.malformed);
        assertExit(await send(beginCell().storeUint(StakeOp.deposit, 32).storeUint(0, 64).endCell()), c.addr, E.malformed);
        assertExit(await send(beginCell().storeUint(StakeOp.requestUnbond, 32).storeUint(0, 10).endCell()), c.addr, E.malformed);
        assertExit(await send(beginCell().storeSlice(withdrawBody().beginParse()).storeUint(1, 1).endCell()), c.addr, E.malformed);
        assertExit(await send(beginCell().storeSlice(depositBody(DELAY).beginParse()).storeRef(Cell.EMPTY).endCell()), c.addr, E.malformed);
        const noBeneficiary = beginCell().storeUint(StakeOp.slash, 32).storeUint(0, 64).storeCoins(TON).endCell();
        assertExit(await byRoot(c, noBeneficiary, TON), c.addr, E.malformed);

        for (const body of [
            beginCell().storeUint(0xffffffff, 32).storeUint(0x12345678, 32).endCell(),
            beginCell().storeUint(0xffffffff, 32).endCell(),
        ]) {
            const r = await c.bc.sendMessage({ info: { type: 'internal', ihrDisabled: true, bounce: false, bounced: true,
                src: c.stranger.address, dest: c.addr, value: { coins: TON }, ihrFee: 0n, forwardFee: 0n,
                createdLt: 0n, createdAt: 0 }, body });
            assertExit(r, c.addr, 0);
        }
        const s = await state(c);
        assert.deepEqual([s.bonded, s.unbonding, s.slashed, s.unbondDelay], [10n * TON, 0n, 0n, DELAY]);
    });

    it('a slash of an empty stake is refused (309)', async () => {
        const bc = c.bc;
        const { init, address } = stakeInit({ ...c.cfg, nodeKey: Buffer.alloc(32, 3) });
        // deployed by anyone with a plain transfer: holds nothing
        const r = await c.stranger.send({ to: address, value: TON, init, bounce: false });
        assertExit(r, address, 0);
        assertExit(await c.root.send({ to: address, value: TON, body: slashBody(TON, c.root.address) }), address, E.nothingStaked);
        const s = await getStakeState((n, a) => bc.runGetMethod(address, n, a ?? []));
        assert.deepEqual([s.bonded, s.unbonding, s.unbondDelay], [0n, 0n, 0]);
    });
});
