"""Opening one attempt at an answer: each sealed frame decrypted, its worker named,
and its receipt tag checked, with no I/O of its own.

The session's loop moves frames and pays; this object says what a frame holds
and whether its receipt is one we accept."""

from __future__ import annotations

import hmac

import msgspec

from ..config import ClientConfig
from ..crypto.answer_stream import AnswerOpener
from ..crypto.errors import StreamError
from ..inference import AnswerChunk, chunk_decoder
from ..wire.messages import AnswerEnd, AnswerPart
from .calls import AnswerResult, SealedCall, check_receipt
from .errors import ClientError


class AnswerOpening:
    """The frames of one send of a sealed call, opened in order."""

    def __init__(
        self,
        call: SealedCall,
        result: AnswerResult,
        config: ClientConfig,
    ) -> None:
        self.call = call
        self.result = result
        self.config = config
        self.opener = AnswerOpener(call.response_key, call.request.request_id)
        result.envelope, result.content_key, result.sealed = (
            call.request.sealed,
            call.content_key,
            [],
        )
        # The latest partial receipt, with the answer digest and chunk count it
        # must match, held unchecked: a later receipt supersedes it, so its
        # signature is checked only when it counts (a payment, or a stream cut
        # short), as payees check vouchers.
        self.held: tuple[bytes, bytes, int, bool] | None = None

    def open(self, frame: AnswerPart | AnswerEnd) -> AnswerChunk:
        """The chunk a frame carries; its receipt, if any, is held for `check_held`."""
        final = isinstance(frame, AnswerEnd)
        try:
            plaintext = self.opener.open(frame.index, frame.sealed, final=final)
            chunk = chunk_decoder.decode(plaintext)
            self.result.sealed.append(frame.sealed)
        except (StreamError, msgspec.DecodeError) as exc:
            raise ClientError("bad_answer", f"answer failed to open: {exc}") from exc
        if chunk.worker and self.result.worker is None:
            self.result.worker = self.call.candidates.get(chunk.worker)
            if self.result.worker is None:
                raise ClientError("bad_answer", "the answer names a worker it was not sealed to")
        if frame.receipt is not None:
            tag = self.opener.receipt_tag(frame.receipt) if frame.receipt_tag else b""
            if not hmac.compare_digest(tag, frame.receipt_tag):
                raise ClientError(
                    "bad_receipt",
                    "receipt tag does not match: not made for this answer",
                )
            self.held = (frame.receipt, self.opener.digest(), self.opener.index, bool(tag))
        return chunk

    def check_held(self) -> None:
        """The held receipt counts now: check it, and record it on the result."""
        if self.held is None:
            return
        checking, self.held = self.held, None
        check_receipt(self.call, self.result, *checking, self.config)
