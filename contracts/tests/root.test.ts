import { describe, it, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Address, beginCell, Cell } from '@ton/core';
import { Blockchain, type SandboxContract, type TreasuryContract } from '@ton/sandbox';
import {
    getRootConfig, getRootLists, HashKind, paramsCell, ROOT_FEE_UPDATE, RootErr as E, rootInit, setHashBody,
    setOwnerBody, setParamsBody, setProxyBody, type RootParams,
} from '../wrappers/Root.ts';
import { assertExit, randomAddress, TON } from './helpers.ts';

const NET = 0x636f636f;
const P0: RootParams = {
    basePricePerToken: 1000n, promptMult: 10000, cachedMult: 1000, completionMult: 40000, reasoningMult: 40000,
    proxyCommission: 1000, clientCloseDelay: 86400, workerCloseDelay: 172800,
    minClientDeposit: 1n * TON, minProxyDeposit: 10n * TON,
};

describe('root', () => {
    let bc: Blockchain;
    let owner: SandboxContract<TreasuryContract>;
    let stranger: SandboxContract<TreasuryContract>;
    let addr: Address;
    const cfg = () => getRootConfig((n, a) => bc.runGetMethod(addr, n, a ?? []));
    const update = (body: Cell, from = owner, value = ROOT_FEE_UPDATE) => from.send({ to: addr, value, body });
    const allowed = async (getter: string, h: bigint) =>
        (await bc.runGetMethod(addr, getter, [{ type: 'int', value: h }])).stackReader.readBoolean();

    beforeEach(async () => {
        bc = await Blockchain.create();
        owner = await bc.treasury('owner');
        stranger = await bc.treasury('stranger');
        const { init, address } = rootInit(owner.address, NET, P0);
        addr = address;
        assertExit(await owner.send({ to: addr, value: TON, init, bounce: false }), addr, 0);
    });

    it('exposes everything a node needs at start', async () => {
        assert.deepEqual(await cfg(), { version: 0, networkId: NET, ...P0 });
        const o = (await bc.runGetMethod(addr, 'owner')).stackReader.readAddress();
        assert.ok(o.equals(owner.address));
        assert.equal((await bc.runGetMethod(addr, 'version')).stackReader.readNumber(), 0);
        assert.equal((await bc.runGetMethod(addr, 'networkId')).stackReader.readNumber(), NET);
        const l = await getRootLists((n, a) => bc.runGetMethod(addr, n, a ?? []));
        assert.deepEqual([l.proxyImages, l.workerImages, l.models, l.proxies.size], [[], [], [], 0]);
    });

    it('owner updates params; each update bumps the version', async () => {
        const P1 = { ...P0, basePricePerToken: 2000n, cachedMult: 500, proxyCommission: 1500, minClientDeposit: 3n * TON };
        assertExit(await update(setParamsBody(P1)), addr, 0);
        assert.deepEqual(await cfg(), { version: 1, networkId: NET, ...P1 });
        assertExit(await update(setParamsBody(P0)), addr, 0);
        assert.deepEqual(await cfg(), { version: 2, networkId: NET, ...P0 });
    });

    it('owner allows and removes image hashes and model ids', async () => {
        const h = (n: number) => BigInt('0x' + Buffer.alloc(32, n).toString('hex'));
        assertExit(await update(setHashBody(HashKind.proxyImage, h(1), true)), addr, 0);
        assertExit(await update(setHashBody(HashKind.workerImage, h(2), true)), addr, 0);
        assertExit(await update(setHashBody(HashKind.workerImage, h(3), true)), addr, 0);
        assertExit(await update(setHashBody(HashKind.model, h(4), true)), addr, 0);
        assert.equal(await allowed('isProxyImageAllowed', h(1)), true);
        assert.equal(await allowed('isProxyImageAllowed', h(2)), false);
        assert.equal(await allowed('isWorkerImageAllowed', h(3)), true);
        assert.equal(await allowed('isModelAllowed', h(4)), true);
        assertExit(await update(setHashBody(HashKind.workerImage, h(3), false)), addr, 0);
        assert.equal(await allowed('isWorkerImageAllowed', h(3)), false);
        const l = await getRootLists((n, a) => bc.runGetMethod(addr, n, a ?? []));
        assert.deepEqual([l.proxyImages, l.workerImages, l.models], [[h(1)], [h(2)], [h(4)]]);
        assert.equal((await cfg()).version, 5);
    });

    it('owner registers and removes proxy addresses', async () => {
        const p1 = randomAddress(1);
        const p2 = randomAddress(2);
        assertExit(await update(setProxyBody(p1, 'proxy1.example:8443')), addr, 0);
        assertExit(await update(setProxyBody(p2, 'proxy2.example:8443')), addr, 0);
        assertExit(await update(setProxyBody(p1, null)), addr, 0);
        const l = await getRootLists((n, a) => bc.runGetMethod(addr, n, a ?? []));
        assert.deepEqual([...l.proxies], [[p2.toRawString(), 'proxy2.example:8443']]);
        const ep = async (a: Address) => (await bc.runGetMethod(addr, 'proxyEndpoint',
            [{ type: 'slice', cell: beginCell().storeAddress(a).endCell() }])).stackReader.readCellOpt();
        assert.equal(await ep(p1), null);
        assert.equal((await ep(p2))!.beginParse().loadStringTail(), 'proxy2.example:8443');
        assert.equal((await cfg()).version, 3);
    });

    it('only the owner may update (102); ownership can be handed over', async () => {
        for (const body of [setParamsBody(P0), setHashBody(1, 1n, true), setProxyBody(randomAddress(1), 'x'),
            setOwnerBody(stranger.address)]) {
            assertExit(await update(body, stranger), addr, E.notOwner);
        }
        assert.equal((await cfg()).version, 0);
        assertExit(await update(setOwnerBody(stranger.address)), addr, 0);
        assertExit(await update(setHashBody(1, 1n, true)), addr, E.notOwner);
        assertExit(await update(setHashBody(1, 1n, true), stranger), addr, 0);
        assert.equal((await cfg()).version, 2);
    });

    it('rejects too little value (103), an unknown kind (104), bad params (105)', async () => {
        assertExit(await update(setHashBody(1, 1n, true), owner, ROOT_FEE_UPDATE - 1n), addr, E.lowValue);
        assertExit(await update(setHashBody(4, 1n, true)), addr, E.badKind);
        assertExit(await update(setHashBody(0, 1n, true)), addr, E.badKind);
        assertExit(await update(setParamsBody({ ...P0, proxyCommission: 10001 })), addr, E.badParams);
        assertExit(await update(setParamsBody({ ...P0, basePricePerToken: 0n })), addr, E.badParams);
        assertExit(await update(setParamsBody({ ...P0, completionMult: 0 })), addr, E.badParams);
        assert.equal((await cfg()).version, 0);
    });

    it('rejects an unknown op (101) and malformed bodies (100)', async () => {
        assertExit(await update(beginCell().storeUint(0xdeadbeef, 32).endCell()), addr, E.unknownOp);
        assertExit(await update(beginCell().storeUint(1, 8).endCell()), addr, E.malformed);
        assertExit(await update(beginCell().storeUint(0x73687368, 32).storeUint(0, 64).endCell()), addr, E.malformed);
        const extra = beginCell().storeSlice(setHashBody(1, 1n, true).beginParse()).storeUint(0, 1).endCell();
        assertExit(await update(extra), addr, E.malformed);
        const shortParams = beginCell().storeCoins(1).storeUint(1, 32).endCell();
        assertExit(await update(setParamsBody(shortParams)), addr, E.malformed);
        const longParams = beginCell().storeSlice(paramsCell(P0).beginParse()).storeUint(0, 8).endCell();
        assertExit(await update(setParamsBody(longParams)), addr, E.malformed);
        assert.equal((await cfg()).version, 0);
    });

    it('accepts plain transfers and ignores bounced messages without changing state', async () => {
        assertExit(await stranger.send({ to: addr, value: TON }), addr, 0);
        const r = await bc.sendMessage({ info: { type: 'internal', ihrDisabled: true, bounce: false, bounced: true,
            src: owner.address, dest: addr, value: { coins: TON }, ihrFee: 0n, forwardFee: 0n, createdLt: 0n,
            createdAt: 0 }, body: beginCell().storeUint(0xffffffff, 32).storeSlice(setOwnerBody(stranger.address).beginParse()).endCell() });
        assertExit(r, addr, 0);
        assert.equal((await cfg()).version, 0);
        const o = (await bc.runGetMethod(addr, 'owner')).stackReader.readAddress();
        assert.ok(o.equals(owner.address));
    });
});
