# -*- test-case-name: tests.vncd.test_limits -*-
"""Every limit vncd puts on a peer, named, with the reason for its value.

The protocol cores (:mod:`vncd.rfb.server`, :mod:`vncd.rfb.client`) and
the Twisted edge (:mod:`vncd.server`) take one :class:`Limits` object
rather than loose keyword arguments (h2's habit); the module constants
are its defaults.

This module knows nothing about sockets, TLS or Twisted.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]

#: ClientCutText payload.  QEMU's limit (``client_cut_text msg payload ...
#: exceeds our limit of 1MB``); a longer message disconnects as soon as
#: its length field is read, before any of the payload is kept.
MAX_CUT_TEXT = 1 << 20

#: Entries in one SetEncodings.  Every encoding and pseudo-encoding in
#: rfbproto, with all quality/compression/subsampling levels, is under 300
#: numbers; real viewers send 10-40.  A longer list is garbage or an
#: attempt to make us parse it.
MAX_ENCODINGS = 1024

#: Payload of a Fence message: rfbproto fixes it at 64 bytes at most.
MAX_FENCE_PAYLOAD = 64

#: Bytes of the desktop name sent in ServerInit (QEMU formats it into a
#: 1024-byte buffer); longer names are cut.
MAX_SERVER_NAME = 1024

#: Time from accept to ServerInit.  Long enough for a person to type a
#: password into a viewer's dialog, short enough that a stalled or
#: half-open client does not keep one of the ``connections=`` slots.
#: (QEMU has no timeout; neatvnc uses 30 s, x11vnc 20 s.)
HANDSHAKE_TIMEOUT = 60.0

#: Time a connection we are closing may take to accept its last bytes
#: (a refusal reason) before it is cut.
CLOSE_TIMEOUT = 10.0

#: Output queued for one client beyond which it is disconnected.  The
#: transport stops taking output at its high-water mark (Twisted's 64 KiB
#: socket buffer) and the updates object generates no more until told the
#: client is writable again, so the queue holds at most about one update:
#: a full-screen Raw update of a 3840x2160 32-bpp screen is 33 MB, and
#: twice that leaves room for small messages queued behind it.  More
#: means the client is not reading.
MAX_PENDING_OUTPUT = 64 * 1024 * 1024

#: Authentication failures from one address before it is refused
#: (TigerVNC's blacklist threshold).  QEMU has no throttling.
AUTH_FAILURES_BEFORE_BLOCK = 5

#: First refusal period after too many failures; doubles with every
#: further failure up to :data:`AUTH_BLOCK_MAX`.  Small enough that a
#: person who mistyped does not wait long.
AUTH_BLOCK_INITIAL = 10.0

#: Longest refusal period: slows a guessing attack to a handful of tries
#: per hour without locking out a legitimate user for long.
AUTH_BLOCK_MAX = 900.0

#: An address with no failure for this long is forgotten.
AUTH_FORGET_AFTER = 3600.0

#: Addresses tracked by the throttle; beyond it the least recently
#: failing address is forgotten, so the table cannot grow without bound.
AUTH_MAX_TRACKED = 4096

#: Unfinished handshakes one source may hold at once; beyond it the
#: source's own oldest one is dropped.  One address is one machine or one
#: NAT: 16 viewers starting together is more than a person or an office
#: needs (benchmarks.connections runs 16 clients from 127.0.0.1), and it
#: is half of QEMU's default ``connections=32``, so one address never
#: holds more than half of the slots and cannot push out the clients of
#: other addresses.
MAX_HANDSHAKES_PER_SOURCE = 16

#: IPv6 peers count as one source per network of this prefix length: a
#: single host usually holds a whole /64 and can pick any address in it,
#: so counting addresses would let it pose as millions of sources.
IPV6_SOURCE_PREFIX = 64

#: Seconds over which repeated log lines of one kind from one source are
#: counted and reported as one summary line (after the first, logged in
#: full), so the log grows by at most a few lines per source per window.
LOG_SUMMARY_WINDOW = 10.0

#: (source, kind) pairs the log summariser tracks.  Each is a few hundred
#: bytes; a source has about ten kinds, so this keeps about 400 sources
#: apart.  Events from sources beyond it are counted together, as "other
#: addresses", so neither memory nor log lines grow with the number of
#: sources an attacker can use.
LOG_MAX_TRACKED = 4096

#: Longest reason string the client accepts from a server.
MAX_REASON = 64 * 1024

#: Largest framebuffer (pixels) the client accepts: 8K UHD is 33 M
#: pixels; at 4 bytes each this bounds the client's buffer at 256 MiB.
MAX_CLIENT_FRAMEBUFFER_PIXELS = 64 * 1024 * 1024

#: Largest ServerCutText the client accepts (the same as ours).
MAX_SERVER_CUT_TEXT = MAX_CUT_TEXT


@dataclass(frozen=True)
class Limits:
    """The limits one listener (or one client connection) applies."""

    max_cut_text: int = MAX_CUT_TEXT
    max_encodings: int = MAX_ENCODINGS
    max_server_name: int = MAX_SERVER_NAME
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    close_timeout: float = CLOSE_TIMEOUT
    max_pending_output: int = MAX_PENDING_OUTPUT
    auth_failures_before_block: int = AUTH_FAILURES_BEFORE_BLOCK
    auth_block_initial: float = AUTH_BLOCK_INITIAL
    auth_block_max: float = AUTH_BLOCK_MAX
    auth_forget_after: float = AUTH_FORGET_AFTER
    auth_max_tracked: int = AUTH_MAX_TRACKED
    max_handshakes_per_source: int = MAX_HANDSHAKES_PER_SOURCE
    ipv6_source_prefix: int = IPV6_SOURCE_PREFIX
    log_summary_window: float = LOG_SUMMARY_WINDOW
    log_max_tracked: int = LOG_MAX_TRACKED
    max_reason: int = MAX_REASON
    max_client_framebuffer_pixels: int = MAX_CLIENT_FRAMEBUFFER_PIXELS
    max_server_cut_text: int = MAX_SERVER_CUT_TEXT

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if value < 0:
                raise ValueError(f"limit {name} must not be negative")
        if self.max_handshakes_per_source < 1:
            raise ValueError("limit max_handshakes_per_source must be at least 1")
        if self.ipv6_source_prefix > 128:
            raise ValueError("limit ipv6_source_prefix must be at most 128")

    @property
    def max_receive_buffer(self) -> int:
        """Unparsed input one connection may hold: the longest legal client
        message (a maximal ClientCutText, or a maximal SetEncodings) plus one
        read's worth of what follows it."""
        longest = max(8 + self.max_cut_text, 4 + 4 * self.max_encodings)
        return longest + 256 * 1024
