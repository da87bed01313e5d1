// Builders and getters for contracts/root.tolk (formats documented in ../README.md).
import fs from 'node:fs';
import { Address, beginCell, Cell, contractAddress, Dictionary, type StateInit } from '@ton/core';

export const RootOp = {
    setParams: 0x73707273,
    setHash: 0x73687368,
    setProxy: 0x73707278,
    setOwner: 0x736f776e,
    setVerifier: 0x73766572,
    setSlashing: 0x73736c73,
    submitVerdict: 0x73766474,
    cancelSlash: 0x73636e6c,
} as const;

export const VERDICT_TAG = 0x76726474;
/** What a verdict or a cancel-slash must carry (the root forwards the rest to the stake). */
export const ROOT_FEE_FORWARD = 50_000_000n;
/** The dispute window and quorum a root starts with (unless rootData is told otherwise). */
export const DEFAULT_SLASHING = { disputeDelay: 1800, quorum: 2 } as const;

export const RootErr = {
    malformed: 100,
    unknownOp: 101,
    notOwner: 102,
    lowValue: 103,
    badKind: 104,
    badParams: 105,
    badProxy: 106,
    notVerdict: 107,
    wrongNetwork: 108,
    notVerifier: 109,
    badVerdictSig: 110,
    sameVerifier: 111,
    noQuorum: 112,
    badSlashBp: 113,
    badVerifier: 114,
    disputeTooLong: 115,
    nonceAhead: 116,
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

export interface RootSlashing { disputeDelay: number; quorum: number }

/** `verifiers:(empty map) disputeDelay:uint32 quorum:uint8` */
export const slashingCell = (s: RootSlashing) =>
    beginCell().storeBit(0).storeUint(s.disputeDelay, 32).storeUint(s.quorum, 8).endCell();

export function rootData(owner: Address, networkId: number, p: RootParams, m: RootMarket,
    s: RootSlashing = DEFAULT_SLASHING): Cell {
    const lists = beginCell().storeBit(0).storeBit(0).storeBit(0).storeBit(0).endCell(); // four empty maps
    return beginCell().storeAddress(owner).storeUint(0, 32).storeInt(networkId, 32)
        .storeRef(paramsCell(p)).storeRef(lists).storeRef(marketCell(m)).storeRef(slashingCell(s)).endCell();
}

export function rootInit(owner: Address, networkId: number, p: RootParams, m: RootMarket, code = rootCode(),
    s: RootSlashing = DEFAULT_SLASHING): { init: StateInit; address: Address } {
    const init = { code, data: rootData(owner, networkId, p, m, s) };
    return { init, address: contractAddress(0, init) };
}

export const setVerifierBody = (key: bigint, allowed: boolean, queryId = 0n) =>
    beginCell().storeUint(RootOp.setVerifier, 32).storeUint(queryId, 64).storeUint(key, 256).storeBit(allowed).endCell();

export const setSlashingBody = (s: RootSlashing, queryId = 0n) =>
    beginCell().storeUint(RootOp.setSlashing, 32).storeUint(queryId, 64).storeUint(s.disputeDelay, 32)
        .storeUint(s.quorum, 8).endCell();

/** The cell verifiers sign (cocoon/crypto/verdict_cell.py). */
export interface Verdict { networkId: number; stake: Address; workerKey: bigint; evidence: bigint; slashBp: number; nonce: bigint }

export const verdictCell = (v: Verdict, tag = VERDICT_TAG) =>
    beginCell().storeUint(tag, 32).storeInt(v.networkId, 32).storeAddress(v.stake).storeUint(v.workerKey, 256)
        .storeUint(v.evidence, 256).storeUint(v.slashBp, 16).storeUint(v.nonce, 64).endCell();

/** The list of (verifier key, signature): `key:uint256 signature:bits512 next:Maybe ^…`. */
export function verifierSigs(sigs: { key: bigint; signature: Buffer }[]): Cell {
    let next: Cell | null = null;
    for (const s of [...sigs].reverse()) {
        next = beginCell().storeUint(s.key, 256).storeBuffer(s.signature, 64).storeMaybeRef(next).endCell();
    }
    if (next === null) throw new Error('at least one signature');
    return next;
}

export const submitVerdictBody = (verdict: Cell, sigs: Cell, queryId = 0n) =>
    beginCell().storeUint(RootOp.submitVerdict, 32).storeUint(queryId, 64).storeRef(verdict).storeRef(sigs).endCell();

export const cancelSlashBody = (stake: Address, nonce: bigint, queryId = 0n) =>
    beginCell().storeUint(RootOp.cancelSlash, 32).storeUint(queryId, 64).storeAddress(stake).storeUint(nonce, 64)
        .endCell();

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

/** (effective dispute delay, quorum, verifier keys) */
export async function getRootSlashing(get: Getter) {
    const r = (await get('slashing')).stackReader;
    const disputeDelay = r.readNumber();
    const quorum = r.readNumber();
    const c: Cell | null = r.readCellOpt();
    const verifiers = c ? Dictionary.loadDirect(Dictionary.Keys.BigUint(256), Dictionary.Values.Bool(), c).keys() : [];
    return { disputeDelay, quorum, verifiers };
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
