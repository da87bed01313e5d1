"""A port on 127.0.0.1 that nothing listens on, for a process that takes a number.

Free when this returns, not later: another test's server or an outgoing
connection can take it before the process binds it (the suite runs on several
processes). Where the process can bind port 0 and say which it got, let it.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
