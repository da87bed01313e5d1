"""What a model backend is to the worker: a stream of answer chunks, and its errors.

A backend turns one `GenerationRequest` into an async generator of
`AnswerChunk`s (DESIGN §8). The last chunk carries `finish_reason` and `usage`;
the worker signs its receipt from that usage (DESIGN §5), so a backend must
always end with one, or raise `BackendError`.

Cancellation: the consumer may stop at any time (`await agen.aclose()`, or its
task is cancelled). The backend then releases what it holds at once; a backend
that talks to a model server closes the HTTP response, so that the server sees
the disconnect and stops spending GPU time on an answer nobody reads.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from cocoon.inference import AnswerChunk, GenerationRequest


class BackendError(Exception):
    """A request the backend could not answer, in OpenAI error terms.

    `code` is an OpenAI-style error code ("context_length_exceeded",
    "invalid_request", "model_not_found", "upstream_error",
    "upstream_unavailable"); `status` is the HTTP status the client should show
    (4xx: the caller's fault, 502: the model server's); `retryable` says
    whether another worker may succeed where this one failed.
    """

    def __init__(
        self, code: str, message: str, status: int = 502, *, retryable: bool = False
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.retryable = retryable

    def __repr__(self) -> str:
        return (
            f"BackendError(code={self.code!r}, message={self.message!r}, "
            f"status={self.status}, retryable={self.retryable})"
        )


class BackendUnavailable(Exception):
    """A backend cannot start here: its library or its model is not installed."""


class Backend(Protocol):
    """A model backend: the models it serves and a streamed answer per request."""

    # The kind of backend ("synthetic", "openai"), for logs and metrics.
    name: str

    def models(self) -> list[str]:
        """The model names this backend answers for, as the worker announces them."""
        ...

    def scoring_models(self) -> list[str]:
        """The models whose answers this backend can score (kind "score", an audit's
        prefill); the worker announces them, and only they are chosen as auditors."""
        ...

    def features(self) -> dict[str, list[str]]:
        """Per model, the API features it honours (`agent_api.controls.FEATURES`: tools,
        response_format, logprobs); the worker announces them, and requests that need
        one are sent only to workers that offer it."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[AnswerChunk, None]:
        """Stream the answer; the last chunk carries `finish_reason` and `usage`.

        Raises `BackendError` (from the first iteration on) when the request
        cannot be answered.
        """
        ...

    async def aclose(self) -> None:
        """Release shared resources (HTTP sessions); the backend is unusable after."""
        ...
