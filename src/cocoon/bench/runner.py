"""One benchmark run: start the targets, drive each load on each in turn, report.

The upstream starts first; then the direct target (the upstream itself), the
full Cocoon path and LiteLLM, and any running endpoint named with `--target`
(a peer such as another Cocoon build, or the reference): its processes, where
they run on this machine, are found, pinned to the server CPUs and sampled as
ours are (`peer_processes`). All stay up, and each load runs on every target
back to back (`lineup`), `--rounds` times, before all stop.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from . import peer_processes, procstats, report
from .lineup import Lineup
from .lineup import trees as lineup_trees
from .plan import Load, LoadgenJob, Mode, RequestShape, TargetSpec, make_loads
from .progress import ProgressDisplay
from .results import Finished, LoadResult, Progress, line_decoder
from .targets import (
    LITELLM_HINT,
    Running,
    TargetError,
    find_litellm,
    start_cocoon,
    start_external,
    start_litellm,
    start_llama_server,
    start_upstream,
)

# "cocoon-unpaid": Cocoon without payments, beside `cocoon` run with them (`--payments`),
# so that what payments cost is measured load by load, back to back.
TARGETS = ("direct", "cocoon", "cocoon-unpaid", "litellm")
DEFAULT_TARGETS = ("direct", "cocoon", "litellm")


@dataclass
class BenchOptions:
    """What `cocoon bench` was asked to do."""

    quick: bool = False
    out: Path | None = None
    targets: tuple[str, ...] = DEFAULT_TARGETS
    concurrency: tuple[int, ...] | None = None
    modes: tuple[Mode, ...] = ("plain", "stream")
    max_seconds: float | None = None
    max_requests: int | None = None
    workers: int = 2
    max_tokens: int = 64
    token_delay_ms: float = 0.0
    model: str = "synthetic-small"
    # "synthetic": the in-project upstream; "llama": the real engine, called
    # directly (llama_cpp.server) and inside Cocoon's workers.
    engine: str = "synthetic"
    # The Cocoon target with payment channels on a local chain (a voucher per request).
    payments: bool = False
    # The GGUF file of the llama engine (None: its bundled default model).
    model_file: Path | None = None
    litellm_python: str | None = None
    # Trust tiers measured on the Cocoon target beside its default (`tee`), each as the
    # target "cocoon[<tier>]" (x-cocoon-tier on every request).
    tiers: tuple[str, ...] = ()
    # Running OpenAI-compatible endpoints measured beside the built-in targets:
    # (name, base URL ending in /v1), asked for `external_model` (None: `model`).
    external: tuple[tuple[str, str], ...] = ()
    external_model: str | None = None
    # The load generator on a CPU of its own and every server on the others (False:
    # every process where the OS puts it).
    pin: bool = True
    # Each load runs on every target this many times, the targets' order turned
    # every other round (results carry their round; ratios are taken within one).
    rounds: int = 1
    command: str = "cocoon bench"
    notes: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """Where the report went, what it says, and whether every requested target ran."""

    out: Path
    report: report.Report
    complete: bool


def default_out() -> Path:
    return Path("results") / time.strftime("bench-%Y%m%d-%H%M%S")


def run_bench(options: BenchOptions, display: ProgressDisplay | None = None) -> Outcome:
    """Run the benchmark; write the report into `options.out`."""
    out = options.out or default_out()
    run_dir = (out / "run").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    loads = make_loads(
        quick=options.quick,
        concurrency=options.concurrency,
        max_seconds=options.max_seconds,
        max_requests=options.max_requests,
        modes=options.modes,
    )
    engine_file = _engine_file(options)
    shape = RequestShape(
        model=options.model,
        max_tokens=options.max_tokens,
        temperature=0.0 if engine_file else None,
    )
    tiers = options.tiers if "cocoon" in options.targets else ()
    display = display or ProgressDisplay(
        len(loads) * options.rounds * (len(options.targets) + len(tiers) + len(options.external))
    )
    notes = list(options.notes)
    loadgen_cpus, server_cpus, pinning = procstats.plan_cpus()
    if not options.pin:
        loadgen_cpus, server_cpus, pinning = [], [], "not pinned (--no-pin)"
    if not procstats.available():
        notes.append("no /proc here: CPU time and memory per process are not measured")
    original = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    # Children inherit this process's affinity: every server lands on the server CPUs.
    if server_cpus and not procstats.pin(server_cpus):
        pinning = "not pinned: sched_setaffinity was refused"
        loadgen_cpus = server_cpus = []
    results: list[LoadResult] = []
    complete = True
    lineup = Lineup()
    try:
        if engine_file is not None:
            display.say("starting llama_cpp.server (the engine, called directly)...")
            upstream = start_llama_server(run_dir, model_file=engine_file, model=options.model)
        else:
            upstream = start_upstream(
                run_dir,
                model=options.model,
                max_tokens=options.max_tokens,
                token_delay_ms=options.token_delay_ms,
            )
        lineup.on_stop(upstream.stop)
        for name in options.targets:
            target = _start(name, options, upstream, run_dir, notes, display, engine_file)
            if target is None:
                complete = complete and name == "litellm"
                display.done += len(loads) * options.rounds
                continue
            if target is not upstream:
                lineup.on_stop(target.stop)
            chain = target.processes.get("chain")
            if chain is not None and loadgen_cpus:
                # The local chain stands in for TON, which runs elsewhere: on the
                # servers' CPU its polling and redeems would be charged to Cocoon.
                procstats.pin_tree(loadgen_cpus, chain)
            # The Cocoon network serves every tier: each is a header away.
            for tier in ["", *tiers] if name == "cocoon" else [""]:
                spec = TargetSpec(
                    name=f"{target.name}[{tier}]" if tier else target.name,
                    base_url=target.base_url,
                    processes=target.processes,
                    api_key=target.api_key,
                    headers={"x-cocoon-tier": tier} if tier else {},
                )
                lineup.add(spec, shape)
        external_shape = msgspec.structs.replace(shape, model=options.external_model or shape.model)
        for name, base_url in options.external:
            peer = start_external(name, base_url)
            if isinstance(peer, str):
                notes.append(peer)
                display.say(peer)
                display.done += len(loads) * options.rounds
                complete = False
                continue
            processes, unpin, note = peer_processes.take(
                name,
                base_url,
                external_shape.model,
                peer.api_key,
                server_cpus,
                exclude=upstream.processes.values(),
            )
            lineup.on_stop(unpin)
            notes.append(note)
            display.say(note)
            lineup.add(
                TargetSpec(name=name, base_url=peer.base_url, processes=processes),
                external_shape,
            )
        complete = (
            _measure(
                lineup,
                loads,
                options.rounds,
                loadgen_cpus,
                upstream,
                run_dir,
                display,
                notes,
                results,
            )
            and complete
        )
        notes += lineup.idle_notes()
    finally:
        lineup.stop()
        if original:
            procstats.pin(original)
    bench_report = report.Report(
        created=time.strftime("%Y-%m-%d %H:%M:%S"),
        command=options.command,
        machine={
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        pinning=pinning,
        settings={
            "targets": ",".join(options.targets),
            "modes": ",".join(options.modes),
            "concurrency": ",".join(str(c) for c in sorted({ld.concurrency for ld in loads})),
            "max_seconds": loads[0].max_seconds if loads else 0,
            "max_requests": loads[0].max_requests if loads else 0,
            "warmup_seconds": loads[0].warmup_seconds if loads else 0,
            "tokens_per_answer": options.max_tokens,
            "token_delay_ms": options.token_delay_ms,
            "cocoon_workers": options.workers,
            "tiers": ",".join(tiers) or "tee",
            "engine": f"llama ({engine_file.name})" if engine_file else "synthetic",
            "external": ",".join(f"{name}={url}" for name, url in options.external),
            "external_model": options.external_model or options.model,
            "rounds": options.rounds,
        },
        notes=notes + report.whole_answer_notes(results, options.token_delay_ms),
        results=results,
    )
    for note in report.write(bench_report, out):
        display.say(note)
    return Outcome(out, bench_report, complete)


def _measure(
    lineup: Lineup,
    loads: list[Load],
    rounds: int,
    cpus: list[int],
    upstream: Running,
    run_dir: Path,
    display: ProgressDisplay,
    notes: list[str],
    results: list[LoadResult],
) -> bool:
    """Every load on every target of `lineup`, back to back, `rounds` times; False if
    the upstream died on the way (the loads left are not run)."""
    for number, index, entry in lineup.turns(rounds, len(loads)):
        job = LoadgenJob(target=entry.spec, loads=[loads[index]], request=entry.request, cpus=cpus)
        others = lineup_trees(lineup.others(entry))
        before = {name: procstats.sample(pids) for name, pids in others.items()}
        started = time.monotonic()
        done = _drive(job, run_dir, display)
        lineup.count_idle(before, others, time.monotonic() - started)
        results += [msgspec.structs.replace(result, round=number) for result in done]
        code = upstream.exited()
        if code is not None:
            note = (
                f"the upstream exited (code {code}) while {entry.spec.name} was measured;"
                f" see {run_dir / 'upstream.log'}"
            )
            notes.append(note)
            display.say(note)
            return False
    return True


def _engine_file(options: BenchOptions) -> Path | None:
    """The GGUF file to benchmark, or None on the synthetic upstream."""
    if options.engine != "llama":
        return None
    if options.model_file is not None:
        return options.model_file
    from ..worker.backends.llama import bundled_model_file

    return bundled_model_file()


def _start(
    name: str,
    options: BenchOptions,
    upstream: Running,
    run_dir: Path,
    notes: list[str],
    display: ProgressDisplay,
    engine_file: Path | None = None,
) -> Running | None:
    """Start one target; None (with a note) when it cannot run here."""
    if name == "direct":
        return upstream
    try:
        if name in ("cocoon", "cocoon-unpaid"):
            payments = options.payments and name == "cocoon"
            paid = " with payments on a local chain" if payments else " without payments"
            display.say(f"starting a Cocoon network (proxy, workers, client){paid}...")
            return start_cocoon(
                run_dir,
                upstream=upstream,
                model=options.model,
                workers=options.workers,
                engine_file=engine_file,
                payments=payments,
                name=name,
            )
        if name == "litellm":
            python = find_litellm(options.litellm_python)
            if python is None:
                note = f"litellm: skipped, not installed; to compare with it: {LITELLM_HINT}"
                notes.append(note)
                display.say(note)
                return None
            display.say("starting LiteLLM's proxy...")
            return start_litellm(run_dir, python=python, upstream=upstream, model=options.model)
    except TargetError as exc:
        note = f"{name}: could not start: {exc}"
        notes.append(note)
        display.say(note)
        return None
    raise ValueError(f"unknown target {name!r}")


def _drive(job: LoadgenJob, run_dir: Path, display: ProgressDisplay) -> list[LoadResult]:
    """Run the load generator process for one target; follow its progress; collect results."""
    log = run_dir / f"loadgen-{job.target.name}.log"
    with open(log, "ab") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "cocoon.bench.loadgen"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(msgspec.json.encode(job))
    process.stdin.close()
    results: list[LoadResult] = []
    try:
        for raw in process.stdout:
            line = line_decoder.decode(raw)
            load = job.loads[line.index]
            if isinstance(line, Progress):
                display.update(
                    f"{job.target.name} {load.name}",
                    line.phase,
                    line.done,
                    line.errors,
                    line.elapsed_s,
                )
            elif isinstance(line, Finished):
                results.append(line.result)
                display.load_done(summary(line.result))
    finally:
        if process.wait() != 0 and len(results) < len(job.loads):
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            display.say(
                f"{job.target.name}: load generator failed ({process.returncode}): "
                + " | ".join(tail)
            )
    return results


def summary(result: LoadResult) -> str:
    """One line per finished load."""
    load: Load = result.load
    text = f"{result.target} {load.name}: {result.requests_per_s:,.0f} req/s"
    if load.mode == "stream":
        text += f", {result.tokens_per_s:,.0f} tok/s"
        if result.ttft_ms is not None:
            text += f", TTFT p50 {result.ttft_ms.p50:.2f} ms"
    elif result.latency_ms is not None:
        text += f", p50 {result.latency_ms.p50:.2f} ms"
    if result.errors:
        text += f", {result.errors} errors"
    return text
