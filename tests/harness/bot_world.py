"""A bot world (the `world` fixture of tests/bot): an in-process Cocoon network
(proxy, synthetic workers, client gateway on real sockets), the Bot API double,
and `cocoon bot`'s real code polling the double."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cocoon.bot.app import BotRunner
from cocoon.bot.config import BotConfig
from cocoon.config import SyntheticBackendConfig
from cocoon.inference import AnswerChunk, GenerationRequest
from cocoon.worker.backends.base import Backend
from harness.bot_api import BotApiDouble
from harness.network import InProcessNetwork

TOKEN = "123456:TEST-token_for-the-double"
ALICE = 1001  # allowed
MALLORY = 2002  # not in allowed_users
MODELS = ["synthetic-small", "synthetic-large"]
WEB_URL = "https://cocoon.example/app"


class RecordingBackend:
    """The worker's real backend, remembering the prompts it was given (what only the
    worker, inside its TEE, sees in plaintext)."""

    def __init__(self, inner: Backend, prompts: list[str]) -> None:
        self.inner = inner
        self.prompts = prompts
        self.name = inner.name

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def generate(self, request: GenerationRequest) -> AsyncGenerator[AnswerChunk, None]:
        self.prompts.append(
            "\n".join(str(m.content) for m in request.messages if m.role != "system")
        )
        return self.inner.generate(request)


@dataclass
class BotWorld:
    network: InProcessNetwork
    api: BotApiDouble
    runner: BotRunner
    base_url: str
    prompts: list[str] = field(default_factory=list)

    def chat(self, user_id: int = ALICE) -> list:  # type: ignore[type-arg]
        return self.api.sent_to(user_id)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[BotWorld]:
    prompts: list[str] = []
    network = InProcessNetwork(tmp_path)
    api = BotApiDouble(TOKEN)
    runner: BotRunner | None = None
    task: asyncio.Task[None] | None = None
    try:
        await network.start_proxy()
        # Paced, so that an answer streams for a moment and is shown by several edits.
        await network.start_worker(
            "worker1",
            models=MODELS,
            synthetic=SyntheticBackendConfig(tokens_per_second=150, default_max_tokens=40),
            wrap=lambda backend: RecordingBackend(backend, prompts),  # type: ignore[arg-type,return-value]
        )
        base_url = await network.start_client()
        await api.start()
        config = BotConfig(
            token=TOKEN,
            api_server=api.base_url,
            gateway=base_url,
            allowed_users=[ALICE],
            web_url=WEB_URL,
            edit_interval_s=0.05,
            max_tokens=40,
        )
        runner = BotRunner(config)
        task = asyncio.create_task(runner.run(handle_signals=False, polling_timeout=1))
        await api.wait_for(lambda: api.called("getMe"))
        yield BotWorld(network, api, runner, base_url, prompts)
    finally:
        if runner is not None and task is not None:
            with contextlib.suppress(RuntimeError):
                await runner.stop()
            await asyncio.wait_for(task, 10)
        await api.stop()
        await network.stop()


def minimal_pdf(text_lines: list[str]) -> bytes:
    """A one-page PDF whose text layer holds these lines (Helvetica, no compression)."""
    body = (
        "BT /F1 12 Tf 72 720 Td 14 TL "
        + " ".join(
            "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") '"
            for line in text_lines
        )
        + " ET"
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(body), body.encode("latin-1")),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def decode(markup: dict | None) -> list[dict]:  # type: ignore[type-arg]
    """The inline buttons of a reply markup, row after row."""
    if not markup:
        return []
    return [button for row in markup.get("inline_keyboard", []) for button in row]


__all__ = ["ALICE", "MALLORY", "MODELS", "TOKEN", "WEB_URL", "BotWorld", "decode"]
