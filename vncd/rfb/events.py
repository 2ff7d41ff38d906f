# -*- test-case-name: tests.vncd.test_rfb_server -*-
"""Handshake events and the "nothing to report" sentinels.

``next_event()`` on a connection returns an event (a small frozen
dataclass), or one of the sentinels: :data:`NEED_DATA` (feed more bytes),
:data:`PAUSED` (the caller must act first: run TLS, answer ClientInit)
or :data:`CLOSED` (the connection is finished).  Normal RFB messages
after initialisation are the dataclasses of :mod:`vncd.rfb.messages`.

This module knows nothing about sockets, TLS or Twisted.
"""

from __future__ import annotations

from dataclasses import dataclass

from vncd.pixels import PixelFormat

__all__ = [
    "NEED_DATA", "PAUSED", "CLOSED", "Sentinel",
    "VersionAgreed", "SecurityTypeChosen", "StartTLS", "AuthenticationSucceeded",
    "AuthenticationFailed", "Refused", "ClientInitReceived", "ServerInitReceived",
]


class Sentinel:
    """A named singleton (h11 style) that is not an event."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: More bytes are needed before anything can happen.
NEED_DATA = Sentinel("NEED_DATA")
#: The connection waits for its caller (TLS to finish, ServerInit to be sent).
PAUSED = Sentinel("PAUSED")
#: The connection is finished; flush what is left to send, then close.
CLOSED = Sentinel("CLOSED")


@dataclass(frozen=True)
class VersionAgreed:
    """Both sides now speak RFB 3.``minor`` (3, 7 or 8)."""

    minor: int

    def __post_init__(self) -> None:
        if self.minor not in (3, 7, 8):
            raise ValueError(f"RFB 3.{self.minor} is not a protocol vncd speaks")

    @property
    def text(self) -> str:
        return f"3.{self.minor}"


@dataclass(frozen=True)
class SecurityTypeChosen:
    """The security type in force (chosen by the client, or by us for 3.3)."""

    security_type: int


@dataclass(frozen=True)
class StartTLS:
    """VeNCrypt ``subtype`` agreed: the layer below must start TLS now.

    For the server, every byte it wrote so far goes out in the clear and
    everything after goes through TLS; it calls ``tls_established()``
    once the handshake and the credentials check have passed.
    """

    subtype: int


@dataclass(frozen=True)
class AuthenticationSucceeded:
    """Security negotiation is over and the peer is admitted."""


@dataclass(frozen=True)
class AuthenticationFailed:
    """The peer failed authentication; ``reason`` is for the log, not the wire."""

    reason: str


@dataclass(frozen=True)
class Refused:
    """We refused the connection before authentication; ``reason`` was sent
    to the peer where the protocol allows it."""

    reason: str


@dataclass(frozen=True)
class ClientInitReceived:
    """(server) ClientInit arrived; answer with ``send_server_init()``."""

    shared: bool


@dataclass(frozen=True)
class ServerInitReceived:
    """(client) The server's framebuffer size, pixel format and name."""

    width: int
    height: int
    pixel_format: PixelFormat
    name: str
