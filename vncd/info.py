"""What the server knows about one client connection, for display and the monitor.

Filled in by the protocol layer as the handshake progresses; read by the
testcard screen, the log and monitor queries.  Values are plain strings
so no reader needs to know about sockets or TLS.  The structured address
fields are QEMU's ``VncBasicInfo``: ``host``, ``service`` (the port as a
string, or the socket path) and ``family``, one of :data:`FAMILIES`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["ConnectionInfo", "FAMILIES"]

#: QEMU's ``NetworkAddressFamily`` words.
FAMILIES = ("ipv4", "ipv6", "unix", "unknown")


@dataclass
class ConnectionInfo:
    #: Peer address as text: ``127.0.0.1:51234``, ``[::1]:51234`` or ``unix``.
    peer: str
    #: Listener address as text, same form.
    local: str = ""
    websocket: bool = False
    connected_at: float = field(default_factory=time.time)
    #: The peer's address: ``127.0.0.1`` or ``::1`` (``""`` for UNIX sockets).
    host: str = ""
    #: The peer's port as a string (for UNIX sockets its path, usually ``""``).
    service: str = ""
    #: The peer's address family, one of :data:`FAMILIES`.
    family: str = "unknown"
    #: The listener's address, port (or socket path) and family, as above.
    local_host: str = ""
    local_service: str = ""
    local_family: str = "unknown"
    rfb_version: str | None = None
    #: ``None``, ``VncAuth``, ``VeNCrypt`` ... once chosen.
    security: str | None = None
    #: VeNCrypt subtype name (``X509None``, ``TLSVnc`` ...), if any.
    subtype: str | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    #: The TLS key-exchange group: ``X25519MLKEM768``, ``x25519``,
    #: ``secp256r1``, ``ffdhe2048`` ... (None without TLS, or for DH
    #: parameters of the credentials' own).
    tls_group: str | None = None
    #: Distinguished name of the client's certificate, as authz matches it.
    peer_dn: str | None = None
    #: ``handshake``, ``authenticated``, ``closed``.
    state: str = "handshake"
    shared: bool | None = None
