// Builders and getters for contracts/channel.tolk (formats documented in ../README.md).
import fs from 'node:fs';
import { Address, beginCell, Cell, contractAddress, Dictionary, type StateInit } from '@ton/core';
import nacl from 'tweetnacl';

export const ChannelOp = {
    topUp: 0x746f7075,
    redeem: 0x72646d76,
    close: 0x636c6f73,
    withdraw: 0x77647261,
    payout: 0x7061796f,
    refund: 0x72656664,
} as const;
export const VOUCHER_TAG = 0x434f4356;

export const ChannelErr = {
    malformed: 200,
    unknownOp: 201,
    notPayer: 202,
    notPayee: 203,
    lowValue: 204,
    badVoucherTag: 205,
    wrongNetwork: 206,
    wrongChannel: 207,
    badSignature: 208,
    seqnoReplay: 209,
    totalNotIncreasing: 210,
    overDeposit: 211,
    notClosing: 212,
    tooEarly: 213,
    alreadyClosing: 214,
    closed: 215,
    zeroAmount: 216,
} as const;

export const ChannelFee = { topUp: 10_000_000n, redeem: 20_000_000n, control: 10_000_000n } as const;

export function channelCode(): Cell {
    const j = JSON.parse(fs.readFileSync(new URL('../build/channel.json', import.meta.url), 'utf-8'));
    return Cell.fromBase64(j.codeBoc64);
}

export interface ChannelConfig {
    networkId: number;
    channelId: bigint;
    payer: Address;
    payee: Address;
    payerKey: Buffer; // 32-byte Ed25519 public key
    closeDelay: number;
}

export function channelData(c: ChannelConfig): Cell {
    const params = beginCell()
        .storeInt(c.networkId, 32)
        .storeUint(c.channelId, 64)
        .storeAddress(c.payer)
        .storeAddress(c.payee)
        .storeBuffer(c.payerKey, 32)
        .storeUint(c.closeDelay, 32)
        .endCell();
    return beginCell().storeCoins(0).storeCoins(0).storeUint(0, 32).storeUint(0, 32).storeRef(params).endCell();
}

export function channelInit(c: ChannelConfig, code = channelCode()): { init: StateInit; address: Address } {
    const init = { code, data: channelData(c) };
    return { init, address: contractAddress(0, init) };
}

export function voucherCell(networkId: number, channel: Address, seqno: number, total: bigint): Cell {
    return beginCell().storeUint(VOUCHER_TAG, 32).storeInt(networkId, 32).storeAddress(channel)
        .storeUint(seqno, 32).storeCoins(total).endCell();
}

/** Ed25519 over the voucher cell's representation hash. secretKey: tweetnacl's 64-byte key. */
export function signVoucher(voucher: Cell, secretKey: Uint8Array): Buffer {
    return Buffer.from(nacl.sign.detached(voucher.hash(), secretKey));
}

export function redeemBody(voucher: Cell, signature: Buffer, queryId = 0n): Cell {
    return beginCell().storeUint(ChannelOp.redeem, 32).storeUint(queryId, 64).storeBuffer(signature, 64)
        .storeRef(voucher).endCell();
}

export function topUpBody(amount: bigint, queryId = 0n): Cell {
    return beginCell().storeUint(ChannelOp.topUp, 32).storeUint(queryId, 64).storeCoins(amount).endCell();
}

export function closeBody(queryId = 0n): Cell {
    return beginCell().storeUint(ChannelOp.close, 32).storeUint(queryId, 64).endCell();
}

export function withdrawBody(queryId = 0n): Cell {
    return beginCell().storeUint(ChannelOp.withdraw, 32).storeUint(queryId, 64).endCell();
}

export interface ChannelState {
    deposit: bigint;
    redeemed: bigint;
    seqno: number;
    closeAt: number;
    closeDelay: number;
    balance: bigint;
}

type Getter = (name: string, args?: any[]) => Promise<{ stackReader: any }>;

export async function getChannelState(get: Getter): Promise<ChannelState> {
    const r = (await get('state')).stackReader;
    return {
        deposit: r.readBigNumber(),
        redeemed: r.readBigNumber(),
        seqno: r.readNumber(),
        closeAt: r.readNumber(),
        closeDelay: r.readNumber(),
        balance: r.readBigNumber(),
    };
}

export { Dictionary };
