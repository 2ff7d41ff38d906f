# -*- test-case-name: tests.vncd.test_vencrypt -*-
"""An RFB connection stacked on its optional VeNCrypt TLS layer, still sans-I/O.

``wire bytes -> [TLSLayer] -> ServerConnection / ClientConnection``.
:class:`RFBStack` starts with the RFB connection reading the wire
directly.  When it reports :class:`~vncd.rfb.events.StartTLS` -- every
byte before it has already been queued in the clear, including the
accept byte -- the stack creates a TLS session from its factory and from
then on the wire carries TLS records: plaintext goes to and comes from
the RFB connection only after the handshake completed *and* the peer's
credentials passed (:class:`~vncd.rfb.tls.TLSLayer`), at which point the
stack calls ``tls_established()`` and reports :class:`TLSEstablished`.

The same class serves both ends: the server passes a
:class:`~vncd.rfb.server.ServerConnection` and a factory making server
sessions, the client a :class:`~vncd.rfb.client.ClientConnection` and
client sessions.  Errors are :class:`~vncd.rfb.errors.RemoteProtocolError`
(or its TLS subclasses); after one, send :meth:`data_to_send` and close.

This module knows nothing about sockets or Twisted, and never looks
inside a certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vncd.rfb.errors import LocalProtocolError
from vncd.rfb.events import StartTLS
from vncd.rfb.tls import TLSInfo, TLSLayer

__all__ = ["RFBStack", "TLSEstablished"]


@dataclass(frozen=True)
class TLSEstablished:
    """The VeNCrypt TLS session is up and the peer's credentials passed."""

    info: TLSInfo


class RFBStack:
    """One RFB connection and, once VeNCrypt asks for it, the TLS session below it.

    ``tls_factory`` makes the session (``None`` when the configuration
    never uses TLS; a StartTLS then is a bug).
    """

    def __init__(self, rfb, tls_factory: Callable[[], object] | None = None) -> None:
        self.rfb = rfb
        self._tls_factory = tls_factory
        self._tls: TLSLayer | None = None
        self._raw = bytearray()
        self._pending: list[object] = []

    @property
    def tls(self) -> TLSLayer | None:
        """The TLS layer, once started."""
        return self._tls

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the wire (``b""`` when the transport closed)."""
        if self._tls is None:
            self.rfb.receive_data(data)
            return
        was_established = self._tls.established
        plaintext = self._tls.receive_data(data)
        if self._tls.established and not was_established:
            self._pending.append(TLSEstablished(self._tls.info()))
            self.rfb.tls_established()
        if plaintext:
            self.rfb.receive_data(plaintext)
        if not data or (self._tls.established and self._tls.peer_closed):
            if self._tls.established:
                self.rfb.receive_data(b"")

    def next_event(self):
        """The next event from the TLS layer or the RFB connection (or a sentinel)."""
        if self._pending:
            return self._pending.pop(0)
        event = self.rfb.next_event()
        # Without TLS the RFB layer's bytes go out as they are: they are
        # collected when the wire asks (data_to_send) or before bytes sent
        # after them (send).  Before TLS starts, and once it has, they are
        # routed at once: the clear ones must leave before the handshake,
        # later ones be encrypted in order.
        if self._tls is not None:
            self._route_rfb_output()
        elif isinstance(event, StartTLS):
            self._route_rfb_output()
            self._start_tls()
        return event

    def send(self, data: bytes) -> None:
        """Queue application bytes (server messages after ServerInit, or client messages)."""
        if self._tls is not None:
            if not self._tls.established:
                raise LocalProtocolError("application data before the TLS session is established")
            self._tls.send(data)
        else:
            self._route_rfb_output()
            self._raw += data

    def data_to_send(self) -> bytes:
        """Everything for the wire: clear bytes, then TLS records."""
        self._route_rfb_output()
        out = bytes(self._raw)
        self._raw.clear()
        if self._tls is not None:
            out += self._tls.data_to_send()
        return out

    def close(self) -> None:
        """Stop the RFB connection and queue TLS close_notify (after what is
        already queued) if TLS is up."""
        self._route_rfb_output()
        self.rfb.close()
        if self._tls is not None and self._tls.established:
            self._tls.close()

    def _route_rfb_output(self) -> None:
        data = self.rfb.data_to_send()
        if not data:
            return
        if self._tls is None:
            self._raw += data
        elif self._tls.established:
            self._tls.send(data)
        else:
            raise LocalProtocolError("the RFB layer wrote during the TLS handshake")

    def _start_tls(self) -> None:
        if self._tls_factory is None:
            raise LocalProtocolError("VeNCrypt agreed, but this stack has no TLS credentials")
        self._tls = TLSLayer(self._tls_factory())
