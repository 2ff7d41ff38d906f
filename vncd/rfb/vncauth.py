# -*- test-case-name: tests.vncd.test_vncauth -*-
"""VNC authentication (RFB security type 2): the DES challenge-response.

The server sends 16 random bytes; the client encrypts them with DES in
ECB mode, keyed by the password truncated or zero-padded to 8 bytes with
the bit order of every byte reversed (RFB treats the lowest bit of each
key byte as the first).  This is weak, legacy cryptography that RFB
requires; it is only ever as good as the TLS around it.

DES is taken from ``cryptography``'s ``decrepit`` module as TripleDES
with the key repeated three times (which is single DES).  This module
knows nothing about certificates, sockets or the RFB state machine.
"""

from __future__ import annotations

import hmac
import threading

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

__all__ = [
    "CHALLENGE_SIZE", "PASSWORD_BYTES", "des_key", "challenge_response",
    "check_response", "is_empty_password",
]

#: Length of the challenge and of the response (two DES blocks).
CHALLENGE_SIZE = 16

#: Only this many password bytes take part; longer passwords are cut, as
#: by every VNC server and viewer (the DES key is 8 bytes).
PASSWORD_BYTES = 8

_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def is_empty_password(password: bytes) -> bool:
    """True when ``password`` gives the empty password's key (no byte but NUL
    among the first :data:`PASSWORD_BYTES`): any client that sends an empty
    password would pass."""
    return not password[:PASSWORD_BYTES].strip(b"\0")


def des_key(password: bytes) -> bytes:
    """The 8-byte DES key RFB derives from ``password``."""
    padded = password[:PASSWORD_BYTES].ljust(PASSWORD_BYTES, b"\0")
    return padded.translate(_REVERSED)


#: Each thread's last DES encryptor and its key.  Setting up a cipher
#: context in OpenSSL 3 (fetching the algorithm from its provider) costs
#: about five times as much as the two blocks it then encrypts, and a
#: server answers every challenge with the same password; ECB keeps no
#: state between blocks, so one context serves every challenge.  Per
#: thread, because a context must not be used by two threads at once.
_last_encryptor = threading.local()


def _encryptor(key: bytes):
    """A DES-ECB encryptor for ``key``, reused while the key stays the same."""
    cached = getattr(_last_encryptor, "entry", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    _last_encryptor.entry = (key, encryptor)
    return encryptor


def challenge_response(password: bytes, challenge: bytes) -> bytes:
    """The response a client holding ``password`` sends for ``challenge``."""
    if len(challenge) != CHALLENGE_SIZE:
        raise ValueError(f"a VNC challenge is {CHALLENGE_SIZE} bytes")
    # Whole blocks only: the encryptor never holds a partial block.
    return _encryptor(des_key(password)).update(challenge)


def check_response(password: bytes | None, challenge: bytes, response: bytes) -> bool:
    """True when ``response`` proves knowledge of ``password`` (constant time).

    ``password=None`` (none set) and an empty password (see
    :func:`is_empty_password`) never match: proving knowledge of nothing
    proves nothing.
    """
    if password is None or is_empty_password(password) or len(response) != CHALLENGE_SIZE:
        return False
    return hmac.compare_digest(challenge_response(password, challenge), response)
