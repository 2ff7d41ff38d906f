"""A wire-level RFB 3.8 / VeNCrypt client that records what a server offers
and whether it lets a given kind of client in.

Used by the QEMU security-matrix comparison: the same probe runs against
QEMU 7.2 and against vncd, and the two :class:`ProbeResult` lists must be
equal.  A probe connects, records the security types the server lists, the
VeNCrypt version and subtypes (when VeNCrypt is offered), then plays one
:class:`ClientKind` -- with or without a client certificate, with the right,
a wrong or no password -- and classifies how far it got (:class:`Outcome`).

The probe is a test harness: blocking stdlib sockets, stdlib ``ssl`` for the
TLS layer, ``cryptography`` for the DES of VNC authentication.  Every read
is bounded (named limits below) and every socket has a timeout, so a server
sending garbage or nothing ends the probe with :class:`ProbeError`, never a
hang or an unbounded allocation.  It knows nothing about how the server was
started.
"""

from __future__ import annotations

import enum
import socket
import ssl
import struct
from dataclasses import dataclass
from typing import Callable, Protocol

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

__all__ = [
    "ClientKind", "Outcome", "ProbeResult", "ProbeError", "Wire", "probe",
    "run_probe", "vnc_auth_response", "tls_upgrader", "session_tickets",
    "SECURITY_NAMES",
    "SUBTYPE_NAMES",
]

#: Longest reason string accepted from a server.  QEMU's is 22 bytes; a
#: reason is one sentence for a human, so 4 KiB is generous and still bounds
#: what a hostile server can make the probe allocate.
MAX_REASON_LENGTH = 4096

#: Longest desktop name accepted in ServerInit.  Names are titles; 64 KiB
#: covers any real one.
MAX_NAME_LENGTH = 65536

#: Seconds any single socket operation (connect, read, TLS handshake) may
#: take.  Loopback servers answer in milliseconds; 10 s leaves room for a
#: loaded 2-core machine and still ends a silent server's probe promptly.
IO_TIMEOUT = 10.0

#: RFB security types, by number (rfbproto; QEMU ui/vnc.h).
SECURITY_NAMES = {0: "Invalid", 1: "None", 2: "VncAuth", 5: "RA2", 6: "RA2ne",
                  16: "Tight", 18: "TLS", 19: "VeNCrypt", 20: "SASL"}

#: VeNCrypt subtypes, by number (QEMU's numbering for the SASL pair).
SUBTYPE_NAMES = {256: "Plain", 257: "TLSNone", 258: "TLSVnc", 259: "TLSPlain",
                 260: "X509None", 261: "X509Vnc", 262: "X509Plain",
                 263: "X509SASL", 264: "TLSSASL"}

NONE, VNC_AUTH, VENCRYPT = 1, 2, 19
TLS_NONE, TLS_VNC, X509_NONE, X509_VNC = 257, 258, 260, 261

#: The subtype a client picks, by (x509?, has password?).
_SUBTYPE_CHOICE = {(False, False): TLS_NONE, (False, True): TLS_VNC,
                   (True, False): X509_NONE, (True, True): X509_VNC}
_X509_SUBTYPES = frozenset({X509_NONE, X509_VNC, 262, 263})
_TLS_SUBTYPES = frozenset({TLS_NONE, TLS_VNC, 259, 264}) | _X509_SUBTYPES


class ProbeError(Exception):
    """The server broke the protocol or the connection; ``stage`` says where."""

    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.detail = detail


class Outcome(enum.Enum):
    """How far one client got."""

    #: ServerInit received: the client is in.
    SERVER_INIT = "serverinit"
    #: The server listed no security type and sent a reason.
    REFUSED = "refused"
    #: SecurityResult said failed (type/password refused).
    AUTH_FAILED = "auth-failed"
    #: The server rejected the client's VeNCrypt version or subtype.
    VENCRYPT_REJECTED = "vencrypt-rejected"
    #: The TLS handshake or the peer check after it failed (the server
    #: closed or alerted before the first inner-auth byte).
    TLS_REFUSED = "tls-refused"
    #: The connection ended somewhere else (details in ``ProbeResult.detail``).
    CLOSED = "closed"


@dataclass(frozen=True)
class ClientKind:
    """One kind of client: a name, an optional certificate, an optional password.

    ``cert`` and ``key`` are PEM file paths (both or neither).  ``password``
    ``None`` means the client has no password: it picks a type or subtype
    without VNC authentication even when the server offers only one with.
    """

    name: str
    password: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw.  Everything but ``detail`` is compared across servers."""

    security_types: tuple[int, ...]
    vencrypt_version: tuple[int, int] | None
    subtypes: tuple[int, ...] | None
    outcome: Outcome
    #: The server's reason string, for REFUSED / AUTH_FAILED.
    reason: str | None = None
    #: Free text on where the probe stopped (not compared).
    detail: str = ""

    def key(self) -> tuple:
        """The part that must be identical between QEMU and vncd."""
        return (self.security_types, self.vencrypt_version, self.subtypes,
                self.outcome, self.reason)

    def describe(self) -> str:
        types = ",".join(SECURITY_NAMES.get(t, str(t)) for t in self.security_types)
        text = f"[{types}]"
        if self.subtypes is not None:
            subs = ",".join(SUBTYPE_NAMES.get(s, str(s)) for s in self.subtypes)
            text += f" vencrypt {self.vencrypt_version} [{subs}]"
        text += f" -> {self.outcome.value}"
        if self.reason is not None:
            text += f" ({self.reason!r})"
        return text


class _Stream(Protocol):
    def recv(self, n: int) -> bytes: ...
    def sendall(self, data: bytes) -> None: ...


class Wire:
    """Exact-length reads and writes over a socket-like object."""

    def __init__(self, sock: _Stream, stage: str = "connect") -> None:
        self.sock = sock
        self.stage = stage

    def read(self, n: int) -> bytes:
        chunks = []
        want = n
        while want:
            try:
                chunk = self.sock.recv(want)
            except (OSError, ssl.SSLError) as e:
                raise ProbeError(self.stage, f"read failed: {e}") from None
            if not chunk:
                raise ProbeError(self.stage, f"connection closed ({n - want} of {n} bytes)")
            chunks.append(chunk)
            want -= len(chunk)
        return b"".join(chunks)

    def u8(self) -> int:
        return self.read(1)[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.read(4))[0]

    def reason(self) -> str:
        n = self.u32()
        if n > MAX_REASON_LENGTH:
            raise ProbeError(self.stage, f"reason of {n} bytes exceeds {MAX_REASON_LENGTH}")
        return self.read(n).decode("utf-8", "replace")

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError) as e:
            raise ProbeError(self.stage, f"write failed: {e}") from None


def _reverse_bits(b: int) -> int:
    return int(f"{b:08b}"[::-1], 2)


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """The 16-byte VNC authentication response (DES, RFB's bit-reversed key)."""
    raw = password.encode("latin-1", "replace")[:8].ljust(8, b"\0")
    key = bytes(_reverse_bits(b) for b in raw)
    enc = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return enc.update(challenge) + enc.finalize()


#: ``upgrade(wire, x509, kind) -> Wire``: wraps the connection in TLS.
Upgrader = Callable[[Wire, bool, ClientKind], Wire]


def tls_upgrader(wire: Wire, x509: bool, kind: ClientKind) -> Wire:
    """Client-side TLS over ``wire.sock`` with stdlib ``ssl``.

    Anonymous subtypes offer only anonymous DH suites at TLS 1.2 at most
    (what GnuTLS and OpenSSL can agree on without certificates); x509
    subtypes present ``kind``'s certificate when it has one.  The server's
    certificate is not verified: the probe measures what the server admits.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if x509:
        if kind.cert:
            ctx.load_cert_chain(kind.cert, kind.key)
    else:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("aNULL:!eNULL:@SECLEVEL=0")
    try:
        tls = ctx.wrap_socket(wire.sock, do_handshake_on_connect=True)
    except (OSError, ssl.SSLError) as e:
        raise ProbeError("tls", f"handshake failed: {e}") from None
    return Wire(tls, "tls")


def _choose_type(types: tuple[int, ...], kind: ClientKind) -> int:
    if VENCRYPT in types:
        return VENCRYPT
    if kind.password is not None and VNC_AUTH in types:
        return VNC_AUTH
    return NONE


def probe(wire: Wire, kind: ClientKind, upgrade: Upgrader = tls_upgrader) -> ProbeResult:
    """Run one RFB 3.8 handshake as ``kind`` and classify the result.

    Raises :class:`ProbeError` only for protocol violations before the
    security type list; every later ending is an :class:`Outcome`.
    """
    wire.stage = "version"
    version = wire.read(12)
    if not version.startswith(b"RFB ") or version[-1:] != b"\n":
        raise ProbeError("version", f"not an RFB greeting: {version!r}")
    wire.send(b"RFB 003.008\n")
    wire.stage = "security-types"
    count = wire.u8()
    if count == 0:
        return ProbeResult((), None, None, Outcome.REFUSED, wire.reason())
    types = tuple(wire.read(count))
    choice = _choose_type(types, kind)
    wire.send(bytes([choice]))
    state = {"types": types, "version": None, "subtypes": None}
    try:
        if choice == VENCRYPT:
            return _vencrypt(wire, kind, upgrade, state)
        if choice == VNC_AUTH:
            wire.stage = "vnc-auth"
            _vnc_auth(wire, kind.password or "")
        return _result_and_init(wire, state, "security-result")
    except ProbeError as e:
        outcome = Outcome.TLS_REFUSED if e.stage in ("tls", "tls-check") else Outcome.CLOSED
        return ProbeResult(types, state["version"], state["subtypes"], outcome,
                           detail=str(e))


def _result(state: dict, outcome: Outcome, reason: str | None = None,
            detail: str = "") -> ProbeResult:
    return ProbeResult(state["types"], state["version"], state["subtypes"],
                       outcome, reason, detail)


def _vencrypt(wire: Wire, kind: ClientKind, upgrade: Upgrader, state: dict) -> ProbeResult:
    wire.stage = "vencrypt-version"
    major, minor = wire.read(2)
    state["version"] = (major, minor)
    wire.send(b"\x00\x02")
    if wire.u8() != 0:
        return _result(state, Outcome.VENCRYPT_REJECTED, detail="version refused")
    wire.stage = "vencrypt-subtypes"
    count = wire.u8()
    subtypes = struct.unpack(f">{count}I", wire.read(4 * count))
    state["subtypes"] = tuple(subtypes)
    if not subtypes:
        return _result(state, Outcome.VENCRYPT_REJECTED, detail="no subtypes")
    x509 = subtypes[0] in _X509_SUBTYPES
    choice = _SUBTYPE_CHOICE[(x509, kind.password is not None)]
    wire.send(struct.pack(">I", choice))
    wire.stage = "vencrypt-ack"
    try:
        ack = wire.u8()
    except ProbeError as e:
        return _result(state, Outcome.VENCRYPT_REJECTED, detail=str(e))
    if ack != 1:
        return _result(state, Outcome.VENCRYPT_REJECTED, detail=f"subtype ack {ack}")
    wire = upgrade(wire, x509, kind)
    # The server checks the peer after the handshake; with TLS 1.3 the
    # client finishes first, so a refusal shows up as the first read failing.
    if choice in (TLS_VNC, X509_VNC):
        wire.stage = "tls-check"
        challenge = wire.read(16)
        wire.stage = "vnc-auth"
        wire.send(vnc_auth_response(kind.password or "", challenge))
        return _result_and_init(wire, state, "security-result")
    return _result_and_init(wire, state, "tls-check")


def _vnc_auth(wire: Wire, password: str) -> None:
    challenge = wire.read(16)
    wire.send(vnc_auth_response(password, challenge))


def _result_and_init(wire: Wire, state: dict, first_stage: str) -> ProbeResult:
    wire.stage = first_stage
    status = wire.u32()
    wire.stage = "security-result"
    if status != 0:
        try:
            reason = wire.reason()
        except ProbeError as e:
            return _result(state, Outcome.AUTH_FAILED, None, str(e))
        return _result(state, Outcome.AUTH_FAILED, reason)
    wire.send(b"\x01")
    wire.stage = "server-init"
    header = wire.read(24)
    name_length = struct.unpack(">I", header[20:24])[0]
    if name_length > MAX_NAME_LENGTH:
        raise ProbeError("server-init", f"name of {name_length} bytes exceeds {MAX_NAME_LENGTH}")
    wire.read(name_length)
    width, height = struct.unpack(">HH", header[:4])
    return _result(state, Outcome.SERVER_INIT, detail=f"{width}x{height}")


def run_probe(host: str, port: int, kind: ClientKind,
              upgrade: Upgrader = tls_upgrader, source: str | None = None) -> ProbeResult:
    """Connect to ``host:port`` (from address ``source``) and :func:`probe` it as ``kind``."""
    try:
        sock = socket.create_connection(
            (host, port), timeout=IO_TIMEOUT,
            source_address=(source, 0) if source else None)
    except OSError as e:
        raise ProbeError("connect", f"{host}:{port}: {e}") from None
    try:
        return probe(Wire(sock), kind, upgrade)
    finally:
        sock.close()


def session_tickets(host: str, port: int,
                    source: str | None = None) -> tuple[ProbeResult, str, bool]:
    """Probe a ``*None`` VeNCrypt display; report the TLS version and whether
    the server handed out a session ticket by the time SecurityResult arrived.

    Returns ``(result, tls_version, ticket)``.  Raises :class:`ProbeError`
    if the probe never got to TLS.
    """
    upgraded: list[ssl.SSLSocket] = []

    def upgrade(wire: Wire, x509: bool, kind: ClientKind) -> Wire:
        tls_wire = tls_upgrader(wire, x509, kind)
        upgraded.append(tls_wire.sock)
        return tls_wire

    result = run_probe(host, port, ClientKind("tickets"), upgrade, source)
    if not upgraded:
        raise ProbeError("tls", f"no TLS session: {result.describe()}")
    tls = upgraded[0]
    try:
        session = tls.session
        return result, tls.version() or "", bool(session is not None and session.has_ticket)
    finally:
        tls.close()
