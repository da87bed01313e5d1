"""What the gateway accepts from an app: every limit on a request, stated once.

Each limit exists because something past it would fail later, after work was
done or money recorded, as an error that is not the app's to read:

- **Body size.** A request travels sealed in one wire frame (16 MiB,
  `wire.framing.DEFAULT_MAX_FRAME`). The body limit leaves room for what
  sealing and the `Request` frame add (HPKE key wraps for each candidate,
  the AEAD tag, the request id, the candidates' key ids), so a body the
  gateway reads fits the frame. The body is JSON and the sealed payload
  msgpack, which is smaller for text but can be larger for numbers (a float
  is 9 bytes in msgpack, `0.1` is 3 in JSON): the payload's own size is
  checked again before it is sealed (`check_payload_size`), before anything
  is recorded in the payments book.
- **The JSON itself** (nesting, integers, UTF-8, embedding dimensions):
  `cocoon.request_json`, shared with the Responses route.

Each refusal is a 4xx in the OpenAI error format with the offending `param`.
"""

from __future__ import annotations

from ..wire.framing import DEFAULT_MAX_FRAME
from .errors import ClientError

# What sealing and the Request frame add to the payload: k HPKE wraps (an
# ML-KEM-768 + X25519 encapsulation is 1,120 bytes; k is at most a few dozen),
# the AEAD tag, the request id and model, the candidates' key ids. Generous, so
# that the frame limit is never the first to notice.
SEAL_MARGIN_BYTES = 256 * 1024
# The largest sealed plaintext (the msgpack payload) a request may have.
MAX_PAYLOAD_BYTES = DEFAULT_MAX_FRAME - SEAL_MARGIN_BYTES
# The largest HTTP body (after Content-Encoding is undone) the gateway reads.
MAX_BODY_BYTES = MAX_PAYLOAD_BYTES
# Seconds an app may take to send a whole body once its headers arrived.
BODY_READ_TIMEOUT_S = 60.0


def check_payload_size(size: int) -> None:
    """Refuse a request whose sealed payload would not fit the wire frame (checked
    before it is sealed, and before anything is recorded for it)."""
    if size > MAX_PAYLOAD_BYTES:
        raise ClientError(
            "request_too_large",
            f"the request encodes to {size} bytes; at most {MAX_PAYLOAD_BYTES} travel "
            "to a worker (long lists of numbers encode larger than their JSON)",
        )
