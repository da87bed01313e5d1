"""One llama.cpp model context and what runs in its engine thread.

`Engine` renders a request's prompt through the model's chat template (with
its tools: `tool_prompt`), generates under the request's constraint (a
grammar: `grammars`), reports each sampled token's log probability when asked,
and scores an audited answer by prefill (DESIGN §11). Only the engine thread
of its slot touches it (`llama.py` hands out slots).
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cocoon.agent_api.controls import ToolSpec
from cocoon.audit.scores import TokenScore
from cocoon.inference import AnswerChunk, GenerationRequest, TokenLogprob, ToolCallDelta
from cocoon.worker.backends.base import BackendError
from cocoon.worker.backends.grammars import (
    ENTRY,
    call_key,
    parse_tool_call,
    split_call,
    text_grammar,
)
from cocoon.worker.backends.logits import score_token, token_logprob
from cocoon.worker.backends.stops import StopScanner
from cocoon.worker.backends.tool_prompt import template_messages, template_renders_tools

# Answer positions whose logits one llama_decode call returns while scoring:
# bounds the context's output buffer (rows x vocabulary x 4 bytes).
_SCORE_SLICE = 64


@dataclass(frozen=True)
class Constraint:
    """How one generation is constrained: its grammar, what it may become, logprobs."""

    # GBNF text starting at `grammars.ENTRY`; None: free text.
    grammar: str | None = None
    # "text"; "tool": a call is forced; "auto": a call or text, the model's choice.
    mode: str = "text"
    # The most likely tokens to list per position; -1: no logprobs at all.
    top_logprobs: int = -1
    # Calls (`grammars.call_key`) whose results the conversation holds: under
    # "auto", a model without a tool format of its own answers instead of
    # repeating one (`tool_prompt`).
    answered: frozenset[tuple[str, str]] = frozenset()
    # Under "tool" with tool_choice "required" and several tools: the grammar of calls
    # of every tool but the one named (built only when needed). A first call that
    # repeats an answered one is sampled again from it, so an agent that must call a
    # tool each step moves on (to its own `final_answer`, say) instead of asking for
    # a result it holds.
    others: Callable[[str], str] | None = None

    def compiled(self) -> Any:
        if self.grammar is None:
            return None
        from llama_cpp.llama_grammar import LlamaGrammar

        grammar = LlamaGrammar.from_string(self.grammar, verbose=False)
        grammar._root = ENTRY
        return grammar


@dataclass
class Sampling:
    """What the engine thread needs to run one generation."""

    prompt_tokens: list[int]
    max_tokens: int
    stops: list[str]
    seed: int
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    repeat_penalty: float
    frequency_penalty: float
    presence_penalty: float
    # The prompt without its tools, for an answer in text after a repeated call
    # (`Constraint.answered`); None: the engine never answers that way here.
    answer_prompt_tokens: list[int] | None = None


@dataclass
class End:
    """The engine thread is done: why, and how many tokens it sampled."""

    finish_reason: str
    completion_tokens: int


class Engine:
    """One model context: a `llama_cpp.Llama`, used by one thread at a time."""

    def __init__(self, llama: Any, llama_cpp: Any) -> None:
        self.llama = llama
        self._llama_cpp = llama_cpp
        self._vocab = llama._model.vocab
        template = llama.metadata.get("tokenizer.chat_template")
        self._chat: Any = None
        self._native_tools = bool(template) and template_renders_tools(template)
        if template:
            eos = llama.token_eos()
            bos = llama.token_bos()
            model = llama._model
            self._chat = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
                template=template,
                eos_token=model.token_get_text(eos) if eos != -1 else "",
                bos_token=model.token_get_text(bos) if bos != -1 else "",
                stop_token_ids=[eos],
            )

    def warm_up(self) -> None:
        """One token from an empty prompt: the first generation costs a second
        (pages of the model read in, compute buffers set up); pay it at start,
        not in the first client's time to first token."""
        bos = self.llama.token_bos()
        prompt = [bos] if bos != -1 else list(self.llama.tokenize(b"Hi", False, False))
        sampling = Sampling(prompt, 1, [], 0, 0.0, 1.0, 40, 0.05, 1.0, 0.0, 0.0)
        self.run(sampling, Constraint(), lambda _chunk: None, threading.Event())

    @property
    def native_tools(self) -> bool:
        """Whether the model's chat template renders tools itself."""
        return self._native_tools

    @property
    def context_tokens(self) -> int:
        return int(self.llama.n_ctx())

    def prompt_tokens(
        self, request: GenerationRequest, tools: list[ToolSpec] | None = None
    ) -> list[int]:
        """The request's prompt as the model's tokens (chat: through its template, with
        the ``tools`` the model may call)."""
        if request.kind == "completion" or (request.kind == "score" and not request.messages):
            return list(self.llama.tokenize(request.prompt.encode("utf-8"), True, True))
        if self._chat is None:
            raise BackendError("invalid_request", "this model has no chat template", 400)
        messages, tool_list = template_messages(request.messages, tools or [], self._native_tools)
        try:
            rendered = self._chat(messages=messages, tools=tool_list)
        except Exception as exc:  # jinja2 raises anything a template's raise_exception says
            raise BackendError(
                "invalid_request", f"the model's chat template refused the messages: {exc}", 400
            ) from exc
        return list(
            self.llama.tokenize(rendered.prompt.encode("utf-8"), not rendered.added_special, True)
        )

    def answer_tokens(self, answer: str) -> list[int]:
        """An audited answer as the model's tokens: no BOS, and no special tokens parsed
        from its text (an answer cannot smuggle in an end-of-turn)."""
        return list(self.llama.tokenize(answer.encode("utf-8"), False, False))

    def score(
        self, tokens: list[int], first: int, temperature: float, stop: threading.Event
    ) -> list[TokenScore]:
        """Prefill `tokens` and score each from index `first` on under the logits before it.

        Runs the context directly (llama-cpp-python's `eval` either keeps every
        row of logits or none); its token bookkeeping is kept in step, so a later
        generation with the same prefix reuses the cache as it would after `eval`.
        """
        llama = self.llama
        ctx, batch = llama._ctx, llama._batch
        n_vocab = llama.n_vocab()
        llama.reset()
        ctx.kv_cache_clear()
        # Logits at position i predict token i + 1; the last token predicts
        # nothing we need, so it is never evaluated.
        needed_from = first - 1
        evaluated = len(tokens) - 1 if len(tokens) > first else 0
        scores: list[TokenScore] = []
        position = 0
        while position < evaluated:
            if stop.is_set():
                raise BackendError("cancelled", "the audit was cancelled", 499)
            if position < needed_from:
                end = min(needed_from, position + llama.n_batch)
            else:
                end = min(evaluated, position + _SCORE_SLICE)
            piece = tokens[position:end]
            raw = batch.batch
            raw.n_tokens = len(piece)
            for index, token in enumerate(piece):
                raw.token[index] = token
                raw.pos[index] = position + index
                raw.seq_id[index][0] = 0
                raw.n_seq_id[index] = 1
                raw.logits[index] = position + index >= needed_from
            # llama.cpp wants at least one output per batch.
            raw.logits[len(piece) - 1] = True
            ctx.decode(batch)
            llama.input_ids[position:end] = piece
            llama.n_tokens = end
            for index in range(len(piece)):
                at = position + index
                if at >= needed_from:
                    row = np.ctypeslib.as_array(ctx.get_logits_ith(index), shape=(n_vocab,))
                    scores.append(score_token(row, tokens[at + 1], temperature))
            position = end
        # The logits left behind are not those of the last prompt position a
        # generation would sample from: make it evaluate again.
        llama._requires_eval = True
        return scores

    def run(
        self,
        sampling: Sampling,
        constraint: Constraint,
        emit: Callable[[AnswerChunk], None],
        stop: threading.Event,
    ) -> End:
        """Generate in this (engine) thread; `emit` each piece of the answer; obey `stop`."""
        llama = self.llama
        llama.set_seed(sampling.seed)
        mode = constraint.mode
        # A call's text is held back until it is whole; stop strings apply to text only.
        scanner = StopScanner(sampling.stops if mode == "text" else [])
        held = b""
        calls: list[tuple[str, str]] = []
        logprobs: list[TokenLogprob] = []
        sampled = 0
        finish_reason = "length"
        if sampling.max_tokens > 0:
            for token in llama.generate(
                sampling.prompt_tokens,
                top_k=sampling.top_k,
                top_p=sampling.top_p,
                min_p=sampling.min_p,
                temp=sampling.temperature,
                repeat_penalty=sampling.repeat_penalty,
                frequency_penalty=sampling.frequency_penalty,
                presence_penalty=sampling.presence_penalty,
                grammar=constraint.compiled(),
                reset=True,
            ):
                if stop.is_set():
                    finish_reason = "cancelled"
                    break
                if self._llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish_reason = "stop"
                    break
                sampled += 1
                piece = llama.detokenize([token])
                if constraint.top_logprobs >= 0:
                    logprobs.append(self._logprob(token, constraint.top_logprobs))
                if mode == "auto" and piece:
                    # The grammar lets only a call start with "<": the first
                    # character is the model's choice between a call and text.
                    mode = "tool" if piece.startswith(b"<") else "text"
                if mode != "text":
                    held += piece
                    whole = split_call(held)
                    verdict = "next"
                    if whole is not None:
                        verdict = self._whole_call(whole[0], calls, constraint, emit)
                        held = whole[0] + whole[1] if verdict == "broken" else whole[1]
                    if verdict == "text":
                        return self._as_text(sampling, sampled, constraint, emit, stop)
                    if verdict.startswith("other:"):
                        return self._as_other(
                            sampling, sampled, constraint, verdict[6:], emit, stop
                        )
                    if verdict != "next":
                        finish_reason = "stop"
                        break
                else:
                    text = scanner.feed(piece)
                    if text:
                        emit(AnswerChunk(text=text, logprobs=logprobs))
                        logprobs = []
                    if scanner.stopped:
                        finish_reason = "stop"
                        break
                if sampled >= sampling.max_tokens:
                    break
        if calls:
            # Whole calls leave as calls; a further one cut short is dropped (the
            # grammar allowed the answer to end after any whole call).
            return End("cancelled" if finish_reason == "cancelled" else "tool_calls", sampled)
        # A call cut short by max_tokens leaves as the text it is, "length".
        tail = scanner.finish() + held.decode("utf-8", "replace")
        if tail or logprobs:
            emit(AnswerChunk(text=tail, logprobs=logprobs))
        return End(finish_reason, sampled)

    def _whole_call(
        self,
        envelope: bytes,
        calls: list[tuple[str, str]],
        constraint: Constraint,
        emit: Callable[[AnswerChunk], None],
    ) -> str:
        """Emit a whole call; what comes next: "next" (more may follow), "end" (a repeat
        within the answer: the answer ends before it), "text" (answer in text instead),
        "other:NAME" (call another function instead of NAME's answered call), "broken"
        (not a call after all: the answer ends, as text)."""
        call = parse_tool_call(envelope.decode("utf-8", "replace"))
        if call is None:
            return "broken"
        key = call_key(*call)
        if key in calls:
            return "end"
        if not calls and key in constraint.answered:
            if constraint.mode == "auto":
                return "text"
            if constraint.others is not None:
                return "other:" + key[0]
        name, arguments = call
        call_id = "call_" + secrets.token_hex(12)
        emit(
            AnswerChunk(
                tool_calls=[
                    ToolCallDelta(index=len(calls), id=call_id, name=name, arguments=arguments)
                ]
            )
        )
        calls.append(key)
        return "next"

    def _as_text(
        self,
        sampling: Sampling,
        sampled: int,
        constraint: Constraint,
        emit: Callable[[AnswerChunk], None],
        stop: threading.Event,
    ) -> End:
        """Generate again, as text, after a call the model should not have repeated: from
        the prompt without its tools, which this model reads as an invitation to call
        again. The tokens of both are the answer's (the engine ran them)."""
        left = sampling.max_tokens - sampled
        prompt = sampling.answer_prompt_tokens or sampling.prompt_tokens
        retry = dataclasses.replace(sampling, prompt_tokens=prompt, max_tokens=left)
        end = self.run(
            retry, Constraint(text_grammar(), "text", constraint.top_logprobs), emit, stop
        )
        return End(end.finish_reason, sampled + end.completion_tokens)

    def _as_other(
        self,
        sampling: Sampling,
        sampled: int,
        constraint: Constraint,
        repeated: str,
        emit: Callable[[AnswerChunk], None],
        stop: threading.Event,
    ) -> End:
        """Sample the forced call again without the function whose call repeated an
        answered one. The tokens of both are the answer's (the engine ran them)."""
        assert constraint.others is not None  # only "other:" verdicts come here
        grammar = constraint.others(repeated)
        left = sampling.max_tokens - sampled
        retry = dataclasses.replace(sampling, max_tokens=left)
        end = self.run(
            retry,
            Constraint(grammar, "tool", constraint.top_logprobs, constraint.answered),
            emit,
            stop,
        )
        return End(end.finish_reason, sampled + end.completion_tokens)

    def _logprob(self, token: int, top: int) -> TokenLogprob:
        # The logits the token was sampled from are still the context's last
        # output: the next token is evaluated only when the generator resumes.
        llama = self.llama
        row = np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(llama.n_vocab(),))
        return token_logprob(row, token, top, self._piece)

    def _piece(self, token: int) -> bytes:
        return bytes(self.llama.detokenize([token]))
