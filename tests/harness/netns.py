"""Hosts of their own for the nodes of a test: Linux network namespaces on one LAN.

Each host is a namespace (`ip netns`) with loopback and one veth link to a
bridge in a hub namespace, so the hosts reach one another on a private /24
and nothing else; no address is added outside the namespaces made here.
Names carry the test process's pid, so runs side by side do not meet.

Processes run on a host with `ip netns exec` (`Host.command`); the test
itself talks to a host from threads that entered its namespace (`Host.call`,
setns(2) on the calling thread only). `Lan.destroy` kills whatever still
runs on the hosts and deletes the namespaces, even after a failed start.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


class NetnsUnavailable(Exception):
    """This machine does not let us make network namespaces (not root, no CAP_NET_ADMIN...)."""


def ip(*args: str) -> None:
    """Run `ip ARGS`; NetnsUnavailable with its complaint if it fails."""
    try:
        result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsUnavailable(f"ip {' '.join(args)}: {exc}") from None
    if result.returncode != 0:
        reason = (result.stderr.strip() or f"exit code {result.returncode}").splitlines()[0]
        raise NetnsUnavailable(f"ip {' '.join(args)}: {reason}")


def enter_namespace(name: str) -> None:
    """Move the calling thread (only it) into network namespace `name`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({name}): {os.strerror(errno)}")
    finally:
        os.close(fd)


@dataclass
class Host:
    """One namespace on the LAN: `address` on its eth0."""

    name: str
    address: str
    _threads: ThreadPoolExecutor | None = field(default=None, repr=False)

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside this host (the process is argv itself: ip execs it)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 60.0, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on a thread inside this host; its result, bounded in time."""
        return self.submit(fn, *args, **kwargs).result(timeout)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """`fn` started on a thread inside this host; its Future."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(
                16, thread_name_prefix=self.name, initializer=enter_namespace, initargs=(self.name,)
            )
        return self._threads.submit(fn, *args, **kwargs)

    def pids(self) -> list[int]:
        """Every process running inside this host."""
        result = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, timeout=10
        )
        return [int(p) for p in result.stdout.split()] if result.returncode == 0 else []

    def signal_all(self, sig: int) -> list[int]:
        """Send `sig` to every process of this host; the pids it went to."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids

    def close_threads(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
            self._threads = None


@dataclass
class Lan:
    """Hosts `names` on 10.213.0.0/24 (.1, .2, ... in order), switched by a bridge in a hub."""

    names: list[str]
    subnet: str = "10.213.0"
    prefix: str = field(default_factory=lambda: f"cc{os.getpid()}")
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def hub(self) -> str:
        return f"{self.prefix}-hub"

    def create(self) -> None:
        """Make the hub and the hosts; NetnsUnavailable if the machine does not allow it
        (what was made is left for `destroy`)."""
        self._add_namespace(self.hub)
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "link", "set", "br0", "up")
        for index, short in enumerate(self.names, start=1):
            host = Host(f"{self.prefix}-{short}", f"{self.subnet}.{index}")
            self._add_namespace(host.name)
            self.hosts[short] = host
            port = f"v{index}"
            ip("-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0")
            ip("-n", self.hub, "link", "set", "eth0", "netns", host.name)
            ip("-n", self.hub, "link", "set", port, "master", "br0")
            ip("-n", self.hub, "link", "set", port, "up")
            ip("-n", host.name, "link", "set", "lo", "up")
            ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", "eth0")
            ip("-n", host.name, "link", "set", "eth0", "up")

    def _add_namespace(self, name: str) -> None:
        if (NETNS_DIR / name).exists():
            # Left by an earlier process of this pid that died before its clean-up.
            self._delete_namespace(name)
        ip("netns", "add", name)

    def __getitem__(self, short: str) -> Host:
        return self.hosts[short]

    def destroy(self) -> None:
        """Kill what still runs on the hosts, delete every namespace this LAN made."""
        for host in self.hosts.values():
            host.close_threads()
            self._delete_namespace(host.name)
        self.hosts.clear()
        self._delete_namespace(self.hub)

    def _delete_namespace(self, name: str) -> None:
        if not (NETNS_DIR / name).exists():
            return
        Host(name, "").signal_all(signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
