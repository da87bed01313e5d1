"""Cryptographic layer: node identities, HPKE sealing, answer streams, receipts."""

from .answer_stream import AnswerOpener, AnswerSealer
from .errors import CryptoError, ReceiptError, SealError, SignatureError, StreamError
from .hashing import sha256
from .hpke_keys import SUITE_HYBRID, SUITE_X25519, HpkeKeyPair, load_public_key
from .identity import NodeIdentity
from .receipts import Receipt, SignedReceipt, receipt_to_json, sign_receipt, verify_receipt
from .sealing import (
    Recipient,
    SealedEnvelope,
    envelope_recipients,
    open_request,
    seal_request,
)
from .signing import DOMAIN_AUTH, DOMAIN_RECEIPT, key_id, sign, signing_payload, verify

__all__ = [
    "DOMAIN_AUTH",
    "DOMAIN_RECEIPT",
    "SUITE_HYBRID",
    "SUITE_X25519",
    "AnswerOpener",
    "AnswerSealer",
    "CryptoError",
    "HpkeKeyPair",
    "NodeIdentity",
    "Receipt",
    "ReceiptError",
    "Recipient",
    "SealError",
    "SealedEnvelope",
    "SignatureError",
    "SignedReceipt",
    "StreamError",
    "envelope_recipients",
    "key_id",
    "load_public_key",
    "open_request",
    "receipt_to_json",
    "seal_request",
    "sha256",
    "sign",
    "sign_receipt",
    "signing_payload",
    "verify",
    "verify_receipt",
]
