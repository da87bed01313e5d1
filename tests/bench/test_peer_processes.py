"""A peer endpoint's processes are found while it answers, pinned with the servers, put back.

The peer here is two real servers in a session of their own, as a launched
network is: a front that opens a new connection to its model server for every
request (as the reference Cocoon's worker does), and that model server, the
project's synthetic upstream.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from cocoon.bench import peer_processes
from cocoon.bench.targets import Running, free_port, start_upstream

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="needs /proc and CPU affinity (Linux)"
)

MODEL = "synthetic-small"

# A front that forwards each request on a connection of its own, and says when it listens.
FRONT = textwrap.dedent(
    """
    import sys, urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    upstream, port = sys.argv[1], int(sys.argv[2])

    class Front(BaseHTTPRequestHandler):
        def do_GET(self):
            self._relay(None)

        def do_POST(self):
            self._relay(self.rfile.read(int(self.headers["Content-Length"])))

        def _relay(self, body):
            request = urllib.request.Request(
                upstream + self.path[len("/v1"):], body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request) as answer:
                data = answer.read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Front)
    print("listening", flush=True)
    server.serve_forever()
    """
)


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[tuple[str, Running, subprocess.Popen[bytes]]]:
    upstream = start_upstream(tmp_path, model=MODEL, max_tokens=8, token_delay_ms=0.0)
    port = free_port()
    front = subprocess.Popen(
        [sys.executable, "-c", FRONT, upstream.base_url, str(port)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert front.stdout is not None and front.stdout.readline() == b"listening\n"
        yield f"http://127.0.0.1:{port}/v1", upstream, front
    finally:
        front.kill()
        front.wait()
        upstream.stop()


def test_the_peer_is_its_front_and_the_model_server_it_calls(
    peer: tuple[str, Running, subprocess.Popen[bytes]],
) -> None:
    url, upstream, front = peer
    found = peer_processes.find(url, MODEL, "key")
    upstream_pid = next(iter(upstream.processes.values()))
    # A server of another test run meanwhile may come along (it is only left out when
    # its traffic does not look like the peer's); these two always are found.
    assert {front.pid, upstream_pid} <= set(found.values())
    assert os.getpid() not in found.values()


def test_what_the_bench_started_itself_is_never_taken(
    peer: tuple[str, Running, subprocess.Popen[bytes]],
) -> None:
    url, upstream, front = peer
    found = peer_processes.find(url, MODEL, "key", exclude=upstream.processes.values())
    assert front.pid in found.values()
    assert not set(upstream.processes.values()) & set(found.values())


def test_nothing_listens_nothing_is_found() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert peer_processes.find(url, MODEL, "key", seconds=0.2) == {}


def test_pinned_with_the_servers_then_put_back(
    peer: tuple[str, Running, subprocess.Popen[bytes]],
) -> None:
    url, _, front = peer
    cpus = sorted(os.sched_getaffinity(front.pid))
    processes, unpin, note = peer_processes.take("ref", url, MODEL, "key", cpus[:1])
    try:
        assert front.pid in processes.values()
        assert "pinned to CPU" in note
        for pid in processes.values():
            assert os.sched_getaffinity(pid) == set(cpus[:1])
    finally:
        unpin()
    assert sorted(os.sched_getaffinity(front.pid)) == cpus
