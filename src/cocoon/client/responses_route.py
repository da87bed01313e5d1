"""POST /v1/responses and GET /v1/responses/{id}: the Responses API over the chat path.

The body becomes a chat request (agent_api.responses), which is sealed, sent,
billed and receipted exactly as chat is (`Responder.call`), with the same
`x-request-id`, `x-cocoon-worker*` and `x-cocoon-receipt` headers; the answer
is written back as a Response object or its typed event stream, and kept in
the node's bounded store for a later `previous_response_id`.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiohttp import web

from ..agent_api.answers import ToolCallAssembler, chat_logprobs
from ..agent_api.controls import ControlError
from ..agent_api.response_store import ResponseStore
from ..agent_api.responses import (
    ResponsesRequest,
    call_item,
    item_status,
    message_item,
    output_history,
    parse_responses,
    previous_response_id,
    response_object,
)
from ..agent_api.responses_stream import ResponseEvents
from ..inference import AnswerChunk, TokenLogprob, Usage
from ..openai_api import OpenAIError, ParsedRequest, parse_chat
from ..request_json import NESTING_PROBLEM, json_problem
from .errors import ClientError
from .http_answers import EventStream, answer_headers, dumps, openai_error
from .responding import Responder, auditable_answer
from .tier_options import request_tier

# Chat parameter names in errors, as the app wrote them on /v1/responses.
_PARAMS = {"max_tokens": "max_output_tokens", "response_format": "text.format"}


def read_request(body: bytes, store: ResponseStore) -> ResponsesRequest:
    """The checked request, with the stored conversation it continues; OpenAIError 4xx
    (within the request limits, request_json.py) before anything is sealed."""
    try:
        data = msgspec.json.decode(body)
    except RecursionError:
        raise OpenAIError(400, NESTING_PROBLEM) from None
    except UnicodeDecodeError as exc:
        raise OpenAIError(400, f"request body is not valid UTF-8: {exc.reason}") from None
    except msgspec.DecodeError as exc:
        raise OpenAIError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OpenAIError(400, "request body must be a JSON object")
    problem = json_problem(data)
    if problem is not None:
        raise OpenAIError(400, problem[0], param=problem[1])
    try:
        previous_id = previous_response_id(data)
        previous = None
        if previous_id is not None:
            stored = store.get(previous_id)
            if stored is None:
                raise OpenAIError(
                    404,
                    "Previous response not found (this client node keeps its recent"
                    " responses only).",
                    code="previous_response_not_found",
                    param="previous_response_id",
                )
            previous = stored.conversation
        return parse_responses(data, previous)
    except ControlError as exc:
        raise OpenAIError(400, exc.message, param=exc.param) from None


def chat_request(asked: ResponsesRequest) -> ParsedRequest:
    """The chat request a Responses request becomes, checked as chat is; OpenAIError
    names the parameter as the app wrote it on /v1/responses."""
    try:
        return parse_chat(msgspec.json.encode(asked.chat))
    except OpenAIError as exc:
        exc.param = _PARAMS.get(exc.param or "", exc.param)
        raise


class ResponsesEndpoint:
    """The Responses API of a client node."""

    def __init__(self, responder: Responder, store: ResponseStore | None = None) -> None:
        self.responder = responder
        budget = responder.session.config.responses_store_bytes
        self.store = store if store is not None else ResponseStore(budget_bytes=budget)

    async def get(self, response_id: str) -> web.Response:
        stored = self.store.get(response_id)
        if stored is None:
            # Not echoed: the id is whatever the path held.
            raise OpenAIError(404, "Response not found.", code="not_found")
        return web.json_response(stored.response, dumps=dumps)

    async def create(
        self, request: web.BaseRequest, body: bytes, request_id: str
    ) -> web.StreamResponse:
        asked = read_request(body, self.store)
        parsed = chat_request(asked)
        generation = parsed.generation
        tier = request_tier(request, parsed)
        created = int(time.time())

        def build(
            finish: str | None, usage: Usage | None, output: list[dict[str, Any]]
        ) -> dict[str, Any]:
            return response_object(
                request_id, generation.model, created, asked.echo, output, finish, usage
            )

        result, chunks = await self.responder.call(request_id, generation, tier)
        try:
            auditor = self.responder.auditor
            try:
                first = await chunks.__anext__()
            except StopAsyncIteration as exc:
                raise ClientError("bad_answer", "the worker sent no answer") from exc
            except ClientError as exc:
                auditor.failed(result, exc)
                raise
            texts: list[str] = []
            calls = ToolCallAssembler()
            entries: list[TokenLogprob] = []
            if not asked.stream:
                chunk = first
                try:
                    while True:
                        texts.append(chunk.text)
                        calls.feed(chunk.tool_calls)
                        entries.extend(chunk.logprobs)
                        if chunk.finish_reason is not None:
                            break
                        chunk = await chunks.__anext__()
                except ClientError as exc:
                    auditor.failed(result, exc)
                    raise
                finally:
                    await chunks.aclose()
                text = "".join(texts)
                logprobs = chat_logprobs(entries)["content"] if asked.logprobs else None
                status = item_status(chunk.finish_reason or "stop")
                output = [message_item(text, status, logprobs)] if text else []
                output += [call_item(c) for c in calls.calls()]
                usage = self._finished(generation, text, result, tier, chunk)
                response = build(chunk.finish_reason, usage, output)
                if asked.store:
                    self.store.put(response, asked.history + output_history(output))
                headers = answer_headers(request_id, result, receipt=True)
                return web.json_response(response, dumps=dumps, headers=headers)

            stream = EventStream(answer_headers(request_id, result))
            await stream.prepare(request)
            events = ResponseEvents(build, logprobs=asked.logprobs)
            out = events.start()
            chunk = first
            try:
                while True:
                    texts.append(chunk.text)
                    out += events.feed(chunk)
                    if chunk.finish_reason is not None:
                        usage = self._finished(generation, "".join(texts), result, tier, chunk)
                        out += events.finish(chunk.finish_reason, usage)
                        await stream.write(out)
                        response = build(chunk.finish_reason, usage, events.output)
                        if asked.store:
                            self.store.put(response, asked.history + output_history(events.output))
                        break
                    if out:
                        await stream.write(out)
                    out = b""
                    chunk = await chunks.__anext__()
            except ClientError as exc:
                auditor.failed(result, exc)
                error = openai_error(exc)
                await stream.write(_error_event(error.code, error.message))
            except StopAsyncIteration:
                await stream.write(_error_event("bad_answer", "the answer ended early"))
            finally:
                await chunks.aclose()
            await stream.write_eof()
            return stream
        finally:
            # Whatever became of the answer (cut, failed, refused by the app's
            # disconnect), its audit evidence (the sealed request and answer) goes:
            # the auditor took its copy already if the answer was drawn.
            result.forget_evidence()

    def _finished(
        self, generation: Any, text: str, result: Any, tier: Any, last: AnswerChunk
    ) -> Usage:
        """Count the answer's tokens and hand it to the auditor, as chat does."""
        usage = last.usage or Usage(prompt_tokens=0, completion_tokens=0)
        self.responder.count(usage)
        self.responder.auditor.answered(
            generation, auditable_answer(generation, text), result, tier
        )
        result.forget_evidence()
        return usage


def _error_event(code: str | None, message: str) -> bytes:
    body = {"type": "error", "code": code, "message": message, "param": None}
    return b"event: error\ndata: " + msgspec.json.encode(body) + b"\n\n"
