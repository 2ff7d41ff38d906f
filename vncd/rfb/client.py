# -*- test-case-name: tests.vncd.test_rfb_client -*-
"""The client side of an RFB connection, sans-I/O: bytes in, events and bytes out.

:class:`ClientConnection` speaks RFB 3.3, 3.7 or 3.8 (the highest both
sides know), chooses a security type by a fixed policy
(:class:`ClientSecurity`), runs VNC authentication and the VeNCrypt
exchange, and after ServerInit parses server messages.  FramebufferUpdate
messages are handed whole to a :class:`~vncd.encoding.decode.FramebufferDecoder`,
which keeps the framebuffer (:attr:`ClientConnection.framebuffer`) and
whose events (``RectDecoded``, ``DesktopSizeChanged`` ...,
``UpdateComplete``) come out of :meth:`ClientConnection.next_event`.

The security policy never downgrades: a client given TLS credentials
accepts only VeNCrypt subtypes of that kind (x509 credentials only
``X509*``, anonymous only ``TLS*``); a client without them refuses a
server that offers only VeNCrypt, with a message saying what is needed.

Used like :class:`vncd.rfb.server.ServerConnection`; the VeNCrypt TLS
layer is driven by :mod:`vncd.rfb.stack`.  This module knows nothing
about sockets, certificates or Twisted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from vncd.encoding.decode import DecodeError, FramebufferDecoder, UpdateComplete
from vncd.encoding.decode import NEED_DATA as DECODER_NEED_DATA
from vncd.pixels import PixelFormat, PixelFormatError
from vncd.rfb import vncauth
from vncd.rfb.connection import Connection
from vncd.rfb.errors import LocalProtocolError, RemoteProtocolError
from vncd.rfb.events import (
    NEED_DATA, AuthenticationFailed, AuthenticationSucceeded, Refused, SecurityTypeChosen,
    ServerInitReceived, StartTLS, VersionAgreed,
)
from vncd.rfb.limits import Limits
from vncd.encoding import messages as server_wire
from vncd.rfb.messages import (
    SERVER_PARSERS, ClientMessage, SetColourMapEntries, parse_server_init_header,
)
from vncd.rfb.security import SECURITY_LABELS, SecurityType, VeNCryptSubtype
from vncd.rfb.server import VERSION_LENGTH, negotiated_minor, parse_version
from vncd.rfb.states import CLIENT_TRANSITIONS, ClientInput, ClientState
from vncd.rfb.vencrypt import SUBTYPE_ACCEPT, VENCRYPT_VERSION, VERSION_ACCEPT

__all__ = ["ClientSecurity", "ClientConnection", "SecurityNegotiationError"]

_U32 = struct.Struct(">I")


class SecurityNegotiationError(RemoteProtocolError):
    """The server offers no security this client is configured to accept."""


@dataclass(frozen=True)
class ClientSecurity:
    """What the client may use.

    ``tls`` is ``None`` (no TLS credentials), ``"anon"`` or ``"x509"``;
    with TLS the client insists on the matching VeNCrypt subtypes.
    ``password`` answers VNC authentication (first 8 bytes count).
    """

    tls: str | None = None
    password: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.tls not in (None, "anon", "x509"):
            raise ValueError(f"unknown TLS kind {self.tls!r}")

    def acceptable_subtypes(self) -> tuple[VeNCryptSubtype, ...]:
        """Subtypes we accept, preferred first."""
        if self.tls == "x509":
            pair = (VeNCryptSubtype.X509NONE, VeNCryptSubtype.X509VNC)
        elif self.tls == "anon":
            pair = (VeNCryptSubtype.TLSNONE, VeNCryptSubtype.TLSVNC)
        else:
            return ()
        return pair if self.password is None else pair[::-1]


def _describe_types(types) -> str:
    return ", ".join(SECURITY_LABELS.get(t, str(t)) for t in types) or "nothing"


def _describe_subtypes(subtypes) -> str:
    names = []
    for s in subtypes:
        try:
            names.append(VeNCryptSubtype(s).label)
        except ValueError:
            names.append(str(s))
    return ", ".join(names) or "nothing"


class ClientConnection(Connection):
    """One connection's RFB protocol state (client side).

    ``max_minor`` caps the version offered (tests use 3 or 7 to play an
    old client); ``shared`` is the ClientInit flag.
    """

    PEER = "server"
    FAIL = ClientInput.FAIL
    CLOSED_STATE = ClientState.CLOSED
    RUNNING_STATE = ClientState.RUNNING
    TLS_STATE = ClientState.TLS_HANDSHAKE
    PAUSED_STATES = frozenset({ClientState.TLS_HANDSHAKE})

    def __init__(self, security: ClientSecurity, *, shared: bool = True,
                 max_minor: int = 8, limits: Limits | None = None) -> None:
        if max_minor not in (3, 7, 8):
            raise ValueError("max_minor must be 3, 7 or 8")
        super().__init__(CLIENT_TRANSITIONS, ClientState.AWAIT_VERSION)
        self._security = security
        self._decoder: FramebufferDecoder | None = None
        self._shared = shared
        self._max_minor = max_minor
        self._limits = limits or Limits()
        self._in_update = False
        #: RFB 3.x minor version in use, once agreed.
        self.minor: int | None = None
        #: The security type and VeNCrypt subtype in use, once chosen.
        self.security_type: SecurityType | None = None
        self.subtype: VeNCryptSubtype | None = None

    # -- state ------------------------------------------------------------

    @property
    def framebuffer(self) -> FramebufferDecoder | None:
        """The decoder holding the framebuffer (after ServerInit): ``.rgbx()``,
        ``.width``, ``.height``, ``.pf``."""
        return self._decoder

    # -- bytes in ---------------------------------------------------------

    def _buffer(self, data: bytes) -> None:
        if self._in_update:
            self._decoder.receive_data(data)
        else:
            self._in += data

    def _between_messages(self) -> bool:
        return not self._in and not self._in_update

    # -- calls from the layer above ---------------------------------------

    def tls_established(self) -> None:
        """TLS is up and the server's certificate passed: run the inner authentication."""
        if self.state is not ClientState.TLS_HANDSHAKE:
            raise LocalProtocolError(f"tls_established() in state {self.state.name}")
        if self.subtype in (VeNCryptSubtype.TLSVNC, VeNCryptSubtype.X509VNC):
            self._machine.process(ClientInput.EXPECT_VNC_CHALLENGE)
        else:
            self._machine.process(ClientInput.EXPECT_SECURITY_RESULT)

    def send(self, message: ClientMessage) -> None:
        """Queue a normal client message (only after ServerInit)."""
        if self.state is not ClientState.RUNNING:
            raise LocalProtocolError(f"cannot send {type(message).__name__} in state"
                                     f" {self.state.name}")
        pixel_format = getattr(message, "pixel_format", None)
        if pixel_format is not None:
            self._decoder.set_pixel_format(pixel_format)
        self._out += message.encode()

    # -- helpers ------------------------------------------------------------

    def _read_reason(self, offset: int):
        """A U32-length reason at ``offset``; ``(text, end)`` or ``None`` if incomplete."""
        head = self._peek(offset + 4)
        if head is None:
            return None
        (length,) = _U32.unpack_from(head, offset)
        if length > self._limits.max_reason:
            raise RemoteProtocolError(
                f"the server's reason string of {length} bytes exceeds {self._limits.max_reason}")
        raw = self._peek(offset + 4 + length)
        if raw is None:
            return None
        text = raw[offset + 4:].rstrip(b"\0").decode("utf-8", "replace")
        return text, offset + 4 + length

    def _refused(self, reason: str) -> None:
        self._machine.process(ClientInput.FAIL)
        self._pending.append(Refused(reason))

    def _refusal_at(self, offset: int):
        """The server's refusal: a reason string at ``offset``, then the end."""
        parsed = self._read_reason(offset)
        if parsed is None:
            return NEED_DATA
        reason, end = parsed
        del self._in[:end]
        self._refused(reason)
        return None

    def _send_client_init(self) -> None:
        self._out += bytes([1 if self._shared else 0])
        self._machine.process(ClientInput.CLIENT_INIT_SENT)

    def _choose_type(self, offered) -> SecurityType:
        policy = self._security
        if policy.tls is not None:
            if SecurityType.VENCRYPT in offered:
                return SecurityType.VENCRYPT
            raise SecurityNegotiationError(
                f"TLS is required, but the server offers only {_describe_types(offered)}"
                " (no VeNCrypt)")
        if SecurityType.VNC in offered and policy.password is not None:
            return SecurityType.VNC
        if SecurityType.NONE in offered:
            return SecurityType.NONE
        if SecurityType.VNC in offered:
            raise SecurityNegotiationError("the server requires a VNC password")
        if SecurityType.VENCRYPT in offered:
            raise SecurityNegotiationError(
                "the server requires VeNCrypt (TLS); give TLS credentials")
        raise SecurityNegotiationError(
            f"the server offers only security types this client lacks: {_describe_types(offered)}")

    def _chosen(self, security_type: SecurityType) -> None:
        self.security_type = security_type
        self._pending.append(SecurityTypeChosen(security_type))

    # -- one handler per state that reads bytes ----------------------------

    def _on_version(self):
        raw = self._take(VERSION_LENGTH)
        if raw is None:
            return NEED_DATA
        parsed = parse_version(raw)
        if parsed is None:
            raise RemoteProtocolError(f"the server sent an invalid ProtocolVersion {raw!r}")
        major, minor = parsed
        if major == 3 and minor > 8:
            minor = 8
        agreed = negotiated_minor(major, minor)
        if agreed is None:
            raise RemoteProtocolError(f"the server speaks RFB {major}.{minor}, not 3.x")
        agreed = min(agreed, self._max_minor)
        self.minor = agreed
        self._out += b"RFB 003.%03d\n" % agreed
        self._machine.process(ClientInput.VERSION_SENT_33 if agreed == 3
                              else ClientInput.VERSION_SENT)
        self._pending.append(VersionAgreed(agreed))
        return None

    def _on_security_type_33(self):
        head = self._peek(4)
        if head is None:
            return NEED_DATA
        (stype,) = _U32.unpack(head)
        if stype == SecurityType.INVALID:
            return self._refusal_at(4)
        del self._in[:4]
        if stype not in (SecurityType.NONE, SecurityType.VNC):
            raise RemoteProtocolError(
                f"the server picked security type {stype}, which RFB 3.3 does not allow")
        chosen = self._choose_type((SecurityType(stype),))
        self._chosen(chosen)
        if chosen is SecurityType.NONE:
            self._send_client_init()
            self._pending.append(AuthenticationSucceeded())
        else:
            self._machine.process(ClientInput.EXPECT_VNC_CHALLENGE)
        return None

    def _on_security_types(self):
        head = self._peek(1)
        if head is None:
            return NEED_DATA
        count = head[0]
        if count == 0:
            return self._refusal_at(1)
        raw = self._take(1 + count)
        if raw is None:
            return NEED_DATA
        offered = tuple(raw[1:])
        chosen = self._choose_type(offered)
        self._out += bytes([chosen])
        self._chosen(chosen)
        if chosen is SecurityType.VENCRYPT:
            self._machine.process(ClientInput.CHOSE_VENCRYPT)
        elif chosen is SecurityType.VNC:
            self._machine.process(ClientInput.EXPECT_VNC_CHALLENGE)
        elif self.minor >= 8:
            self._machine.process(ClientInput.EXPECT_SECURITY_RESULT)
        else:
            self._send_client_init()
            self._pending.append(AuthenticationSucceeded())
        return None

    def _on_challenge(self):
        challenge = self._take(vncauth.CHALLENGE_SIZE)
        if challenge is None:
            return NEED_DATA
        if self._security.password is None:
            raise SecurityNegotiationError("the server requires a VNC password")
        self._out += vncauth.challenge_response(self._security.password, challenge)
        self._machine.process(ClientInput.EXPECT_SECURITY_RESULT)
        return None

    def _on_vencrypt_version(self):
        raw = self._take(2)
        if raw is None:
            return NEED_DATA
        if tuple(raw) < VENCRYPT_VERSION:
            raise RemoteProtocolError(
                f"the server speaks VeNCrypt {raw[0]}.{raw[1]}; this client needs 0.2")
        self._out += bytes(VENCRYPT_VERSION)
        self._machine.process(ClientInput.VENCRYPT_VERSION_SENT)
        return None

    def _on_vencrypt_version_ack(self):
        raw = self._take(1)
        if raw is None:
            return NEED_DATA
        if raw[0] != VERSION_ACCEPT:
            self._refused("the server refused VeNCrypt version 0.2")
            return None
        self._machine.process(ClientInput.VENCRYPT_VERSION_OK)
        return None

    def _on_vencrypt_subtypes(self):
        head = self._peek(1)
        if head is None:
            return NEED_DATA
        count = head[0]
        raw = self._take(1 + 4 * count)
        if raw is None:
            return NEED_DATA
        offered = struct.unpack_from(f">{count}I", raw, 1)
        for subtype in self._security.acceptable_subtypes():
            if subtype in offered:
                break
        else:
            wanted = _describe_subtypes(self._security.acceptable_subtypes())
            raise SecurityNegotiationError(
                f"the server offers VeNCrypt {_describe_subtypes(offered)};"
                f" with these credentials this client accepts only {wanted}")
        if subtype in (VeNCryptSubtype.TLSVNC, VeNCryptSubtype.X509VNC) \
                and self._security.password is None:
            raise SecurityNegotiationError("the server requires a VNC password")
        self.subtype = subtype
        self._out += _U32.pack(subtype)
        self._machine.process(ClientInput.SUBTYPE_SENT)
        return None

    def _on_vencrypt_subtype_ack(self):
        raw = self._take(1)
        if raw is None:
            return NEED_DATA
        if raw[0] != SUBTYPE_ACCEPT:
            self._refused(f"the server refused VeNCrypt subtype {self.subtype.label}")
            return None
        if self._in:
            raise RemoteProtocolError(
                f"the server sent {len(self._in)} bytes after accepting the VeNCrypt"
                " subtype and before the TLS handshake")
        self._machine.process(ClientInput.START_TLS)
        self._pending.append(StartTLS(self.subtype))
        return None

    def _on_security_result(self):
        head = self._peek(4)
        if head is None:
            return NEED_DATA
        (result,) = _U32.unpack(head)
        if result == 0:
            del self._in[:4]
            self._send_client_init()
            self._pending.append(AuthenticationSucceeded())
            return None
        reason = "authentication failed"
        end = 4
        if self.minor >= 8:
            parsed = self._read_reason(4)
            if parsed is None:
                return NEED_DATA
            reason, end = parsed
        del self._in[:end]
        self._machine.process(ClientInput.FAIL)
        self._pending.append(AuthenticationFailed(reason))
        return None

    def _on_server_init(self):
        header = parse_server_init_header(self._in)
        if header is NEED_DATA:
            return NEED_DATA
        width, height, pf_bytes, name_length = header
        if name_length > self._limits.max_reason:
            raise RemoteProtocolError(
                f"the server's desktop name of {name_length} bytes exceeds"
                f" {self._limits.max_reason}")
        if width * height > self._limits.max_client_framebuffer_pixels:
            raise RemoteProtocolError(
                f"the server's framebuffer {width}x{height} exceeds the client's limit of"
                f" {self._limits.max_client_framebuffer_pixels} pixels")
        try:
            pixel_format = PixelFormat.from_bytes(pf_bytes)
        except PixelFormatError as e:
            raise RemoteProtocolError(f"ServerInit: {e}") from None
        raw = self._take(24 + name_length)
        if raw is None:
            return NEED_DATA
        name = raw[24:].decode("utf-8", "replace")
        self._decoder = FramebufferDecoder(
            width, height, pixel_format, max_pixels=self._limits.max_client_framebuffer_pixels)
        self._machine.process(ClientInput.SERVER_INIT)
        self._pending.append(ServerInitReceived(width, height, pixel_format, name))
        return None

    def _on_message(self):
        if self._in_update:
            return self._on_update()
        if not self._in:
            return NEED_DATA
        if self._in[0] == server_wire.FRAMEBUFFER_UPDATE:
            self._in_update = True
            self._decoder.receive_data(bytes(self._in))
            self._in.clear()
            self._machine.process(ClientInput.SERVER_MESSAGE)
            return self._on_update()
        parser = SERVER_PARSERS.get(self._in[0])
        if parser is None:
            raise RemoteProtocolError(f"unknown server message type {self._in[0]}")
        parsed = parser(self._in, self._limits)
        if parsed is NEED_DATA:
            return NEED_DATA
        message, size = parsed
        del self._in[:size]
        if isinstance(message, SetColourMapEntries):
            try:
                self._decoder.set_colour_map_entries(message.first, message.colours)
            except DecodeError as e:
                raise RemoteProtocolError(f"SetColourMapEntries: {e}") from None
        self._machine.process(ClientInput.SERVER_MESSAGE)
        self._pending.append(message)
        return None

    def _on_update(self):
        try:
            event = self._decoder.next_event()
        except DecodeError as e:
            raise RemoteProtocolError(f"FramebufferUpdate: {e}") from None
        if event is DECODER_NEED_DATA:
            return NEED_DATA
        if isinstance(event, UpdateComplete):
            self._in_update = False
            self._in += self._decoder.trailing_data
        self._pending.append(event)
        return None


ClientConnection.HANDLERS = {
    ClientState.AWAIT_VERSION: ClientConnection._on_version,
    ClientState.AWAIT_SECURITY_TYPE: ClientConnection._on_security_type_33,
    ClientState.AWAIT_SECURITY_TYPES: ClientConnection._on_security_types,
    ClientState.AWAIT_VNC_CHALLENGE: ClientConnection._on_challenge,
    ClientState.AWAIT_VENCRYPT_VERSION: ClientConnection._on_vencrypt_version,
    ClientState.AWAIT_VENCRYPT_VERSION_ACK: ClientConnection._on_vencrypt_version_ack,
    ClientState.AWAIT_VENCRYPT_SUBTYPES: ClientConnection._on_vencrypt_subtypes,
    ClientState.AWAIT_VENCRYPT_SUBTYPE_ACK: ClientConnection._on_vencrypt_subtype_ack,
    ClientState.AWAIT_SECURITY_RESULT: ClientConnection._on_security_result,
    ClientState.AWAIT_SERVER_INIT: ClientConnection._on_server_init,
    ClientState.RUNNING: ClientConnection._on_message,
}
