import { describe, it, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Address, beginCell, Cell } from '@ton/core';
import { Blockchain, type SandboxContract, type TreasuryContract } from '@ton/sandbox';
import nacl from 'tweetnacl';
import {
    ChannelErr as E, ChannelFee, channelInit, closeBody, getChannelState, redeemBody, signVoucher,
    topUpBody, voucherCell, withdrawBody, VOUCHER_TAG, type ChannelConfig,
} from '../wrappers/Channel.ts';
import { assertExit, exitCodeOf, randomAddress, sendFrom, TON, txFromTo } from './helpers.ts';

const NET = 0x636f636f; // network tag of the test network
const DELAY = 3600;
const key = nacl.sign.keyPair.fromSeed(Buffer.alloc(32, 7));
const otherKey = nacl.sign.keyPair.fromSeed(Buffer.alloc(32, 8));
const T0 = 1_800_000_000;

interface Ctx {
    bc: Blockchain;
    payer: SandboxContract<TreasuryContract>;
    payee: SandboxContract<TreasuryContract>;
    stranger: SandboxContract<TreasuryContract>;
    addr: Address;
    cfg: ChannelConfig;
}

async function setup(opts: { payee?: Address; payer?: Address; deposit?: bigint } = {}): Promise<Ctx> {
    const bc = await Blockchain.create();
    bc.now = T0;
    const payer = await bc.treasury('payer');
    const payee = await bc.treasury('payee');
    const stranger = await bc.treasury('stranger');
    const cfg: ChannelConfig = {
        networkId: NET, channelId: 1n, payer: opts.payer ?? payer.address, payee: opts.payee ?? payee.address,
        payerKey: Buffer.from(key.publicKey), closeDelay: DELAY,
    };
    const { init, address } = channelInit(cfg);
    const deposit = opts.deposit ?? 5n * TON;
    const r = opts.payer
        ? await bc.sendMessage({ info: { type: 'internal', ihrDisabled: true, bounce: false, bounced: false,
            src: opts.payer, dest: address, value: { coins: deposit + ChannelFee.topUp }, ihrFee: 0n, forwardFee: 0n,
            createdLt: 0n, createdAt: 0 }, init, body: topUpBody(deposit) })
        : await payer.send({ to: address, value: deposit + ChannelFee.topUp, init, body: topUpBody(deposit), bounce: false });
    assertExit(r, address, 0, 'deploy');
    return { bc, payer, payee, stranger, addr: address, cfg };
}

const state = (c: Ctx) => getChannelState((n, a) => c.bc.runGetMethod(c.addr, n, a ?? []));
function voucher(c: Ctx, seqno: number, total: bigint, o: { net?: number; channel?: Address; sk?: Uint8Array } = {}) {
    const v = voucherCell(o.net ?? NET, o.channel ?? c.addr, seqno, total);
    return redeemBody(v, signVoucher(v, o.sk ?? key.secretKey));
}
const redeem = (c: Ctx, body: Cell, value = 50_000_000n) => c.payee.send({ to: c.addr, value, body });

describe('channel', () => {
    let c: Ctx;
    beforeEach(async () => { c = await setup(); });

    it('deploys with the first top-up and exposes its state and params', async () => {
        const s = await state(c);
        assert.equal(s.deposit, 5n * TON);
        assert.equal(s.redeemed, 0n);
        assert.equal(s.seqno, 0);
        assert.equal(s.closeAt, 0);
        assert.equal(s.closeDelay, DELAY);
        assert.ok(s.balance >= 5n * TON);
        const p = (await c.bc.runGetMethod(c.addr, 'params')).stackReader;
        assert.equal(p.readNumber(), NET);
        assert.equal(p.readBigNumber(), 1n);
        assert.ok(p.readAddress().equals(c.payer.address));
        assert.ok(p.readAddress().equals(c.payee.address));
        assert.equal(p.readBigNumber(), BigInt('0x' + Buffer.from(key.publicKey).toString('hex')));
        assert.equal(p.readNumber(), DELAY);
    });

    it('redeems cumulative vouchers, paying exactly the difference', async () => {
        const before = (await c.bc.getContract(c.addr)).balance;
        let r = await redeem(c, voucher(c, 1, 1n * TON));
        assertExit(r, c.addr, 0);
        const out = txFromTo(r, c.addr, c.payee.address).inMessage!;
        assert.equal(out.info.type, 'internal');
        assert.ok(out.info.type === 'internal' && out.info.value.coins >= 1n * TON);
        const after = (await c.bc.getContract(c.addr)).balance;
        assert.ok(before - after >= 1n * TON && before - after < 1n * TON + 1_000_000n, `${before - after}`);
        r = await redeem(c, voucher(c, 5, 3n * TON));
        assertExit(r, c.addr, 0);
        const s = await state(c);
        assert.deepEqual([s.redeemed, s.seqno], [3n * TON, 5]);
        const u = (await c.bc.runGetMethod(c.addr, 'unredeemed')).stackReader.readBigNumber();
        assert.equal(u, 2n * TON);
    });

    it('rejects a replayed voucher (209) and a lower or equal total (210)', async () => {
        assertExit(await redeem(c, voucher(c, 2, 2n * TON)), c.addr, 0);
        assertExit(await redeem(c, voucher(c, 2, 2n * TON)), c.addr, E.seqnoReplay);
        assertExit(await redeem(c, voucher(c, 1, 3n * TON)), c.addr, E.seqnoReplay);
        assertExit(await redeem(c, voucher(c, 3, 1n * TON)), c.addr, E.totalNotIncreasing);
        assertExit(await redeem(c, voucher(c, 3, 2n * TON)), c.addr, E.totalNotIncreasing);
        assert.equal((await state(c)).redeemed, 2n * TON);
    });

    it('rejects vouchers for another channel (207) or network (206), a wrong signer (208), a bad tag (205)', async () => {
        assertExit(await redeem(c, voucher(c, 1, TON, { channel: randomAddress(9) })), c.addr, E.wrongChannel);
        assertExit(await redeem(c, voucher(c, 1, TON, { net: NET + 1 })), c.addr, E.wrongNetwork);
        assertExit(await redeem(c, voucher(c, 1, TON, { sk: otherKey.secretKey })), c.addr, E.badSignature);
        // a valid signature over a different cell than the one sent
        const v1 = voucherCell(NET, c.addr, 1, TON);
        const v2 = voucherCell(NET, c.addr, 1, 2n * TON);
        assertExit(await redeem(c, redeemBody(v2, signVoucher(v1, key.secretKey))), c.addr, E.badSignature);
        const bad = beginCell().storeUint(VOUCHER_TAG + 1, 32).storeInt(NET, 32).storeAddress(c.addr)
            .storeUint(1, 32).storeCoins(TON).endCell();
        assertExit(await redeem(c, redeemBody(bad, signVoucher(bad, key.secretKey))), c.addr, E.badVoucherTag);
        assert.equal((await state(c)).redeemed, 0n);
    });

    it('rejects a redeem above the deposit (211), by a non-payee (203), with too little value (204)', async () => {
        assertExit(await redeem(c, voucher(c, 1, 5n * TON + 1n)), c.addr, E.overDeposit);
        assertExit(await c.stranger.send({ to: c.addr, value: TON, body: voucher(c, 1, TON) }), c.addr, E.notPayee);
        assertExit(await c.payer.send({ to: c.addr, value: TON, body: voucher(c, 1, TON) }), c.addr, E.notPayee);
        assertExit(await redeem(c, voucher(c, 1, TON), ChannelFee.redeem - 1n), c.addr, E.lowValue);
        assertExit(await redeem(c, voucher(c, 1, 5n * TON), ChannelFee.redeem), c.addr, 0);
    });

    it('top-up: payer only (202), value must cover amount + fee (204), amount > 0 (216)', async () => {
        assertExit(await c.stranger.send({ to: c.addr, value: 2n * TON, body: topUpBody(TON) }), c.addr, E.notPayer);
        assertExit(await c.payee.send({ to: c.addr, value: 2n * TON, body: topUpBody(TON) }), c.addr, E.notPayer);
        assertExit(await c.payer.send({ to: c.addr, value: TON + ChannelFee.topUp - 1n, body: topUpBody(TON) }), c.addr, E.lowValue);
        assertExit(await c.payer.send({ to: c.addr, value: TON, body: topUpBody(0n) }), c.addr, E.zeroAmount);
        assertExit(await c.payer.send({ to: c.addr, value: TON + ChannelFee.topUp, body: topUpBody(TON) }), c.addr, 0);
        assert.equal((await state(c)).deposit, 6n * TON);
        // a plain transfer is accepted as fee buffer but not credited
        assertExit(await c.stranger.send({ to: c.addr, value: TON }), c.addr, 0);
        assert.equal((await state(c)).deposit, 6n * TON);
    });

    it('rejects an unknown op (201) and malformed bodies (200)', async () => {
        const send = (body: Cell) => c.payer.send({ to: c.addr, value: TON, body });
        assertExit(await send(beginCell().storeUint(0xdeadbeef, 32).storeUint(0, 64).endCell()), c.addr, E.unknownOp);
        assertExit(await send(beginCell().storeUint(0xab, 16).endCell()), c.addr, E.malformed);
        assertExit(await send(beginCell().storeUint(0x746f7075, 32).storeUint(0, 10).endCell()), c.addr, E.malformed);
        assertExit(await send(beginCell().storeSlice(topUpBody(TON).beginParse()).storeUint(1, 1).endCell()), c.addr, E.malformed);
        assertExit(await send(beginCell().storeSlice(closeBody().beginParse()).storeRef(Cell.EMPTY).endCell()), c.addr, E.malformed);
        // redeem without its voucher ref, and with a truncated voucher
        const noRef = beginCell().storeUint(0x72646d76, 32).storeUint(0, 64).storeBuffer(Buffer.alloc(64)).endCell();
        assertExit(await redeem(c, noRef), c.addr, E.malformed);
        const short = beginCell().storeUint(VOUCHER_TAG, 32).storeInt(NET, 32).endCell();
        assertExit(await redeem(c, redeemBody(short, signVoucher(short, key.secretKey))), c.addr, E.malformed);
        assertExit(await redeem(c, redeemBody(Cell.EMPTY, signVoucher(Cell.EMPTY, key.secretKey))), c.addr, E.malformed);
        assert.equal((await state(c)).deposit, 5n * TON);
    });

    it('close then withdraw after the delay; the payee redeems during the delay', async () => {
        assertExit(await c.payer.send({ to: c.addr, value: TON, body: withdrawBody() }), c.addr, E.notClosing);
        assertExit(await c.stranger.send({ to: c.addr, value: TON, body: closeBody() }), c.addr, E.notPayer);
        assertExit(await c.payee.send({ to: c.addr, value: TON, body: closeBody() }), c.addr, E.notPayer);
        assertExit(await c.payer.send({ to: c.addr, value: ChannelFee.control - 1n, body: closeBody() }), c.addr, E.lowValue);
        assertExit(await c.payer.send({ to: c.addr, value: ChannelFee.control, body: closeBody() }), c.addr, 0);
        assert.equal((await state(c)).closeAt, T0 + DELAY);
        assertExit(await c.payer.send({ to: c.addr, value: TON, body: closeBody() }), c.addr, E.alreadyClosing);
        assertExit(await c.payer.send({ to: c.addr, value: 2n * TON, body: topUpBody(TON) }), c.addr, E.closed);

        c.bc.now = T0 + DELAY - 1;
        assertExit(await c.payer.send({ to: c.addr, value: TON, body: withdrawBody() }), c.addr, E.tooEarly);
        assertExit(await c.stranger.send({ to: c.addr, value: TON, body: withdrawBody() }), c.addr, E.notPayer);
        assertExit(await redeem(c, voucher(c, 1, 2n * TON)), c.addr, 0);

        c.bc.now = T0 + DELAY;
        const payerBefore = await c.payer.getBalance();
        const r = await c.payer.send({ to: c.addr, value: ChannelFee.control, body: withdrawBody() });
        assertExit(r, c.addr, 0);
        const refund = txFromTo(r, c.addr, c.payer.address).inMessage!;
        assert.ok(refund.info.type === 'internal' && refund.info.value.coins >= 3n * TON);
        assert.ok((await c.payer.getBalance()) - payerBefore > 3n * TON - 50_000_000n);
        const s = await state(c);
        assert.deepEqual([s.deposit, s.redeemed], [2n * TON, 2n * TON]);
        assert.equal((await c.bc.getContract(c.addr)).balance, 0n);
        // nothing left to redeem after the withdrawal
        assertExit(await redeem(c, voucher(c, 2, 3n * TON)), c.addr, E.overDeposit);
    });

    it('a bounced payout is undone: the payee can redeem the same voucher again', async () => {
        const ghost = randomAddress(0x42); // no account: a bounceable payout to it bounces
        const g = await setup({ payee: ghost });
        const body = voucher(g, 1, 2n * TON);
        const before = (await g.bc.getContract(g.addr)).balance;
        const r = await sendFrom(g.bc, ghost, g.addr, TON, body);
        const txs = r.transactions.filter((t) => t.inMessage?.info.dest instanceof Address && t.inMessage.info.dest.equals(g.addr));
        assert.equal(txs.length, 2, 'redeem + bounce');
        assert.equal(exitCodeOf(txs[0]), 0);
        assert.ok(txs[1].inMessage!.info.type === 'internal' && txs[1].inMessage!.info.bounced);
        assert.equal(exitCodeOf(txs[1]), 0);
        const s = await state(g);
        assert.deepEqual([s.redeemed, s.seqno, s.deposit], [0n, 0, 5n * TON]);
        assert.ok((await g.bc.getContract(g.addr)).balance >= before);
        assertExit(await sendFrom(g.bc, ghost, g.addr, TON, body), g.addr, 0);
    });

    it('a bounced refund is undone: the payer can withdraw again', async () => {
        const ghost = randomAddress(0x43);
        const g = await setup({ payer: ghost });
        assertExit(await sendFrom(g.bc, ghost, g.addr, TON, closeBody()), g.addr, 0);
        g.bc.now = T0 + DELAY;
        const r = await sendFrom(g.bc, ghost, g.addr, TON, withdrawBody());
        const txs = r.transactions.filter((t) => t.inMessage?.info.dest instanceof Address && t.inMessage.info.dest.equals(g.addr));
        assert.equal(txs.length, 2, 'withdraw + bounce');
        assert.equal(exitCodeOf(txs[1]), 0);
        const s = await state(g);
        assert.deepEqual([s.deposit, s.redeemed], [5n * TON, 0n]);
        assert.ok(s.balance >= 5n * TON);
    });

    it('ignores a stray bounced message', async () => {
        const r = await c.bc.sendMessage({ info: { type: 'internal', ihrDisabled: true, bounce: false, bounced: true,
            src: c.stranger.address, dest: c.addr, value: { coins: TON }, ihrFee: 0n, forwardFee: 0n, createdLt: 0n,
            createdAt: 0 }, body: beginCell().storeUint(0xffffffff, 32).storeUint(0x12345678, 32).endCell() });
        assertExit(r, c.addr, 0);
        const s = await state(c);
        assert.deepEqual([s.deposit, s.redeemed, s.seqno], [5n * TON, 0n, 0]);
    });
});
