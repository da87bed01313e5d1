import assert from 'node:assert/strict';
import { Address, Cell, type Transaction } from '@ton/core';
import { Blockchain, internal } from '@ton/sandbox';

/** The first transaction executed on `addr` in a send result. */
export function txOn(r: { transactions: Transaction[] }, addr: Address): Transaction {
    const tx = r.transactions.find((t) => {
        const d = t.inMessage?.info.dest;
        return d instanceof Address && d.equals(addr);
    });
    assert.ok(tx, `no transaction on ${addr}`);
    return tx;
}

/** The transaction on `to` caused by an internal message from `from`. */
export function txFromTo(r: { transactions: Transaction[] }, from: Address, to: Address): Transaction {
    const tx = r.transactions.find((t) => {
        const i = t.inMessage?.info;
        return i?.type === 'internal' && i.src.equals(from) && i.dest.equals(to);
    });
    assert.ok(tx, `no message ${from} -> ${to}`);
    return tx;
}

export function exitCodeOf(tx: Transaction): number | undefined {
    const d = tx.description;
    if (d.type !== 'generic' || d.computePhase.type !== 'vm') return undefined;
    return d.computePhase.exitCode;
}

export function assertExit(r: { transactions: Transaction[] }, addr: Address, code: number, msg?: string) {
    const tx = txOn(r, addr);
    assert.equal(exitCodeOf(tx), code, msg);
    if (code === 0) {
        const d = tx.description;
        assert.ok(d.type === 'generic' && !d.aborted, 'transaction aborted');
    }
}

/** Sends an internal message from any address (it need not have an account). */
export function sendFrom(bc: Blockchain, from: Address, to: Address, value: bigint, body?: Cell, bounce = true) {
    return bc.sendMessage(internal({ from, to, value, body, bounce }));
}

export const TON = 1_000_000_000n;
export const randomAddress = (seed: number) => new Address(0, Buffer.alloc(32, seed));
