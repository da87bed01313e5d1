// Builders and getters for contracts/root.tolk (formats documented in ../README.md).
import fs from 'node:fs';
import { Address, beginCell, Cell, contractAddress, Dictionary, type StateInit } from '@ton/core';

export const RootOp = {
    setParams: 0x73707273,
    setHash: 0x73687368,
    setProxy: 0x73707278,
    setOwner: 0x736f776e,
} as const;

export const RootErr = {
    malformed: 100,
    unknownOp: 101,
    notOwner: 102,
    lowValue: 103,
    badKind: 104,
    badParams: 105,
    badProxy: 106,
} as const;

export const HashKind = { proxyImage: 1, workerImage: 2, model: 3 } as const;
export const ROOT_FEE_UPDATE = 10_000_000n;

export function rootCode(): Cell {
    const j = JSON.parse(fs.readFileSync(new URL('../build/root.json', import.meta.url), 'utf-8'));
    return Cell.fromBase64(j.codeBoc64);
}

export interface RootParams {
    basePricePerToken: bigint;
    promptMult: number; // basis points
    cachedMult: number;
    completionMult: number;
    reasoningMult: number;
    proxyCommission: number; // basis points
    clientCloseDelay: number;
    workerCloseDelay: number;
    minClientDeposit: bigint;
    minProxyDeposit: bigint;
}

export function paramsCell(p: RootParams): Cell {
    return beginCell()
        .storeCoins(p.basePricePerToken)
        .storeUint(p.promptMult, 32).storeUint(p.cachedMult, 32)
        .storeUint(p.completionMult, 32).storeUint(p.reasoningMult, 32)
        .storeUint(p.proxyCommission, 16)
        .storeUint(p.clientCloseDelay, 32).storeUint(p.workerCloseDelay, 32)
        .storeCoins(p.minClientDeposit).storeCoins(p.minProxyDeposit)
        .endCell();
}

/** Stakes, unbonding and trust-tier multipliers (the root's `Market` cell). */
export interface RootMarket {
    minWorkerStake: bigint;
    minProxyStake: bigint;
    unbondingDelay: number; // seconds
    tierTee: number; // basis points
    tierGpu: number;
    tierAudited: number;
    tierReplicated: number;
    tierRegion: number;
}

export function marketCell(m: RootMarket): Cell {
    return beginCell()
        .storeCoins(m.minWorkerStake).storeCoins(m.minProxyStake)
        .storeUint(m.unbondingDelay, 32)
        .storeUint(m.tierTee, 32).storeUint(m.tierGpu, 32).storeUint(m.tierAudited, 32)
        .storeUint(m.tierReplicated, 32).storeUint(m.tierRegion, 32)
        .endCell();
}

export function rootData(owner: Address, networkId: number, p: RootParams, m: RootMarket): Cell {
    const lists = beginCell().storeBit(0).storeBit(0).storeBit(0).storeBit(0).endCell(); // four empty maps
    return beginCell().storeAddress(owner).storeUint(0, 32).storeInt(networkId, 32)
        .storeRef(paramsCell(p)).storeRef(lists).storeRef(marketCell(m)).endCell();
}

export function rootInit(owner: Address, networkId: number, p: RootParams, m: RootMarket, code = rootCode()): { init: StateInit; address: Address } {
    const init = { code, data: rootData(owner, networkId, p, m) };
    return { init, address: contractAddress(0, init) };
}

/** Replaces both the Params and the Market cell (either may be given as a raw cell). */
export const setParamsBody = (p: RootParams | Cell, m: RootMarket | Cell, queryId = 0n) =>
    beginCell().storeUint(RootOp.setParams, 32).storeUint(queryId, 64)
        .storeRef(p instanceof Cell ? p : paramsCell(p))
        .storeRef(m instanceof Cell ? m : marketCell(m)).endCell();

export const setHashBody = (kind: number, hash: bigint | Buffer, allowed: boolean, queryId = 0n) =>
    beginCell().storeUint(RootOp.setHash, 32).storeUint(queryId, 64).storeUint(kind, 8)
        .storeUint(typeof hash === 'bigint' ? hash : BigInt('0x' + hash.toString('hex')), 256)
        .storeBit(allowed).endCell();

/** A registered proxy: its node's Ed25519 public key and its "host:port" endpoint. */
export interface ProxyEntry {
    nodeKey: bigint;
    endpoint: string;
}

export const proxyEntryCell = (e: ProxyEntry) =>
    beginCell().storeUint(e.nodeKey, 256).storeRef(beginCell().storeStringTail(e.endpoint).endCell()).endCell();

export function parseProxyEntry(c: Cell): ProxyEntry {
    const s = c.beginParse();
    const e = { nodeKey: s.loadUintBig(256), endpoint: s.loadRef().beginParse().loadStringTail() };
    s.endParse();
    return e;
}

/** entry null removes the proxy; a raw cell is sent as it is. */
export const setProxyBody = (proxy: Address, entry: ProxyEntry | Cell | null, queryId = 0n) =>
    beginCell().storeUint(RootOp.setProxy, 32).storeUint(queryId, 64).storeAddress(proxy)
        .storeMaybeRef(entry === null ? null : entry instanceof Cell ? entry : proxyEntryCell(entry)).endCell();

export const setOwnerBody = (owner: Address, queryId = 0n) =>
    beginCell().storeUint(RootOp.setOwner, 32).storeUint(queryId, 64).storeAddress(owner).endCell();

export interface RootConfig extends RootParams {
    version: number;
    networkId: number;
}

type Getter = (name: string, args?: any[]) => Promise<{ stackReader: any }>;

export async function getRootConfig(get: Getter): Promise<RootConfig> {
    const r = (await get('config')).stackReader;
    return {
        version: r.readNumber(),
        networkId: r.readNumber(),
        basePricePerToken: r.readBigNumber(),
        promptMult: r.readNumber(),
        cachedMult: r.readNumber(),
        completionMult: r.readNumber(),
        reasoningMult: r.readNumber(),
        proxyCommission: r.readNumber(),
        clientCloseDelay: r.readNumber(),
        workerCloseDelay: r.readNumber(),
        minClientDeposit: r.readBigNumber(),
        minProxyDeposit: r.readBigNumber(),
    };
}

export async function getRootMarket(get: Getter): Promise<RootMarket> {
    const r = (await get('market')).stackReader;
    return {
        minWorkerStake: r.readBigNumber(),
        minProxyStake: r.readBigNumber(),
        unbondingDelay: r.readNumber(),
        tierTee: r.readNumber(),
        tierGpu: r.readNumber(),
        tierAudited: r.readNumber(),
        tierReplicated: r.readNumber(),
        tierRegion: r.readNumber(),
    };
}

/** The four registry lists, decoded from the `lists` get-method. */
export async function getRootLists(get: Getter) {
    const r = (await get('lists')).stackReader;
    const hashes = (c: Cell | null) =>
        c ? Dictionary.loadDirect(Dictionary.Keys.BigUint(256), Dictionary.Values.Bool(), c).keys() : [];
    const proxyImages = hashes(r.readCellOpt());
    const workerImages = hashes(r.readCellOpt());
    const models = hashes(r.readCellOpt());
    const pc: Cell | null = r.readCellOpt();
    const proxies = new Map<string, ProxyEntry>();
    if (pc) {
        const d = Dictionary.loadDirect(Dictionary.Keys.Address(), Dictionary.Values.Cell(), pc);
        for (const [k, v] of d) proxies.set(k.toRawString(), parseProxyEntry(v));
    }
    return { proxyImages, workerImages, models, proxies };
}
