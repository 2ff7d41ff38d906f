# -*- test-case-name: tests.vncd.test_rfb_server -*-
"""The server side of an RFB connection, sans-I/O: bytes in, events and bytes out.

:class:`ServerConnection` runs the handshake exactly as QEMU 7.2 does on
the wire -- ProtocolVersion, one offered security type, VeNCrypt 0.2 with
one subtype, the DES challenge, ClientInit -- and then parses normal
client messages.  Use it like h11::

    conn = ServerConnection(security)
    send(conn.data_to_send())            # "RFB 003.008\\n"
    conn.receive_data(bytes_from_peer)
    while (event := conn.next_event()) not in (NEED_DATA, PAUSED, CLOSED):
        ...                              # act on the event
    send(conn.data_to_send())

Two events need the caller before parsing continues (``next_event()``
returns :data:`PAUSED` until then): :class:`StartTLS` -- run TLS below
this object, check the peer's credentials, then call
:meth:`ServerConnection.tls_established` -- and
:class:`ClientInitReceived` -- apply the share policy, then call
:meth:`ServerConnection.send_server_init`.

Where vncd differs from QEMU on the wire it is because QEMU sends no
reason where the protocol has room for one: an unsupported client
version and an RFB 3.3 client that cannot use the configured security
get ``U32 0`` *plus a reason string*, and a refused (throttled) address
gets the version's failure form with a reason.  The reasons QEMU does
send (``Authentication failed``) are sent exactly as QEMU sends them,
trailing NUL counted in the length.

This module knows nothing about sockets, certificates or Twisted; the
TLS session itself is driven by :mod:`vncd.rfb.stack`.
"""

from __future__ import annotations

import os
import re
import struct
from typing import Callable

from vncd.pixels import PixelFormat
from vncd.rfb import vncauth
from vncd.rfb.connection import Connection
from vncd.rfb.errors import LocalProtocolError
from vncd.rfb.events import (
    NEED_DATA, AuthenticationFailed, AuthenticationSucceeded, ClientInitReceived, Refused,
    SecurityTypeChosen, StartTLS, VersionAgreed,
)
from vncd.rfb.limits import Limits
from vncd.rfb.messages import encode_server_init, parse_client_message
from vncd.rfb.security import SecurityConfig, SecurityType
from vncd.rfb.states import SERVER_TRANSITIONS, ServerInput, ServerState
from vncd.rfb.vencrypt import (
    SUBTYPE_ACCEPT, SUBTYPE_REJECT, VENCRYPT_VERSION, VERSION_ACCEPT, VERSION_REJECT,
)

__all__ = [
    "ServerConnection", "PROTOCOL_VERSION", "AUTH_FAILED_REASON", "parse_version",
    "failure_bytes",
]

#: What vncd announces: the highest version it speaks.
PROTOCOL_VERSION = b"RFB 003.008\n"

#: Length of a ProtocolVersion message.
VERSION_LENGTH = 12

_VERSION_RE = re.compile(rb"RFB ([0-9]{3})\.([0-9]{3})\n\Z")

#: QEMU's SecurityResult reason, sent with its trailing NUL (22 bytes).
AUTH_FAILED_REASON = b"Authentication failed\0"

_U32 = struct.Struct(">I")


def parse_version(raw: bytes) -> tuple[int, int] | None:
    """``(major, minor)`` from a 12-byte ProtocolVersion, ``None`` if malformed."""
    match = _VERSION_RE.match(raw)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def negotiated_minor(major: int, minor: int) -> int | None:
    """The RFB 3.x minor version used with a peer announcing ``major.minor``.

    3.3 to 3.6 are treated as 3.3 (rfbproto says 3.5 must be; vncd
    extends that to the other minors below 3.7), 3.7 and 3.8 as
    themselves; anything else is refused (``None``).
    """
    if major != 3:
        return None
    if 3 <= minor <= 6:
        return 3
    if minor in (7, 8):
        return minor
    return None


def failure_bytes(minor: int, reason: str) -> bytes:
    """How a refusal with ``reason`` looks on the wire in RFB 3.``minor``,
    in place of the security types.

    3.3 sends ``U32 0`` then the reason, 3.7/3.8 an empty security type
    list then the reason.  vncd's own reasons are sent without a trailing
    NUL.
    """
    raw = reason.encode("utf-8")
    head = _U32.pack(0) if minor == 3 else b"\0"
    return head + _U32.pack(len(raw)) + raw


class ServerConnection(Connection):
    """One client connection's RFB protocol state (server side).

    ``security`` fixes what is offered (read once, at construction) and
    supplies the VNC password (read when the response arrives, so a
    password set at run time takes effect).  ``random_bytes`` makes the
    DES challenge; tests inject a deterministic one.
    """

    PEER = "client"
    FAIL = ServerInput.FAIL
    CLOSED_STATE = ServerState.CLOSED
    RUNNING_STATE = ServerState.RUNNING
    TLS_STATE = ServerState.TLS_HANDSHAKE
    PAUSED_STATES = frozenset({ServerState.TLS_HANDSHAKE, ServerState.SERVER_INIT_PENDING})

    def __init__(self, security: SecurityConfig, limits: Limits | None = None, *,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        super().__init__(SERVER_TRANSITIONS, ServerState.AWAIT_VERSION)
        self._security = security
        self._auth = security.auth
        self._limits = limits or Limits()
        self._max_receive_buffer = self._limits.max_receive_buffer
        self._random_bytes = random_bytes
        self._out += PROTOCOL_VERSION
        self._denial: str | None = None
        self._challenge: bytes | None = None
        self._overflow = False
        #: RFB 3.x minor version in use, once agreed.
        self.minor: int | None = None

    # -- input limit ----------------------------------------------------------

    def _buffer(self, data: bytes) -> None:
        if len(self._in) + len(data) > self._max_receive_buffer:
            self._overflow = True
            return
        self._in += data

    def _before_parsing(self) -> None:
        if self._overflow:
            self._remote_error(
                f"more than {self._limits.max_receive_buffer} unparsed bytes from the client")

    # -- calls from the layer above ---------------------------------------

    def deny(self, reason: str) -> None:
        """Refuse this client at the security step, telling it ``reason``.

        Only possible before the client's version has been processed; the
        refusal is sent in that version's failure format.
        """
        if self.state is not ServerState.AWAIT_VERSION:
            raise LocalProtocolError("a client can only be denied before the version exchange")
        self._denial = reason

    def tls_established(self) -> None:
        """TLS is up and the peer's credentials passed: run the inner authentication."""
        if self.state is not ServerState.TLS_HANDSHAKE:
            raise LocalProtocolError(f"tls_established() in state {self.state.name}")
        if self._auth.inner is SecurityType.NONE:
            self._out += _U32.pack(0)
            self._authenticated()
        else:
            self._start_vnc_auth()

    def send_server_init(self, width: int, height: int, pixel_format: PixelFormat,
                         name: str) -> None:
        """Answer ClientInit; normal messages are parsed from now on."""
        if self.state is not ServerState.SERVER_INIT_PENDING:
            raise LocalProtocolError(f"send_server_init() in state {self.state.name}")
        self._out += encode_server_init(width, height, pixel_format, name,
                                        self._limits.max_server_name)
        self._machine.process(ServerInput.SERVER_INIT)

    def _refuse(self, reason: str) -> None:
        self._out += failure_bytes(self.minor, reason)
        self._machine.process(ServerInput.FAIL)
        self._pending.append(Refused(reason))

    def _security_failed(self) -> bytes:
        """SecurityResult "failed", with QEMU's reason from RFB 3.8 on."""
        if self.minor >= 8:
            return _U32.pack(1) + _U32.pack(len(AUTH_FAILED_REASON)) + AUTH_FAILED_REASON
        return _U32.pack(1)

    def _authenticated(self) -> None:
        self._machine.process(ServerInput.AUTHENTICATED)
        self._pending.append(AuthenticationSucceeded())

    def _start_vnc_auth(self) -> None:
        challenge = self._random_bytes(vncauth.CHALLENGE_SIZE)
        if len(challenge) != vncauth.CHALLENGE_SIZE:
            raise LocalProtocolError("random_bytes returned a challenge of the wrong size")
        self._challenge = challenge
        self._out += challenge
        self._machine.process(ServerInput.START_VNC_AUTH)

    # -- one handler per state that reads bytes ----------------------------

    def _on_version(self):
        raw = self._take(VERSION_LENGTH)
        if raw is None:
            return NEED_DATA
        parsed = parse_version(raw)
        if parsed is None:
            reason = "Invalid RFB ProtocolVersion message"
            self._remote_error(f"{reason}: {raw!r}", failure_bytes(3, reason))
        minor = negotiated_minor(*parsed)
        if minor is None:
            reason = (f"Unsupported RFB protocol version {parsed[0]}.{parsed[1]};"
                      " vncd speaks 3.3, 3.7 and 3.8")
            self._remote_error(reason, failure_bytes(3, reason))
        self.minor = minor
        self._pending.append(VersionAgreed(minor))
        if self._denial is not None:
            self._refuse(self._denial)
            return None
        offered = self._auth.security_type
        if minor >= 7:
            self._out += bytes([1, offered])
            self._machine.process(ServerInput.SEND_SECURITY_LIST)
            return None
        if offered is SecurityType.NONE:
            self._out += _U32.pack(offered)
            self._pending.append(SecurityTypeChosen(offered))
            self._authenticated()
        elif offered is SecurityType.VNC:
            self._out += _U32.pack(offered)
            self._pending.append(SecurityTypeChosen(offered))
            self._start_vnc_auth()
        else:
            self._refuse(f"This server requires {self._auth.label} security, which needs"
                         " RFB protocol 3.7 or later; the client speaks 3.3")
        return None

    def _on_security_choice(self):
        raw = self._take(1)
        if raw is None:
            return NEED_DATA
        chosen, offered = raw[0], self._auth.security_type
        if chosen != offered:
            self._remote_error(
                f"the client chose security type {chosen}, but only {int(offered)} is offered",
                self._security_failed())
        self._pending.append(SecurityTypeChosen(offered))
        if offered is SecurityType.NONE:
            if self.minor >= 8:
                self._out += _U32.pack(0)
            self._authenticated()
        elif offered is SecurityType.VNC:
            self._start_vnc_auth()
        else:
            self._out += bytes(VENCRYPT_VERSION)
            self._machine.process(ServerInput.START_VENCRYPT)
        return None

    def _on_vencrypt_version(self):
        raw = self._take(2)
        if raw is None:
            return NEED_DATA
        if tuple(raw) != VENCRYPT_VERSION:
            self._remote_error(
                f"the client asked for VeNCrypt {raw[0]}.{raw[1]}; only 0.2 is supported",
                bytes([VERSION_REJECT]))
        self._out += bytes([VERSION_ACCEPT, 1]) + _U32.pack(self._auth.subtype)
        self._machine.process(ServerInput.VENCRYPT_VERSION_OK)
        return None

    def _on_vencrypt_subtype(self):
        raw = self._take(4)
        if raw is None:
            return NEED_DATA
        (chosen,) = _U32.unpack(raw)
        if chosen != self._auth.subtype:
            self._remote_error(
                f"the client chose VeNCrypt subtype {chosen}, but only"
                f" {int(self._auth.subtype)} is offered", bytes([SUBTYPE_REJECT]))
        if self._in:
            self._remote_error(
                f"the client sent {len(self._in)} bytes after choosing its VeNCrypt"
                " subtype and before the TLS handshake (STARTTLS injection?)",
                bytes([SUBTYPE_REJECT]))
        self._out += bytes([SUBTYPE_ACCEPT])
        self._machine.process(ServerInput.START_TLS)
        self._pending.append(StartTLS(self._auth.subtype))
        return None

    def _on_vnc_response(self):
        response = self._take(vncauth.CHALLENGE_SIZE)
        if response is None:
            return NEED_DATA
        password = self._security.password
        challenge, self._challenge = self._challenge, None
        if password is None:
            reason = "no VNC password is set"
        elif vncauth.is_empty_password(password):
            # SecurityConfig refuses empty passwords; this holds whatever
            # supplies the password.
            reason = "the VNC password is empty"
        elif self._security.password_expired():
            reason = "the VNC password has expired"
        elif not vncauth.check_response(password, challenge, response):
            reason = "wrong VNC password"
        else:
            self._out += _U32.pack(0)
            self._authenticated()
            return None
        self._out += self._security_failed()
        self._machine.process(ServerInput.FAIL)
        self._pending.append(AuthenticationFailed(reason))
        return None

    def _on_client_init(self):
        raw = self._take(1)
        if raw is None:
            return NEED_DATA
        self._machine.process(ServerInput.CLIENT_INIT)
        self._pending.append(ClientInitReceived(shared=bool(raw[0])))
        return None

    def _on_message(self):
        parsed = parse_client_message(self._in, self._limits)
        if parsed is NEED_DATA:
            return NEED_DATA
        message, size = parsed
        del self._in[:size]
        self._machine.process(ServerInput.CLIENT_MESSAGE)
        self._pending.append(message)
        return None


ServerConnection.HANDLERS = {
    ServerState.AWAIT_VERSION: ServerConnection._on_version,
    ServerState.AWAIT_SECURITY_CHOICE: ServerConnection._on_security_choice,
    ServerState.AWAIT_VENCRYPT_VERSION: ServerConnection._on_vencrypt_version,
    ServerState.AWAIT_VENCRYPT_SUBTYPE: ServerConnection._on_vencrypt_subtype,
    ServerState.AWAIT_VNC_RESPONSE: ServerConnection._on_vnc_response,
    ServerState.AWAIT_CLIENT_INIT: ServerConnection._on_client_init,
    ServerState.RUNNING: ServerConnection._on_message,
}
