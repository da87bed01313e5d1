"""What idle connections cost the client gateway: RSS per held keep-alive connection.

Runs the gateway's HTTP server class (`client.http_server.OpenAIServer`, with
the gateway's settings; a handler answering `/healthz`) in a child process,
opens `--connections` TCP connections to it, sends one request on each (`GET
/healthz`) and keeps them open and idle, then prints the child's RSS before,
with all of them held, and after they are closed; `--rounds` times over.
Usage: `python -m cocoon.bench.idle --connections 10000 --rounds 2`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import subprocess
import sys
import time

from .preauth import rss_kib

_CHILD = """
import asyncio, resource
from aiohttp import web
from cocoon.client.http_server import OpenAIServer

async def health(request: web.BaseRequest) -> web.Response:
    return web.json_response({"ok": True})

async def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    runner = web.ServerRunner(OpenAIServer(health, handler_cancellation=True, access_log=None))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"


async def hold(port: int, count: int, pid: int) -> None:
    print(f"{'before':>12}: RSS {rss_kib(pid) / 1024:8.1f} MiB")
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    started = time.monotonic()
    for start in range(0, count, 500):
        batch = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", port) for _ in range(min(500, count - start)))
        )
        for _, writer in batch:
            writer.write(REQUEST)
        for reader, _ in batch:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        held.extend(batch)
    took = time.monotonic() - started
    await asyncio.sleep(1.0)
    held_kib = rss_kib(pid)
    print(
        f"{'held':>12}: RSS {held_kib / 1024:8.1f} MiB ({len(held)} idle connections, {took:.1f} s)"
    )
    for _, writer in held:
        writer.close()
    for _, writer in held:
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    await asyncio.sleep(2.0)
    print(f"{'closed':>12}: RSS {rss_kib(pid) / 1024:8.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        time.sleep(0.5)
        for _ in range(args.rounds):
            asyncio.run(hold(port, args.connections, child.pid))
    finally:
        child.terminate()
        child.wait(10)


if __name__ == "__main__":
    main()
