// The local chain service (chain/server.mjs), in process: toncenter subset, dev endpoints, persistence.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Address, beginCell, Cell, Dictionary, external, storeMessage } from '@ton/core';
import nacl from 'tweetnacl';
// @ts-ignore -- plain ESM without types
import { createServer, getMethodConfig, LocalChain } from '../chain/server.mjs';
import { channelCode, channelData, topUpBody } from '../wrappers/Channel.ts';
import { TON } from './helpers.ts';

async function start(dataDir: string) {
    const chain = new LocalChain({ dataDir, wallClock: false });
    await chain.open();
    const server = createServer(chain);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const stop = () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
    return { chain, base, stop };
}

async function call(base: string, p: string, body?: unknown) {
    const r = await fetch(base + p, body === undefined ? {} : { method: 'POST', body: JSON.stringify(body) });
    return { status: r.status, json: (await r.json()) as any };
}

describe('local chain', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cocoon-chain-'));
    const user = new Address(0, Buffer.alloc(32, 7));
    const key = nacl.sign.keyPair.fromSeed(Buffer.alloc(32, 1));
    const cfg = { networkId: 1, channelId: 1n, payer: user, payee: new Address(0, Buffer.alloc(32, 8)),
        payerKey: Buffer.from(key.publicKey), closeDelay: 3600 };
    let s: Awaited<ReturnType<typeof start>>;
    before(async () => { s = await start(dir); });
    after(async () => { await s.stop(); fs.rmSync(dir, { recursive: true, force: true }); });

    it('faucet, balance, transactions', async () => {
        const f = await call(s.base, '/dev/faucet', { address: user.toRawString(), amount: (3n * TON).toString() });
        assert.equal(f.json.ok, true);
        const info = await call(s.base, `/api/v2/getAddressInformation?address=${user.toString()}`);
        assert.equal(info.json.result.balance, (3n * TON).toString());
        assert.equal(info.json.result.state, 'uninitialized');
        const txs = await call(s.base, `/api/v2/getTransactions?address=${user.toString()}&limit=5`);
        assert.equal(txs.json.result.length, 1);
        assert.equal(txs.json.result[0].in_msg.value, (3n * TON).toString());
        assert.equal(txs.json.result[0].transaction_id.lt, info.json.result.last_transaction_id.lt);
    });

    it('deploys a channel and runs its get-methods (plain and JSON-RPC)', async () => {
        const d = await call(s.base, '/dev/deploy', {
            code: channelCode().toBoc().toString('base64'),
            data: channelData(cfg).toBoc().toString('base64'),
            amount: TON.toString(),
        });
        assert.equal(d.json.ok, true, JSON.stringify(d.json));
        assert.equal(d.json.result.state, 'active');
        const addr = d.json.result.address;
        const r = await call(s.base, '/api/v2/runGetMethod', { address: addr, method: 'params', stack: [] });
        assert.equal(r.json.result.exit_code, 0);
        assert.deepEqual(r.json.result.stack[0], ['num', '0x1']);
        assert.equal(r.json.result.stack[4][1], '0x' + Buffer.from(key.publicKey).toString('hex').replace(/^0+/, ''));
        const rpc = await call(s.base, '/api/v2/jsonRPC', { id: 3, jsonrpc: '2.0', method: 'runGetMethod', params: { address: addr, method: 'unredeemed', stack: [] } });
        assert.equal(rpc.json.id, 3);
        assert.deepEqual(rpc.json.result.stack, [['num', '0x0']]);
        // A top-up by a stranger (the faucet) is refused with the contract's exit code, visible in the tx.
        await call(s.base, '/dev/deploy', { code: channelCode().toBoc().toString('base64'), data: channelData(cfg).toBoc().toString('base64'), amount: TON.toString(), body: topUpBody(TON / 2n).toBoc().toString('base64') });
        const txs = await call(s.base, `/api/v2/getTransactions?address=${addr}&limit=1`);
        assert.equal(txs.json.result[0].compute_exit_code, 202);
    });

    it('runs get-methods without the validator sets, as on the whole config', async () => {
        const d = await call(s.base, '/dev/deploy', {
            code: channelCode().toBoc().toString('base64'),
            data: channelData({ ...cfg, channelId: 2n }).toBoc().toString('base64'),
            amount: TON.toString(),
        });
        const addr = d.json.result.address;
        const full = s.chain.bc.networkConfig;
        for (const method of ['state', 'unredeemed']) {
            const r = await call(s.base, '/api/v2/runGetMethod', { address: addr, method, stack: [] });
            assert.equal(r.json.result.exit_code, 0);
            // The sandbox's own run, on the whole config: the same answer and gas.
            const whole = await s.chain.bc.runGetMethod(Address.parse(addr), method, []);
            assert.equal(r.json.result.gas_used, Number(whole.gasUsed), method);
            assert.deepEqual(
                r.json.result.stack.map((e: [string, string]) => BigInt(e[1])),
                whole.stack.map((e) => (e.type === 'int' ? e.value : null)),
                method,
            );
        }
        // Transactions (and the saved state) keep the whole config.
        assert.equal(s.chain.bc.networkConfig, full);
        const params = (b64: string) =>
            Dictionary.loadDirect(Dictionary.Keys.Int(32), Dictionary.Values.Cell(), Cell.fromBase64(b64));
        const slim = params(getMethodConfig(full));
        assert.equal(slim.has(34), false);
        assert.equal(slim.has(44), false);
        for (const p of params(full).keys().filter((k) => ![32, 33, 34, 35, 36, 37, 44].includes(k))) {
            assert.ok(slim.get(p)!.equals(params(full).get(p)!), `param ${p}`);
        }
    });

    it('answers errors in the toncenter envelope', async () => {
        const bad = await call(s.base, '/api/v2/getAddressInformation?address=nope');
        assert.equal(bad.status, 416);
        assert.deepEqual([bad.json.ok, bad.json.code], [false, 416]);
        const ext = external({ to: user, body: beginCell().storeUint(1, 32).endCell() });
        const boc = beginCell().store(storeMessage(ext)).endCell().toBoc().toString('base64');
        const sent = await call(s.base, '/api/v2/sendBoc', { boc });
        assert.equal(sent.status, 500); // no code on that account: not accepted
        assert.match(sent.json.error, /cannot apply external message/);
        const rpc = await call(s.base, '/api/v2/jsonRPC', { id: 1, method: 'nope', params: {} });
        assert.deepEqual([rpc.status, rpc.json.ok, rpc.json.code], [200, false, 404]);
    });

    it('advances the clock and keeps everything across a restart', async () => {
        const h0 = (await call(s.base, '/dev/health')).json.result;
        const adv = await call(s.base, '/dev/advance', { seconds: 7200 });
        assert.equal(adv.json.result.now, h0.now + 7200);
        await s.stop();
        s = await start(dir);
        const h1 = (await call(s.base, '/dev/health')).json.result;
        assert.equal(h1.now, h0.now + 7200);
        assert.equal(h1.transactions, h0.transactions);
        const info = await call(s.base, `/api/v2/getAddressInformation?address=${user.toString()}`);
        assert.equal(info.json.result.balance, (3n * TON).toString());
    });

    it('follows wall time in wall-clock mode; advance adds to it', async () => {
        const wall = new LocalChain({ dataDir: null, wallClock: true });
        await wall.open();
        const t = Math.floor(Date.now() / 1000);
        const h = await wall.devHealth();
        assert.ok(h.now >= t && h.now <= t + 2, `${h.now} vs ${t}`);
        const a = await wall.devAdvance({ seconds: 3600 });
        assert.ok(a.now >= t + 3600 && a.now <= t + 3602);
        assert.ok((await wall.devHealth()).now >= a.now);
    });
});
