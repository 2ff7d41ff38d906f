"""What the server knows about one client connection's security, for display.

Filled in by the protocol layer as the handshake progresses; read by the
testcard screen and by monitor queries.  Values are plain strings so no
reader needs to know about TLS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["ConnectionInfo"]


@dataclass
class ConnectionInfo:
    #: Peer address as text: ``127.0.0.1:51234``, ``[::1]:51234`` or ``unix``.
    peer: str
    #: Listener address as text, same form.
    local: str = ""
    websocket: bool = False
    connected_at: float = field(default_factory=time.time)
    rfb_version: str | None = None
    #: ``None``, ``VncAuth``, ``VeNCrypt`` ... once chosen.
    security: str | None = None
    #: VeNCrypt subtype name (``X509None``, ``TLSVnc`` ...), if any.
    subtype: str | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    #: Distinguished name of the client's certificate, as authz matches it.
    peer_dn: str | None = None
    #: ``handshake``, ``authenticated``, ``closed``.
    state: str = "handshake"
    shared: bool | None = None
