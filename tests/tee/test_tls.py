"""The RA-TLS certificate is accepted by OpenSSL as a TLS 1.3 server certificate.

The handshake runs over in-memory BIOs: no sockets.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cocoon.tee import parse_certificate, tls_files

from .conftest import claims_for


def _handshake(
    client: ssl.SSLObject,
    server: ssl.SSLObject,
    client_to_server: tuple[ssl.MemoryBIO, ssl.MemoryBIO],
    server_to_client: tuple[ssl.MemoryBIO, ssl.MemoryBIO],
) -> None:
    """Step both sides and shuttle their bytes until neither has anything left to say."""
    pending = {"client": client, "server": server}
    for _ in range(20):
        for side, obj in list(pending.items()):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                continue
            del pending[side]
        moved = False
        for src, dst in (client_to_server, server_to_client):
            data = src.read()
            if data:
                dst.write(data)
                moved = True
        if not pending and not moved:
            return
    raise AssertionError(f"handshake did not complete: {sorted(pending)} still waiting")


def test_tls13_handshake_with_ra_tls_certificate(
    key: Ed25519PrivateKey, issue: Callable[..., bytes], tmp_path: Path
) -> None:
    der = issue(role="proxy")
    cert_path, key_path = tls_files(key, der, tmp_path)

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    server_ctx.load_cert_chain(cert_path, key_path)

    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE

    client_out, client_in = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_out, server_in = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(client_in, client_out, server_side=False)
    server = server_ctx.wrap_bio(server_in, server_out, server_side=True)

    _handshake(client, server, (client_out, server_in), (server_out, client_in))

    assert client.version() == "TLSv1.3"
    peer_der = client.getpeercert(binary_form=True)
    assert peer_der == der
    assert peer_der is not None
    assert parse_certificate(peer_der).claims == claims_for(key, role="proxy")
