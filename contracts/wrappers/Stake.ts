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
} as const;

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
} as const;

export const StakeFee = { deposit: 10_000_000n, control: 10_000_000n } as const;
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
    return beginCell().storeCoins(0).storeCoins(0).storeUint(0, 32).storeUint(0, 32).storeCoins(0)
        .storeRef(params).endCell();
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
