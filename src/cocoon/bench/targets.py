"""The systems under test, started and stopped on 127.0.0.1.

- `upstream`: the in-project synthetic OpenAI server (`cocoon upstream`),
  zero delay by default. It is the "direct" target, and the model server
  behind the two others.
- `cocoon`: the `cocoon up` topology (proxy, workers, client gateway, each a
  process) with the workers' `openai` backend pointed at the upstream.
- `litellm`: LiteLLM's proxy (one worker) in front of the same upstream, from
  a generated config; found in this Python or in the one given.
- external (`--target NAME=URL`): any OpenAI-compatible endpoint already
  running, e.g. a peer implementation in front of its own upstream.

With the real engine (`--engine llama`), the upstream is llama-cpp-python's
own OpenAI server (`llama_cpp.server`) on the GGUF file the built-in engine
runs: the engine called directly. The `cocoon` target's workers then run that
file in the built-in `llama` backend, as `cocoon up` does by default, so the
comparison is the full path (sealing, proxy, receipts, the worker's engine
threads) against the bare engine.

Each server process inherits this process's CPU affinity, so the runner pins
itself to the server CPUs before starting anything.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..children import UpError, stop_network
from ..up import start_network
from ..up_options import UpOptions

READY_TIMEOUT_S = 90.0
LITELLM_KEY = "sk-cocoon-bench"
# Workers must never be the bottleneck of a benchmark that goes to 256
# concurrent requests: their default capacity (64) would refuse the rest.
WORKER_CAPACITY = 4096
LITELLM_HINT = "pip install -e '.[bench]' (or pass --litellm-python PATH)"


class TargetError(Exception):
    """A target could not start."""


@dataclass
class Running:
    """A started target: where to send requests, which processes serve them, how to stop."""

    name: str
    base_url: str
    processes: dict[str, int]
    api_key: str = "bench"
    stop: Callable[[], None] = field(default=lambda: None)
    # The exit code of the target's main process once it has exited, else None.
    exited: Callable[[], int | None] = field(default=lambda: None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(
    url: str, process: subprocess.Popen[bytes], log: Path, headers: dict[str, str]
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise TargetError(
                f"exited with code {process.returncode}; {log}:\n  " + "\n  ".join(tail)
            )
        try:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=1):
                return
        except (OSError, urllib.error.URLError):
            time.sleep(0.1)
    raise TargetError(f"not ready within {READY_TIMEOUT_S:.0f} s; see {log}")


def _spawn(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def _terminate(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if process.poll() is not None:
        return
    # The whole session: servers that fork workers take them along.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _start_direct(command: list[str], log: Path, port: int) -> Running:
    """An OpenAI-compatible server called directly, once it answers /v1/models."""
    process = _spawn(command, log)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_http(f"{base_url}/models", process, log, {})
    except BaseException:
        _terminate(process)
        raise
    return Running(
        "direct",
        base_url,
        {"upstream": process.pid},
        stop=lambda: _terminate(process),
        exited=process.poll,
    )


def start_upstream(run_dir: Path, *, model: str, max_tokens: int, token_delay_ms: float) -> Running:
    """The synthetic upstream; every answer is exactly `max_tokens` long."""
    port = free_port()
    log = run_dir / "upstream.log"
    command = [
        *(sys.executable, "-m", "cocoon.cli", "upstream", "--port", str(port)),
        *("--model", model),
        # Natural answers are between half this and this long; asking for
        # max_tokens then always cuts them at exactly max_tokens.
        *("--default-max-tokens", str(2 * max_tokens)),
        *("--tokens-per-second", str(1000.0 / token_delay_ms if token_delay_ms > 0 else 0.0)),
    ]
    return _start_direct(command, log, port)


def start_llama_server(run_dir: Path, *, model_file: Path, model: str) -> Running:
    """llama_cpp.server on one GGUF file, otherwise its defaults (one request at a time)."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise TargetError("llama-cpp-python is not installed (the `llama` extra)")
    port = free_port()
    log = run_dir / "llama-server.log"
    command = [
        *(sys.executable, "-m", "llama_cpp.server", "--model", str(model_file)),
        # The same context window as the built-in engine's default. By
        # default a new request interrupts the one streaming (its stream is
        # cut short); we want them served in turn, as the worker does.
        *("--model_alias", model, "--n_ctx", "2048", "--interrupt_requests", "false"),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]
    return _start_direct(command, log, port)


def start_cocoon(
    run_dir: Path,
    *,
    upstream: Running,
    model: str,
    workers: int,
    engine_file: Path | None = None,
    payments: bool = False,
    name: str = "cocoon",
) -> Running:
    """The full path: client gateway → proxy → workers → the upstream (or their own engine),
    with payment channels on a local chain when `payments`; its files under `name`."""
    options = UpOptions(
        port=free_port(),
        workers=workers,
        data_dir=run_dir / name,
        upstream=None if engine_file else upstream.base_url,
        model=None if engine_file else model,
        network="cocoon-bench",
        # One proxy and no attestation: the path the benchmark has always measured.
        proxies=1,
        tee="none",
        engine="llama" if engine_file else "synthetic",
        model_file=str(engine_file) if engine_file else None,
        embeddings=False,
        # By default the inference path as the targets compare it; payments add a
        # voucher per request (signed by the client, checked by proxy and worker).
        payments=payments,
    )
    # Configuration by environment, as any deployment may do (README): the
    # children of start_network inherit it.
    settings = {
        "COCOON_WORKER_MAX_ACTIVE_REQUESTS": str(WORKER_CAPACITY),
        # The in-project upstream answers vLLM's prompt_logprobs: audits run for real
        # (the client audits 2 % of answers, the `audited` tier 25 %).
        "COCOON_WORKER_OPENAI__SCORING": "true",
    }
    previous = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        children = start_network(options)
    except (UpError, OSError) as exc:
        raise TargetError(str(exc)) from exc
    finally:
        for key, value in previous.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    processes = {child.name: child.process.pid for child in children}
    if payments and "chain" not in processes:
        # `up` goes on without payments when the chain cannot start: a run asked to
        # measure them must not quietly measure without.
        stop_network(children)
        raise TargetError("payments asked for, but the local chain did not start (see above)")
    processes["upstream"] = upstream.processes["upstream"]
    return Running(
        name,
        str(children[-1].info["base_url"]),
        processes,
        stop=lambda: stop_network(children),
    )


def parse_external(spec: str) -> tuple[str, str]:
    """`NAME=URL` of a running OpenAI-compatible endpoint (URL: its base, e.g.
    http://127.0.0.1:8000/v1); ValueError saying what is wrong."""
    name, sep, url = spec.partition("=")
    name, url = name.strip(), url.strip().rstrip("/")
    if not sep or not name or not url:
        raise ValueError(
            f"--target {spec!r}: expected NAME=URL, e.g. peer=http://127.0.0.1:8000/v1"
        )
    if not all(c.isalnum() or c in "-_.[]" for c in name):
        raise ValueError(f"--target {spec!r}: a name of letters, digits, - _ . [ ]")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"--target {spec!r}: the URL must be http:// or https://")
    return name, url


def start_external(name: str, base_url: str) -> Running | str:
    """A running endpoint, once it answers GET /models (a note saying why not, else)."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=5):
            pass
    except (OSError, urllib.error.URLError) as exc:
        return f"{name}: skipped, {base_url}/models does not answer: {exc}"
    return Running(name, base_url, {})


def find_litellm(python: str | None) -> str | None:
    """A Python that can import litellm: the given one, or this one; None if neither."""
    if python:
        return python if Path(python).exists() else None
    if importlib.util.find_spec("litellm") is not None:
        return sys.executable
    return None


def litellm_config(upstream: Running, model: str) -> str:
    """LiteLLM's proxy config: one model, served by the upstream as an OpenAI server."""
    return (
        "model_list:\n"
        f"  - model_name: {model}\n"
        "    litellm_params:\n"
        f"      model: openai/{model}\n"
        f"      api_base: {upstream.base_url}\n"
        "      api_key: none\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
        "general_settings:\n"
        # Recent LiteLLM refuses to start without one.
        f"  master_key: {LITELLM_KEY}\n"
    )


def start_litellm(run_dir: Path, *, python: str, upstream: Running, model: str) -> Running:
    """LiteLLM's proxy with its defaults (one uvicorn worker)."""
    config = run_dir / "litellm.yaml"
    config.write_text(litellm_config(upstream, model))
    port = free_port()
    log = run_dir / "litellm.log"
    command = [
        *(python, "-m", "litellm.proxy.proxy_cli", "--config", str(config)),
        *("--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"),
    ]
    # Nothing outside this machine: the model price map is the bundled one.
    env = os.environ | {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    process = _spawn(command, log, env)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_http(
            f"http://127.0.0.1:{port}/health/liveliness",
            process,
            log,
            {"Authorization": f"Bearer {LITELLM_KEY}"},
        )
    except BaseException:
        _terminate(process)
        raise
    return Running(
        "litellm",
        base_url,
        {"litellm": process.pid, "upstream": upstream.processes["upstream"]},
        api_key=LITELLM_KEY,
        stop=lambda: _terminate(process),
    )
