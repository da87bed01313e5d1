"""Calibrate the audit verdict on the built-in engine: false positives and detection rates.

    python -m cocoon.bench.audit_calibration --audits 1000 --tokens 32

A measuring tool, like `cocoon bench`: it runs SmolLM2-135M on llama.cpp (the
`llama` extra), so it is the one module of `audit/` that loads a backend, and
only when run. It generates honest answers to varied questions, greedy and
sampled (several temperatures, top-p, top-k, min-p), has the same engine score
each one as an auditor would (a prefill of prompt + answer), and judges it
(`verdict.judge`): every failure there is a false positive. Then it scores
dishonest answers to the same requests and counts how many fail:

- "other_model": another generator's text (synthetic words, as the lying
  backend's "other_model" mode);
- "other_question": this model's own answer to another question, with the
  same sampling (fluent text that does not follow from the prompt);
- "padded": the honest answer cut at half and padded with filler words (the
  lying backend's "padded" mode);
- "human": answers to some of the questions written by a person.

`--save FILE` keeps every audit's scores (JSON lines); `--load FILE...` judges
saved scores again without the model (for trying thresholds), and merges runs
made with different `--seed`s (which sample with different seeds).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from cocoon.audit.scores import AnswerScores, TokenScore, unpack_scores
from cocoon.audit.verdict import Sampling, Verdict, judge
from cocoon.bench.audit_corpus import HUMAN, QUESTIONS, SYSTEMS
from cocoon.inference import ChatMessage, GenerationRequest


@dataclass(frozen=True)
class Setting:
    """A sampler an app might ask for."""

    name: str
    temperature: float
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None


SETTINGS = (
    Setting("greedy", 0.0),
    Setting("t0.3", 0.3),
    Setting("t0.7-p0.9", 0.7, top_p=0.9),
    Setting("t0.8", 0.8),
    Setting("t1.0", 1.0),
    Setting("t1.0-k40", 1.0, top_k=40),
    Setting("t0.9-minp0.1", 0.9, min_p=0.1),
)
LIES = ("other_model", "other_question", "padded", "human")


class Audit(msgspec.Struct, kw_only=True):
    """One scored answer, as saved."""

    kind: str  # "honest" or a lie
    setting: str
    question: int
    request: GenerationRequest
    tokens: list[TokenScore]


@dataclass
class Tally:
    """Verdicts of one kind of answer."""

    audits: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    by_setting: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    top1: float = 0.0
    top5: float = 0.0
    surprise: list[float] = field(default_factory=list)
    pit_z: list[float] = field(default_factory=list)

    def add(self, audit: Audit, verdict: Verdict) -> None:
        self.audits += 1
        self.failed += not verdict.passed
        self.reasons[verdict.reason] += 1
        cell = self.by_setting[audit.setting]
        cell[0] += 1
        cell[1] += not verdict.passed
        count = max(1, len(audit.tokens))
        self.top1 += sum(t.rank == 0 for t in audit.tokens) / count
        self.top5 += sum(t.rank < 5 for t in audit.tokens) / count
        if verdict.reason != "too_short":
            self.surprise.append(verdict.surprise / verdict.max_surprise)
            self.pit_z.append(verdict.pit_z)


def _request(setting: Setting, question: int, seed: int, tokens: int) -> GenerationRequest:
    extra: dict[str, object] = {}
    if setting.top_k is not None:
        extra["top_k"] = setting.top_k
    if setting.min_p is not None:
        extra["min_p"] = setting.min_p
    return GenerationRequest(
        kind="chat",
        model="",
        messages=[
            ChatMessage("system", SYSTEMS[seed % len(SYSTEMS)]),
            ChatMessage("user", QUESTIONS[question]),
        ],
        max_tokens=tokens,
        temperature=setting.temperature,
        top_p=setting.top_p,
        seed=seed,
        extra=extra,
    )


def _plan(audits: int, run: int) -> list[tuple[Setting, int, int]]:
    """(setting, question, seed) of each honest audit: distinct greedy requests first.

    Runs with another `--seed` sample with other seeds (greedy answers repeat,
    and are counted once when their saved scores are judged together)."""
    greedy = [
        (SETTINGS[0], question, system)
        for system in range(len(SYSTEMS))
        for question in range(len(QUESTIONS))
    ]
    plan = greedy[: audits // 7]
    sampled = SETTINGS[1:]
    index = 0
    while len(plan) < audits:
        setting = sampled[index % len(sampled)]
        plan.append((setting, (index * 7) % len(QUESTIONS), 1000 + index + 1_000_000 * run))
        index += 1
    return plan


async def _collect(args: argparse.Namespace, save: Path | None) -> list[Audit]:
    from cocoon.worker.backends.llama import LlamaBackend, LlamaConfig
    from cocoon.worker.backends.lying import padded_text
    from cocoon.worker.backends.synthetic import synthetic_words

    backend = LlamaBackend(
        LlamaConfig(threads=args.threads, batch_threads=args.threads, max_queue=4)
    )
    model = backend.models()[0]
    plan = _plan(args.audits, args.seed)
    rng = random.Random(args.seed)
    total = len(plan) + args.lies * len(LIES)
    audits: list[Audit] = []
    honest_answers: dict[tuple[str, int, int], str] = {}
    out = save.open("wb") if save else None
    started = time.monotonic()

    async def score(kind: str, setting: str, question: int, request: GenerationRequest) -> None:
        async for chunk in backend.generate(msgspec.structs.replace(request, kind="score")):
            tokens = unpack_scores(chunk.scores).tokens
        audit = Audit(
            kind=kind,
            setting=setting,
            question=question,
            request=request,
            tokens=tokens,
        )
        audits.append(audit)
        if out is not None:
            out.write(msgspec.json.encode(audit) + b"\n")
        done = len(audits)
        if done % 50 == 0 or done == total:
            elapsed = time.monotonic() - started
            eta = elapsed / done * (total - done)
            print(
                f"[{done}/{total}] {kind:<14} {elapsed:5.0f} s elapsed, ~{eta:4.0f} s left",
                file=sys.stderr,
                flush=True,
            )

    try:
        for setting, question, seed in plan:
            request = msgspec.structs.replace(
                _request(setting, question, seed, args.tokens), model=model
            )
            texts = [chunk.text async for chunk in backend.generate(request)]
            answer = "".join(texts)
            honest_answers[(setting.name, question, seed)] = answer
            await score("honest", setting.name, question, replace_answer(request, answer))
        keys = list(honest_answers)
        human_questions = [QUESTIONS.index(q) for q in HUMAN]
        for lie in LIES:
            for _ in range(args.lies):
                setting_name, question, seed = rng.choice(keys)
                setting = next(s for s in SETTINGS if s.name == setting_name)
                honest = honest_answers[(setting_name, question, seed)]
                if lie == "human":
                    question = rng.choice(human_questions)
                    answer = HUMAN[QUESTIONS[question]]
                elif lie == "other_model":
                    answer = "".join(synthetic_words(rng.getrandbits(64), len(honest.split())))
                elif lie == "padded":
                    answer = "".join(padded_text(honest, len(honest.split()), str(seed)))
                else:
                    others = [k for k in keys if k[1] != question and k[0] == setting_name]
                    answer = honest_answers[rng.choice(others)]
                request = msgspec.structs.replace(
                    _request(setting, question, seed, args.tokens), model=model
                )
                await score(lie, setting_name, question, replace_answer(request, answer))
    finally:
        if out is not None:
            out.close()
        await backend.aclose()
    return audits


def replace_answer(request: GenerationRequest, answer: str) -> GenerationRequest:
    return msgspec.structs.replace(request, answer=answer)


def load(paths: Iterable[Path]) -> list[Audit]:
    """Saved audits, each distinct one once (runs share their greedy answers)."""
    decoder = msgspec.json.Decoder(Audit)
    audits: dict[bytes, Audit] = {}
    for path in paths:
        for line in path.read_bytes().splitlines():
            if line.strip():
                audit = decoder.decode(line)
                key = msgspec.json.encode((audit.kind, audit.request))
                audits.setdefault(key, audit)
    return list(audits.values())


def report(audits: Iterable[Audit]) -> str:
    """The verdicts of `audits`, by kind of answer and by sampling setting."""
    tallies: dict[str, Tally] = defaultdict(Tally)
    for audit in audits:
        verdict = judge(AnswerScores(tokens=audit.tokens), Sampling.of(audit.request))
        tallies[audit.kind].add(audit, verdict)
    lines = []
    for kind in ("honest", *LIES):
        tally = tallies.get(kind)
        if tally is None or not tally.audits:
            continue
        rate = tally.failed / tally.audits
        label = "false positives" if kind == "honest" else "detected"
        lines.append(
            f"{kind:<15} {tally.audits:>5} audits  {label}: {tally.failed:>4} ({rate:6.1%})"
            f"  top-1 {tally.top1 / tally.audits:5.1%}  top-5 {tally.top5 / tally.audits:5.1%}"
        )
        reasons = ", ".join(f"{r} {n}" for r, n in tally.reasons.most_common())
        lines.append(f"{'':<15} reasons: {reasons}")
        cells = ", ".join(
            f"{name} {failed}/{count}" for name, (count, failed) in sorted(tally.by_setting.items())
        )
        lines.append(f"{'':<15} failed by setting: {cells}")
        if tally.surprise:
            lines.append(
                f"{'':<15} surprise/limit {_spread(tally.surprise)}, PIT z {_spread(tally.pit_z)}"
            )
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    ordered = sorted(values)
    low, mid, high = ordered[0], ordered[len(ordered) // 2], ordered[-1]
    return f"min {low:.2f} median {mid:.2f} max {high:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--audits", type=int, default=1000, help="honest audits (default 1000)")
    parser.add_argument("--lies", type=int, default=100, help="audits of each kind of lie")
    parser.add_argument("--tokens", type=int, default=32, help="max_tokens of each answer")
    parser.add_argument(
        "--threads", type=int, default=1, help="llama.cpp threads, generation and prefill"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="keep every audit's scores here (JSON lines)")
    parser.add_argument(
        "--load", type=Path, nargs="+", help="judge saved scores (of one or more runs)"
    )
    args = parser.parse_args(argv)
    if args.load:
        audits = load(args.load)
    else:
        started = time.monotonic()
        audits = asyncio.run(_collect(args, args.save))
        print(f"{len(audits)} audits in {time.monotonic() - started:.0f} s", file=sys.stderr)
    print(report(audits))


if __name__ == "__main__":
    main()
