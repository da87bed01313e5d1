"""A worker key and a receipt it signs, for the proxy's tests of receipts."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.crypto.hashing import sha256
from cocoon.crypto.receipts import Receipt

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes_raw()
# A final receipt for request "r1" of model "m", whose sealed request is b"sealed".
RECEIPT = Receipt(
    network="n",
    request_id="r1",
    model="m",
    worker_key=PUBLIC,
    prompt_tokens=5,
    completion_tokens=7,
    request_hash=sha256(b"sealed"),
    answer_hash=b"\x02" * 32,
    answer_chunks=7,
    final=True,
    started_ms=1,
    finished_ms=2,
    seq=0,
)
