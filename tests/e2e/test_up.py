"""`cocoon up` as a user meets it: an upstream behind it, Ctrl-C, a busy port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from harness.upstream import start_upstream

from .conftest import start_up, stop_up, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The in-project OpenAI-compatible server, standing in for vLLM or llama.cpp."""
    process, base_url = start_upstream(tmp_path_factory.mktemp("upstream") / "upstream.log")
    try:
        yield base_url
    finally:
        process.terminate()
        process.wait(10)


def test_up_with_an_upstream_behind_the_workers(tmp_path: Path, upstream: str) -> None:
    up = start_up(tmp_path, "--upstream", upstream, "--model", "synthetic-small")
    try:
        assert up.models == ["synthetic-small"]
        client = openai.OpenAI(base_url=up.base_url, api_key="x", max_retries=0)
        direct = openai.OpenAI(base_url=upstream, api_key="x", max_retries=0)
        messages = [{"role": "user", "content": "tell me about the sea"}]
        through = client.chat.completions.create(
            model="synthetic-small",
            messages=messages,
            max_tokens=12,  # type: ignore[arg-type]
        )
        expected = direct.chat.completions.create(
            model="synthetic-small",
            messages=messages,
            max_tokens=12,  # type: ignore[arg-type]
        )
        # Same text and the upstream's own usage, through the sealed path.
        assert through.choices[0].message.content == expected.choices[0].message.content
        assert through.usage == expected.usage
        stream = client.chat.completions.create(
            model="synthetic-small",
            messages=messages,  # type: ignore[arg-type]
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == expected.choices[0].message.content
        assert chunks[-1].usage == expected.usage
    finally:
        assert stop_up(up) == 0


def test_ctrl_c_stops_every_node(tmp_path: Path) -> None:
    up = start_up(tmp_path)
    client = openai.OpenAI(base_url=up.base_url, api_key="x", max_retries=0)
    assert client.models.list().data
    assert stop_up(up) == 0
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{up.base_url}/models", timeout=2)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{up.proxy_status}/jsonstats", timeout=2)


def test_a_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        command = [sys.executable, "-m", "cocoon.cli", "up", "--port", str(port)]
        result = subprocess.run(
            [*command, "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [
        f"cocoon: error: cannot listen on 127.0.0.1:{port}: Address already in use;"
        " choose another with --port"
    ]
    assert not (tmp_path / "run" / "proxy.ready").exists()


def test_a_node_killed_is_restarted_and_the_network_serves_on(tmp_path: Path) -> None:
    """Issue 16, item 6: kill -9 of a worker, then of the client, under `cocoon up`: each
    comes back (new pid) and the network answers again; `up` itself keeps running."""
    up = start_up(tmp_path, "--workers", "2")
    try:
        client = openai.OpenAI(base_url=up.base_url, api_key="x", max_retries=3)
        messages = [{"role": "user", "content": "still there?"}]

        def ask() -> str:
            answer = client.chat.completions.create(
                model=up.models[0],
                messages=messages,  # type: ignore[arg-type]
                max_tokens=4,
            )
            return answer.choices[0].message.content or ""

        assert ask()
        for name in ("worker1", "client"):
            ready = up.data_dir / "run" / f"{name}.ready"
            written = ready.stat().st_mtime_ns
            os.kill(_pid_of(up.data_dir / name), signal.SIGKILL)
            # Restarted: its ready file is written anew.
            wait_for(
                lambda ready=ready, written=written: (
                    ready.exists() and ready.stat().st_mtime_ns != written
                ),
                timeout=30,
            )
            assert up.process.poll() is None
            wait_for(lambda: _answers(ask), timeout=30, interval=0.2)
    finally:
        assert stop_up(up) == 0


def _pid_of(node_dir: Path) -> int:
    """The pid of the node process whose --data-dir is `node_dir`."""
    wanted = str(node_dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"cocoon.cli" in args and wanted in args:
            return int(entry.name)
    raise AssertionError(f"no process runs {node_dir}")


def _answers(ask: Callable[[], str]) -> bool:
    try:
        return bool(ask())
    except openai.APIError:
        return False
