"""What unauthenticated peers cost a proxy: RSS and log size before and after (issue 16).

Runs a proxy in a child process (so that its RSS is its own), then plays
peers that never authenticate against its wire port, over real TLS:

- `big-frame`: declares a 16 MiB frame and sends it;
- `big-hello`: a Hello whose `role` is 15 MiB (refused, and once echoed);
- `garbage`: 64 KiB of random bytes;
- `idle`: completes TLS and sends nothing (held until the proxy closes it).

and prints the proxy's RSS (from /proc) and log size before, at the peak, and
after. Usage: `python -m cocoon.bench.preauth --peers 40 --rounds 2`.

`--clients N` instead holds N authenticated client connections (each its own
identity, heartbeats answered) open and idle, and prints the proxy's RSS
before, with all held, and after they close: what an idle authenticated
connection costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from ..wire.messages import Hello

_CHILD = """
import asyncio, logging, sys
from pathlib import Path
from cocoon.config import PaymentsConfig, ProxyConfig, TeeConfig
from cocoon.node import make_credentials, provider_for
from cocoon.payments.ledger import Ledger
from cocoon.proxy.service import Proxy

async def main() -> None:
    root = Path(sys.argv[1])
    logging.basicConfig(filename=root / "proxy.log", level=logging.INFO)
    tee = TeeConfig(allow_untrusted=True)
    config = ProxyConfig(network="preauth", listen="127.0.0.1:0", data_dir=str(root),
                         tee=tee, payments=PaymentsConfig())
    credentials = make_credentials(role="proxy", network="preauth", data_dir=root,
                                   provider=provider_for(tee))
    proxy = Proxy(config, credentials, Ledger(root / "ledger.sqlite"), None, None)
    await proxy.start()
    print(proxy.port, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def payload(kind: str) -> bytes:
    if kind == "big-frame":
        size = 16 * 1024 * 1024
        return struct.pack(">I", size) + b"\x00" * size
    if kind == "big-hello":
        big = "r" * (15 * 1024 * 1024)
        hello = Hello(1, 0, big, "preauth", b"\x00" * 32, b"")
        return _frame(msgspec.msgpack.encode(hello))
    if kind == "garbage":
        return os.urandom(64 * 1024)
    return b""


async def peer(port: int, kind: str, hold_s: float) -> str:
    """One peer's attack; returns how it ended."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=_context()), 30
        )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return f"connect failed: {type(exc).__name__}"
    try:
        data = payload(kind)
        if data:
            writer.write(data)
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await asyncio.wait_for(writer.drain(), 30)
        try:
            answer = await asyncio.wait_for(reader.read(4096), hold_s)
        except TimeoutError:
            return "held open"
        return f"answered {len(answer)} bytes, closed"
    except (ConnectionError, ssl.SSLError, OSError) as exc:
        return f"cut: {type(exc).__name__}"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)


async def attack(port: int, pid: int, log: Path, kinds: list[str], peers: int, rounds: int) -> None:
    def sample(label: str) -> None:
        size = log.stat().st_size if log.exists() else 0
        print(f"{label:>28}: RSS {rss_kib(pid) / 1024:8.1f} MiB, log {size / 1024:8.1f} KiB")

    sample("before")
    for kind in kinds:
        for round_ in range(rounds):
            peak = 0
            started = time.monotonic()
            tasks = [asyncio.create_task(peer(port, kind, 15.0)) for _ in range(peers)]
            while not all(t.done() for t in tasks):
                peak = max(peak, rss_kib(pid))
                await asyncio.sleep(0.05)
            outcomes: dict[str, int] = {}
            for task in tasks:
                outcomes[task.result()] = outcomes.get(task.result(), 0) + 1
            took = time.monotonic() - started
            print(
                f"{kind} x{peers} round {round_ + 1}: peak RSS {peak / 1024:.1f} MiB, "
                f"{took:.1f} s, {outcomes}"
            )
            sample(f"after {kind} round {round_ + 1}")


async def hold_clients(port: int, pid: int, count: int, root: Path) -> None:
    """`count` authenticated, idle client connections to the proxy, held a while."""
    from ..config import TeeConfig
    from ..node import make_credentials, peer_policy, provider_for
    from ..wire.endpoints import connect
    from ..wire.transport import Channel

    tee = TeeConfig(allow_untrusted=True)
    policy = peer_policy("preauth", True)
    print(f"{'before':>12}: RSS {rss_kib(pid) / 1024:8.1f} MiB")
    started = time.monotonic()
    channels: list[Channel] = []
    tasks: list[asyncio.Task[None]] = []

    async def ignore(channel: Channel, message: object) -> None:
        pass

    async def one(index: int) -> None:
        credentials = make_credentials(
            role="client",
            network="preauth",
            data_dir=root / f"client{index}",
            provider=provider_for(tee),
        )
        channel = await connect(
            "127.0.0.1",
            port,
            local=credentials.local,
            policy=policy,
            accept_roles=frozenset({"proxy"}),
        )
        channels.append(channel)
        tasks.append(asyncio.create_task(channel.run(ignore)))

    for start in range(0, count, 100):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 100))))
    took = time.monotonic() - started
    await asyncio.sleep(2.0)
    print(
        f"{'held':>12}: RSS {rss_kib(pid) / 1024:8.1f} MiB "
        f"({len(channels)} idle authenticated connections, {took:.1f} s)"
    )
    for channel in channels:
        await channel.close()
    for task in tasks:
        task.cancel()
    await asyncio.sleep(2.0)
    print(f"{'closed':>12}: RSS {rss_kib(pid) / 1024:8.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--kinds", default="big-frame,big-hello,garbage,idle")
    parser.add_argument("--clients", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, tmp], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            port = int(child.stdout.readline())
            time.sleep(0.5)
            if args.clients:
                for _ in range(args.rounds):
                    asyncio.run(hold_clients(port, child.pid, args.clients, Path(tmp)))
                return
            asyncio.run(
                attack(
                    port,
                    child.pid,
                    Path(tmp) / "proxy.log",
                    args.kinds.split(","),
                    args.peers,
                    args.rounds,
                )
            )
        finally:
            child.terminate()
            child.wait(10)


if __name__ == "__main__":
    main()
