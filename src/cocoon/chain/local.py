"""The local chain: ``contracts/chain/server.mjs`` (@ton/sandbox, toncenter v2 API) as a subprocess.

:class:`LocalChain` starts the Node service, waits for its ready line and stops it;
:class:`LocalChainClient` is the toncenter client plus the service's dev endpoints
(faucet, deploy, clock). State lives in ``data_dir/state.json`` and survives restarts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import msgspec

from .toncenter import TonCenterClient

__all__ = [
    "LocalChain",
    "LocalChainClient",
    "LocalChainError",
    "Ready",
    "contracts_dir",
    "find_node",
]

SETUP_HINT = "run ./scripts/test or `npm ci --prefix contracts` first"


class LocalChainError(Exception):
    """The local chain cannot start (or died)."""


class Ready(msgspec.Struct, frozen=True):
    """The service's ready line."""

    port: int
    endpoint: str
    faucet: str
    event: str = "ready"
    data_dir: str | None = None
    loaded: bool = False


def contracts_dir() -> Path:
    """``contracts/`` of this checkout (``COCOON_CONTRACTS_DIR`` overrides)."""
    env = os.environ.get("COCOON_CONTRACTS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "contracts"


def find_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise LocalChainError(
            f"the local chain needs Node >= 20 (`node` is not on PATH); {SETUP_HINT}"
        )
    return node


def check_setup(contracts: Path) -> Path:
    """The server script, once the npm dependencies are known to be installed."""
    server = contracts / "chain" / "server.mjs"
    if not server.is_file():
        raise LocalChainError(f"{server} is missing (the local chain ships with the source tree)")
    if not (contracts / "node_modules" / "@ton" / "sandbox").is_dir():
        raise LocalChainError(f"{contracts / 'node_modules'} lacks @ton/sandbox; {SETUP_HINT}")
    return server


def server_command(
    contracts: Path, data_dir: Path, *, port: int, host: str, wall_clock: bool
) -> list[str]:
    """The command that runs the service (run it with `contracts` as working directory)."""
    command = [find_node(), str(check_setup(contracts)), "--port", str(port), "--host", host]
    command += ["--data-dir", str(data_dir.resolve())]
    if wall_clock:
        command.append("--wall-clock")
    return command


class LocalChain:
    """Runs the local chain service. ``port=0`` picks a free port.

    ``wall_clock``: the chain's clock follows wall time (``cocoon up``); otherwise it
    moves only on ``/dev/advance`` (tests). The service's stderr goes to ``log_path``
    (default ``data_dir/chain.log``), or to ours with ``log_path=None`` and ``inherit_stderr``.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        wall_clock: bool = False,
        contracts: Path | None = None,
        log_path: Path | None = None,
        inherit_stderr: bool = False,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.host = host
        self.wall_clock = wall_clock
        self.contracts = contracts or contracts_dir()
        self.log_path = None if inherit_stderr else (log_path or self.data_dir / "chain.log")
        self.start_timeout_s = start_timeout_s
        self.ready: Ready | None = None
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def endpoint(self) -> str:
        if self.ready is None:
            raise LocalChainError("the local chain is not running")
        return self.ready.endpoint

    def client(self, **kwargs: Any) -> LocalChainClient:
        return LocalChainClient(self.endpoint, **kwargs)

    async def start(self) -> Ready:
        if self._proc is not None:
            raise LocalChainError("already started")
        command = server_command(
            self.contracts,
            self.data_dir,
            port=self.port,
            host=self.host,
            wall_clock=self.wall_clock,
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        stderr: Any = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            stderr = self.log_path.open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *command,
                cwd=self.contracts,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        finally:
            if stderr is not None:
                stderr.close()
        try:
            self.ready = await asyncio.wait_for(self._read_ready(), self.start_timeout_s)
        except TimeoutError:
            await self.stop()
            raise LocalChainError(
                f"the local chain did not start within {self.start_timeout_s:g} s{self._log_tail()}"
            ) from None
        except BaseException:
            await self.stop()
            raise
        return self.ready

    async def _read_ready(self) -> Ready:
        assert self._proc is not None and self._proc.stdout is not None
        line = await self._proc.stdout.readline()
        if not line:
            code = await self._proc.wait()
            raise LocalChainError(f"the local chain exited with code {code}{self._log_tail()}")
        try:
            return msgspec.json.decode(line, type=Ready)
        except msgspec.DecodeError:
            raise LocalChainError(
                f"unexpected output from the local chain: {line[:200]!r}"
            ) from None

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        tail = self.log_path.read_bytes()[-2000:].decode(errors="replace").strip()
        return f"; its log ({self.log_path}) ends with:\n{tail}" if tail else ""

    async def wait(self) -> int:
        """Until the service exits; its exit code."""
        if self._proc is None:
            raise LocalChainError("not started")
        return await self._proc.wait()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (the service finishes the change in progress and saves), then SIGKILL."""
        proc, self._proc = self._proc, None
        self.ready = None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.stdout is not None:
            proc.stdout.feed_eof()

    async def __aenter__(self) -> LocalChain:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class LocalChainClient(TonCenterClient):
    """toncenter client + the local chain's dev endpoints (no equivalent on TON:
    real deployments and transfers are messages from wallets)."""

    @property
    def root(self) -> str:
        e = self.endpoint
        return e[: -len("api/v2/")] if e.endswith("api/v2/") else e

    async def _dev(self, name: str, body: dict[str, Any] | None) -> dict[str, Any]:
        url = self.root + "dev/" + name
        raw = await (self._request(url) if body is None else self._request(url, body=body))
        return self._decode(raw, dict[str, Any])

    async def health(self) -> dict[str, Any]:
        return await self._dev("health", None)

    async def faucet(self, address: str, amount: int) -> None:
        """Send ``amount`` nanotons to ``address`` from the sandbox treasury."""
        await self._dev("faucet", {"address": address, "amount": str(amount)})

    async def deploy(
        self, code: bytes, data: bytes, amount: int, body: bytes | None = None
    ) -> dict[str, Any]:
        """Deploy a contract (state init from code+data BoCs) with ``amount`` from the treasury.

        Returns ``{"address", "raw_address", "state", "exit_code"}``."""
        req: dict[str, Any] = {
            "code": base64.b64encode(code).decode(),
            "data": base64.b64encode(data).decode(),
            "amount": str(amount),
        }
        if body is not None:
            req["body"] = base64.b64encode(body).decode()
        return await self._dev("deploy", req)

    async def advance(self, seconds: int) -> int:
        """Move the chain's clock forward; returns the new unix time."""
        return int((await self._dev("advance", {"seconds": seconds}))["now"])
