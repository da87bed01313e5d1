import { describe, it, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Address, beginCell, Cell } from '@ton/core';
import { Blockchain, type SandboxContract, type TreasuryContract } from '@ton/sandbox';
import {
    getRootConfig, getRootLists, getRootMarket, HashKind, marketCell, paramsCell, parseProxyEntry, proxyEntryCell,
    ROOT_FEE_UPDATE, RootErr as E, rootInit, setHashBody, setOwnerBody, setParamsBody, setProxyBody,
    type ProxyEntry, type RootMarket, type RootParams,
} from '../wrappers/Root.ts';
import { assertExit, randomAddress, TON } from './helpers.ts';

const NET = 0x636f636f;
const P0: RootParams = {
    basePricePerToken: 1000n, promptMult: 10000, cachedMult: 1000, completionMult: 40000, reasoningMult: 40000,
    proxyCommission: 1000, clientCloseDelay: 86400, workerCloseDelay: 172800,
    minClientDeposit: 1n * TON, minProxyDeposit: 10n * TON,
};
const M0: RootMarket = {
    minWorkerStake: 10n * TON, minProxyStake: 20n * TON, unbondingDelay: 3600,
    tierTee: 10000, tierGpu: 12000, tierAudited: 15000, tierReplicated: 30000, tierRegion: 11000,
};
const KEY = (n: number) => BigInt('0x' + Buffer.alloc(32, n).toString('hex'));

describe('root', () => {
    let bc: Blockchain;
    let owner: SandboxContract<TreasuryContract>;
    let stranger: SandboxContract<TreasuryContract>;
    let addr: Address;
    const get = (n: string, a?: any[]) => bc.runGetMethod(addr, n, a ?? []);
    const cfg = () => getRootConfig(get);
    const market = () => getRootMarket(get);
    const lists = () => getRootLists(get);
    const update = (body: Cell, from = owner, value = ROOT_FEE_UPDATE) => from.send({ to: addr, value, body });
    const allowed = async (getter: string, h: bigint) =>
        (await get(getter, [{ type: 'int', value: h }])).stackReader.readBoolean();
    const proxy = async (a: Address) => {
        const c = (await get('proxy', [{ type: 'slice', cell: beginCell().storeAddress(a).endCell() }]))
            .stackReader.readCellOpt();
        return c === null ? null : parseProxyEntry(c);
    };

    beforeEach(async () => {
        bc = await Blockchain.create();
        owner = await bc.treasury('owner');
        stranger = await bc.treasury('stranger');
        const { init, address } = rootInit(owner.address, NET, P0, M0);
        addr = address;
        assertExit(await owner.send({ to: addr, value: TON, init, bounce: false }), addr, 0);
    });

    it('exposes everything a node needs at start', async () => {
        assert.deepEqual(await cfg(), { version: 0, networkId: NET, ...P0 });
        assert.deepEqual(await market(), M0);
        const o = (await get('owner')).stackReader.readAddress();
        assert.ok(o.equals(owner.address));
        assert.equal((await get('version')).stackReader.readNumber(), 0);
        assert.equal((await get('networkId')).stackReader.readNumber(), NET);
        const l = await lists();
        assert.deepEqual([l.proxyImages, l.workerImages, l.models, l.proxies.size], [[], [], [], 0]);
    });

    it('owner updates params and market at once; each update bumps the version', async () => {
        const P1 = { ...P0, basePricePerToken: 2000n, cachedMult: 500, proxyCommission: 1500, minClientDeposit: 3n * TON };
        const M1 = { ...M0, minWorkerStake: 5n * TON, unbondingDelay: 60, tierGpu: 13000, tierRegion: 1 };
        assertExit(await update(setParamsBody(P1, M1)), addr, 0);
        assert.deepEqual(await cfg(), { version: 1, networkId: NET, ...P1 });
        assert.deepEqual(await market(), M1);
        assertExit(await update(setParamsBody(P0, M0)), addr, 0);
        assert.deepEqual(await cfg(), { version: 2, networkId: NET, ...P0 });
        assert.deepEqual(await market(), M0);
        // Zero stakes and a zero unbonding delay are allowed (a network without stakes).
        const free = { ...M0, minWorkerStake: 0n, minProxyStake: 0n, unbondingDelay: 0 };
        assertExit(await update(setParamsBody(P0, free)), addr, 0);
        assert.deepEqual(await market(), free);
    });

    it('owner allows and removes image hashes and model ids', async () => {
        const h = KEY;
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
        // Removing what is not there is accepted (idempotent) and still bumps the version.
        assertExit(await update(setHashBody(HashKind.model, h(9), false)), addr, 0);
        const l = await lists();
        assert.deepEqual([l.proxyImages, l.workerImages, l.models], [[h(1)], [h(2)], [h(4)]]);
        assert.equal((await cfg()).version, 6);
    });

    it('owner registers, replaces and removes proxies (node key + endpoint)', async () => {
        const p1 = randomAddress(1);
        const p2 = randomAddress(2);
        const e1: ProxyEntry = { nodeKey: KEY(0x11), endpoint: 'proxy1.example:8443' };
        const e2: ProxyEntry = { nodeKey: KEY(0x22), endpoint: 'proxy2.example:8443' };
        const e2b: ProxyEntry = { nodeKey: KEY(0x23), endpoint: 'p2.' + 'x'.repeat(200) + '.example:9443' };
        assertExit(await update(setProxyBody(p1, e1)), addr, 0);
        assertExit(await update(setProxyBody(p2, e2)), addr, 0);
        assert.deepEqual(await proxy(p2), e2);
        assertExit(await update(setProxyBody(p2, e2b)), addr, 0); // replace; a long endpoint snakes on
        assertExit(await update(setProxyBody(p1, null)), addr, 0);
        const l = await lists();
        assert.deepEqual([...l.proxies], [[p2.toRawString(), e2b]]);
        assert.equal(await proxy(p1), null);
        assert.deepEqual(await proxy(p2), e2b);
        assert.equal((await cfg()).version, 4);
    });

    it('only the owner may update (102); ownership can be handed over', async () => {
        const e: ProxyEntry = { nodeKey: 1n, endpoint: 'x:1' };
        for (const body of [setParamsBody(P0, M0), setHashBody(1, 1n, true), setProxyBody(randomAddress(1), e),
            setProxyBody(randomAddress(1), null), setOwnerBody(stranger.address)]) {
            assertExit(await update(body, stranger), addr, E.notOwner);
        }
        assert.equal((await cfg()).version, 0);
        assertExit(await update(setOwnerBody(stranger.address)), addr, 0);
        assertExit(await update(setHashBody(1, 1n, true)), addr, E.notOwner);
        assertExit(await update(setHashBody(1, 1n, true), stranger), addr, 0);
        assert.equal((await cfg()).version, 2);
        const o = (await get('owner')).stackReader.readAddress();
        assert.ok(o.equals(stranger.address));
    });

    it('refuses every update carrying too little value (103)', async () => {
        const low = ROOT_FEE_UPDATE - 1n;
        for (const body of [setParamsBody(P0, M0), setHashBody(1, 1n, true),
            setProxyBody(randomAddress(1), { nodeKey: 1n, endpoint: 'x:1' }), setOwnerBody(stranger.address)]) {
            assertExit(await update(body, owner, low), addr, E.lowValue);
        }
        assert.equal((await cfg()).version, 0);
    });

    it('rejects an unknown kind (104), bad params or market (105), a bad proxy entry (106)', async () => {
        assertExit(await update(setHashBody(4, 1n, true)), addr, E.badKind);
        assertExit(await update(setHashBody(0, 1n, true)), addr, E.badKind);
        assertExit(await update(setParamsBody({ ...P0, proxyCommission: 10001 }, M0)), addr, E.badParams);
        assertExit(await update(setParamsBody({ ...P0, basePricePerToken: 0n }, M0)), addr, E.badParams);
        for (const f of ['promptMult', 'completionMult', 'reasoningMult'] as const) {
            assertExit(await update(setParamsBody({ ...P0, [f]: 0 }, M0)), addr, E.badParams, f);
        }
        for (const f of ['tierTee', 'tierGpu', 'tierAudited', 'tierReplicated', 'tierRegion'] as const) {
            assertExit(await update(setParamsBody(P0, { ...M0, [f]: 0 })), addr, E.badParams, f);
        }
        const p = randomAddress(1);
        assertExit(await update(setProxyBody(p, { nodeKey: 0n, endpoint: 'x:1' })), addr, E.badProxy);
        assertExit(await update(setProxyBody(p, { nodeKey: 1n, endpoint: '' })), addr, E.badProxy);
        assert.equal((await cfg()).version, 0);
        assert.deepEqual(await market(), M0);
        assert.equal((await lists()).proxies.size, 0);
    });

    it('rejects an unknown op (101) and malformed bodies (100)', async () => {
        assertExit(await update(beginCell().storeUint(0xdeadbeef, 32).endCell()), addr, E.unknownOp);
        assertExit(await update(beginCell().storeUint(1, 8).endCell()), addr, E.malformed);
        assertExit(await update(beginCell().storeUint(0x73687368, 32).storeUint(0, 64).endCell()), addr, E.malformed);
        const extra = beginCell().storeSlice(setHashBody(1, 1n, true).beginParse()).storeUint(0, 1).endCell();
        assertExit(await update(extra), addr, E.malformed);
        const longer = (c: Cell) => beginCell().storeSlice(c.beginParse()).storeUint(0, 8).endCell();
        const shortParams = beginCell().storeCoins(1).storeUint(1, 32).endCell();
        assertExit(await update(setParamsBody(shortParams, M0)), addr, E.malformed);
        assertExit(await update(setParamsBody(longer(paramsCell(P0)), M0)), addr, E.malformed);
        const shortMarket = beginCell().storeCoins(1).storeCoins(1).storeUint(1, 32).endCell();
        assertExit(await update(setParamsBody(P0, shortMarket)), addr, E.malformed);
        assertExit(await update(setParamsBody(P0, longer(marketCell(M0)))), addr, E.malformed);
        // The old SetParams (Params only, no Market ref) is refused, not half-applied.
        const paramsOnly = beginCell().storeUint(0x73707273, 32).storeUint(0, 64).storeRef(paramsCell(P0)).endCell();
        assertExit(await update(paramsOnly), addr, E.malformed);
        // A proxy entry without its endpoint ref, or with bits after the key.
        const noRef = beginCell().storeUint(1, 256).endCell();
        assertExit(await update(setProxyBody(randomAddress(1), noRef)), addr, E.malformed);
        assertExit(await update(setProxyBody(randomAddress(1),
            longer(proxyEntryCell({ nodeKey: 1n, endpoint: 'x:1' })))), addr, E.malformed);
        // The old SetProxy (a bare endpoint string instead of an entry).
        const bare = beginCell().storeStringTail('proxy.example:8443').endCell();
        assertExit(await update(setProxyBody(randomAddress(1), bare)), addr, E.malformed);
        assert.equal((await cfg()).version, 0);
    });

    it('accepts plain transfers and ignores bounced messages without changing state', async () => {
        assertExit(await stranger.send({ to: addr, value: TON }), addr, 0);
        const r = await bc.sendMessage({ info: { type: 'internal', ihrDisabled: true, bounce: false, bounced: true,
            src: owner.address, dest: addr, value: { coins: TON }, ihrFee: 0n, forwardFee: 0n, createdLt: 0n,
            createdAt: 0 }, body: beginCell().storeUint(0xffffffff, 32).storeSlice(setOwnerBody(stranger.address).beginParse()).endCell() });
        assertExit(r, addr, 0);
        assert.equal((await cfg()).version, 0);
        const o = (await get('owner')).stackReader.readAddress();
        assert.ok(o.equals(owner.address));
    });

    it('a refused update bounces the value back to the owner', async () => {
        const r = await update(setHashBody(9, 1n, true), owner, TON);
        assertExit(r, addr, E.badKind);
        const back = r.transactions.find((t) => {
            const i = t.inMessage?.info;
            return i?.type === 'internal' && i.bounced && i.dest.equals(owner.address);
        });
        assert.ok(back, 'no bounce to the owner');
    });
});
