"""The bot's calls to the client gateway, with the official OpenAI SDK: models,
a streamed chat answer, and what ran where for an answer.

The gateway is the only way out: it seals each request to attested workers and
pays for it; the bot sees plaintext only inside this process.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from .errors import GatewayError


class AnswerStream:
    """One streamed answer: iterate for the text as it comes; the gateway's ids of it
    (`request_id`, `worker`) are known once iteration began."""

    def __init__(self, stream: openai.AsyncStream[Any]) -> None:
        self._stream = stream
        headers = stream.response.headers
        self.request_id: str = headers.get("x-request-id", "")
        self.worker: str = headers.get("x-cocoon-worker", "")

    async def texts(self) -> AsyncIterator[str]:
        try:
            async for chunk in self._stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield choice.delta.content
        except openai.APIError as exc:
            raise GatewayError(_message(exc)) from None
        finally:
            await self._stream.close()


class GatewayClient:
    """The client gateway, as the bot uses it."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float = 300.0) -> None:
        # No retries: a retried chat request would be a second, paid answer, and the
        # user can simply ask again.
        self.openai = AsyncOpenAI(
            base_url=base_url, api_key=api_key or "none", max_retries=0, timeout=timeout_s
        )

    async def close(self) -> None:
        await self.openai.close()

    async def models(self) -> list[str]:
        try:
            page = await self.openai.models.list()
        except openai.APIError as exc:
            raise GatewayError(_message(exc)) from None
        return [model.id for model in page.data]

    async def chat(
        self, model: str, messages: list[dict[str, str]], max_tokens: int, user: str
    ) -> AnswerStream:
        """Start a streamed chat answer (errors before the first text raise here)."""
        sent: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": m["content"]}
            if m["role"] == "system"
            else {"role": "assistant", "content": m["content"]}
            if m["role"] == "assistant"
            else {"role": "user", "content": m["content"]}
            for m in messages
        ]
        try:
            stream = await self.openai.chat.completions.create(
                model=model, messages=sent, max_tokens=max_tokens, stream=True, user=user
            )
        except openai.APIError as exc:
            raise GatewayError(_message(exc)) from None
        return AnswerStream(stream)

    async def answer_details(self, request_id: str) -> dict[str, Any]:
        """What ran where for an answer: the web app's view of it (`/v1/answers/{id}`),
        or, from a gateway without the web app, its receipt (`/v1/receipts/{id}`)."""
        for path in (f"/answers/{request_id}", f"/receipts/{request_id}"):
            try:
                text = await self.openai.get(path, cast_to=str)
            except openai.NotFoundError:
                continue
            except openai.APIError as exc:
                raise GatewayError(_message(exc)) from None
            body = json.loads(text)
            if isinstance(body, dict):
                return body
        raise GatewayError(f"the gateway no longer has answer {request_id}")


def _message(exc: openai.APIError) -> str:
    """The gateway's own words for an error (its OpenAI error message)."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    if isinstance(exc, openai.APIConnectionError):
        return "the Cocoon gateway cannot be reached"
    return exc.message
