# -*- test-case-name: tests.vncd.test_rfb_server -*-
"""The two kinds of RFB protocol error (h11's split).

:class:`RemoteProtocolError` means the peer broke the protocol: the
connection object has already queued whatever reply the protocol defines
for that failure (a SecurityResult with its reason, a VeNCrypt reject
byte ...), moved to ``CLOSED``, and the caller should send that reply and
close.  :class:`LocalProtocolError` means *our* caller used the API
wrongly (fed bytes to a connection waiting for TLS, sent ServerInit
twice): a bug, never caused by anything on the wire.

This module knows nothing about sockets, TLS or Twisted.
"""

from __future__ import annotations

__all__ = ["ProtocolError", "RemoteProtocolError", "LocalProtocolError"]


class ProtocolError(Exception):
    """Base of both protocol errors; ``reason`` is a one-line explanation."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow (or we refuse)."""


class LocalProtocolError(ProtocolError):
    """The caller misused the connection object (a bug in vncd)."""
