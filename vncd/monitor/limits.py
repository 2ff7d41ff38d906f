# -*- test-case-name: tests.vncd.monitor.test_limits -*-
"""Every limit the monitor puts on a peer, named, with the reason for its value.

The monitor's peers are administrators' tools, but a monitor socket may
be reachable by anyone who can connect to it (a TCP port, a UNIX socket
with loose permissions on its directory): what one connection can make
vncd hold is bounded here, as :mod:`vncd.rfb.limits` bounds a VNC client.

This module knows nothing about sockets, JSON or Twisted.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MonitorLimits"]

#: Bytes of one QMP message (a JSON object, whitespace excluded).  The
#: largest legitimate request is an ``object-add`` of an authz-list with
#: its most rules (1024 rules of a few hundred bytes) or of a secret with
#: its largest inline data (64 KiB, base64 a third more): well under
#: 1 MiB.  QEMU allows 64 MiB, which lets one client make it hold that
#: much per connection.
MAX_MESSAGE_BYTES = 1 << 20

#: Tokens of one QMP message.  An authz-list with 1024 rules of three
#: members each is about 16,000 tokens; 64 Ki leaves room and bounds the
#: parser's work per message.  (QEMU: 2 Mi.)
MAX_MESSAGE_TOKENS = 64 * 1024

#: Nesting of arrays and objects in one message.  The deepest legitimate
#: request (``object-add`` of authz-list rules) nests four levels; the
#: parser recurses once per level, so this also bounds its stack.
#: (QEMU: 1024.)
MAX_NESTING = 32

#: Requests read but not yet answered on one connection.  While this
#: many wait (an ``object-add`` loading certificates off the reactor
#: thread, say), vncd stops reading from the connection, so a client that
#: pipelines requests waits instead of queueing without bound.  QEMU's
#: queue holds 8 with out-of-band commands enabled, 1 without.
MAX_PENDING_REQUESTS = 8

#: Bytes of replies and events queued for a client that does not read.
#: A busy display emits three events per connecting VNC client (a few
#: hundred bytes each); 8 MiB is tens of thousands of events, and a
#: client that far behind is dropped rather than let vncd's memory grow.
MAX_PENDING_OUTPUT = 8 << 20

#: Characters of one HMP command line: QEMU's readline buffer is 4095.
MAX_HMP_LINE = 4096

#: Seconds a client of a TLS monitor has to finish its TLS handshake.
#: The VNC handshake allows 60 s for a person typing a password; a
#: monitor client is a program.
TLS_HANDSHAKE_TIMEOUT = 30.0

#: Connections one monitor serves at once.  QEMU serves exactly one per
#: monitor chardev and leaves further connections waiting in the listen
#: queue; vncd serves several (an administrator's shell next to a
#: management daemon) but bounds them.
MAX_CONNECTIONS = 16


@dataclass(frozen=True)
class MonitorLimits:
    """The limits one monitor applies to each of its connections."""

    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_message_tokens: int = MAX_MESSAGE_TOKENS
    max_nesting: int = MAX_NESTING
    max_pending_requests: int = MAX_PENDING_REQUESTS
    max_pending_output: int = MAX_PENDING_OUTPUT
    max_hmp_line: int = MAX_HMP_LINE
    tls_handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if value <= 0:
                raise ValueError(f"monitor limit {name} must be positive")
