from __future__ import annotations

import asyncio

from cocoon.proxy.inflight import InflightRegistry
from cocoon.wire.messages import AnswerEnd, AnswerPart, Error


async def test_a_follower_sees_every_frame_including_those_before_it_joined() -> None:
    registry = InflightRegistry()
    entry = registry.start("r", b"h")
    entry.append(AnswerPart("r", 0, b"x"))

    async def follow() -> list[int]:
        seen = 0
        indices = []
        while True:
            while seen < len(entry.frames):
                frame = entry.frames[seen]
                indices.append(getattr(frame, "index", -1))
                seen += 1
            if entry.done:
                return indices
            await entry.follow(seen)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0)
    entry.append(AnswerPart("r", 1, b"y"))
    entry.append(AnswerEnd("r", 2, b"z", b"receipt"))
    assert await asyncio.wait_for(task, 1) == [0, 1, 2]


def test_finished_runs_are_kept_but_retryable_failures_are_forgotten() -> None:
    registry = InflightRegistry()
    ok = registry.start("ok", b"h")
    ok.append(AnswerEnd("ok", 0, b"z", b"r"))
    registry.finish("ok")
    failed = registry.start("failed", b"h")
    failed.append(Error("failed", "no_capacity", "busy", True))
    registry.finish("failed")
    assert registry.get("ok") is ok
    assert registry.get("failed") is None
    assert registry.running == 0


def test_finished_entries_are_bounded_in_bytes() -> None:
    registry = InflightRegistry(max_finished=100, max_bytes=1000)
    for i in range(10):
        entry = registry.start(f"r{i}", b"h")
        entry.append(AnswerEnd(f"r{i}", 0, b"x" * 300, b"r"))
        registry.finish(f"r{i}")
    assert registry.get("r0") is None
    assert registry.get("r9") is not None
