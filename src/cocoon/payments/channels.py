"""What payer and payee say about a channel on the wire, and how each checks the other.

The payer proves, on each connection, that it holds the channel's payer key:
it signs the channel address and both nodes' key ids under a domain tag and
the network id. A client cannot claim someone else's channel to run up a
debt in their name, and a proof cannot be replayed on another connection.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..crypto.errors import SignatureError
from ..crypto.signing import sign, verify
from ..wire.messages import PayChannel, VoucherMsg
from .errors import VoucherError
from .vouchers import SignedVoucher, Voucher

DOMAIN_PAY_CHANNEL = b"cocoon/pay-channel/v1"


def _binding(channel: str, payer_node: str, payee_node: str) -> bytes:
    return b"\0".join((channel.encode(), payer_node.encode(), payee_node.encode()))


def pay_channel_message(
    key: Ed25519PrivateKey,
    network: str,
    channel: str,
    *,
    payer_node: str,
    payee_node: str,
    latest: SignedVoucher | None,
) -> PayChannel:
    proof = sign(key, DOMAIN_PAY_CHANNEL, network, _binding(channel, payer_node, payee_node))
    return PayChannel(
        channel,
        key.public_key().public_bytes_raw(),
        proof,
        voucher_message(latest) if latest is not None else None,
    )


def check_pay_channel(
    message: PayChannel, network: str, *, payer_node: str, payee_node: str
) -> None:
    """Raise VoucherError unless the proof is by `message.payer_key` for this connection."""
    try:
        verify(
            message.payer_key,
            DOMAIN_PAY_CHANNEL,
            network,
            _binding(message.channel, payer_node, payee_node),
            message.proof,
        )
    except SignatureError:
        raise VoucherError("the channel proof is not signed by the channel's payer key") from None


def voucher_message(signed: SignedVoucher, request_id: str = "") -> VoucherMsg:
    v = signed.voucher
    return VoucherMsg(v.channel, v.seqno, v.total_nano, signed.signature, request_id)


def signed_voucher(message: VoucherMsg, network_id: int) -> SignedVoucher:
    """The voucher a message carries (VoucherError if its fields are out of range)."""
    return SignedVoucher(
        Voucher(message.channel, message.seqno, message.total_nano), network_id, message.signature
    )
