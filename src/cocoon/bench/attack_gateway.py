"""Junk against the client gateway's newer surfaces: the Responses API, tools and
structured output, the web app's routes, Telegram initData (issue 16's bar).

    python -m cocoon.bench.attack_gateway --url http://127.0.0.1:8080 --pid PID \
        [--api-key KEY] [--bot-token TOKEN]

Every attack must come back as a 4xx in the OpenAI error format with a short
message (a 2xx where the input is valid); the client's RSS (`--pid`, from
/proc) is read before and after the floods and printed. 127.0.0.1 only, each
flood bounded in count. Exit status 1 if any attack failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass

import aiohttp

from ..telegram_initdata import sign_init_data
from . import attack_cases
from .attack_cases import Attack
from .procstats import sample

# An error message longer than this echoes what it was sent.
MAX_MESSAGE_CHARS = 300


@dataclass
class Outcome:
    """What one attack got back, and whether it met the bar."""

    name: str
    status: int
    ok: bool
    why: str


def _judge(attack: Attack, status: int, body: bytes) -> Outcome:
    if status in attack.expect:
        if status < 400:
            return Outcome(attack.name, status, True, "")
        try:
            error = json.loads(body)["error"]
            message = error["message"]
        except (ValueError, KeyError, TypeError):
            return Outcome(attack.name, status, False, f"not an OpenAI error: {body[:80]!r}")
        if not isinstance(message, str) or len(message) > MAX_MESSAGE_CHARS:
            return Outcome(attack.name, status, False, f"message of {len(str(message))} chars")
        return Outcome(attack.name, status, True, "")
    return Outcome(attack.name, status, False, f"expected {attack.expect}: {body[:120]!r}")


async def _send(session: aiohttp.ClientSession, url: str, attack: Attack) -> Outcome:
    if attack.raw_path is not None:
        return await _raw(url, attack)
    try:
        async with session.request(
            attack.method,
            url + attack.path,
            data=attack.body,
            headers=attack.headers,
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            return _judge(attack, response.status, await response.read())
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Outcome(attack.name, 0, False, f"{type(exc).__name__}: {exc}")


async def _raw(url: str, attack: Attack) -> Outcome:
    """A request line as written (aiohttp's client would normalise the path)."""
    host, _, port = url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"{attack.method} {attack.raw_path} HTTP/1.1\r\nHost: {host}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in attack.headers.items())
    head += "Connection: close\r\nContent-Length: 0\r\n\r\n"
    writer.write(head.encode("latin-1"))
    try:
        data = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    status = int(status_line.split()[1]) if len(status_line.split()) > 1 else 0
    return _judge(attack, status, rest.partition(b"\r\n\r\n")[2])


def _rss_mib(pid: int) -> float:
    reading = sample([pid])
    return reading.rss_bytes / 2**20 if reading is not None else float("nan")


async def _flood(
    session: aiohttp.ClientSession, url: str, attacks: list[Attack], concurrency: int
) -> list[Outcome]:
    gate = asyncio.Semaphore(concurrency)

    async def one(attack: Attack) -> Outcome:
        async with gate:
            return await _send(session, url, attack)

    return list(await asyncio.gather(*(one(a) for a in attacks)))


async def run(args: argparse.Namespace) -> int:
    auth = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    init_data = None
    if args.bot_token:
        fields = {"auth_date": str(int(time.time())), "user": json.dumps({"id": 7})}
        init_data = sign_init_data(fields, args.bot_token)
    singles = attack_cases.single_attacks(auth, init_data, bool(args.api_key))
    failed = 0
    async with aiohttp.ClientSession() as session:
        before = _rss_mib(args.pid)
        outcomes = await _flood(session, args.url, singles, 4)
        for outcome in outcomes:
            if not outcome.ok:
                failed += 1
                print(f"FAIL {outcome.name[:60]}: {outcome.status} {outcome.why}")
        print(f"{len(singles)} single attacks, {failed} failed; client RSS {before:.1f} MiB")
        floods = attack_cases.floods(auth, args.bot_token, args.flood)
        for name, attacks in floods.items():
            start = _rss_mib(args.pid)
            started = time.monotonic()
            results = await _flood(session, args.url, attacks, 8)
            bad = [r for r in results if not r.ok]
            failed += len(bad)
            print(
                f"flood {name}: {len(attacks)} requests in {time.monotonic() - started:.1f} s, "
                f"{len(bad)} failed, client RSS {start:.1f} -> {_rss_mib(args.pid):.1f} MiB"
            )
            for outcome in bad[:3]:
                print(f"  FAIL {outcome.name[:60]}: {outcome.status} {outcome.why}")
        print(f"client RSS {before:.1f} -> {_rss_mib(args.pid):.1f} MiB after everything")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--pid", type=int, required=True, help="the client node's process id")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--bot-token", default="")
    parser.add_argument("--flood", type=int, default=60, help="requests per flood")
    args = parser.parse_args(argv)
    if not args.url.startswith("http://127.0.0.1:"):
        parser.error("--url must be http://127.0.0.1:PORT (attacks stay on this machine)")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Outcome", "main", "run"]
