"""The message catalogue of the Cocoon wire protocol (DESIGN §4).

One `msgspec.Struct` per message, tagged, encoded as msgpack arrays so a
frame carries no field names. Adding a field at the end with a default is a
minor version change; anything else is a major one.
"""

from __future__ import annotations

import msgspec

PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 6  # 1: payments (PaymentTerms, PayChannel, Voucher, PaymentState, Invoice)
# 2: the root contract (Request.root_version, WorkerEntry.wallet)
# 3: verified work (WorkerAnnounce/WorkerEntry.scoring, Request.tier, Report)
# 4: API features per model (WorkerAnnounce/WorkerEntry.features: tools, ...)
# 5: a client's tag on each request, returned with invoices (Request.auth,
#    Invoice.auth/max_coefficient_milli/signers; payments/request_auth.py)
# 6: receipts are checked by their cell signature alone, and signed over their
#    body too only for a reader of 1.5 or before (Request.body_signature)
# The minor version from which receipts may come without a body signature.
BODY_SIGNATURE_MINOR = 6


class _Message(msgspec.Struct, tag_field="t", array_like=True, frozen=True):
    pass


class Hello(_Message, tag="hello", frozen=True):
    """Opens a connection: the connecting side's version, role, nonce and RA-TLS certificate."""

    major: int
    minor: int
    role: str
    network: str
    nonce: bytes
    certificate: bytes


class HelloAck(_Message, tag="hello_ack", frozen=True):
    """The accepting side's answer; its certificate is the one TLS presented."""

    major: int
    minor: int
    role: str
    network: str
    nonce: bytes


class AuthProof(_Message, tag="auth", frozen=True):
    """Signature by the connecting side over the server certificate hash and server nonce."""

    signature: bytes


class AuthOk(_Message, tag="auth_ok", frozen=True):
    """The accepting side accepted the proof; the connection is ready."""


class Ping(_Message, tag="ping", frozen=True):
    """Heartbeat; the peer answers with a Pong carrying the same sequence number."""

    seq: int


class Pong(_Message, tag="pong", frozen=True):
    """Answer to a Ping."""

    seq: int


class Renew(_Message, tag="renew", frozen=True):
    """The sender's fresh certificate (same key) for a connection that outlives the old one."""

    certificate: bytes


class WorkerAnnounce(_Message, tag="announce", frozen=True):
    """A worker's offer: models, price coefficient (thousandths) and capacity."""

    models: list[str]
    coefficient_milli: int
    max_active_requests: int
    # The worker's wallet: the payee of the proxy's channel to it ("" without payments).
    wallet: str = ""
    # The models whose answers it can score (audits by prefill); [] for none.
    scoring: list[str] = []
    # Per model, the API features its backend honours (agent_api.controls.FEATURES):
    # a request that needs one goes only to a worker that offers it.
    features: dict[str, list[str]] = {}


class WorkerLoad(_Message, tag="load", frozen=True):
    """A worker's current load, sent when it changes."""

    active: int
    queued: int


class DirectoryRequest(_Message, tag="dir_req", frozen=True):
    """A client asks for the workers of a model (empty model: all models)."""

    seq: int
    model: str


class WorkerEntry(msgspec.Struct, array_like=True, frozen=True):
    """One worker as the proxy knows it: its certificate lets the client verify it itself."""

    key_id: str
    certificate: bytes
    models: list[str]
    coefficient_milli: int
    max_active_requests: int
    active: int
    # The worker's wallet, which with its key names its stake contract ("": none).
    wallet: str = ""
    # The models it can score answers of (it may audit others); [] for none.
    scoring: list[str] = []
    # Its reputation at this proxy, thousandths (1000: spotless; -1: not known).
    reputation_milli: int = -1
    # Per model, the API features it announced (tools, response_format, logprobs).
    features: dict[str, list[str]] = {}


# `Directory.seq` of a directory the proxy pushes unasked (workers joined or left).
DIRECTORY_PUSH = 0


class Directory(_Message, tag="dir", frozen=True):
    """The answer to a DirectoryRequest, or a push when the workers change (seq 0)."""

    seq: int
    workers: list[WorkerEntry]


class Request(_Message, tag="req", frozen=True):
    """A sealed inference request and the candidate workers it is sealed to."""

    request_id: str
    model: str
    max_coefficient_milli: int
    max_tokens: int
    timeout_ms: int
    candidates: list[str]
    sealed: bytes
    # The root contract's version the client sealed under: every node bills the
    # request at that version's prices (0: the client follows no root).
    root_version: int = 0
    # The trust tier asked for ("": tee) and how many workers run it (replicated:
    # 3): every node bills the request at the tier's multiplier, split among them.
    tier: str = ""
    replicas: int = 1
    # With payments on: the client's tag proving it sent this request on its channel
    # (payments/request_auth.py); the proxy keeps it and returns it with an invoice.
    auth: bytes = b""
    # Set by the proxy for a client of protocol 1.5 or before, which may check the
    # receipt's body signature: the worker makes it too (else only the cell's).
    body_signature: bool = False


class AnswerPart(_Message, tag="part", frozen=True):
    """One sealed chunk of an answer; may carry a cumulative partial receipt."""

    request_id: str
    index: int
    sealed: bytes
    receipt: bytes | None = None
    # MAC of `receipt` under the client's response key (`AnswerSealer.receipt_tag`).
    receipt_tag: bytes = b""


class AnswerEnd(_Message, tag="end", frozen=True):
    """The sealed final chunk of an answer and the worker's final signed receipt."""

    request_id: str
    index: int
    sealed: bytes
    receipt: bytes
    receipt_tag: bytes = b""


class Error(_Message, tag="error", frozen=True):
    """A typed error, about one request (`request_id`) or the whole connection (empty id)."""

    request_id: str
    code: str
    message: str
    retryable: bool = False


class Cancel(_Message, tag="cancel", frozen=True):
    """The requester no longer wants the answer."""

    request_id: str


class PaymentTerms(_Message, tag="pay_terms", frozen=True):
    """A payee tells its payer where to pay: its wallet, the chain network and root."""

    wallet: str
    chain_network: int
    root: str
    max_credit_nano: int


class VoucherMsg(_Message, tag="voucher", frozen=True):
    """A cumulative voucher on a channel; `request_id` names the request it pays for."""

    channel: str
    seqno: int
    total_nano: int
    signature: bytes
    request_id: str = ""


class PayChannel(_Message, tag="pay_channel", frozen=True):
    """The payer's channel to this payee, with proof of its key for this connection and
    the latest voucher signed on it (so nothing sent before a crash is lost)."""

    channel: str
    payer_key: bytes
    proof: bytes
    latest: VoucherMsg | None = None


class PaymentState(_Message, tag="pay_state", frozen=True):
    """The payee's view of a channel: owed in all, vouchered, deposit, credit allowed."""

    channel: str
    owed_nano: int
    paid_nano: int
    deposit_nano: int
    max_credit_nano: int


class Report(_Message, tag="report", frozen=True):
    """A client's signed report of a failed audit (`cocoon.audit.reports`), for the
    proxy's reputation of the audited worker."""

    report: bytes


class Invoice(_Message, tag="invoice", frozen=True):
    """A signed receipt the payer has not paid for (sent again after a reconnect).

    To a client, with what it said of the request when it sent it: its tag, price
    bound and workers (a client whose record of the request is lost checks its tag)."""

    request_id: str
    receipt: bytes
    auth: bytes = b""
    max_coefficient_milli: int = 0
    signers: list[bytes] = msgspec.field(default_factory=list)


Message = (
    Hello
    | HelloAck
    | AuthProof
    | AuthOk
    | Ping
    | Pong
    | Renew
    | WorkerAnnounce
    | WorkerLoad
    | DirectoryRequest
    | Directory
    | Request
    | AnswerPart
    | AnswerEnd
    | Error
    | Cancel
    | PaymentTerms
    | VoucherMsg
    | PayChannel
    | PaymentState
    | Invoice
    | Report
)

# Messages that belong to one request, routed by `request_id`.
RequestScoped = Request | AnswerPart | AnswerEnd | Cancel
