# -*- test-case-name: tests.vncd.test_vencrypt -*-
"""VeNCrypt 0.2 wire constants shared by the server and the client.

The exchange (rfbproto "VeNCrypt", QEMU ``ui/vnc-auth-vencrypt.c``)::

    S->C  U8 0, U8 2                 highest version the server speaks
    C->S  U8 major, U8 minor         the version the client wants
    S->C  U8 ack                     0 = accepted, anything else = refused
    S->C  U8 n, n x U32              subtypes offered
    C->S  U32                        the subtype chosen
    S->C  U8 ack                     1 = accepted, anything else = refused
          TLS handshake, then the subtype's inner authentication

The two acknowledgement bytes have *opposite* senses: 0 means yes for
the version, 1 means yes for the subtype.  A client must send nothing
after its subtype until it has read the second acknowledgement; vncd
closes the connection if it does (STARTTLS command injection defence).

This module knows nothing about sockets, certificates or Twisted.
"""

from __future__ import annotations

__all__ = [
    "VENCRYPT_VERSION", "VERSION_ACCEPT", "VERSION_REJECT", "SUBTYPE_ACCEPT",
    "SUBTYPE_REJECT",
]

#: The only VeNCrypt version vncd speaks (and QEMU accepts).
VENCRYPT_VERSION = (0, 2)

#: Acknowledgement of the client's version: 0 accepts (QEMU writes 1 to refuse).
VERSION_ACCEPT = 0
VERSION_REJECT = 1

#: Acknowledgement of the client's subtype: 1 accepts (QEMU writes 0 to refuse).
SUBTYPE_ACCEPT = 1
SUBTYPE_REJECT = 0
