#!/usr/bin/env node
// Cocoon local chain: @ton/sandbox (TON's own emulator) behind the subset of the
// toncenter v2 HTTP API the project uses, plus dev endpoints (faucet, clock, deploy).
//
//   node chain/server.mjs [--port N] [--host H] [--data-dir DIR] [--wall-clock] [--compact-bytes N]
//
// --port 0 picks a free port. Once serving it prints ONE JSON line on stdout:
//   {"event":"ready","port":N,"endpoint":"http://H:N/api/v2/","faucet":"EQ..."}
// State (accounts, transactions, clock) lives in DIR/state.json (a full snapshot) and
// DIR/journal.jsonl (one fsynced line per state change since; see "Persistence" below),
// loaded at start. Nothing is answered before what it changed or saw is on disk.
//
// toncenter v2 subset (envelope {"ok":true,"result":...} / {"ok":false,"error":...,"code":...}):
//   GET  /api/v2/getAddressInformation?address=
//   GET  /api/v2/getAddressBalance?address=
//   POST /api/v2/sendBoc            {"boc": base64 external message}
//   POST /api/v2/sendBocReturnHash  {"boc": ...} -> {"hash": base64 message hash}
//   GET|POST /api/v2/runGetMethod   {"address","method","stack":[["num","5"],["tvm.Cell",b64],...]}
//   GET  /api/v2/getTransactions?address=&limit=&lt=&hash=&to_lt=
//   POST /api/v2/jsonRPC            {"id","jsonrpc":"2.0","method":one of the above,"params":{...}}
// Dev only (no equivalent on TON; real deployments and transfers go through wallets):
//   POST /dev/faucet  {"address", "amount": nanotons}    -> from the sandbox treasury
//   POST /dev/deploy  {"code": b64 BoC, "data": b64 BoC, "amount": nanotons, "body"?: b64 BoC}
//                     -> {"address": ...} (state init sent from the treasury)
//   POST /dev/advance {"seconds": n}                      -> moves the clock forward
//   GET  /dev/health
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Address, beginCell, Cell, contractAddress, Dictionary, loadMessage, toNano } from '@ton/core';
import { Blockchain, snapshotFromSerializable, snapshotToSerializable } from '@ton/sandbox';

const STATE_VERSION = 1;
const FAUCET_SEED = 'cocoon-faucet';
const ZERO_HASH = Buffer.alloc(32).toString('base64');

export class ApiError extends Error {
    constructor(code, message) {
        super(message);
        this.code = code;
    }
}

const wallNow = () => Math.floor(Date.now() / 1000);

// Config params a get-method is run without: the validator sets (32-37) and the
// suspended-address list (44), 97 % of the config's bytes, read by the masterchain's
// system contracts only. The emulator parses the config it is given at every get-method
// (transactions keep a parsed one): 4-6 ms a call with them, 0.5-0.9 without, and the
// nodes of a local network poll the root, their stakes and wallets every few seconds.
const NOT_FOR_GET_METHODS = [32, 33, 34, 35, 36, 37, 44];

/** The config (base64 BoC of its dictionary) without the params get-methods are run without. */
export function getMethodConfig(configBase64) {
    const params = Dictionary.loadDirect(Dictionary.Keys.Int(32), Dictionary.Values.Cell(), Cell.fromBase64(configBase64));
    for (const p of NOT_FOR_GET_METHODS) params.delete(p);
    return beginCell().storeDictDirect(params).endCell().toBoc({ idx: false }).toString('base64');
}

function parseAddress(s) {
    if (typeof s !== 'string' || s === '') throw new ApiError(400, 'address is required');
    try {
        return Address.parse(s);
    } catch {
        throw new ApiError(416, `Incorrect address: ${s}`);
    }
}

function parseBoc(b64, what) {
    if (typeof b64 !== 'string' || b64 === '') throw new ApiError(400, `${what} is required`);
    try {
        return Cell.fromBase64(b64);
    } catch {
        throw new ApiError(400, `${what}: not a valid base64 BoC`);
    }
}

function parseNanotons(v, what) {
    try {
        const n = BigInt(v);
        if (n < 0n) throw new Error();
        return n;
    } catch {
        throw new ApiError(400, `${what}: expected a non-negative integer (nanotons)`);
    }
}

// ---- toncenter stack format ----

function stackIn(items) {
    if (items === undefined || items === null) return [];
    if (typeof items === 'string') items = JSON.parse(items);
    if (!Array.isArray(items)) throw new ApiError(400, 'stack must be a list');
    return items.map((it) => {
        if (!Array.isArray(it) || it.length !== 2) throw new ApiError(400, 'stack entry must be [type, value]');
        const [t, v] = it;
        switch (t) {
            case 'num':
            case 'int':
            case 'number':
                try {
                    return { type: 'int', value: BigInt(v) };
                } catch {
                    throw new ApiError(400, `bad number in stack: ${v}`);
                }
            case 'null':
                return { type: 'null' };
            case 'tvm.Cell':
            case 'cell':
                return { type: 'cell', cell: parseBoc(typeof v === 'object' ? v.bytes : v, 'stack cell') };
            case 'tvm.Slice':
            case 'slice':
                return { type: 'slice', cell: parseBoc(typeof v === 'object' ? v.bytes : v, 'stack slice') };
            default:
                throw new ApiError(400, `unsupported stack entry type ${t}`);
        }
    });
}

const hexNum = (n) => (n < 0n ? `-0x${(-n).toString(16)}` : `0x${n.toString(16)}`);

function stackEntryNested(item) {
    switch (item.type) {
        case 'int':
            return { '@type': 'tvm.stackEntryNumber', number: { '@type': 'tvm.numberDecimal', number: item.value.toString() } };
        case 'cell':
            return { '@type': 'tvm.stackEntryCell', cell: { '@type': 'tvm.cell', bytes: item.cell.toBoc().toString('base64') } };
        case 'slice':
        case 'builder':
            return { '@type': 'tvm.stackEntrySlice', slice: { '@type': 'tvm.slice', bytes: item.cell.toBoc().toString('base64') } };
        case 'tuple':
            return { '@type': 'tvm.stackEntryTuple', tuple: { '@type': 'tvm.tuple', elements: item.items.map(stackEntryNested) } };
        case 'null':
            return { '@type': 'tvm.stackEntryList', list: { '@type': 'tvm.list', elements: [] } };
        default:
            return { '@type': 'tvm.stackEntryUnsupported' };
    }
}

function stackOut(item) {
    switch (item.type) {
        case 'int':
            return ['num', hexNum(item.value)];
        case 'null':
            return ['null', null];
        case 'nan':
            return ['num', 'NaN'];
        case 'cell':
            return ['cell', { bytes: item.cell.toBoc().toString('base64'), object: null }];
        case 'slice':
        case 'builder':
            return ['slice', { bytes: item.cell.toBoc().toString('base64'), object: null }];
        case 'tuple':
            return ['tuple', { '@type': 'tvm.tuple', elements: item.items.map(stackEntryNested) }];
        default:
            return [item.type, null];
    }
}

// ---- transactions in toncenter's raw format ----

function msgOut(msg) {
    if (!msg) return null;
    const info = msg.info;
    const body = msg.body ?? Cell.EMPTY;
    const init = msg.init ? beginCell().store((b) => {
        b.storeMaybeRef(msg.init.code ?? null).storeMaybeRef(msg.init.data ?? null);
    }).endCell() : null;
    return {
        '@type': 'raw.message',
        source: info.type === 'internal' ? info.src.toString() : info.type === 'external-out' ? info.src.toString() : '',
        destination: info.type === 'external-out' ? '' : info.dest.toString(),
        value: info.type === 'internal' ? info.value.coins.toString() : '0',
        fwd_fee: info.type === 'internal' ? info.forwardFee.toString() : '0',
        ihr_fee: info.type === 'internal' ? info.ihrFee.toString() : '0',
        created_lt: info.type === 'external-in' ? '0' : info.createdLt.toString(),
        body_hash: body.hash().toString('base64'),
        bounce: info.type === 'internal' ? info.bounce : false,
        bounced: info.type === 'internal' ? info.bounced : false,
        msg_data: {
            '@type': 'msg.dataRaw',
            body: body.toBoc().toString('base64'),
            init_state: init ? init.toBoc().toString('base64') : '',
        },
        message: '',
    };
}

function txOut(tx) {
    const d = tx.description;
    const storageFee = d.type === 'generic' && d.storagePhase ? d.storagePhase.storageFeesCollected : 0n;
    const compute = d.type === 'generic' ? d.computePhase : undefined;
    return {
        '@type': 'raw.transaction',
        address: { '@type': 'accountAddress', account_address: new Address(0, bigToHash(tx.address)).toString() },
        utime: tx.now,
        data: tx.raw.toBoc().toString('base64'),
        transaction_id: { '@type': 'internal.transactionId', lt: tx.lt.toString(), hash: tx.hash().toString('base64') },
        fee: tx.totalFees.coins.toString(),
        storage_fee: storageFee.toString(),
        other_fee: (tx.totalFees.coins - storageFee).toString(),
        in_msg: msgOut(tx.inMessage),
        out_msgs: [...tx.outMessages.values()].map(msgOut),
        // Not in toncenter: handy for tests and debugging.
        compute_exit_code: compute && compute.type === 'vm' ? compute.exitCode : null,
        aborted: d.type === 'generic' ? d.aborted : false,
    };
}

const bigToHash = (n) => Buffer.from(n.toString(16).padStart(64, '0'), 'hex');

const fdatasync = promisify(fs.fdatasync);
const ftruncate = promisify(fs.ftruncate);
const write = promisify(fs.write);

async function writeAll(fd, text) {
    const buf = Buffer.from(text);
    for (let off = 0; off < buf.length; ) off += (await write(fd, buf, off, buf.length - off)).bytesWritten;
}

/** fsync a directory, so a rename in it survives a crash (not supported everywhere). */
function syncDir(dir) {
    let fd;
    try {
        fd = fs.openSync(dir, 'r');
        fs.fsyncSync(fd);
    } catch {
        // some filesystems refuse fsync on directories; the rename is still atomic
    } finally {
        if (fd !== undefined) fs.closeSync(fd);
    }
}


// ---- the chain ----

// Persistence: DATA_DIR/state.json is a full snapshot (the sandbox's serialisable form,
// written to a temp file, fsynced and renamed); DATA_DIR/journal.jsonl holds one line
// per state change since that snapshot (the accounts the change touched, its new
// transactions, lt, clock). Changes are group-committed: one append + fdatasync covers
// every change made while the previous write was in flight. No answer leaves before
// everything it changed or observed is on disk, so kill -9 loses nothing acknowledged
// (a change still unanswered may be lost, like a message a node has not yet seen
// included). When the journal outgrows the snapshot it is folded into a new snapshot.
// Rewriting the whole snapshot per change, as before, costs O(history) per transaction.
const JOURNAL_MIN_COMPACT_BYTES = 1 << 20;

export class LocalChain {
    constructor({ dataDir, wallClock, compactBytes = null }) {
        this.dataDir = dataDir;
        // Fold the journal into a snapshot past this size (null: once it outgrows the
        // snapshot, and 1 MiB; that keeps the cost per change constant on average).
        this.compactBytes = compactBytes;
        this.wallClock = wallClock;
        this.clockOffset = 0;
        this.queue = Promise.resolve();
        this.bc = null;
        this.faucet = null;
        this.seq = 0; // state changes so far (in memory)
        this.durableSeq = 0; // state changes on disk
        this.journaledTxs = 0; // bc.transactions already in a journal record or the snapshot
        this.recordedClock = null;
        this.pending = []; // [{seq, line}] not yet appended
        this.waiters = []; // [{seq, resolve}]
        this.flushing = null;
        this.journal = null; // fd, append mode (a plain fd: writes run off the event loop)
        this.journalBytes = 0;
        this.snapshotBytes = 0;
    }

    get statePath() {
        return this.dataDir ? path.join(this.dataDir, 'state.json') : null;
    }

    get journalPath() {
        return this.dataDir ? path.join(this.dataDir, 'journal.jsonl') : null;
    }

    async open() {
        this.bc = await Blockchain.create();
        this.bc.verbosity = { print: false, blockchainLogs: false, vmLogs: 'none', debugLogs: false };
        let loaded = false;
        if (this.statePath && fs.existsSync(this.statePath)) {
            const saved = JSON.parse(fs.readFileSync(this.statePath, 'utf-8'));
            if (saved.version !== STATE_VERSION) throw new Error(`${this.statePath}: unknown state version ${saved.version}`);
            this.clockOffset = saved.clockOffset ?? 0;
            this.seq = saved.seq ?? 0;
            const snapshot = this.replayJournal(saved.snapshot);
            await this.bc.loadFrom(snapshotFromSerializable(snapshot));
            loaded = true;
        }
        if (!loaded) this.bc.now = wallNow();
        this.tick();
        this.faucet = await this.bc.treasury(FAUCET_SEED);
        if (this.dataDir) fs.mkdirSync(this.dataDir, { recursive: true });
        this.save();
        return loaded;
    }

    /** Applies journal records after the snapshot's seq to its serialisable form. A torn
     *  last line (killed mid-append: never acknowledged) is dropped. */
    replayJournal(snapshot) {
        if (!this.journalPath || !fs.existsSync(this.journalPath)) return snapshot;
        const lines = fs.readFileSync(this.journalPath, 'utf-8').split('\n');
        const contracts = new Map(snapshot.contracts.map((c) => [c.address, c]));
        for (let i = 0; i < lines.length; i++) {
            if (lines[i] === '') continue;
            let rec;
            try {
                rec = JSON.parse(lines[i]);
            } catch {
                if (lines.slice(i + 1).every((l) => l === '')) break; // torn tail
                throw new Error(`${this.journalPath}: line ${i + 1} is corrupt`);
            }
            if (rec.seq <= this.seq) continue; // already in the snapshot
            if (rec.seq !== this.seq + 1) throw new Error(`${this.journalPath}: record ${rec.seq} after ${this.seq}`);
            for (const c of rec.contracts) contracts.set(c.address, c);
            snapshot.transactions.push(...rec.transactions);
            snapshot.lt = rec.lt;
            snapshot.time = rec.time;
            this.clockOffset = rec.clockOffset;
            this.seq = rec.seq;
        }
        snapshot.contracts = [...contracts.values()];
        return snapshot;
    }

    /** In wall-clock mode the clock follows wall time (+ what /dev/advance added); never goes back. */
    tick() {
        if (!this.wallClock) return;
        const t = wallNow() + this.clockOffset;
        if (this.bc.now === undefined || t > this.bc.now) this.bc.now = t;
    }

    fullState() {
        return JSON.stringify({
            version: STATE_VERSION,
            seq: this.seq,
            clockOffset: this.clockOffset,
            snapshot: snapshotToSerializable(this.bc.snapshot()),
        });
    }

    /** Synchronous full snapshot and an empty journal (at start). */
    save() {
        this.journaledTxs = this.bc.transactions.length;
        this.recordedClock = this.clockKey();
        if (!this.statePath) return;
        const body = this.fullState();
        const tmp = `${this.statePath}.tmp`;
        const fd = fs.openSync(tmp, 'w');
        try {
            fs.writeSync(fd, body);
            fs.fsyncSync(fd);
        } finally {
            fs.closeSync(fd);
        }
        fs.renameSync(tmp, this.statePath);
        if (this.journal !== null) fs.ftruncateSync(this.journal, 0);
        else fs.writeFileSync(this.journalPath, '');
        syncDir(this.dataDir);
        this.snapshotBytes = Buffer.byteLength(body);
        this.journalBytes = 0;
        this.durableSeq = this.seq;
    }

    clockKey() {
        return `${this.bc.now}/${this.clockOffset}/${this.bc.lt}`;
    }

    /** After a state-changing call, inside the queue: one journal record of what changed. */
    async record() {
        const txs = this.bc.transactions.slice(this.journaledTxs);
        const clock = this.clockKey();
        if (txs.length === 0 && clock === this.recordedClock) return;
        this.journaledTxs = this.bc.transactions.length;
        this.recordedClock = clock;
        this.seq += 1;
        if (!this.statePath) {
            this.durableSeq = this.seq;
            return;
        }
        const touched = [...new Set(txs.map((t) => t.address))];
        const contracts = [];
        for (const a of touched) contracts.push((await this.bc.getContract(new Address(0, bigToHash(a)))).snapshot());
        const part = snapshotToSerializable({ contracts, lt: this.bc.lt, time: this.bc.now, transactions: txs });
        const line = JSON.stringify({
            seq: this.seq,
            lt: part.lt,
            time: part.time,
            clockOffset: this.clockOffset,
            contracts: part.contracts,
            transactions: part.transactions,
        }) + '\n';
        this.pending.push({ seq: this.seq, line });
        if (!this.flushing) this.flushing = this.flushLoop();
    }

    async flushLoop() {
        try {
            while (this.pending.length > 0) {
                const batch = this.pending;
                this.pending = [];
                const data = batch.map((r) => r.line).join('');
                if (this.journal === null) this.journal = fs.openSync(this.journalPath, 'a');
                await writeAll(this.journal, data);
                await fdatasync(this.journal);
                this.journalBytes += Buffer.byteLength(data);
                this.markDurable(batch[batch.length - 1].seq);
                if (this.journalBytes > this.compactLimit()) await this.compact();
            }
        } catch (e) {
            // Memory is ahead of disk and cannot catch up: stop rather than answer what
            // a restart would not know. A restart loads what was acknowledged.
            console.error(`cocoon chain: cannot persist state: ${e?.stack ?? e}`);
            process.exit(1);
        } finally {
            this.flushing = null;
        }
    }

    /** Folds the journal into a new snapshot (taken in the queue, so it is consistent). */
    compactLimit() {
        return this.compactBytes ?? Math.max(JOURNAL_MIN_COMPACT_BYTES, this.snapshotBytes);
    }

    async compact() {
        const { body, seq } = await this.exclusiveRaw(async () => {
            // Records queued but not yet written are covered by this snapshot.
            this.journaledTxs = this.bc.transactions.length;
            this.recordedClock = this.clockKey();
            return { body: this.fullState(), seq: this.seq };
        });
        const tmp = `${this.statePath}.tmp`;
        const fh = await fs.promises.open(tmp, 'w');
        try {
            await fh.write(body);
            await fh.sync();
        } finally {
            await fh.close();
        }
        await fs.promises.rename(tmp, this.statePath);
        syncDir(this.dataDir);
        // A crash from here until the truncation leaves records <= seq: skipped at load.
        this.pending = this.pending.filter((r) => r.seq > seq);
        await ftruncate(this.journal, 0);
        await fdatasync(this.journal);
        this.snapshotBytes = Buffer.byteLength(body);
        this.journalBytes = 0;
        this.markDurable(seq);
    }

    markDurable(seq) {
        if (seq > this.durableSeq) this.durableSeq = seq;
        const still = [];
        for (const w of this.waiters) (w.seq <= this.durableSeq ? w.resolve() : still.push(w));
        this.waiters = still;
    }

    durable(seq) {
        if (seq <= this.durableSeq) return Promise.resolve();
        return new Promise((resolve) => this.waiters.push({ seq, resolve }));
    }

    /** Resolves once every recorded change is on disk (for a clean exit). */
    async idle() {
        await this.queue;
        await this.durable(this.seq);
    }

    exclusiveRaw(fn) {
        const run = this.queue.then(fn);
        this.queue = run.catch(() => {});
        return run;
    }

    /** Runs fn alone (the sandbox executes one thing at a time) and records what it changed;
     *  answers once everything fn observed or changed is durable (no reads of unsaved state). */
    exclusive(fn, mutates) {
        const run = this.exclusiveRaw(async () => {
            this.tick();
            let r;
            try {
                r = { ok: true, value: await fn() };
            } catch (error) {
                r = { ok: false, error };
            }
            if (mutates) await this.record();
            r.seen = this.seq;
            return r;
        });
        return run.then(async (r) => {
            await this.durable(r.seen);
            if (!r.ok) throw r.error;
            return r.value;
        });
    }

    // -- toncenter methods --

    async getAddressInformation({ address }) {
        const addr = parseAddress(address);
        return this.exclusive(async () => {
            const c = await this.bc.getContract(addr);
            const st = c.accountState;
            const active = st?.type === 'active';
            const lt = c.lastTransactionLt;
            return {
                '@type': 'raw.fullAccountState',
                balance: c.balance.toString(),
                code: active && st.state.code ? st.state.code.toBoc().toString('base64') : '',
                data: active && st.state.data ? st.state.data.toBoc().toString('base64') : '',
                last_transaction_id: {
                    '@type': 'internal.transactionId',
                    lt: lt.toString(),
                    hash: lt === 0n ? ZERO_HASH : bigToHash(c.lastTransactionHash).toString('base64'),
                },
                frozen_hash: st?.type === 'frozen' ? bigToHash(st.stateHash).toString('base64') : '',
                sync_utime: this.bc.now ?? wallNow(),
                state: active ? 'active' : st?.type === 'frozen' ? 'frozen' : 'uninitialized',
            };
        }, false);
    }

    async getAddressBalance(params) {
        return (await this.getAddressInformation(params)).balance;
    }

    async sendBoc({ boc }) {
        await this.sendBocReturnHash({ boc });
        return { '@type': 'ok' };
    }

    async sendBocReturnHash({ boc }) {
        const cell = parseBoc(boc, 'boc');
        let msg;
        try {
            msg = loadMessage(cell.beginParse());
        } catch {
            throw new ApiError(400, 'boc is not a message');
        }
        if (msg.info.type !== 'external-in') throw new ApiError(400, 'only external messages can be sent');
        return this.exclusive(async () => {
            try {
                await this.bc.sendMessage(msg);
            } catch (e) {
                throw new ApiError(500, `LITE_SERVER_UNKNOWN: cannot apply external message to current state : ${e.message ?? e}`);
            }
            return { '@type': 'raw.extMessageInfo', hash: cell.hash().toString('base64') };
        }, true);
    }

    async runGetMethod({ address, method, stack }) {
        const addr = parseAddress(address);
        if (method === undefined || method === '') throw new ApiError(400, 'method is required');
        const m = typeof method === 'string' && /^-?\d+$/.test(method) ? Number(method) : method;
        const args = stackIn(stack);
        return this.exclusive(async () => {
            const c = await this.bc.getContract(addr);
            const base = { '@type': 'smc.runResult', block_id: this.blockId(), last_transaction_id: this.lastTxId(c) };
            if (c.accountState?.type !== 'active') return { ...base, gas_used: 0, stack: [], exit_code: -13 };
            // The sandbox reads its config as it starts the method: swapped in for that call
            // only (inside `exclusive`, so nothing else runs meanwhile).
            const full = this.bc.networkConfig;
            if (this.getConfig?.full !== full) this.getConfig = { full, slim: getMethodConfig(full) };
            this.bc.networkConfig = this.getConfig.slim;
            try {
                const r = await this.bc.runGetMethod(addr, m, args);
                return { ...base, gas_used: Number(r.gasUsed), stack: r.stack.map(stackOut), exit_code: r.exitCode };
            } catch (e) {
                if (typeof e?.exitCode === 'number') {
                    return { ...base, gas_used: Number(e.gasUsed ?? 0), stack: [], exit_code: e.exitCode };
                }
                throw e;
            } finally {
                this.bc.networkConfig = full;
            }
        }, false);
    }

    async getTransactions({ address, limit, lt, hash, to_lt }) {
        const addr = parseAddress(address);
        const n = limit === undefined || limit === '' ? 10 : Number(limit);
        if (!Number.isInteger(n) || n < 1 || n > 256) throw new ApiError(400, 'limit must be 1..256');
        const want = BigInt('0x' + addr.hash.toString('hex'));
        return this.exclusive(async () => {
            // Newest first, as toncenter. (The sandbox's own getTransactions reverses its list in place.)
            let txs = this.bc.transactions.filter((t) => t.address === want && addr.workChain === 0).reverse();
            if (lt !== undefined && lt !== '') {
                const from = BigInt(lt);
                const idx = txs.findIndex((t) => t.lt === from && (!hash || t.hash().toString('base64') === hash || t.hash().toString('hex') === hash));
                if (idx < 0) throw new ApiError(404, `LITE_SERVER_UNKNOWN: transaction ${lt} not found`);
                txs = txs.slice(idx);
            }
            if (to_lt !== undefined && to_lt !== '' && to_lt !== '0') {
                const stop = BigInt(to_lt);
                txs = txs.filter((t) => t.lt > stop);
            }
            return txs.slice(0, n).map(txOut);
        }, false);
    }

    blockId() {
        return { '@type': 'ton.blockIdExt', workchain: -1, shard: '-9223372036854775808', seqno: 0, root_hash: ZERO_HASH, file_hash: ZERO_HASH };
    }

    lastTxId(c) {
        const lt = c.lastTransactionLt;
        return { '@type': 'internal.transactionId', lt: lt.toString(), hash: lt === 0n ? ZERO_HASH : bigToHash(c.lastTransactionHash).toString('base64') };
    }

    // -- dev methods --

    async ensureFaucet(amount) {
        const c = await this.bc.getContract(this.faucet.address);
        const floor = amount + toNano('1000000');
        if (c.balance < floor) c.balance = floor;
    }

    async devFaucet({ address, amount }) {
        const to = parseAddress(address);
        const value = parseNanotons(amount, 'amount');
        return this.exclusive(async () => {
            await this.ensureFaucet(value);
            const r = await this.faucet.send({ to, value, bounce: false });
            return { address: to.toString(), amount: value.toString(), transactions: r.transactions.length };
        }, true);
    }

    async devDeploy({ code, data, amount, body }) {
        const init = { code: parseBoc(code, 'code'), data: parseBoc(data, 'data') };
        const value = parseNanotons(amount ?? toNano('0.1'), 'amount');
        const msgBody = body ? parseBoc(body, 'body') : undefined;
        const address = contractAddress(0, init);
        return this.exclusive(async () => {
            await this.ensureFaucet(value);
            const r = await this.faucet.send({ to: address, value, init, body: msgBody, bounce: false });
            const tx = r.transactions.find((t) => t.address === BigInt('0x' + address.hash.toString('hex')));
            const out = tx ? txOut(tx) : null;
            const st = (await this.bc.getContract(address)).accountState?.type;
            return {
                address: address.toString(),
                raw_address: address.toRawString(),
                state: st === 'active' ? 'active' : 'uninitialized',
                exit_code: out?.compute_exit_code ?? null,
            };
        }, true);
    }

    async devAdvance({ seconds }) {
        const s = Number(seconds);
        if (!Number.isInteger(s) || s < 0) throw new ApiError(400, 'seconds must be a non-negative integer');
        return this.exclusive(async () => {
            if (this.wallClock) this.clockOffset += s;
            this.bc.now = (this.bc.now ?? wallNow()) + s;
            return { now: this.bc.now };
        }, true);
    }

    async devHealth() {
        return this.exclusive(async () => ({
            status: 'ok',
            now: this.bc.now ?? wallNow(),
            lt: this.bc.lt.toString(),
            wall_clock: this.wallClock,
            faucet: this.faucet.address.toString(),
            transactions: this.bc.transactions.length,
        }), false);
    }
}

// ---- HTTP ----

const API_METHODS = ['getAddressInformation', 'getAddressBalance', 'sendBoc', 'sendBocReturnHash', 'runGetMethod', 'getTransactions'];
const DEV_METHODS = { faucet: 'devFaucet', deploy: 'devDeploy', advance: 'devAdvance', health: 'devHealth' };

async function readJson(req) {
    const chunks = [];
    let size = 0;
    for await (const ch of req) {
        size += ch.length;
        if (size > 16 << 20) throw new ApiError(413, 'request too large');
        chunks.push(ch);
    }
    if (size === 0) return {};
    try {
        const v = JSON.parse(Buffer.concat(chunks).toString('utf-8'));
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error();
        return v;
    } catch {
        throw new ApiError(400, 'body must be a JSON object');
    }
}

function send(res, status, obj) {
    const body = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
}

function errorOf(e) {
    if (e instanceof ApiError) return { code: e.code, error: e.message };
    return { code: 500, error: String(e?.message ?? e) };
}

export function createServer(chain) {
    return http.createServer(async (req, res) => {
        const url = new URL(req.url, 'http://localhost');
        const parts = url.pathname.split('/').filter(Boolean);
        let rpc = null;
        try {
            const query = Object.fromEntries(url.searchParams);
            const body = req.method === 'POST' ? await readJson(req) : {};
            if (parts[0] === 'dev' && parts.length === 2 && DEV_METHODS[parts[1]]) {
                const wantPost = parts[1] !== 'health';
                if (wantPost !== (req.method === 'POST')) throw new ApiError(405, 'method not allowed');
                return send(res, 200, { ok: true, result: await chain[DEV_METHODS[parts[1]]]({ ...query, ...body }) });
            }
            if (parts[0] === 'api' && parts[1] === 'v2' && parts.length === 3) {
                let method = parts[2];
                let params = { ...query, ...body };
                if (method === 'jsonRPC') {
                    if (req.method !== 'POST') throw new ApiError(405, 'method not allowed');
                    rpc = { id: body.id ?? null, jsonrpc: body.jsonrpc ?? '2.0' };
                    method = body.method;
                    params = body.params ?? {};
                }
                if (!API_METHODS.includes(method)) throw new ApiError(404, `unknown method ${method}`);
                const result = await chain[method](params);
                return send(res, 200, { ok: true, result, ...(rpc ?? {}) });
            }
            throw new ApiError(404, 'not found');
        } catch (e) {
            const { code, error } = errorOf(e);
            if (code === 500 && !(e instanceof ApiError)) console.error(e);
            // toncenter answers JSON-RPC errors with HTTP 200 + ok:false; plain calls with the code.
            return send(res, rpc ? 200 : code, { ok: false, error, code, ...(rpc ?? {}) });
        }
    });
}

async function main() {
    const { values } = parseArgs({
        options: {
            port: { type: 'string', default: '8081' },
            host: { type: 'string', default: '127.0.0.1' },
            'data-dir': { type: 'string' },
            'wall-clock': { type: 'boolean', default: false },
            'compact-bytes': { type: 'string' },
        },
    });
    const chain = new LocalChain({ dataDir: values['data-dir'] ? path.resolve(values['data-dir']) : null, wallClock: values['wall-clock'], compactBytes: values['compact-bytes'] === undefined ? null : Number(values['compact-bytes']) });
    const loaded = await chain.open();
    const server = createServer(chain);
    // Longer than clients keep idle connections: a reused connection must not be closed
    // under a request in flight (Node's default of 5 s races aiohttp's pool, ECONNRESET).
    server.keepAliveTimeout = 75_000;
    server.headersTimeout = 80_000;
    server.listen(Number(values.port), values.host, () => {
        const port = server.address().port;
        const host = values.host.includes(':') ? `[${values.host}]` : values.host;
        process.stdout.write(JSON.stringify({
            event: 'ready',
            port,
            endpoint: `http://${host}:${port}/api/v2/`,
            faucet: chain.faucet.address.toString(),
            data_dir: chain.dataDir,
            loaded,
        }) + '\n');
    });
    // Let the state change in progress finish (and be journaled), then exit.
    const stop = () => {
        server.close();
        server.closeAllConnections();
        chain.idle().finally(() => process.exit(0));
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    main().catch((e) => {
        console.error(`cocoon chain: ${e?.stack ?? e}`);
        process.exit(1);
    });
}
