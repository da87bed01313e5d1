"""How the in-project upstream answers a scoring request, as vLLM does: with
`prompt_logprobs` and `continue_final_message` (what the openai backend sends to
audit an answer), the prompt's tokens and the synthetic model's logprobs of the
final assistant message's words (`SyntheticBackend.score`), so that workers on
this server can audit.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import msgspec

from cocoon.audit.scores import unpack_scores
from cocoon.inference import GenerationRequest, Usage
from cocoon.openai_api import OpenAIError
from cocoon.openai_output import full_response
from cocoon.worker.backends.base import BackendError
from cocoon.worker.backends.synthetic import PIECE, SyntheticBackend


class ScoringOptions(msgspec.Struct):
    """vLLM's extensions that make a request score its prompt."""

    prompt_logprobs: int | None = None
    continue_final_message: bool = False


scoring_options = msgspec.json.Decoder(ScoringOptions)


def _token_id(piece: str) -> int:
    return int.from_bytes(hashlib.blake2b(piece.strip().encode(), digest_size=3).digest())


def scored_answer(
    backend: SyntheticBackend,
    generation: GenerationRequest,
    scoring: ScoringOptions,
    answer_id: str,
) -> dict[str, Any]:
    """The answer to a scoring request, as vLLM gives it: the prompt's tokens and their
    logprobs (OpenAIError if the request is not one this server can score)."""
    messages = generation.messages
    if not (scoring.continue_final_message and messages and messages[-1].role == "assistant"):
        raise OpenAIError(
            400,
            "this server scores the final assistant message of a chat"
            " (continue_final_message) only",
            param="prompt_logprobs",
        )
    answer = messages[-1].content if isinstance(messages[-1].content, str) else ""
    # The replay ignores the scoring call's max_tokens (1): an answer cut
    # shorter is a prefix of the whole one.
    audited = msgspec.structs.replace(
        generation, kind="score", messages=messages[:-1], max_tokens=None, answer=answer
    )
    try:
        chunk = backend.score(audited)
    except BackendError as exc:
        raise OpenAIError(exc.status, exc.message, code=exc.code) from None
    pieces = PIECE.findall(answer)
    if pieces and answer != "".join(pieces):
        pieces[-1] += answer[len("".join(pieces)) :]
    usage = chunk.usage or Usage(prompt_tokens=0, completion_tokens=0)
    # The prompt before the answer: one certain token per word, as filler.
    prompt_words = max(1, usage.prompt_tokens - len(pieces))
    entries: list[dict[str, dict[str, object]] | None] = [None]
    certain = {"logprob": math.log(0.99), "rank": 1}
    for index in range(1, prompt_words):
        entries.append({str(index): {**certain, "decoded_token": " w"}})
    expected = backend.plan(msgspec.structs.replace(audited, kind="chat", answer=""))[0]
    for index, (piece, score) in enumerate(
        zip(pieces, unpack_scores(chunk.scores).tokens, strict=True)
    ):
        own = {"logprob": score.logprob, "rank": score.rank + 1, "decoded_token": piece}
        entry = {str(_token_id(piece)): own}
        if index < len(expected) and (scoring.prompt_logprobs or 0) > 0:
            top = expected[index]
            entry.setdefault(str(_token_id(top)), {**certain, "decoded_token": top})
        entries.append(entry)
    body = full_response(
        "chat",
        answer_id,
        generation.model,
        int(time.time()),
        "",
        "length",
        Usage(prompt_tokens=prompt_words + len(pieces), completion_tokens=1),
    )
    body["prompt_logprobs"] = entries
    return body
