"""Checking a private key in a child process, so the check does not stall this one.

Loading an RSA key with ``cryptography`` validates it (the primes, the CRT
values), which takes tens of milliseconds for 2048 bits and far longer
for bigger keys, and holds the interpreter lock all along: run in a
worker thread, it still stops every other thread of the process -- a
server's event loop included.  Decrypting a key (PBKDF2) is the same.

:func:`check_in_child` is a :data:`~creds.tlscreds.KeyLoader` that does
this work in a short-lived ``python -m creds.keycheck`` child: the child
parses, decrypts and fully checks the key with
:func:`creds.pem.parse_private_key`, and sends back the key in
unencrypted PKCS#8 DER, or the fault.  This process then loads those very
bytes with RSA validation skipped (the child validated them), which takes
well under a millisecond.  Key file, password and key travel over the
child's standard input and output only.

Call it from a worker thread: it blocks until the child answers (at most
:data:`CHECK_TIMEOUT` seconds), without holding the interpreter lock.

This module knows nothing about TLS sessions, VNC or the object registry.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys

from cryptography.hazmat.primitives import serialization

from creds.pem import (
    MAX_FILE_SIZE, SUPPORTED_KEY_TYPES, Fault, PEMError, parse_private_key,
)

__all__ = ["check_in_child", "CHECK_TIMEOUT", "MAX_PASSWORD", "MAX_ANSWER"]

#: Seconds the child may take.  Starting Python and importing
#: ``cryptography`` takes about 0.15 s, checking an RSA 4096 key about
#: 0.5 s, decrypting a key with :data:`creds.pem.MAX_PBKDF2_ITERATIONS`
#: PBKDF2 rounds some seconds on a slow machine; a child still busy after
#: a minute is stuck.
CHECK_TIMEOUT = 60.0

#: Longest key password sent to the child: secrets are at most 64 KiB
#: (:data:`creds.secret.MAX_SECRET_SIZE`).
MAX_PASSWORD = 64 * 1024

#: Longest answer accepted from the child: the PKCS#8 DER of a 16384-bit
#: RSA key is about 9.5 KiB, a fault's description a few hundred bytes.
MAX_ANSWER = 64 * 1024

_LENGTH = struct.Struct(">I")
_KEY = b"K"
_FAULT = b"F"
_NO_PASSWORD = 0xFFFFFFFF

#: The directory that holds the ``creds`` package: the child runs from it,
#: so it imports this very copy of ``creds``.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def check_in_child(data: bytes, password: bytes | None) -> object:
    """The private key in ``data``, parsed and checked in a child process.

    Same contract as :func:`creds.pem.parse_private_key`: raises
    :class:`~creds.pem.PEMError` for a bad key; a child that fails, is
    killed or takes longer than :data:`CHECK_TIMEOUT` also gives
    :class:`~creds.pem.PEMError` (kind ``CHECK``), saying so.
    """
    if len(data) > MAX_FILE_SIZE or (password is not None and len(password) > MAX_PASSWORD):
        raise PEMError(Fault.LIMIT, "the key or its password is too large to check")
    request = _LENGTH.pack(len(data)) + data
    if password is None:
        request += _LENGTH.pack(_NO_PASSWORD)
    else:
        request += _LENGTH.pack(len(password)) + password
    try:
        done = subprocess.run(
            [sys.executable, "-E", "-s", "-m", "creds.keycheck"], input=request,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=_PACKAGE_ROOT,
            timeout=CHECK_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise PEMError(Fault.CHECK, f"checking the key took longer than {CHECK_TIMEOUT:.0f} s"
                                    " (the checking process was stopped)") from None
    except OSError as e:
        raise PEMError(Fault.CHECK, f"the key could not be checked: cannot start "
                                    f"{sys.executable}: {os.strerror(e.errno or 0)}") from None
    answer = done.stdout
    if done.returncode != 0 or not answer or len(answer) > MAX_ANSWER:
        raise PEMError(Fault.CHECK, "the key could not be checked: the checking process "
                                    f"failed (exit status {done.returncode})")
    kind, body = answer[:1], answer[1:]
    if kind == _FAULT:
        fault = json.loads(body.decode("utf-8"))
        raise PEMError(Fault(fault["kind"]), fault["detail"])
    if kind != _KEY:
        raise PEMError(Fault.CHECK, "the key could not be checked: the checking process "
                                    "gave no answer")
    key = serialization.load_der_private_key(body, None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, SUPPORTED_KEY_TYPES):
        raise PEMError(Fault.CHECK, "the checking process returned an unusable key")
    return key


def _child(stdin, stdout) -> int:
    """Child side: read key file and password, answer with the key or the fault."""
    data = _read_field(stdin, MAX_FILE_SIZE)
    password = _read_field(stdin, MAX_PASSWORD)
    try:
        key = parse_private_key(data, password)
    except PEMError as e:
        stdout.write(_FAULT + json.dumps({"kind": e.kind.value, "detail": e.detail}).encode())
        return 0
    stdout.write(_KEY + key.private_bytes(serialization.Encoding.DER,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return 0


def _read_field(stream, limit: int) -> bytes | None:
    size = _LENGTH.unpack(_read_exact(stream, _LENGTH.size))[0]
    if size == _NO_PASSWORD:
        return None
    if size > limit:
        raise ValueError("field over its limit")
    return _read_exact(stream, size)


def _read_exact(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise ValueError("truncated request")
    return data


if __name__ == "__main__":
    # A parent that blocks signals to wait for them in a thread (vncd
    # does, for SIGTERM and SIGINT) passes its mask on; this process must
    # stay stoppable by them.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    sys.exit(_child(sys.stdin.buffer, sys.stdout.buffer))
