"""Local chain throughput: real wallet transfers and channel redeems per second.

Starts a local chain (``contracts/chain/server.mjs``) in a scratch folder, funds
``wallets`` payer wallets from the faucet and gives each a payee wallet and a channel
between them. Then two timed phases, each with at most ``concurrency`` operations in
flight (one per wallet at a time: a wallet's seqno orders its transfers):

- transfers: every operation is one signed external message to a payer wallet that
  sends TON to its payee, confirmed when the wallet's seqno has moved on;
- redeems: every operation is one signed external message to a payee wallet that sends
  a higher voucher to the channel (external → wallet → channel → payout), confirmed
  when the channel's transaction is found and succeeded (:class:`ChannelOps`).

Reports operations per second, chain transactions per second (the service's count),
confirmation latency p50/p99 as the caller sees it, and the size of what the chain
persisted. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..chain.channel import ChannelConfig
from ..chain.local import LocalChain, LocalChainClient
from ..chain.ops import ChannelOps
from ..chain.wallet import InternalMessage, WalletV4
from ..payments.vouchers import Voucher, sign_voucher

__all__ = [
    "ChainBenchError",
    "ChainBenchOptions",
    "ChainBenchReport",
    "PhaseResult",
    "run_chain_bench",
]

TON = 1_000_000_000
NETWORK = 1
TRANSFER_NANO = 1_000_000  # 0.001 TON per transfer
VOUCHER_STEP_NANO = 1_000_000  # each voucher adds 0.001 TON


class ChainBenchError(Exception):
    """The chain did something the benchmark did not expect (a wrong payout)."""


@dataclass(frozen=True)
class ChainBenchOptions:
    wallets: int = 8  # payer wallets (each with a payee wallet and a channel)
    transfers: int = 200  # K wallet transfers
    redeems: int = 200  # K channel redeems
    concurrency: int | None = None  # operations in flight (default: one per wallet)
    data_dir: Path | None = None  # where the chain keeps its state (default: a temp dir)


@dataclass(frozen=True)
class PhaseResult:
    operations: int
    seconds: float
    chain_transactions: int
    ops_per_s: float
    chain_tx_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float


@dataclass
class ChainBenchReport:
    wallets: int
    concurrency: int
    phases: dict[str, PhaseResult] = field(default_factory=dict)
    state_files: dict[str, int] = field(default_factory=dict)  # file name → bytes
    chain_transactions_total: int = 0

    @property
    def state_bytes(self) -> int:
        return sum(self.state_files.values())

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["state_bytes"] = self.state_bytes
        return d

    def lines(self) -> list[str]:
        out = [f"local chain bench: {self.wallets} wallets, concurrency {self.concurrency}"]
        for name, p in self.phases.items():
            out.append(
                f"  {name:<9} {p.operations:>5} ops in {p.seconds:6.2f} s: "
                f"{p.ops_per_s:7.1f} ops/s, {p.chain_tx_per_s:7.1f} chain tx/s; "
                f"latency p50 {p.latency_p50_ms:6.1f} ms, p99 {p.latency_p99_ms:6.1f} ms"
            )
        files = ", ".join(f"{n} {b / 1e6:.2f} MB" for n, b in sorted(self.state_files.items()))
        out.append(
            f"  persisted state: {self.state_bytes / 1e6:.2f} MB ({files}) after "
            f"{self.chain_transactions_total} chain transactions"
        )
        return out


def _percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    i = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[i]


async def _tx_count(c: LocalChainClient) -> int:
    return int((await c.health())["transactions"])


async def _phase(
    c: LocalChainClient,
    jobs: list[list[Callable[[], Awaitable[None]]]],
    concurrency: int,
) -> PhaseResult:
    """Run each lane's jobs in order, lanes side by side, at most ``concurrency`` at once."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def lane(lane_jobs: list[Callable[[], Awaitable[None]]]) -> None:
        for job in lane_jobs:
            async with gate:
                t0 = time.perf_counter()
                await job()
                latencies.append((time.perf_counter() - t0) * 1000)

    tx0 = await _tx_count(c)
    t0 = time.perf_counter()
    await asyncio.gather(*(lane(j) for j in jobs))
    seconds = time.perf_counter() - t0
    txs = await _tx_count(c) - tx0
    ms = sorted(latencies)
    n = len(ms)
    return PhaseResult(
        operations=n,
        seconds=round(seconds, 3),
        chain_transactions=txs,
        ops_per_s=round(n / seconds, 1) if seconds else 0.0,
        chain_tx_per_s=round(txs / seconds, 1) if seconds else 0.0,
        latency_p50_ms=round(statistics.median(ms), 1) if ms else 0.0,
        latency_p99_ms=round(_percentile(ms, 0.99), 1),
        latency_max_ms=round(ms[-1], 1) if ms else 0.0,
    )


def _split(total: int, lanes: int) -> list[int]:
    return [total // lanes + (1 if i < total % lanes else 0) for i in range(lanes)]


async def _bench(options: ChainBenchOptions, data_dir: Path) -> ChainBenchReport:
    m = options.wallets
    concurrency = options.concurrency or m
    report = ChainBenchReport(wallets=m, concurrency=concurrency)
    async with LocalChain(data_dir) as chain:
        c = chain.client()
        try:
            await _run(c, options, report)
        finally:
            await c.close()
    report.state_files = _state_files(data_dir)
    return report


async def _run(c: LocalChainClient, options: ChainBenchOptions, report: ChainBenchReport) -> None:
    m, concurrency = report.wallets, report.concurrency
    payers = [WalletV4(c, Ed25519PrivateKey.generate()) for _ in range(m)]
    payees = [WalletV4(c, Ed25519PrivateKey.generate()) for _ in range(m)]
    await asyncio.gather(*(c.faucet(w.raw_address, 100 * TON) for w in payers + payees))
    ops = []
    for payer, payee in zip(payers, payees, strict=True):
        cfg = ChannelConfig(NETWORK, 0, payer.address, payee.address, payer.public_key, 3600)
        ops.append((ChannelOps(c, payer, cfg), ChannelOps(c, payee, cfg)))
    # Deploy the channels (and the payer wallets with them); not timed.
    await asyncio.gather(*(p.deploy(50 * TON) for p, _ in ops))

    def transfer(i: int) -> Callable[[], Awaitable[None]]:
        msg = InternalMessage(payees[i].raw_address, TRANSFER_NANO, bounce=False)
        return lambda: _send(payers[i], msg)

    counts = _split(options.transfers, m)
    lanes = [[transfer(i) for _ in range(k)] for i, k in enumerate(counts)]
    report.phases["transfers"] = await _phase(c, lanes, concurrency)

    def redeem(i: int, seqno: int) -> Callable[[], Awaitable[None]]:
        by_payee = ops[i][1]
        v = Voucher(by_payee.address, seqno, seqno * VOUCHER_STEP_NANO)
        signed = sign_voucher(payers[i].key, v, NETWORK)

        async def job() -> None:
            paid = await by_payee.redeem(signed)
            if paid != VOUCHER_STEP_NANO:
                raise ChainBenchError(f"redeem paid {paid}, expected {VOUCHER_STEP_NANO}")

        return job

    lanes = [[redeem(i, s + 1) for s in range(k)] for i, k in enumerate(_split(options.redeems, m))]
    report.phases["redeems"] = await _phase(c, lanes, concurrency)
    report.chain_transactions_total = await _tx_count(c)


def _state_files(data_dir: Path) -> dict[str, int]:
    return {
        p.name: p.stat().st_size
        for p in sorted(data_dir.iterdir())
        if p.is_file() and p.name != "chain.log"
    }


async def _send(wallet: WalletV4, msg: InternalMessage) -> None:
    await wallet.send([msg])


async def run_chain_bench(options: ChainBenchOptions) -> ChainBenchReport:
    if options.wallets < 1:
        raise ValueError("at least one wallet")
    if options.data_dir is not None:
        return await _bench(options, options.data_dir)
    with tempfile.TemporaryDirectory(prefix="cocoon-chain-bench-") as tmp:
        return await _bench(options, Path(tmp))
