"""From an app's request to its OpenAI response: seal and send it (through the
replicas of its tier, if it has them), then answer whole or stream it as
server-sent events; every answer goes on to the auditor."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

from aiohttp import web

from ..agent_api.answers import AgentEvents, ToolCallAssembler, complete_answer
from ..agent_api.controls import RESPONSE_FORMAT, TOOLS, needed_features
from ..inference import AnswerChunk, GenerationRequest, Usage
from ..metrics import Registry
from ..openai_api import OpenAIError, ParsedEmbedding, ParsedRequest
from ..openai_output import SSE_DONE, ChunkFormatter, embedding_response, full_response, sse_error
from ..registry.tiers import Tier
from .auditing import Auditor
from .calls import AnswerResult
from .choosing import Selection
from .errors import ClientError
from .http_answers import EventStream, answer_headers, dumps, openai_error
from .proxies import ProxyPool
from .replicas import Replicator
from .tier_options import TEE


class Responder:
    """Sends requests and answers the app."""

    def __init__(
        self, session: ProxyPool, metrics: Registry, auditor: Auditor, replicator: Replicator
    ) -> None:
        self.session = session
        self.auditor = auditor
        self.replicator = replicator
        self.tokens_total = metrics.counter("tokens_total", "Tokens received, by class.")
        self.first_chunk_seconds = metrics.histogram(
            "first_chunk_seconds", "Time to the first answer chunk."
        )

    async def embeddings(self, parsed: ParsedEmbedding, request_id: str) -> web.Response:
        generation = parsed.generation
        started = time.monotonic()
        result, chunks = await self.call(request_id, generation)
        try:
            vectors: list[bytes] = []
            final: AnswerChunk | None = None
            try:
                async for chunk in chunks:
                    vectors.extend(chunk.embeddings)
                    if chunk.finish_reason is not None:
                        final = chunk
                        break
            finally:
                await chunks.aclose()
            self.first_chunk_seconds.observe(time.monotonic() - started)
            # The worker is not trusted to keep the shape of the answer: one
            # vector per input, all of one length, as asked.
            lengths = {len(vector) for vector in vectors}
            if final is None or len(vectors) != len(generation.input) or len(lengths) != 1:
                raise ClientError(
                    "bad_answer",
                    f"the worker sent {len(vectors)} vectors for {len(generation.input)} inputs",
                )
            length = lengths.pop()
            if length % 4 or (generation.dimensions and length != 4 * generation.dimensions):
                raise ClientError("bad_answer", "the worker sent vectors of the wrong length")
            usage = final.usage or Usage(prompt_tokens=0, completion_tokens=0)
            self.count(usage)
            headers = answer_headers(request_id, result, receipt=True)
            body = embedding_response(generation.model, vectors, parsed.encoding_format, usage)
            return web.json_response(body, dumps=dumps, headers=headers)
        finally:
            # Whatever became of the answer (cut, failed, refused by the app's
            # disconnect), its audit evidence (the sealed request and answer) goes:
            # the auditor took its copy already if the answer was drawn.
            result.forget_evidence()

    async def call(
        self, request_id: str, generation: GenerationRequest, tier: Tier = TEE
    ) -> tuple[AnswerResult, AsyncGenerator[AnswerChunk, None]]:
        """Seal and send one request: what is learned of its answer, and its chunks."""
        if tier.replicas > 1:
            return await self.replicator.call(request_id, generation, tier)
        features = needed_features(generation.extra, generation.kind)
        call = await self.session.seal(request_id, generation, Selection(tier, features=features))
        result = self.session.track(request_id)
        return result, self.session.answer(call, result)

    async def generate(
        self, request: web.BaseRequest, parsed: ParsedRequest, tier: Tier, request_id: str
    ) -> web.StreamResponse:
        """A chat or completion request, answered whole or as server-sent events."""
        generation = parsed.generation
        started = time.monotonic()
        result, chunks = await self.call(request_id, generation, tier)
        try:
            try:
                # Wait for the first chunk before answering, so that failures
                # before any text become proper HTTP errors, not broken streams.
                first = await chunks.__anext__()
            except StopAsyncIteration as exc:
                raise ClientError("bad_answer", "the worker sent no answer") from exc
            except ClientError as exc:
                self.auditor.failed(result, exc)
                raise
            self.first_chunk_seconds.observe(time.monotonic() - started)
            created = int(time.time())
            if parsed.stream:
                # The headers leave now: the worker is known (the first chunk names
                # it), the final receipt is not.
                headers = answer_headers(request_id, result)
                return await self._stream(
                    request, parsed, first, chunks, result, headers, created, tier, request_id
                )
            texts = [first.text]
            last = first
            calls = ToolCallAssembler()
            calls.feed(first.tool_calls)
            logprobs = list(first.logprobs)
            try:
                if first.finish_reason is None:
                    async for chunk in chunks:
                        texts.append(chunk.text)
                        calls.feed(chunk.tool_calls)
                        logprobs.extend(chunk.logprobs)
                        last = chunk
            except ClientError as exc:
                self.auditor.failed(result, exc)
                raise
            finally:
                await chunks.aclose()
            usage = last.usage or Usage(prompt_tokens=0, completion_tokens=len(texts))
            self.count(usage)
            headers = answer_headers(request_id, result, receipt=True)
            text = "".join(texts)
            self.auditor.answered(generation, auditable_answer(generation, text), result, tier)
            result.forget_evidence()
            body = full_response(
                generation.kind,
                request_id,
                generation.model,
                created,
                text,
                last.finish_reason or "stop",
                usage,
            )
            complete_answer(body, calls.calls(), logprobs if _wants_logprobs(generation) else None)
            return web.json_response(body, dumps=dumps, headers=headers)
        finally:
            # Whatever became of the answer (cut, failed, refused by the app's
            # disconnect), its audit evidence (the sealed request and answer) goes:
            # the auditor took its copy already if the answer was drawn.
            result.forget_evidence()

    async def _stream(
        self,
        request: web.BaseRequest,
        parsed: ParsedRequest,
        first: AnswerChunk,
        chunks: AsyncGenerator[AnswerChunk, None],
        result: AnswerResult,
        headers: dict[str, str],
        created: int,
        tier: Tier,
        request_id: str,
    ) -> web.StreamResponse:
        generation = parsed.generation
        response = EventStream(headers)
        await response.prepare(request)
        formatter = ChunkFormatter(generation.kind, request_id, generation.model, created)
        agent_events = AgentEvents(formatter.head, generation.kind == "chat")
        chunk = first
        events = formatter.start(text=bool(first.text) or not first.tool_calls)
        texts: list[str] = []
        try:
            while True:
                if chunk.tool_calls or chunk.logprobs:
                    texts.append(chunk.text)
                    events += agent_events.event(chunk)
                elif chunk.text:
                    texts.append(chunk.text)
                    events += formatter.text(chunk.text)
                if chunk.finish_reason is not None:
                    usage = chunk.usage or Usage(prompt_tokens=0, completion_tokens=0)
                    self.count(usage)
                    events += formatter.finish(chunk.finish_reason)
                    if parsed.include_usage:
                        events += formatter.usage(usage)
                    # The last events and the end of the body in one write.
                    await response.write_eof(events + SSE_DONE)
                    answer = auditable_answer(generation, "".join(texts))
                    self.auditor.answered(generation, answer, result, tier)
                    result.forget_evidence()
                    break
                if events:
                    await response.write(events)
                events = b""
                chunk = await chunks.__anext__()
        except ClientError as exc:
            # Headers are gone: the error travels as an SSE event (the OpenAI
            # SDK raises it), and no [DONE] follows.
            self.auditor.failed(result, exc)
            await response.write_eof(sse_error(openai_error(exc)))
        except StopAsyncIteration:
            await response.write_eof(
                sse_error(OpenAIError(502, "the answer ended early", code="bad_answer"))
            )
        finally:
            await chunks.aclose()
        await response.write_eof()  # nothing more where an answer or error ended it
        return response

    def count(self, usage: Usage) -> None:
        self.tokens_total.inc(usage.prompt_tokens, kind="prompt")
        self.tokens_total.inc(usage.completion_tokens, kind="completion")


def _wants_logprobs(generation: GenerationRequest) -> bool:
    value = generation.extra.get("logprobs")
    return value is not None and value is not False


def auditable_answer(generation: GenerationRequest, text: str) -> str:
    """The answer to audit by prefill, or "" (none) when a grammar shaped it: an
    auditor scores the model's free choices, which a constrained answer is not."""
    constrained = needed_features(generation.extra, generation.kind) & {TOOLS, RESPONSE_FORMAT}
    return "" if constrained else text
