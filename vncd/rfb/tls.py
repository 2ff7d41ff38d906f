# -*- test-case-name: tests.vncd.test_vencrypt -*-
"""A TLS session as one layer of a sans-I/O stack.

:class:`TLSLayer` wraps a :class:`creds.session.TLSSession`: wire bytes
go in, plaintext comes out, and when the handshake completes it runs
``check_credentials()`` exactly once -- peer chain, validity, authz on
the client's name, the server's host name -- before a single plaintext
byte is released.  A handshake failure and a credentials refusal raise
the two subclasses of :class:`~vncd.rfb.errors.RemoteProtocolError`
below, so a stack built from these layers has one error contract.

Used for VeNCrypt (:mod:`vncd.rfb.stack`) and for wss
(:mod:`vncd.websocket`).  This module never looks inside a certificate:
everything comes from the session API.
"""

from __future__ import annotations

from dataclasses import dataclass

from creds.objects import ObjectError
from creds.session import HandshakeStatus, TLSCheckError
from vncd.rfb.errors import RemoteProtocolError

__all__ = ["TLSLayer", "TLSInfo", "TLSFailed", "CredentialsRejected"]


class TLSFailed(RemoteProtocolError):
    """The TLS session broke: a failed handshake (no shared cipher, not TLS at
    all, an alert) or a bad record afterwards.  The reason is the session's,
    in QEMU's form (``TLS handshake failed: ...``)."""


class CredentialsRejected(RemoteProtocolError):
    """The handshake completed but the peer's credentials were refused
    (no or untrusted certificate, expired, authz denied, wrong host name)."""


@dataclass(frozen=True)
class TLSInfo:
    """What the session negotiated, as plain strings for display and logs."""

    protocol_version: str | None
    cipher_name: str | None
    cipher_bits: int | None
    #: The peer's distinguished name when its certificate was checked.
    peer_name: str | None
    #: The key-exchange group (``X25519MLKEM768``, ``x25519`` ...), if any.
    group_name: str | None = None


class TLSLayer:
    """One TLS session below some protocol, with QEMU's check-after-handshake rule."""

    def __init__(self, session) -> None:
        self.session = session
        self._established = False
        self._failed = False

    @property
    def established(self) -> bool:
        """True once the handshake completed and the credentials passed."""
        return self._established

    def receive_data(self, data: bytes) -> bytes:
        """Feed wire bytes; return any plaintext now available.

        Returns ``b""`` until the layer is established.  Raises
        :class:`TLSFailed` or :class:`CredentialsRejected`.
        """
        if self._failed:
            return b""
        session = self.session
        session.receive_data(data)
        if session.failure is not None:
            self._failed = True
            raise TLSFailed(session.failure)
        if session.handshake_status is not HandshakeStatus.COMPLETE:
            return b""
        if not self._established:
            try:
                self.session.check_credentials()
            except (TLSCheckError, ObjectError) as e:
                self._failed = True
                raise CredentialsRejected(str(e)) from None
            self._established = True
        return self.session.read()

    def send(self, plaintext: bytes) -> None:
        self.session.send(plaintext)

    def data_to_send(self) -> bytes:
        return self.session.data_to_send()

    @property
    def peer_closed(self) -> bool:
        return bool(self.session.peer_closed)

    def close(self) -> None:
        """Queue close_notify (when the handshake got that far)."""
        self.session.close()

    def info(self) -> TLSInfo:
        s = self.session
        return TLSInfo(s.protocol_version, s.cipher_name, s.cipher_bits, s.peer_name,
                       s.group_name)
