// Builders and getters for contracts/stake.tolk (formats documented in ../README.md).
import fs from 'node:fs';
import { Address, beginCell, Cell, contractAddress, type StateInit } from '@ton/core';

export const StakeOp = {
    deposit: 0x73646570,
    requestUnbond: 0x73756e62,
    withdraw: 0x73776472,
    slash: 0x736c7368,
    release: 0x73726574,
    slashPayout: 0x736c7079,
    slashEquivocation: 0x73657176,
    proposeSlash: 0x73707270,
    cancelSlash: 0x7363616e,
    executeSlash: 0x73657865,
    slashReward: 0x73727764,
} as const;

export const RECEIPT_TAG = 0x72637074;
export const EQUIVOCATION_BP = 5000;
export const REWARD_BP = 2000;

export const StakeErr = {
    malformed: 300,
    unknownOp: 301,
    notOwner: 302,
    notAuthority: 303,
    lowValue: 304,
    zeroAmount: 305,
    overBonded: 306,
    nothingUnbonding: 307,
    tooEarly: 308,
    nothingStaked: 309,
    delayTooLong: 310,
    notReceipt: 311,
    badSignature: 312,
    notSameSlot: 313,
    sameBody: 314,
    alreadyProven: 315,
    wrongNode: 316,
    badBp: 317,
    staleNonce: 318,
    slashPending: 319,
    noPending: 320,
    inDispute: 321,
} as const;

export const StakeFee = { deposit: 10_000_000n, control: 10_000_000n, proof: 50_000_000n } as const;
export const MAX_UNBOND_DELAY = 366 * 24 * 3600;

export function stakeCode(): Cell {
    const j = JSON.parse(fs.readFileSync(new URL('../build/stake.json', import.meta.url), 'utf-8'));
    return Cell.fromBase64(j.codeBoc64);
}

export interface StakeConfig {
    networkId: number;
    authority: Address; // the root contract
    owner: Address; // the node's wallet
    nodeKey: Buffer; // the node's 32-byte Ed25519 identity public key
}

/** Init data: everything mutable zero, the params in a ref (what the address hashes). */
export function stakeData(c: StakeConfig): Cell {
    const params = beginCell()
        .storeInt(c.networkId, 32)
        .storeAddress(c.authority)
        .storeAddress(c.owner)
        .storeBuffer(c.nodeKey, 32)
        .endCell();
    // bonded unbonding unlockAt unbondDelay slashed verdictNonce proven(empty) pending(none) ^params
    return beginCell().storeCoins(0).storeCoins(0).storeUint(0, 32).storeUint(0, 32).storeCoins(0)
        .storeUint(0, 64).storeBit(false).storeBit(false).storeRef(params).endCell();
}

export function stakeInit(c: StakeConfig, code = stakeCode()): { init: StateInit; address: Address } {
    const init = { code, data: stakeData(c) };
    return { init, address: contractAddress(0, init) };
}

/** Bonds value − StakeFee.deposit; `unbondDelay` only raises the stored delay. */
export function depositBody(unbondDelay: number, queryId = 0n): Cell {
    return beginCell().storeUint(StakeOp.deposit, 32).storeUint(queryId, 64).storeUint(unbondDelay, 32).endCell();
}

export function requestUnbondBody(amount: bigint, queryId = 0n): Cell {
    return beginCell().storeUint(StakeOp.requestUnbond, 32).storeUint(queryId, 64).storeCoins(amount).endCell();
}

export function withdrawBody(queryId = 0n): Cell {
    return beginCell().storeUint(StakeOp.withdraw, 32).storeUint(queryId, 64).endCell();
}

export function slashBody(amount: bigint, beneficiary: Address, queryId = 0n): Cell {
    return beginCell().storeUint(StakeOp.slash, 32).storeUint(queryId, 64).storeCoins(amount)
        .storeAddress(beneficiary).endCell();
}

/** The receipt cell a worker signs (cocoon/crypto/receipt_cell.py). */
export interface ReceiptFields { network: bigint; requestKey: bigint; seq: bigint; bodyHash: bigint }

export function receiptCell(r: ReceiptFields): Cell {
    return beginCell().storeUint(RECEIPT_TAG, 32).storeUint(r.network, 256).storeUint(r.requestKey, 256)
        .storeUint(r.seq, 64).storeUint(r.bodyHash, 256).endCell();
}

/** `signature:bits512 ^receipt` */
export function signedReceiptCell(signature: Buffer, receipt: Cell): Cell {
    return beginCell().storeBuffer(signature, 64).storeRef(receipt).endCell();
}

export function slashEquivocationBody(a: Cell, b: Cell, queryId = 0n): Cell {
    return beginCell().storeUint(StakeOp.slashEquivocation, 32).storeUint(queryId, 64).storeRef(a).storeRef(b)
        .endCell();
}

export interface Proposal { bp: number; nodeKey: bigint; nonce: bigint; executeAt: number; evidence: bigint; beneficiary: Address }

export function proposeSlashBody(p: Proposal, queryId = 0n): Cell {
    return beginCell().storeUint(StakeOp.proposeSlash, 32).storeUint(queryId, 64).storeUint(p.bp, 16)
        .storeUint(p.nodeKey, 256).storeUint(p.nonce, 64).storeUint(p.executeAt, 32).storeUint(p.evidence, 256)
        .storeAddress(p.beneficiary).endCell();
}

export function cancelSlashBody(nonce: bigint, queryId = 0n): Cell {
    return beginCell().storeUint(StakeOp.cancelSlash, 32).storeUint(queryId, 64).storeUint(nonce, 64).endCell();
}

export function executeSlashBody(queryId = 0n): Cell {
    return beginCell().storeUint(StakeOp.executeSlash, 32).storeUint(queryId, 64).endCell();
}

export interface PendingSlash { bp: number; executeAt: number; nonce: bigint; evidence: bigint; beneficiary: Address | null; verdictNonce: bigint }

export async function getPendingSlash(get: Getter): Promise<PendingSlash> {
    const r = (await get('pendingSlash')).stackReader;
    return {
        bp: r.readNumber(), executeAt: r.readNumber(), nonce: r.readBigNumber(), evidence: r.readBigNumber(),
        beneficiary: r.readAddressOpt(), verdictNonce: r.readBigNumber(),
    };
}

export interface StakeState {
    bonded: bigint;
    unbonding: bigint;
    unlockAt: number;
    unbondDelay: number;
    slashed: bigint;
    balance: bigint;
}

type Getter = (name: string, args?: any[]) => Promise<{ stackReader: any }>;

export async function getStakeState(get: Getter): Promise<StakeState> {
    const r = (await get('stake')).stackReader;
    return {
        bonded: r.readBigNumber(),
        unbonding: r.readBigNumber(),
        unlockAt: r.readNumber(),
        unbondDelay: r.readNumber(),
        slashed: r.readBigNumber(),
        balance: r.readBigNumber(),
    };
}

export interface StakeParams {
    networkId: number;
    authority: Address;
    owner: Address;
    nodeKey: Buffer;
}

export async function getStakeParams(get: Getter): Promise<StakeParams> {
    const r = (await get('params')).stackReader;
    return {
        networkId: r.readNumber(),
        authority: r.readAddress(),
        owner: r.readAddress(),
        nodeKey: Buffer.from(r.readBigNumber().toString(16).padStart(64, '0'), 'hex'),
    };
}
