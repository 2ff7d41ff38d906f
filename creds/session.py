"""The transport-independent TLS session: bytes in, bytes out, no sockets.

:class:`TLSSession` is vncd's counterpart of QEMU's ``qcrypto_tls_session``.
A network service creates one from a credentials object and an endpoint,
feeds it the bytes it receives (:meth:`~TLSSession.receive_data`), writes
whatever :meth:`~TLSSession.data_to_send` returns, and reads decrypted
application data with :meth:`~TLSSession.read`.  Once
:attr:`~TLSSession.handshake_status` is ``COMPLETE`` it calls
:meth:`~TLSSession.check_credentials`, which applies QEMU's rules: with
x509 credentials and ``verify-peer`` on, the peer's chain must lead to a
trusted CA, be unrevoked and within its validity period (by the registry's
clock), the peer's distinguished name must pass the authz object, and a
client endpoint must find the expected hostname in the server certificate.

Remote problems never raise: a peer that sends garbage, the wrong
protocol version or an alert puts the session in the ``BROKEN`` state
with a :attr:`~TLSSession.failure` text in QEMU's form ("TLS handshake
failed: ...").  Misuse by the caller (sending after close, checking
credentials before the handshake completed) raises
:class:`TLSSessionUsageError`.

Every state change goes through one transition table,
:data:`TRANSITIONS`.  The TLS engine is a pyOpenSSL ``Connection`` on
memory BIOs created from the context of the credentials' current
generation; nothing else is built per session.  This module knows nothing
about VNC, WebSocket or sockets.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections import deque
from typing import Any

from cryptography import x509
from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)

from creds import dn
from creds.authz import QAuthZ
from creds.engine import VerifyProblem, VerifyRecord
from creds.objects import ObjectError
from creds.verifycodes import CRL_CODES, VerifyCode as V
from creds.tlscreds import Endpoint

__all__ = [
    "TLSSession",
    "HandshakeStatus",
    "SessionState",
    "SessionInput",
    "TRANSITIONS",
    "TLSCheckError",
    "TLSSessionUsageError",
    "MAX_PENDING_PLAINTEXT",
    "READ_CHUNK",
]

#: Largest amount of application data :meth:`TLSSession.send` buffers while
#: the handshake is under way.  Protocols on top of TLS wait for the
#: handshake before saying much (VNC sends nothing at all), so a caller that
#: queues more than this before the handshake completes has a bug.
MAX_PENDING_PLAINTEXT = 1024 * 1024

#: Bytes asked of OpenSSL per call when draining decrypted data or output.
#: A TLS record carries at most 16 KiB; 64 KiB takes several per call.
READ_CHUNK = 65536

#: Most plaintext handed to OpenSSL per write.  Its output buffer (a memory
#: BIO) keeps the size of the largest batch written into it for the rest of
#: the connection; taking the ciphertext out after each slice keeps that at
#: about one slice per connection instead of the largest update ever sent
#: (a full 640x480 Raw update left about 250 KiB behind per idle client).
WRITE_SLICE = 16384

#: How much of a non-TLS first message a failure reason quotes.
_PREVIEW_BYTES = 16


class HandshakeStatus(enum.Enum):
    """QEMU's handshake status, reduced to what a sans-I/O caller needs."""

    IN_PROGRESS = "in-progress"
    COMPLETE = "complete"
    FAILED = "failed"


class SessionState(enum.Enum):
    """The life of a session."""

    #: The handshake is under way; application data is buffered.
    HANDSHAKING = "handshaking"
    #: Handshake done; data flows both ways.
    OPEN = "open"
    #: We queued close_notify; the peer may still send until it closes too.
    CLOSING = "closing"
    #: The peer sent close_notify; we may still send, then close.
    PEER_CLOSED = "peer-closed"
    #: Both sides are done (or the transport ended).  Nothing more flows.
    CLOSED = "closed"
    #: A fatal TLS error (handshake failure, bad record, peer alert).
    BROKEN = "broken"


class SessionInput(enum.Enum):
    """Events that move a session between states."""

    HANDSHAKE_DONE = "handshake-done"
    LOCAL_CLOSE = "local-close"
    PEER_CLOSE_NOTIFY = "peer-close-notify"
    TRANSPORT_EOF = "transport-eof"
    FATAL_ERROR = "fatal-error"


_S, _I = SessionState, SessionInput

#: Every (state, input) pair and the state it leads to.  CLOSED and BROKEN
#: are final: nothing leaves them (a fatal error after a clean close is
#: ignored, since there is no more traffic to spoil).
TRANSITIONS: dict[tuple[SessionState, SessionInput], SessionState] = {
    (_S.HANDSHAKING, _I.HANDSHAKE_DONE): _S.OPEN,
    # QEMU's bye() does nothing before the handshake completed.
    (_S.HANDSHAKING, _I.LOCAL_CLOSE): _S.CLOSED,
    (_S.HANDSHAKING, _I.PEER_CLOSE_NOTIFY): _S.BROKEN,
    (_S.HANDSHAKING, _I.TRANSPORT_EOF): _S.BROKEN,
    (_S.HANDSHAKING, _I.FATAL_ERROR): _S.BROKEN,
    (_S.OPEN, _I.HANDSHAKE_DONE): _S.BROKEN,
    (_S.OPEN, _I.LOCAL_CLOSE): _S.CLOSING,
    (_S.OPEN, _I.PEER_CLOSE_NOTIFY): _S.PEER_CLOSED,
    (_S.OPEN, _I.TRANSPORT_EOF): _S.CLOSED,
    (_S.OPEN, _I.FATAL_ERROR): _S.BROKEN,
    (_S.CLOSING, _I.HANDSHAKE_DONE): _S.BROKEN,
    (_S.CLOSING, _I.LOCAL_CLOSE): _S.CLOSING,
    (_S.CLOSING, _I.PEER_CLOSE_NOTIFY): _S.CLOSED,
    (_S.CLOSING, _I.TRANSPORT_EOF): _S.CLOSED,
    (_S.CLOSING, _I.FATAL_ERROR): _S.BROKEN,
    (_S.PEER_CLOSED, _I.HANDSHAKE_DONE): _S.BROKEN,
    (_S.PEER_CLOSED, _I.LOCAL_CLOSE): _S.CLOSED,
    (_S.PEER_CLOSED, _I.PEER_CLOSE_NOTIFY): _S.PEER_CLOSED,
    (_S.PEER_CLOSED, _I.TRANSPORT_EOF): _S.PEER_CLOSED,
    (_S.PEER_CLOSED, _I.FATAL_ERROR): _S.BROKEN,
    (_S.CLOSED, _I.HANDSHAKE_DONE): _S.CLOSED,
    (_S.CLOSED, _I.LOCAL_CLOSE): _S.CLOSED,
    (_S.CLOSED, _I.PEER_CLOSE_NOTIFY): _S.CLOSED,
    (_S.CLOSED, _I.TRANSPORT_EOF): _S.CLOSED,
    (_S.CLOSED, _I.FATAL_ERROR): _S.CLOSED,
    (_S.BROKEN, _I.HANDSHAKE_DONE): _S.BROKEN,
    (_S.BROKEN, _I.LOCAL_CLOSE): _S.BROKEN,
    (_S.BROKEN, _I.PEER_CLOSE_NOTIFY): _S.BROKEN,
    (_S.BROKEN, _I.TRANSPORT_EOF): _S.BROKEN,
    (_S.BROKEN, _I.FATAL_ERROR): _S.BROKEN,
}

#: States in which received bytes are handed to OpenSSL.
_READING = frozenset({_S.HANDSHAKING, _S.OPEN, _S.CLOSING})
#: States in which application data may still be sent.
_WRITING = frozenset({_S.HANDSHAKING, _S.OPEN, _S.PEER_CLOSED})


class TLSCheckError(Exception):
    """The peer's credentials failed :meth:`TLSSession.check_credentials`.

    A peer's bad certificate, not a fault of our configuration: this is
    deliberately not an :class:`~creds.objects.ObjectError`, so callers
    that report configuration errors cannot mistake one for the other.
    ``message`` is QEMU's text; ``hint`` vncd's advice (``str()`` gives
    both, as for ObjectError); ``check`` names the failed check
    (``no-certificate``, ``unknown-issuer``, ``untrusted``, ``revoked``,
    ``insecure-algorithm``, ``invalid``, ``expired``, ``not-activated``,
    ``dn``, ``authz-missing``, ``authz-type``, ``authz-denied``,
    ``hostname-mismatch``, ``no-hostname``).
    """

    def __init__(self, message: str, *, hint: str | None = None,
                 check: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.check = check

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class TLSSessionUsageError(RuntimeError):
    """The caller used the session wrongly (a bug in the caller, not the peer)."""


# -- verification results -----------------------------------------------------

#: OpenSSL verify errors ignored here.  Validity times are checked against
#: the registry's clock instead of the wall clock.  A CA without a CRL is not
#: a failure (GnuTLS checks the CRLs it has).  As in QEMU 7.2 (GnuTLS), a CRL
#: counts whatever its thisUpdate/nextUpdate say and whether or not its
#: issuer's keyUsage lists cRLSign (QEMU's documented certtool template
#: leaves it out): the entries of a CRL whose signature verifies are
#: applied either way, and the loader warns about such CRLs.
_IGNORED_VERIFY_ERRORS = frozenset({
    V.UNABLE_TO_GET_CRL, V.CERT_NOT_YET_VALID, V.CERT_HAS_EXPIRED,
    V.CRL_NOT_YET_VALID, V.CRL_HAS_EXPIRED, V.KEYUSAGE_NO_CRL_SIGN,
})

#: OpenSSL verify errors by QEMU's reason: (message, check, rank).  The
#: highest rank wins when several apply, as in QEMU, where a later test of
#: the GnuTLS status bits overrides an earlier one.
_UNKNOWN_ISSUER = ("The certificate hasn't got a known issuer", "unknown-issuer", 2)
_NOT_TRUSTED = ("The certificate is not trusted", "untrusted", 1)
_REVOKED = ("The certificate has been revoked", "revoked", 3)
_INSECURE = ("The certificate uses an insecure algorithm", "insecure-algorithm", 4)
_INVALID = ("Invalid certificate", "invalid", 0)
_VERIFY_REASONS: dict[int, tuple[str, str, int]] = {
    V.UNABLE_TO_GET_ISSUER_CERT: _UNKNOWN_ISSUER,
    V.SELF_SIGNED_CERT_IN_CHAIN: _UNKNOWN_ISSUER,
    V.DEPTH_ZERO_SELF_SIGNED_CERT: _UNKNOWN_ISSUER,
    V.UNABLE_TO_GET_ISSUER_CERT_LOCALLY: _UNKNOWN_ISSUER,
    V.UNABLE_TO_VERIFY_LEAF_SIGNATURE: _UNKNOWN_ISSUER,
    V.CERT_REVOKED: _REVOKED,
    V.UNABLE_TO_DECRYPT_CERT_SIGNATURE: _NOT_TRUSTED,
    V.UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: _NOT_TRUSTED,
    V.CERT_SIGNATURE_FAILURE: _NOT_TRUSTED,
    V.CRL_SIGNATURE_FAILURE: _NOT_TRUSTED,
    V.INVALID_CA: _NOT_TRUSTED,
    V.PATH_LENGTH_EXCEEDED: _NOT_TRUSTED,
    V.INVALID_PURPOSE: _NOT_TRUSTED,
    V.CERT_UNTRUSTED: _NOT_TRUSTED,
    V.CERT_REJECTED: _NOT_TRUSTED,
    V.KEYUSAGE_NO_CERTSIGN: _NOT_TRUSTED,
    V.EE_KEY_TOO_SMALL: _INSECURE,
    V.CA_KEY_TOO_SMALL: _INSECURE,
    V.CA_MD_TOO_WEAK: _INSECURE,
}

#: What OpenSSL's verify errors mean, for hints.
_VERIFY_DETAILS = {
    V.UNABLE_TO_GET_ISSUER_CERT: "the issuer certificate is not available",
    V.UNABLE_TO_DECRYPT_CERT_SIGNATURE: "the certificate signature cannot be decrypted",
    V.UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: "the issuer public key cannot be decoded",
    V.CERT_SIGNATURE_FAILURE: "the certificate signature is invalid",
    V.CRL_SIGNATURE_FAILURE: "the CRL signature is invalid",
    V.CRL_NOT_YET_VALID: "the CRL is not yet valid",
    V.CRL_HAS_EXPIRED: "the CRL has expired",
    V.DEPTH_ZERO_SELF_SIGNED_CERT: "the certificate is self-signed and not trusted",
    V.SELF_SIGNED_CERT_IN_CHAIN:
        "the chain ends in a self-signed certificate that is not trusted",
    V.UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "the issuer is not among the trusted CA certificates",
    V.UNABLE_TO_VERIFY_LEAF_SIGNATURE: "no certificate in the chain can be verified",
    V.CERT_REVOKED: "the certificate is listed in the CRL",
    V.INVALID_CA: "an issuer in the chain is not a CA",
    V.PATH_LENGTH_EXCEEDED: "the chain is longer than its CA allows",
    V.INVALID_PURPOSE: "the certificate's purpose does not allow this use",
    V.CERT_UNTRUSTED: "the root CA is not trusted for this purpose",
    V.CERT_REJECTED: "the root CA rejects this purpose",
    V.KEYUSAGE_NO_CERTSIGN: "an issuer's key usage does not allow certificate signing",
    V.EE_KEY_TOO_SMALL: "the certificate's key is too small",
    V.CA_KEY_TOO_SMALL: "the CA's key is too small",
    V.CA_MD_TOO_WEAK: "the CA signed with a digest that is too weak",
}


# -- OpenSSL errors as QEMU-style reasons -------------------------------------

#: GnuTLS' texts for the failures a peer can cause (QEMU prints these after
#: "TLS handshake failed: "), keyed by OpenSSL's reason string.
_PREMATURE = "The TLS connection was non-properly terminated."
_NO_CIPHER = "Could not negotiate a supported cipher suite."
_VERSION = "A packet with illegal or unsupported version was received."
_NOT_TLS = "An unexpected TLS packet was received."
_REASONS = {
    "no shared cipher": _NO_CIPHER,
    "no cipher match": _NO_CIPHER,
    "no ciphers available": _NO_CIPHER,
    "no suitable signature algorithm": _NO_CIPHER,
    "no shared signature algorithms": _NO_CIPHER,
    "unsupported protocol": _VERSION,
    "no protocols available": _VERSION,
    "version too low": _VERSION,
    "version too high": _VERSION,
    "wrong ssl version": _VERSION,
    "unexpected eof while reading": _PREMATURE,
}
#: OpenSSL reasons that mean the peer's bytes were not TLS records at all.
_NOT_TLS_REASONS = frozenset({
    "wrong version number", "packet length too long", "http request",
    "https proxy request", "unknown protocol",
})
#: OpenSSL reasons for TLS records with content that breaks the protocol.
_BAD_RECORD_REASONS = frozenset({
    "unexpected message", "unexpected record", "length too short",
    "bad packet length", "record length mismatch", "bad record type",
    "record layer failure", "excessive message size", "length mismatch",
})
#: Content types of TLS records (change_cipher_spec .. application_data).
_TLS_RECORD_TYPES = frozenset({20, 21, 22, 23})
_ALERT = re.compile(r"(?:sslv3|tlsv1|tlsv13|tls|ssl/tls) alert (.+)")


def _openssl_reasons(error: SSL.Error) -> list[str]:
    reasons = []
    if error.args and isinstance(error.args[0], list):
        for item in error.args[0]:
            if isinstance(item, tuple) and item and item[-1]:
                reasons.append(str(item[-1]))
    return reasons


def _looks_like_tls(first_bytes: bytes) -> bool:
    """Whether a stream starts like a TLS record (type, then major version 3)."""
    return len(first_bytes) >= 2 and first_bytes[0] in _TLS_RECORD_TYPES \
        and first_bytes[1] == 3


def _describe(error: SSL.Error, first_bytes: bytes, handshake_done: bool) -> tuple[str, str]:
    """A GnuTLS-style reason for ``error`` and a short machine name for it."""
    reasons = _openssl_reasons(error)
    for reason in reasons:
        alert = _ALERT.fullmatch(reason)
        if alert:
            return f"A TLS fatal alert has been received. ({alert.group(1)})", "peer-alert"
        if reason in _REASONS:
            text = _REASONS[reason]
            code = {_NO_CIPHER: "no-shared-cipher", _VERSION: "version-mismatch",
                    _PREMATURE: "premature-eof"}[text]
            return text, code
        if not handshake_done and (reason in _NOT_TLS_REASONS or (
                reason in _BAD_RECORD_REASONS and not _looks_like_tls(first_bytes))):
            preview = first_bytes[:_PREVIEW_BYTES]
            return (f"{_NOT_TLS} (the peer does not speak TLS; it sent {preview!r})",
                    "not-tls")
        if reason in _BAD_RECORD_REASONS:
            return f"{_NOT_TLS} ({reason})", "protocol-error"
    if isinstance(error, SSL.SysCallError) or not reasons:
        return _PREMATURE, "premature-eof"
    text = reasons[0]
    return text[:1].upper() + text[1:] + ".", "tls-error"


# -- the session --------------------------------------------------------------


class TLSSession:
    """One TLS connection over caller-supplied I/O.

    ``creds`` is a loaded :class:`~creds.tlscreds.TLSCreds` (its current
    generation is taken now; a later reload does not affect this session).
    ``endpoint`` is the role of this side (an :class:`Endpoint` or its
    value) and must match the credentials.  ``hostname`` is the name the
    peer's certificate must carry (client endpoints need one with x509
    credentials); ``authz_id`` names the registry object that authorizes
    the peer's distinguished name.

    Attributes (read-only for the caller):

    ``state``: the :class:`SessionState`.
    ``failure``: ``None`` or the reason the session broke, in QEMU's form.
    ``failure_code``: a short machine name for the failure
    (``not-tls``, ``protocol-error``, ``no-shared-cipher``,
    ``version-mismatch``, ``peer-alert``, ``premature-eof``, ``tls-error``).
    ``peer_name``: the peer's distinguished name (GnuTLS form), set by a
    :meth:`check_credentials` that checked a certificate.
    ``alert``: the description of the fatal TLS alert the peer sent
    (``unknown ca``, ``bad certificate`` ...), when one broke the session.
    ``peer_closed``: the peer sent close_notify.
    ``truncated``: the transport ended after the handshake without close_notify.
    """

    def __init__(self, creds: Any, endpoint: Endpoint | str, *,
                 hostname: str | None = None, authz_id: str | None = None) -> None:
        endpoint = Endpoint(endpoint)
        if creds.endpoint is not endpoint:
            raise ObjectError("Credentials endpoint doesn't match session",
                              hint=f"credentials '{creds.id}' are for a "
                                   f"{creds.endpoint.value} endpoint",
                              check="endpoint")
        loaded = creds.loaded
        self._creds = creds
        self._material = loaded.material
        self._kind = creds.kind
        self._verify_peer = bool(creds.verify_peer)
        self.endpoint = endpoint
        self.hostname = hostname
        self.authz_id = authz_id
        self.generation = loaded.generation

        self.state = SessionState.HANDSHAKING
        self.failure: str | None = None
        self.failure_code: str | None = None
        self.alert: str | None = None
        self.peer_name: str | None = None
        self.peer_closed = False
        self.truncated = False

        self._record = VerifyRecord()
        self._conn = SSL.Connection(loaded.context, None)
        self._conn.set_app_data(self._record)
        if endpoint is Endpoint.SERVER:
            self._conn.set_accept_state()
        else:
            self._conn.set_connect_state()
            sni = _sni_name(hostname)
            if sni is not None:
                self._conn.set_tlsext_host_name(sni)
        self._handshake_done = False
        self._first_bytes = b""
        self._pending_plain: deque[bytes] = deque()
        self._pending_size = 0
        #: Bytes of the first pending item already written.
        self._pending_offset = 0
        self._received: list[bytes] = []
        #: Ciphertext already taken out of OpenSSL, waiting for data_to_send.
        self._output: list[bytes] = []
        # A client speaks first: produce the ClientHello now.
        if endpoint is Endpoint.CLIENT:
            self._advance()

    # -- state machine --------------------------------------------------------

    def _fire(self, event: SessionInput) -> None:
        self.state = TRANSITIONS[(self.state, event)]

    def _break(self, error: SSL.Error) -> None:
        reason, code = _describe(error, self._first_bytes, self._handshake_done)
        if code == "peer-alert" and self.alert is None:
            self.alert = next((m.group(1) for m in map(_ALERT.fullmatch,
                                                       _openssl_reasons(error)) if m), None)
        self._fail(reason, code)

    def _fail(self, reason: str, code: str,
              event: SessionInput = SessionInput.FATAL_ERROR) -> None:
        if self.failure is None:
            prefix = ("Cannot read from TLS channel: " if self._handshake_done
                      else "TLS handshake failed: ")
            self.failure = prefix + reason
            self.failure_code = code
        self._fire(event)

    # -- status ---------------------------------------------------------------

    @property
    def handshake_status(self) -> HandshakeStatus:
        if self._handshake_done:
            return HandshakeStatus.COMPLETE
        if self.state is SessionState.HANDSHAKING:
            return HandshakeStatus.IN_PROGRESS
        return HandshakeStatus.FAILED

    @property
    def has_own_certificate(self) -> bool:
        """Whether this side has a certificate to present (a client's own identity)."""
        return self._conn.get_certificate() is not None

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def broken(self) -> bool:
        return self.state is SessionState.BROKEN

    @property
    def protocol_version(self) -> str | None:
        """``"TLSv1.2"`` or ``"TLSv1.3"`` once the handshake completed."""
        return self._conn.get_protocol_version_name() if self._handshake_done else None

    @property
    def cipher_name(self) -> str | None:
        """OpenSSL's name of the negotiated suite (``"TLS_AES_256_GCM_SHA384"``)."""
        return self._conn.get_cipher_name() if self._handshake_done else None

    @property
    def cipher_bits(self) -> int | None:
        """Secret key bits of the negotiated cipher (QEMU's key size times 8)."""
        return self._conn.get_cipher_bits() if self._handshake_done else None

    @property
    def group_name(self) -> str | None:
        """OpenSSL's name of the negotiated key-exchange group once the
        handshake completed: ``"X25519MLKEM768"`` (hybrid post-quantum, when
        the peer offers it), ``"x25519"``, ``"secp256r1"``, ``"ffdhe2048"``
        ...; ``None`` when the key exchange used no named group (TLS 1.2
        with DH parameters of the credentials' own)."""
        return self._conn.get_group_name() if self._handshake_done else None

    @property
    def key_size(self) -> int | None:
        """Key size of the negotiated cipher in bytes, as QEMU's ``get_key_size()``."""
        bits = self.cipher_bits
        return None if bits is None else bits // 8

    # -- I/O ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the transport; ``b""`` means the transport ended."""
        if not data:
            self._transport_eof()
            return
        if self.state not in _READING:
            # After close_notify or a fatal error nothing more is read.
            return
        if not self._handshake_done and len(self._first_bytes) < _PREVIEW_BYTES:
            self._first_bytes += data[:_PREVIEW_BYTES - len(self._first_bytes)]
        self._conn.bio_write(data)
        self._advance()

    def _transport_eof(self) -> None:
        if self.state is SessionState.HANDSHAKING:
            self._fail(_PREMATURE, "premature-eof", SessionInput.TRANSPORT_EOF)
            return
        if self.state is SessionState.OPEN:
            self.truncated = True
        self._fire(SessionInput.TRANSPORT_EOF)

    def _advance(self) -> None:
        """Run the handshake and decrypt whatever the received bytes allow."""
        if self.state is SessionState.HANDSHAKING:
            try:
                self._conn.do_handshake()
            except SSL.WantReadError:
                return
            except SSL.Error as e:
                self._break(e)
                return
            self._handshake_done = True
            self._fire(SessionInput.HANDSHAKE_DONE)
            self._flush_pending()
        while self.state in (SessionState.OPEN, SessionState.CLOSING):
            try:
                chunk = self._conn.recv(READ_CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self.peer_closed = True
                self._fire(SessionInput.PEER_CLOSE_NOTIFY)
                break
            except SSL.Error as e:
                self._break(e)
                break
            self._received.append(chunk)
        self._flush_pending()

    def _flush_pending(self) -> None:
        while self._pending_plain and self.state in (SessionState.OPEN,
                                                     SessionState.PEER_CLOSED):
            data = self._pending_plain[0]
            start = self._pending_offset
            try:
                sent = self._conn.send(data[start:start + WRITE_SLICE])
            except SSL.WantReadError:
                # Retried later with the same bytes, as OpenSSL requires.
                return
            except SSL.Error as e:
                self._break(e)
                return
            self._drain_output()
            self._pending_size -= sent
            if start + sent == len(data):
                self._pending_plain.popleft()
                self._pending_offset = 0
            else:
                self._pending_offset = start + sent

    def send(self, data: bytes) -> None:
        """Queue application data (buffered until the handshake completes)."""
        if self.state not in _WRITING:
            raise TLSSessionUsageError(f"cannot send on a {self.state.value} TLS session")
        if not data:
            return
        if (self.state is SessionState.HANDSHAKING
                and self._pending_size + len(data) > MAX_PENDING_PLAINTEXT):
            raise TLSSessionUsageError(
                f"more than {MAX_PENDING_PLAINTEXT} bytes queued before the TLS handshake")
        self._pending_plain.append(bytes(data))
        self._pending_size += len(data)
        self._flush_pending()

    def read(self) -> bytes:
        """Decrypted application data received so far (and not read before)."""
        data = b"".join(self._received)
        self._received.clear()
        return data

    def data_to_send(self) -> bytes:
        """Bytes for the transport: handshake records, encrypted data, alerts."""
        self._drain_output()
        out, self._output = self._output, []
        return b"".join(out)

    def _drain_output(self) -> None:
        """Move whatever OpenSSL has written out of its buffer."""
        while True:
            try:
                chunk = self._conn.bio_read(READ_CHUNK)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            self._output.append(chunk)

    def close(self) -> None:
        """Queue close_notify (nothing is sent if the handshake never completed)."""
        if self.state in (SessionState.OPEN, SessionState.PEER_CLOSED):
            self._flush_pending()
            try:
                self._conn.shutdown()
            except SSL.Error as e:
                self._break(e)
                return
        self._fire(SessionInput.LOCAL_CLOSE)

    # -- credentials ----------------------------------------------------------

    def check_credentials(self) -> None:
        """Check the peer as QEMU's ``qcrypto_tls_session_check_credentials``.

        A no-op for anonymous credentials and for x509 credentials with
        ``verify-peer`` off (no authz check either, as in QEMU).  Raises
        :class:`TLSCheckError` with QEMU's message otherwise.
        """
        if not self._handshake_done:
            raise TLSSessionUsageError("check_credentials() needs a completed handshake")
        if self._kind != "x509" or not self._verify_peer:
            return
        leaf = self._conn.get_peer_certificate(as_cryptography=True)
        if leaf is None:
            raise TLSCheckError(
                "Verify failed: No certificate was found.",
                hint=self._no_certificate_hint(), check="no-certificate")
        self._check_chain(leaf)
        self._check_times(leaf)
        try:
            name = dn.certificate_dn(leaf)
        except dn.DNError as e:
            raise TLSCheckError(f"Cannot get client distinguished name: {e}",
                                check="dn") from None
        self.peer_name = name
        if self.authz_id is not None:
            self._check_authz(name)
        if self.hostname is not None:
            self._check_hostname(leaf, self.hostname)
        elif self.endpoint is Endpoint.CLIENT:
            raise TLSCheckError(
                "No hostname for certificate validation",
                hint="a client must know which server name to expect", check="no-hostname")

    def _no_certificate_hint(self) -> str:
        if self.endpoint is Endpoint.SERVER:
            return ("the client sent no certificate; it needs one issued by a CA in "
                    f"{self._material.paths.get('ca', 'ca-cert.pem')} "
                    "(or set verify-peer=off to allow clients without certificates)")
        return "the server sent no certificate"

    def _check_chain(self, leaf: x509.Certificate) -> None:
        problems = [p for p in self._record.problems
                    if p.errno not in _IGNORED_VERIFY_ERRORS]
        if not problems:
            return
        worst = max(problems, key=lambda p: _VERIFY_REASONS.get(p.errno, _INVALID)[2])
        message, check, _ = _VERIFY_REASONS.get(worst.errno, _INVALID)
        raise TLSCheckError(message, hint=self._problem_hint(worst, leaf), check=check)

    def _problem_hint(self, problem: VerifyProblem, leaf: x509.Certificate) -> str:
        cert = problem.cert or leaf
        detail = _VERIFY_DETAILS.get(problem.errno,
                                     f"OpenSSL verify error {problem.errno}")
        paths = self._material.paths
        where = paths.get("crl", "ca-crl.pem") if problem.errno in CRL_CODES \
            else paths.get("ca", "ca-cert.pem")
        return (f"{detail}: certificate '{_show_subject(cert)}' issued by "
                f"'{_show_issuer(cert)}' (depth {problem.depth}); checked against {where}")

    def _peer_chain(self, leaf: x509.Certificate) -> list[x509.Certificate]:
        verified = self._conn.get_verified_chain(as_cryptography=True)
        if verified:
            return list(verified)
        sent = self._conn.get_peer_cert_chain(as_cryptography=True) or []
        return [leaf, *(c for c in sent if c != leaf)]

    def _check_times(self, leaf: x509.Certificate) -> None:
        now = self._creds.registry.clock()
        for cert in self._peer_chain(leaf):
            if now > cert.not_valid_after_utc:
                raise TLSCheckError(
                    "The certificate has expired",
                    hint=f"'{_show_subject(cert)}' expired at "
                         f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC (valid from "
                         f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC); it is now "
                         f"{now:%Y-%m-%d %H:%M:%S} UTC",
                    check="expired")
            if now < cert.not_valid_before_utc:
                raise TLSCheckError(
                    "The certificate is not yet activated",
                    hint=f"'{_show_subject(cert)}' is valid from "
                         f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC (until "
                         f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC); it is now "
                         f"{now:%Y-%m-%d %H:%M:%S} UTC: check the clocks of both machines",
                    check="not-activated")

    def _check_authz(self, name: str) -> None:
        authz = self._creds.registry.get(self.authz_id)
        if authz is None:
            raise TLSCheckError(f"Cannot find QAuthZ object ID {self.authz_id}",
                                check="authz-missing")
        if not isinstance(authz, QAuthZ):
            raise TLSCheckError(f"Object '{self.authz_id}' is not a QAuthZ subclass",
                                check="authz-type")
        if not authz.is_allowed(name):
            raise TLSCheckError(
                f"TLS x509 authz check for {name} is denied",
                hint=f"the identity is compared with the rules of '{self.authz_id}' "
                     "exactly as written here (RDNs in certificate order)",
                check="authz-denied")

    def _check_hostname(self, leaf: x509.Certificate, hostname: str) -> None:
        host = hostname[1:-1] if hostname.startswith("[") and hostname.endswith("]") \
            else hostname
        try:
            ipaddress.ip_address(host)
        except ValueError:
            is_ip = False
        else:
            is_ip = True
        try:
            if is_ip:
                verify_certificate_ip_address(leaf, host)
            else:
                verify_certificate_hostname(leaf, host)
        except CertificateError:
            raise TLSCheckError(
                f"Certificate does not match the hostname {hostname}",
                hint="the certificate has no subjectAltName; vncd does not fall back "
                     "to the common name: reissue it with a subjectAltName "
                     "(certtool: dns_name/ip_address in the template; openssl: "
                     f"-addext subjectAltName=DNS:{host})",
                check="hostname-mismatch") from None
        except VerificationError:
            raise TLSCheckError(
                f"Certificate does not match the hostname {hostname}",
                hint=f"the subjectAltName of '{_show_subject(leaf)}' does not "
                     f"list {host}",
                check="hostname-mismatch") from None


def _show_subject(cert: x509.Certificate) -> str:
    """The subject of ``cert`` for hints, in the form authz rules use."""
    try:
        return dn.certificate_dn(cert)
    except dn.DNError:
        return cert.subject.rfc4514_string()


def _show_issuer(cert: x509.Certificate) -> str:
    try:
        return dn.issuer_dn(cert)
    except dn.DNError:
        return cert.issuer.rfc4514_string()


def _sni_name(hostname: str | None) -> bytes | None:
    """The server name to send in the ClientHello (none for IP addresses)."""
    if not hostname:
        return None
    host = hostname.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    try:
        return host.encode("idna")
    except UnicodeError:
        return None
