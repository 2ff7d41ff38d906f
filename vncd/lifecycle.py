# -*- test-case-name: tests.vncd.test_lifecycle -*-
"""The life of one client connection after accept, as one transition table.

:mod:`vncd.rfb.states` says where the RFB handshake stands; this module
says where the *connection* stands: handshaking or serving, paused
because the transport's buffer is full, closing after our last bytes,
cut, or gone.  :class:`vncd.server.RFBServerProtocol` turns what happens
to it (the transport connected, ServerInit went out, the transport paused
or resumed it, it decided to close or to cut, the transport reported the
connection lost) into the *inputs* below and asks :data:`TRANSITIONS`
where they lead, through :class:`~vncd.rfb.states.StateMachine`; a pair
missing from the table is a bug in vncd and raises
:class:`~vncd.rfb.errors.LocalProtocolError`.

What the protocol does on a transition (counting the client for QEMU's
``connections=`` rule, telling observers it connected, was initialized
or disconnected, logging) follows from the states on either side of it,
so each of those happens exactly once per connection.  The predicates
:data:`LIVE`, :data:`HANDSHAKE` and :data:`PAUSED` are the only
questions the protocol asks of a state.

This module knows nothing about bytes, sockets, TLS or Twisted.
"""

from __future__ import annotations

import enum
from typing import Mapping

__all__ = ["Life", "LifeInput", "TRANSITIONS", "LIVE", "HANDSHAKE", "PAUSED"]


class Life(enum.Enum):
    __hash__ = object.__hash__  # by identity, as vncd.rfb.states.ServerState

    #: The protocol exists; the transport has not connected it yet.
    NEW = "new"
    #: Accepted; the RFB handshake (version, security, ClientInit) runs.
    HANDSHAKING = "handshaking"
    #: Handshaking, and the transport's buffer is full: the client is not
    #: read and our output waits in the protocol's own queue.
    HANDSHAKING_PAUSED = "handshaking-paused"
    #: ServerInit sent; client messages and updates flow.
    SERVING = "serving"
    #: Serving, and the transport's buffer is full: the client is not read,
    #: output is queued and the updates object waits to be told "writable".
    PAUSED = "paused"
    #: We closed: our last bytes (a refusal reason, close_notify) are
    #: flushing and the close timer runs; nothing more is read or written.
    CLOSING = "closing"
    #: We cut the connection at once (a limit, the share policy, a timer);
    #: the transport has not reported it lost yet.
    ABORTED = "aborted"
    #: The transport reported the connection lost.  Final.
    CLOSED = "closed"


class LifeInput(enum.Enum):
    __hash__ = object.__hash__  # by identity, as vncd.rfb.states.ServerState

    #: The transport connected the protocol (``connectionMade``).
    ACCEPTED = "accepted"
    #: ServerInit was queued for the client.
    SERVER_INIT_SENT = "server-init-sent"
    #: The transport's buffer passed its high-water mark (``pauseProducing``).
    TRANSPORT_PAUSED = "transport-paused"
    #: The transport drained its buffer (``resumeProducing``).
    TRANSPORT_RESUMED = "transport-resumed"
    #: vncd closes after flushing (refusal, failed authentication, protocol
    #: error, ``close()`` from the updates object).
    WE_CLOSE = "we-close"
    #: The client ended the session inside the stream (TLS close_notify,
    #: WebSocket close frame); vncd answers and closes after flushing.
    PEER_CLOSED = "peer-closed"
    #: vncd cuts the connection without flushing (QEMU's disconnect).
    DROPPED = "dropped"
    #: The transport reported the connection lost (``connectionLost``).
    LOST = "lost"


_L = Life
_I = LifeInput

#: States in which the connection holds a place on its display: it is
#: counted by QEMU's rules, listed to the monitor, and leaving them is
#: "disconnected".
LIVE = frozenset({_L.HANDSHAKING, _L.HANDSHAKING_PAUSED, _L.SERVING, _L.PAUSED})

#: Live states before ServerInit (QEMU's share mode "connecting").
HANDSHAKE = frozenset({_L.HANDSHAKING, _L.HANDSHAKING_PAUSED})

#: Live states in which the transport has paused us.
PAUSED = frozenset({_L.HANDSHAKING_PAUSED, _L.PAUSED})

#: (state, input) -> next state.
TRANSITIONS: Mapping[tuple[Life, LifeInput], Life] = {
    (_L.NEW, _I.ACCEPTED): _L.HANDSHAKING,
    (_L.HANDSHAKING, _I.SERVER_INIT_SENT): _L.SERVING,
    (_L.HANDSHAKING, _I.TRANSPORT_PAUSED): _L.HANDSHAKING_PAUSED,
    (_L.HANDSHAKING_PAUSED, _I.TRANSPORT_RESUMED): _L.HANDSHAKING,
    # Bytes read before the pause may complete the handshake meanwhile.
    (_L.HANDSHAKING_PAUSED, _I.SERVER_INIT_SENT): _L.PAUSED,
    (_L.SERVING, _I.TRANSPORT_PAUSED): _L.PAUSED,
    (_L.PAUSED, _I.TRANSPORT_RESUMED): _L.SERVING,
    **{(state, _I.WE_CLOSE): _L.CLOSING for state in LIVE},
    **{(state, _I.PEER_CLOSED): _L.CLOSING for state in LIVE},
    **{(state, _I.DROPPED): _L.ABORTED for state in LIVE},
    **{(state, _I.LOST): _L.CLOSED for state in LIVE},
    # The close timer expired before the client took our last bytes.
    (_L.CLOSING, _I.DROPPED): _L.ABORTED,
    (_L.CLOSING, _I.LOST): _L.CLOSED,
    (_L.ABORTED, _I.LOST): _L.CLOSED,
}
