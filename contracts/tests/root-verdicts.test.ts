// The root's verifier list and verdict slashes, end to end with a real stake contract.
import { describe, it, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Address, beginCell, Cell } from '@ton/core';
import { Blockchain, type SandboxContract, type TreasuryContract } from '@ton/sandbox';
import nacl from 'tweetnacl';
import {
    cancelSlashBody, getRootSlashing, ROOT_FEE_UPDATE, ROOT_FEE_FORWARD, RootErr as E, rootInit, setParamsBody,
    setSlashingBody, setVerifierBody, submitVerdictBody, verdictCell, verifierSigs, type RootMarket, type RootParams,
    type Verdict,
} from '../wrappers/Root.ts';
import {
    depositBody, executeSlashBody, getPendingSlash, getStakeState, requestUnbondBody, REWARD_BP, StakeErr, StakeFee,
    stakeInit, withdrawBody,
} from '../wrappers/Stake.ts';
import { assertExit, exitCodeOf, TON, txFromTo } from './helpers.ts';

const NET = 0x636f636f;
const T0 = 1_800_000_000;
const UNBOND = 3600;
const P0: RootParams = {
    basePricePerToken: 1000n, promptMult: 10000, cachedMult: 1000, completionMult: 40000, reasoningMult: 40000,
    proxyCommission: 1000, clientCloseDelay: 86400, workerCloseDelay: 172800,
    minClientDeposit: 1n * TON, minProxyDeposit: 10n * TON,
};
const M0: RootMarket = {
    minWorkerStake: 10n * TON, minProxyStake: 20n * TON, unbondingDelay: UNBOND,
    tierTee: 10000, tierGpu: 12000, tierAudited: 15000, tierReplicated: 30000, tierRegion: 11000,
};
const verifiers = [1, 2, 3, 4].map((n) => nacl.sign.keyPair.fromSeed(Buffer.alloc(32, 0x40 + n)));
const worker = nacl.sign.keyPair.fromSeed(Buffer.alloc(32, 9));
const keyInt = (b: Uint8Array) => BigInt('0x' + Buffer.from(b).toString('hex'));
const sign = (v: Cell, k: nacl.SignKeyPair) => ({ key: keyInt(k.publicKey), signature: Buffer.from(nacl.sign.detached(v.hash(), k.secretKey)) });

describe('root: verifiers and verdict slashes', () => {
    let bc: Blockchain;
    let owner: SandboxContract<TreasuryContract>;
    let stranger: SandboxContract<TreasuryContract>;
    let staker: SandboxContract<TreasuryContract>;
    let root: Address;
    let stake: Address;
    const getRoot = (n: string, a?: any[]) => bc.runGetMethod(root, n, a ?? []);
    const getStake = (n: string, a?: any[]) => bc.runGetMethod(stake, n, a ?? []);
    const version = async () => (await getRoot('version')).stackReader.readNumber();
    const update = (body: Cell, from = owner, value = ROOT_FEE_UPDATE) => from.send({ to: root, value, body });
    const V = (over: Partial<Verdict> = {}): Verdict => ({
        networkId: NET, stake, workerKey: keyInt(worker.publicKey), evidence: 0xe71dn, slashBp: 2500, nonce: 1n, ...over,
    });
    const submit = (v: Cell, signers: nacl.SignKeyPair[], value = ROOT_FEE_FORWARD) =>
        stranger.send({ to: root, value, body: submitVerdictBody(v, verifierSigs(signers.map((k) => sign(v, k)))) });

    beforeEach(async () => {
        bc = await Blockchain.create();
        bc.now = T0;
        owner = await bc.treasury('owner');
        stranger = await bc.treasury('stranger');
        staker = await bc.treasury('staker');
        const r = rootInit(owner.address, NET, P0, M0);
        root = r.address;
        assertExit(await owner.send({ to: root, value: TON, init: r.init, bounce: false }), root, 0);
        const s = stakeInit({ networkId: NET, authority: root, owner: staker.address, nodeKey: Buffer.from(worker.publicKey) });
        stake = s.address;
        assertExit(await staker.send({ to: stake, value: 10n * TON + StakeFee.deposit, init: s.init,
            body: depositBody(UNBOND), bounce: false }), stake, 0);
        for (const k of verifiers.slice(0, 3)) assertExit(await update(setVerifierBody(keyInt(k.publicKey), true)), root, 0);
    });

    it('set-verifier: owner only (102), value (103), not zero (114); add and remove bump the version', async () => {
        assert.equal(await version(), 3);
        let sl = await getRootSlashing(getRoot);
        assert.deepEqual([sl.disputeDelay, sl.quorum, sl.verifiers.length], [1800, 2, 3]);
        const k4 = keyInt(verifiers[3].publicKey);
        assertExit(await update(setVerifierBody(k4, true), stranger), root, E.notOwner);
        assertExit(await update(setVerifierBody(k4, true), owner, ROOT_FEE_UPDATE - 1n), root, E.lowValue);
        assertExit(await update(setVerifierBody(0n, true)), root, E.badVerifier);
        assertExit(await update(setVerifierBody(k4, true)), root, 0);
        const isV = async (k: bigint) => (await getRoot('isVerifier', [{ type: 'int', value: k }])).stackReader.readBoolean();
        assert.ok(await isV(k4));
        assertExit(await update(setVerifierBody(k4, false)), root, 0);
        assert.ok(!(await isV(k4)));
        sl = await getRootSlashing(getRoot);
        assert.deepEqual(new Set(sl.verifiers), new Set(verifiers.slice(0, 3).map((k) => keyInt(k.publicKey))));
        assert.equal(await version(), 5);
        assertExit(await update(beginCell().storeUint(0x73766572, 32).storeUint(0, 64).storeUint(1, 256).endCell()), root, E.malformed);
    });

    it('set-slashing: quorum ≥ 2 (105), dispute ≤ unbonding (115); a lower unbonding delay caps the window', async () => {
        assertExit(await update(setSlashingBody({ disputeDelay: 600, quorum: 1 })), root, E.badParams);
        assertExit(await update(setSlashingBody({ disputeDelay: UNBOND + 1, quorum: 2 })), root, E.disputeTooLong);
        assertExit(await update(setSlashingBody({ disputeDelay: 600, quorum: 2 }), stranger), root, E.notOwner);
        assertExit(await update(setSlashingBody({ disputeDelay: UNBOND, quorum: 3 })), root, 0);
        assert.deepEqual(await getRootSlashing(getRoot).then((s) => [s.disputeDelay, s.quorum]), [UNBOND, 3]);
        assertExit(await update(setParamsBody(P0, { ...M0, unbondingDelay: 60 })), root, 0);
        assert.equal((await getRootSlashing(getRoot)).disputeDelay, 60);
        assert.equal(await version(), 5);
    });

    it('a quorum of listed verifiers proposes the slash; it waits out the window, then anyone executes it', async () => {
        const v = verdictCell(V());
        const before = await version();
        const r = await submit(v, verifiers.slice(0, 2));
        assertExit(r, root, 0);
        assertExit(r, stake, 0);
        assert.equal(await version(), before, 'a verdict changes nothing on the root');
        const p = await getPendingSlash(getStake);
        assert.deepEqual([p.bp, p.executeAt, p.nonce, p.evidence], [2500, T0 + 1800, 1n, 0xe71dn]);
        assert.ok(p.beneficiary!.equals(stranger.address));
        // the owner cannot leave with the stake meanwhile
        const byStaker = (body: Cell) => staker.send({ to: stake, value: StakeFee.control, body });
        assertExit(await byStaker(requestUnbondBody(TON)), stake, StakeErr.slashPending);
        bc.now = T0 + 1799;
        assertExit(await stranger.send({ to: stake, value: StakeFee.control, body: executeSlashBody() }), stake, StakeErr.inDispute);
        bc.now = T0 + 1800;
        const strangerBefore = await stranger.getBalance();
        const x = await stranger.send({ to: stake, value: StakeFee.control, body: executeSlashBody() });
        assertExit(x, stake, 0);
        const s = await getStakeState(getStake);
        assert.deepEqual([s.bonded, s.slashed], [7_500_000_000n, 2_500_000_000n]);
        const reward = 2_500_000_000n * BigInt(REWARD_BP) / 10000n;
        const gained = (await stranger.getBalance()) - strangerBefore;
        assert.ok(gained > reward - 2n * StakeFee.control && gained < reward, `${gained}`);
        assert.ok(txFromTo(x, stake, root));
        // the same verdict again: the stake refuses the stale nonce, the proposal bounces to the root
        const again = await submit(v, verifiers.slice(1, 3));
        assertExit(again, root, 0);
        const onStake = txFromTo(again, root, stake);
        assert.equal(exitCodeOf(onStake), StakeErr.staleNonce);
        const bounce = txFromTo(again, stake, root);
        assert.ok(bounce.inMessage!.info.type === 'internal' && bounce.inMessage!.info.bounced);
        assert.equal(exitCodeOf(bounce), 0);
        assert.equal((await getPendingSlash(getStake)).bp, 0);
    });

    it('refuses verdicts: value (103), tag (107), network (108), unlisted (109), signature (110), twice (111), quorum (112), bp (113), nonce (116)', async () => {
        const v = verdictCell(V());
        assertExit(await submit(v, verifiers.slice(0, 2), ROOT_FEE_FORWARD - 1n), root, E.lowValue);
        assertExit(await submit(verdictCell(V(), 0x76726475), verifiers.slice(0, 2)), root, E.notVerdict);
        assertExit(await submit(verdictCell(V({ networkId: NET + 1 })), verifiers.slice(0, 2)), root, E.wrongNetwork);
        assertExit(await submit(v, [verifiers[0], verifiers[3]]), root, E.notVerifier);
        assertExit(await submit(v, [verifiers[0], worker]), root, E.notVerifier);
        const forged = verifierSigs([sign(v, verifiers[0]), { ...sign(verdictCell(V({ slashBp: 1 })), verifiers[1]) }]);
        assertExit(await stranger.send({ to: root, value: ROOT_FEE_FORWARD, body: submitVerdictBody(v, forged) }), root, E.badVerdictSig);
        assertExit(await submit(v, [verifiers[0], verifiers[0]]), root, E.sameVerifier);
        assertExit(await submit(v, [verifiers[0]]), root, E.noQuorum);
        assertExit(await submit(verdictCell(V({ slashBp: 0 })), verifiers.slice(0, 2)), root, E.badSlashBp);
        assertExit(await submit(verdictCell(V({ slashBp: 10001 })), verifiers.slice(0, 2)), root, E.badSlashBp);
        // a nonce (microseconds) more than an hour ahead of the chain's clock would shield the stake
        const ahead = BigInt(T0 + 3600) * 1_000_000n;
        assertExit(await submit(verdictCell(V({ nonce: ahead + 1n })), verifiers.slice(0, 2)), root, E.nonceAhead);
        assertExit(await submit(verdictCell(V({ nonce: 2n ** 64n - 1n })), verifiers.slice(0, 2)), root, E.nonceAhead);
        const short = beginCell().storeUint(0x76726474, 32).storeUint(1, 8).endCell();
        assertExit(await submit(short, verifiers.slice(0, 2)), root, E.malformed);
        const noSigs = beginCell().storeUint(0x73766474, 32).storeUint(0, 64).storeRef(v).endCell();
        assertExit(await stranger.send({ to: root, value: ROOT_FEE_FORWARD, body: noSigs }), root, E.malformed);
        // a quorum of 3 wants three
        assertExit(await update(setSlashingBody({ disputeDelay: 600, quorum: 3 })), root, 0);
        assertExit(await submit(v, verifiers.slice(0, 2)), root, E.noQuorum);
        const atLimit = verdictCell(V({ nonce: ahead }));
        assertExit(await submit(atLimit, verifiers.slice(0, 3)), root, 0);
        assert.equal((await getPendingSlash(getStake)).executeAt, T0 + 600);
    });

    it('a verdict about another node key is refused by the stake (316) and bounces to the root', async () => {
        const r = await submit(verdictCell(V({ workerKey: keyInt(verifiers[3].publicKey) })), verifiers.slice(0, 2));
        assertExit(r, root, 0);
        assert.equal(exitCodeOf(txFromTo(r, root, stake)), StakeErr.wrongNode);
        const bounce = txFromTo(r, stake, root);
        assert.ok(bounce.inMessage!.info.type === 'internal' && bounce.inMessage!.info.bounced);
        assert.equal(exitCodeOf(bounce), 0);
        assert.equal((await getPendingSlash(getStake)).bp, 0);
    });

    it('cancel-slash: the owner upholds a dispute through the root (102, 103); a wrong nonce bounces', async () => {
        assertExit(await submit(verdictCell(V({ nonce: 5n })), verifiers.slice(0, 2)), stake, 0);
        const cancel = (nonce: bigint, from = owner, value = ROOT_FEE_FORWARD) => update(cancelSlashBody(stake, nonce), from, value);
        assertExit(await cancel(5n, stranger), root, E.notOwner);
        assertExit(await cancel(5n, owner, ROOT_FEE_FORWARD - 1n), root, E.lowValue);
        const wrong = await cancel(4n);
        assertExit(wrong, root, 0);
        assert.equal(exitCodeOf(txFromTo(wrong, root, stake)), StakeErr.noPending);
        assert.ok(txFromTo(wrong, stake, root).inMessage!.info.type === 'internal');
        assert.equal((await getPendingSlash(getStake)).nonce, 5n);
        const before = await version();
        const r = await cancel(5n);
        assertExit(r, root, 0);
        assert.equal(exitCodeOf(txFromTo(r, root, stake)), 0);
        assert.equal(await version(), before);
        assert.equal((await getPendingSlash(getStake)).bp, 0);
        // the stake is free again
        const byStaker = (body: Cell) => staker.send({ to: stake, value: StakeFee.control, body });
        assertExit(await byStaker(requestUnbondBody(10n * TON)), stake, 0);
        bc.now = T0 + UNBOND;
        assertExit(await byStaker(withdrawBody()), stake, 0);
        assert.equal((await getStakeState(getStake)).slashed, 0n);
    });
});
