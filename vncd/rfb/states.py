# -*- test-case-name: tests.vncd.test_rfb_states -*-
"""Every RFB handshake state transition, as data (h11's ``_state.py`` habit).

The server and the client each have one table mapping ``(state, input)``
to the next state.  The parsing code in :mod:`vncd.rfb.server` and
:mod:`vncd.rfb.client` turns bytes into *inputs*; only this module decides
where an input leads.  A pair missing from a table is a bug in vncd (the
parsers produce inputs, not the peer), so :meth:`StateMachine.process`
raises :class:`~vncd.rfb.errors.LocalProtocolError` and leaves the state
unchanged.

The tables encode the security rules that matter most: the server
reaches ``AWAIT_CLIENT_INIT`` only through an input that completes
authentication, and a VeNCrypt connection reaches authentication only
through ``TLS_HANDSHAKE``.

This module knows nothing about bytes, sockets, TLS or Twisted.
"""

from __future__ import annotations

import enum
from typing import Mapping

from vncd.rfb.errors import LocalProtocolError

__all__ = [
    "ServerState", "ServerInput", "SERVER_TRANSITIONS",
    "ClientState", "ClientInput", "CLIENT_TRANSITIONS", "StateMachine",
]


class ServerState(enum.Enum):
    # Members are singletons compared by identity: hash them by identity
    # too, in C, instead of Enum's Python-level hash of the name (these
    # are looked up in the transition table and the state sets several
    # times per message).
    __hash__ = object.__hash__

    #: ProtocolVersion sent; waiting for the client's 12 bytes.
    AWAIT_VERSION = "await-version"
    #: (3.7+) security type list sent; waiting for the client's choice.
    AWAIT_SECURITY_CHOICE = "await-security-choice"
    #: VeNCrypt 0.2 sent; waiting for the client's version.
    AWAIT_VENCRYPT_VERSION = "await-vencrypt-version"
    #: Subtype list sent; waiting for the client's U32 choice.
    AWAIT_VENCRYPT_SUBTYPE = "await-vencrypt-subtype"
    #: Accept byte sent; the layer below runs TLS and checks credentials.
    TLS_HANDSHAKE = "tls-handshake"
    #: DES challenge sent; waiting for the 16-byte response.
    AWAIT_VNC_RESPONSE = "await-vnc-response"
    #: Authenticated; waiting for ClientInit's shared flag.
    AWAIT_CLIENT_INIT = "await-client-init"
    #: ClientInit received; the caller decides (share policy) and sends ServerInit.
    SERVER_INIT_PENDING = "server-init-pending"
    #: ServerInit sent; normal client messages flow.
    RUNNING = "running"
    #: Finished (refused, failed, or closed); nothing more is parsed.
    CLOSED = "closed"


class ServerInput(enum.Enum):
    __hash__ = object.__hash__  # by identity, as ServerState

    #: (3.7+) the client's version is acceptable; security types sent.
    SEND_SECURITY_LIST = "send-security-list"
    #: The DES challenge was sent (VNC authentication starts).
    START_VNC_AUTH = "start-vnc-auth"
    #: The client chose VeNCrypt; version 0.2 sent.
    START_VENCRYPT = "start-vencrypt"
    #: The client's VeNCrypt version is 0.2; subtype list sent.
    VENCRYPT_VERSION_OK = "vencrypt-version-ok"
    #: The client chose our subtype and sent nothing more; accept byte sent.
    START_TLS = "start-tls"
    #: Authentication is complete (None, or a correct VNC response).
    AUTHENTICATED = "authenticated"
    #: ClientInit arrived.
    CLIENT_INIT = "client-init"
    #: ServerInit sent.
    SERVER_INIT = "server-init"
    #: One normal client message parsed.
    CLIENT_MESSAGE = "client-message"
    #: Refusal, authentication failure, peer protocol error or close.
    FAIL = "fail"


_SS = ServerState
_SI = ServerInput

#: (state, input) -> next state for the server side.
SERVER_TRANSITIONS: Mapping[tuple[ServerState, ServerInput], ServerState] = {
    (_SS.AWAIT_VERSION, _SI.SEND_SECURITY_LIST): _SS.AWAIT_SECURITY_CHOICE,
    # RFB 3.3: the server names the type itself, no choice follows.
    (_SS.AWAIT_VERSION, _SI.AUTHENTICATED): _SS.AWAIT_CLIENT_INIT,
    (_SS.AWAIT_VERSION, _SI.START_VNC_AUTH): _SS.AWAIT_VNC_RESPONSE,
    (_SS.AWAIT_SECURITY_CHOICE, _SI.AUTHENTICATED): _SS.AWAIT_CLIENT_INIT,
    (_SS.AWAIT_SECURITY_CHOICE, _SI.START_VNC_AUTH): _SS.AWAIT_VNC_RESPONSE,
    (_SS.AWAIT_SECURITY_CHOICE, _SI.START_VENCRYPT): _SS.AWAIT_VENCRYPT_VERSION,
    (_SS.AWAIT_VENCRYPT_VERSION, _SI.VENCRYPT_VERSION_OK): _SS.AWAIT_VENCRYPT_SUBTYPE,
    (_SS.AWAIT_VENCRYPT_SUBTYPE, _SI.START_TLS): _SS.TLS_HANDSHAKE,
    (_SS.TLS_HANDSHAKE, _SI.AUTHENTICATED): _SS.AWAIT_CLIENT_INIT,
    (_SS.TLS_HANDSHAKE, _SI.START_VNC_AUTH): _SS.AWAIT_VNC_RESPONSE,
    (_SS.AWAIT_VNC_RESPONSE, _SI.AUTHENTICATED): _SS.AWAIT_CLIENT_INIT,
    (_SS.AWAIT_CLIENT_INIT, _SI.CLIENT_INIT): _SS.SERVER_INIT_PENDING,
    (_SS.SERVER_INIT_PENDING, _SI.SERVER_INIT): _SS.RUNNING,
    (_SS.RUNNING, _SI.CLIENT_MESSAGE): _SS.RUNNING,
    **{(state, _SI.FAIL): _SS.CLOSED for state in ServerState if state is not _SS.CLOSED},
}


class ClientState(enum.Enum):
    __hash__ = object.__hash__  # by identity, as ServerState

    #: Waiting for the server's ProtocolVersion.
    AWAIT_VERSION = "await-version"
    #: (3.3) waiting for the U32 security type the server picked.
    AWAIT_SECURITY_TYPE = "await-security-type"
    #: (3.7+) waiting for the list of security types.
    AWAIT_SECURITY_TYPES = "await-security-types"
    #: Waiting for the 16-byte DES challenge.
    AWAIT_VNC_CHALLENGE = "await-vnc-challenge"
    #: Waiting for the server's VeNCrypt version.
    AWAIT_VENCRYPT_VERSION = "await-vencrypt-version"
    #: Our VeNCrypt version sent; waiting for the server's 0 (= OK).
    AWAIT_VENCRYPT_VERSION_ACK = "await-vencrypt-version-ack"
    #: Waiting for the VeNCrypt subtype list.
    AWAIT_VENCRYPT_SUBTYPES = "await-vencrypt-subtypes"
    #: Subtype sent; waiting for the server's 1 (= OK).
    AWAIT_VENCRYPT_SUBTYPE_ACK = "await-vencrypt-subtype-ack"
    #: The layer below runs TLS and checks the server's certificate.
    TLS_HANDSHAKE = "tls-handshake"
    #: Waiting for SecurityResult.
    AWAIT_SECURITY_RESULT = "await-security-result"
    #: ClientInit sent; waiting for ServerInit.
    AWAIT_SERVER_INIT = "await-server-init"
    #: Normal server messages flow.
    RUNNING = "running"
    CLOSED = "closed"


class ClientInput(enum.Enum):
    __hash__ = object.__hash__  # by identity, as ServerState

    #: (3.3) our version sent.
    VERSION_SENT_33 = "version-sent-33"
    #: (3.7+) our version sent.
    VERSION_SENT = "version-sent"
    #: DES challenge expected next (VNC authentication chosen/announced).
    EXPECT_VNC_CHALLENGE = "expect-vnc-challenge"
    #: VeNCrypt chosen.
    CHOSE_VENCRYPT = "chose-vencrypt"
    #: Our VeNCrypt version sent.
    VENCRYPT_VERSION_SENT = "vencrypt-version-sent"
    #: The server accepted our VeNCrypt version.
    VENCRYPT_VERSION_OK = "vencrypt-version-ok"
    #: Our subtype choice sent.
    SUBTYPE_SENT = "subtype-sent"
    #: The server accepted the subtype: TLS starts.
    START_TLS = "start-tls"
    #: SecurityResult expected next (response sent, or None over 3.8/VeNCrypt).
    EXPECT_SECURITY_RESULT = "expect-security-result"
    #: Security finished; ClientInit sent.
    CLIENT_INIT_SENT = "client-init-sent"
    #: ServerInit received.
    SERVER_INIT = "server-init"
    #: One normal server message parsed.
    SERVER_MESSAGE = "server-message"
    FAIL = "fail"


_CS = ClientState
_CI = ClientInput

#: (state, input) -> next state for the client side.
CLIENT_TRANSITIONS: Mapping[tuple[ClientState, ClientInput], ClientState] = {
    (_CS.AWAIT_VERSION, _CI.VERSION_SENT_33): _CS.AWAIT_SECURITY_TYPE,
    (_CS.AWAIT_VERSION, _CI.VERSION_SENT): _CS.AWAIT_SECURITY_TYPES,
    (_CS.AWAIT_SECURITY_TYPE, _CI.CLIENT_INIT_SENT): _CS.AWAIT_SERVER_INIT,
    (_CS.AWAIT_SECURITY_TYPE, _CI.EXPECT_VNC_CHALLENGE): _CS.AWAIT_VNC_CHALLENGE,
    # RFB 3.7 has no SecurityResult after None.
    (_CS.AWAIT_SECURITY_TYPES, _CI.CLIENT_INIT_SENT): _CS.AWAIT_SERVER_INIT,
    (_CS.AWAIT_SECURITY_TYPES, _CI.EXPECT_SECURITY_RESULT): _CS.AWAIT_SECURITY_RESULT,
    (_CS.AWAIT_SECURITY_TYPES, _CI.EXPECT_VNC_CHALLENGE): _CS.AWAIT_VNC_CHALLENGE,
    (_CS.AWAIT_SECURITY_TYPES, _CI.CHOSE_VENCRYPT): _CS.AWAIT_VENCRYPT_VERSION,
    (_CS.AWAIT_VNC_CHALLENGE, _CI.EXPECT_SECURITY_RESULT): _CS.AWAIT_SECURITY_RESULT,
    (_CS.AWAIT_VENCRYPT_VERSION, _CI.VENCRYPT_VERSION_SENT): _CS.AWAIT_VENCRYPT_VERSION_ACK,
    (_CS.AWAIT_VENCRYPT_VERSION_ACK, _CI.VENCRYPT_VERSION_OK): _CS.AWAIT_VENCRYPT_SUBTYPES,
    (_CS.AWAIT_VENCRYPT_SUBTYPES, _CI.SUBTYPE_SENT): _CS.AWAIT_VENCRYPT_SUBTYPE_ACK,
    (_CS.AWAIT_VENCRYPT_SUBTYPE_ACK, _CI.START_TLS): _CS.TLS_HANDSHAKE,
    (_CS.TLS_HANDSHAKE, _CI.EXPECT_SECURITY_RESULT): _CS.AWAIT_SECURITY_RESULT,
    (_CS.TLS_HANDSHAKE, _CI.EXPECT_VNC_CHALLENGE): _CS.AWAIT_VNC_CHALLENGE,
    (_CS.AWAIT_SECURITY_RESULT, _CI.CLIENT_INIT_SENT): _CS.AWAIT_SERVER_INIT,
    (_CS.AWAIT_SERVER_INIT, _CI.SERVER_INIT): _CS.RUNNING,
    (_CS.RUNNING, _CI.SERVER_MESSAGE): _CS.RUNNING,
    **{(state, _CI.FAIL): _CS.CLOSED for state in ClientState if state is not _CS.CLOSED},
}


class StateMachine:
    """The current state of one side, moved only through its table."""

    def __init__(self, table: Mapping[tuple[enum.Enum, enum.Enum], enum.Enum],
                 initial: enum.Enum) -> None:
        self._table = table
        self.state = initial

    def process(self, event: enum.Enum) -> enum.Enum:
        """Apply ``event``; raise :class:`LocalProtocolError` if the table forbids it."""
        try:
            new_state = self._table[(self.state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"no transition for {event.name} in state {self.state.name}") from None
        self.state = new_state
        return new_state
