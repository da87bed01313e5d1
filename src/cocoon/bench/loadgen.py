"""The load generator: a closed loop of OpenAI requests against one target.

It runs as a process of its own (`python -m cocoon.bench.loadgen`, the job as
JSON on stdin), pinned to its own CPU where the machine allows, so that the
client's event loop never shares a core with the servers it measures. It
writes JSON lines on stdout: progress while a load runs, then one result per
load.

Each request is timed as `answers.py` says.

A load: `concurrency` tasks each send a request, wait for the whole answer,
and send the next. Warm-up lasts `warmup_seconds` and until every task has
finished at least one request (so connection set-up is never measured). The
measurement window then lasts until `max_requests` requests completed in it,
or `max_seconds` passed (and at least one answer or error came back in it).
Throughput counts the answers completed inside the window; latencies are those
of the same answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable

import aiohttp
import msgspec

from . import procstats
from .answers import Outcome, read_plain, read_stream, request_body, whole_share
from .plan import Load, LoadgenJob
from .results import (
    Finished,
    Line,
    LoadResult,
    ProcessUsage,
    Progress,
    percentiles,
)

# Error texts kept per load, to show what went wrong without flooding the report.
ERROR_EXAMPLES = 3
PROGRESS_INTERVAL_S = 0.5
MEMORY_INTERVAL_S = 0.2
# After the window closes, how long requests still in flight may take to finish.
DRAIN_S = 10.0


class _LoadRun:
    """The state of one load while it runs."""

    def __init__(self, index: int, load: Load, job: LoadgenJob, emit: Callable[[Line], None]):
        self.index = index
        self.load = load
        self.job = job
        self.emit = emit
        self.url = job.target.base_url.rstrip("/") + "/chat/completions"
        self.body = request_body(job.request, load.mode == "stream")
        self.started = 0.0
        self.window_start: float | None = None
        self.window_end: float | None = None
        self.warm_tasks: set[int] = set()
        self.outcomes: list[Outcome] = []
        self.errors: list[str] = []
        self.stop = asyncio.Event()
        self.window_open = asyncio.Event()
        self.answered_in_window = asyncio.Event()
        self.trees: dict[str, list[int]] = {}
        self.peak_rss: dict[str, int] = {}

    async def run(self) -> LoadResult:
        load = self.load
        timeout = aiohttp.ClientTimeout(total=self.job.request_timeout_s)
        connector = aiohttp.TCPConnector(limit=load.concurrency, limit_per_host=0)
        self.trees = {
            name: procstats.descendants(pid) for name, pid in self.job.target.processes.items()
        }
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.job.target.api_key}",
            **self.job.target.headers,
        }
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=headers
        ) as session:
            self.started = time.perf_counter()
            tasks = [
                asyncio.create_task(self._client(session, number))
                for number in range(load.concurrency)
            ]
            ticker = asyncio.create_task(self._ticker())
            before, cpu_before = await self._open_window()
            memory = asyncio.create_task(self._memory())
            await self._close_window()
            after = {name: procstats.sample(pids) for name, pids in self.trees.items()}
            cpu_after = time.process_time()
            memory.cancel()
            ticker.cancel()
            # Let answers in flight finish, so the next load starts on a quiet server.
            _, late = await asyncio.wait(tasks, timeout=DRAIN_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return self._result(before, after, cpu_after - cpu_before)

    async def _open_window(self) -> tuple[dict[str, procstats.Sample | None], float]:
        load = self.load
        deadline = self.started + load.warmup_seconds
        # Warm-up ends once its time is up and every task has an answer back,
        # bounded by the load's time limit (a target that cannot answer at all).
        limit = self.started + load.warmup_seconds + load.max_seconds
        while True:
            now = time.perf_counter()
            if now >= limit or (now >= deadline and len(self.warm_tasks) >= load.concurrency):
                break
            await asyncio.sleep(0.01)
        before = {name: procstats.sample(pids) for name, pids in self.trees.items()}
        cpu_before = time.process_time()
        self.window_start = time.perf_counter()
        self.window_open.set()
        return before, cpu_before

    async def _close_window(self) -> None:
        assert self.window_start is not None
        remaining = self.window_start + self.load.max_seconds - time.perf_counter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), max(0.0, remaining))
        if not self.answered_in_window.is_set():
            # A window shorter than one answer measures nothing (a slow engine on
            # a busy machine): it stays open until the first answer, or an error,
            # within the request timeout.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.answered_in_window.wait(), self.job.request_timeout_s)
        self.window_end = time.perf_counter()
        self.stop.set()

    async def _client(self, session: aiohttp.ClientSession, number: int) -> None:
        call = read_stream if self.load.mode == "stream" else read_plain
        while not self.stop.is_set():
            try:
                outcome = await call(session, self.url, self.body)
            except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError) as exc:
                outcome = Outcome(time.perf_counter(), time.perf_counter())
                outcome.error = f"{type(exc).__name__}: {exc}"
            self.warm_tasks.add(number)
            self._record(outcome)
            if outcome.error is not None and not self.window_open.is_set():
                # A target failing during warm-up: do not spin.
                await asyncio.sleep(0.01)

    def _record(self, outcome: Outcome) -> None:
        start = self.window_start
        if start is None or self.window_end is not None or outcome.ended < start:
            return
        if outcome.error is not None:
            self.errors.append(outcome.error)
        else:
            self.outcomes.append(outcome)
        self.answered_in_window.set()
        if len(self.outcomes) >= self.load.max_requests:
            self.stop.set()

    async def _ticker(self) -> None:
        while True:
            phase = "measure" if self.window_open.is_set() else "warm-up"
            self.emit(
                Progress(
                    self.index,
                    phase,
                    len(self.outcomes),
                    len(self.errors),
                    time.perf_counter() - self.started,
                )
            )
            await asyncio.sleep(PROGRESS_INTERVAL_S)

    async def _memory(self) -> None:
        while True:
            for name, pids in self.trees.items():
                reading = procstats.sample(pids)
                if reading is not None:
                    self.peak_rss[name] = max(self.peak_rss.get(name, 0), reading.rss_bytes)
            await asyncio.sleep(MEMORY_INTERVAL_S)

    def _result(
        self,
        before: dict[str, procstats.Sample | None],
        after: dict[str, procstats.Sample | None],
        loadgen_cpu_s: float,
    ) -> LoadResult:
        assert self.window_start is not None and self.window_end is not None
        duration = max(1e-9, self.window_end - self.window_start)
        outcomes = self.outcomes
        completed = len(outcomes)
        tokens = sum(o.tokens for o in outcomes)
        gaps = [gap for o in outcomes for gap in o.gaps]
        ttfts = [o.first_token - o.started for o in outcomes if o.first_token is not None]
        processes: dict[str, ProcessUsage] = {}
        for name in self.trees:
            start, end = before.get(name), after.get(name)
            if start is None or end is None:
                continue
            cpu = max(0.0, end.cpu_s - start.cpu_s)
            processes[name] = ProcessUsage(
                cpu_s=round(cpu, 3),
                cpu_s_per_1k_requests=round(cpu / completed * 1000, 3) if completed else None,
                peak_rss_mb=round(max(self.peak_rss.get(name, 0), end.rss_bytes) / 2**20, 1),
                lifetime_peak_rss_mb=round(end.peak_rss_bytes / 2**20, 1),
            )
        unique_errors = list(dict.fromkeys(self.errors))[:ERROR_EXAMPLES]
        return LoadResult(
            target=self.job.target.name,
            load=self.load,
            duration_s=round(duration, 3),
            requests=completed,
            errors=len(self.errors),
            error_examples=unique_errors,
            requests_per_s=completed / duration,
            tokens=tokens,
            tokens_per_s=tokens / duration,
            latency_ms=percentiles([o.ended - o.started for o in outcomes]),
            ttft_ms=percentiles(ttfts) if self.load.mode == "stream" else None,
            gap_ms=percentiles(gaps) if self.load.mode == "stream" else None,
            whole_answers=whole_share(outcomes) if self.load.mode == "stream" else None,
            processes=processes,
            loadgen_cpu_s=round(loadgen_cpu_s, 3),
        )


async def run_job(job: LoadgenJob, emit: Callable[[Line], None]) -> list[LoadResult]:
    """Run every load of `job` in order; each result is also emitted as it is done."""
    results = []
    for index, load in enumerate(job.loads):
        result = await _LoadRun(index, load, job, emit).run()
        emit(Finished(index, result))
        results.append(result)
    return results


_line_encoder = msgspec.json.Encoder()


def main() -> None:
    job = msgspec.json.decode(sys.stdin.buffer.read(), type=LoadgenJob)
    procstats.pin(job.cpus)
    out = sys.stdout.buffer

    def emit(line: Line) -> None:
        out.write(_line_encoder.encode(line) + b"\n")
        out.flush()

    try:
        import uvloop
    except ImportError:
        asyncio.run(run_job(job, emit))
    else:
        uvloop.run(run_job(job, emit))


if __name__ == "__main__":
    main()
