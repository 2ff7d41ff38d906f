"""The ``secret`` object: a password or key given inline, in a file, or encrypted.

QEMU's ``-object secret,id=ID,data=...|file=...[,format=raw|base64]
[,keyid=KEYID,iv=IV]``.  With ``keyid`` the data is AES-256-CBC
ciphertext (PKCS#7 padded) under the 32-byte key held by the secret
``KEYID`` and the base64 ``iv``; with ``format=base64`` the data (or the
ciphertext) is base64 text, checked by QEMU's rules and then by vncd's
stricter ones (:func:`qbase64_decode`).

Other objects find secrets with :func:`lookup_secret` and read them with
:meth:`Secret.get_bytes` / :meth:`Secret.get_text`.  The data never
appears in an error, a warning, ``repr()`` or ``str()``.

This module knows nothing about TLS or VNC.
"""

from __future__ import annotations

import base64
import re

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from creds.der import PaddingError, unpad_pkcs7
from creds.objects import ObjectError, ObjectRegistry, Prop, UserCreatable
from creds.pem import FileReadError, read_file

__all__ = ["Secret", "lookup_secret", "qbase64_decode", "MAX_SECRET_SIZE"]

#: Largest secret (inline data, file, or decoded result).  Passwords and
#: keys are tens of bytes; 64 KiB leaves room for anything reasonable while
#: keeping a mistaken ``file=`` (a disk image) out of memory.
MAX_SECRET_SIZE = 64 * 1024

#: AES-256 key length and CBC block / IV length, fixed by the format.
_KEY_SIZE = 32
_BLOCK_SIZE = 16

#: The characters QEMU's ``qbase64_decode`` lets through to GLib.
_BASE64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n")

#: One whole base64 text, newlines removed: complete groups of four
#: characters, ``=`` only as the padding of the last group.
_WELL_FORMED = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")


def qbase64_decode(data: bytes, *, check_nul: bool = True) -> bytes:
    """Decode base64 text: QEMU's checks, then vncd's stricter ones.

    QEMU first refuses embedded NUL bytes (when the input has a length,
    i.e. came from a file or ``data=``) and any character outside
    ``A-Z a-z 0-9 + / =`` and newline -- with QEMU's messages -- and then
    lets GLib decode whatever is left, which silently drops an incomplete
    last group, reads ``=`` anywhere as a zero digit, and turns text such as
    ``x`` or ``=====`` into nothing.  vncd refuses those instead: once the
    newlines are dropped, the text must be whole groups of four characters
    with ``=`` only as padding at its end, and it must not be empty.  Text
    that passes decodes exactly as GLib decodes it.
    """
    if check_nul and b"\0" in data:
        raise ObjectError("Base64 data contains embedded NUL characters")
    if not _BASE64_CHARS.issuperset(data):
        raise ObjectError("Base64 data contains invalid characters",
                          hint="base64 uses A-Z, a-z, 0-9, '+', '/', '=' and newlines")
    text = data.replace(b"\n", b"")
    if not text:
        raise ObjectError("Base64 data is empty",
                          hint="format=base64 expects the base64 text of a non-empty value")
    if len(text) % 4:
        raise ObjectError(
            f"Base64 data has {len(text)} characters (newlines aside), not a whole "
            "number of 4-character groups",
            hint="the text looks cut short; QEMU would silently drop the incomplete group")
    if not _WELL_FORMED.match(text):
        raise ObjectError(
            f"Base64 padding '=' at character {text.index(b'=') + 1} of {len(text)} is "
            "not at the end",
            hint="'=' may only pad the last group ('xx==' or 'xxx='); QEMU would read "
                 "it as a zero digit")
    return base64.b64decode(text, validate=True)


def lookup_secret(registry: ObjectRegistry, secret_id: str) -> "Secret":
    """The secret with id ``secret_id``, with QEMU's messages when there is none."""
    obj = registry.get(secret_id)
    if obj is None:
        raise ObjectError(f"No secret with id '{secret_id}'",
                          hint="create it first: -object secret,id=ID,file=FILE",
                          check="secret")
    if not isinstance(obj, Secret):
        raise ObjectError(f"Object with id '{secret_id}' is not a secret",
                          hint="the property must name a 'secret' object", check="secret")
    return obj


class Secret(UserCreatable):
    """A secret value, loaded and decoded when the object is created."""

    qom_type = "secret"
    props = (
        Prop("data", "str", secret=True, help="the secret value, inline"),
        Prop("file", "str", help="file holding the secret value"),
        Prop("format", "enum", default="raw", choices=("raw", "base64"),
             help="encoding of data/file"),
        Prop("keyid", "str", help="id of the secret holding the AES-256 key"),
        Prop("iv", "str", help="base64 AES-CBC initialisation vector (with keyid)"),
        Prop("loaded", "bool", read_only=True, help="historic; always true"),
    )

    def __init__(self, registry, obj_id, values) -> None:
        super().__init__(registry, obj_id, values)
        self._data: bytes | None = None

    def complete(self, **load_options) -> None:
        raw = self._load()
        if self.get("keyid") is not None:
            value = self._decrypt(raw)
        elif self.get("format") == "base64":
            value = qbase64_decode(raw)
        else:
            value = raw
        self._data = value

    def get_bytes(self) -> bytes:
        """The secret value."""
        if self._data is None:
            raise ObjectError(f"Secret with id '{self.id}' has no data")
        return self._data

    def get_text(self) -> str:
        """The secret value as text; it must be UTF-8 without NUL (QEMU's rule)."""
        data = self.get_bytes()
        try:
            if b"\0" in data:
                raise UnicodeError
            return data.decode("utf-8")
        except UnicodeError:
            raise ObjectError(f"Data from secret {self.id} is not valid UTF-8",
                              hint="store the password as UTF-8 text",
                              check="secret") from None

    # -- loading ----------------------------------------------------------

    def _load(self) -> bytes:
        path = self.get("file")
        data = self.get("data")
        if path is not None:
            if data is not None:
                raise ObjectError("'file' and 'data' are mutually exclusive",
                                  hint="give the secret either inline or in a file")
            try:
                return read_file(path, MAX_SECRET_SIZE)
            except FileReadError as e:
                raise ObjectError(f"Unable to read {path}: {e}", path=path,
                                  check="secret") from None
        if data is None:
            raise ObjectError("Either 'file' or 'data' must be provided",
                              hint="use file=FILE (data= shows the secret in 'ps')")
        raw = data.encode("utf-8", "surrogateescape")
        if len(raw) > MAX_SECRET_SIZE:
            raise ObjectError(f"Secret data is longer than {MAX_SECRET_SIZE} bytes",
                              check="secret")
        if b"\0" in raw:
            raise ObjectError("Secret data contains embedded NUL characters",
                              check="secret")
        return raw

    def _decrypt(self, raw: bytes) -> bytes:
        key = lookup_secret(self.registry, self.get("keyid")).get_bytes()
        if len(key) != _KEY_SIZE:
            raise ObjectError("Key should be 32 bytes in length",
                              hint="the keyid secret must hold 32 random bytes "
                                   "(format=base64 for base64 text)")
        iv_text = self.get("iv")
        if iv_text is None:
            raise ObjectError("IV is required to decrypt secret",
                              hint="add iv= with the base64 of the 16-byte IV used to encrypt")
        iv = qbase64_decode(iv_text.encode("utf-8", "surrogateescape"), check_nul=False)
        if len(iv) != _BLOCK_SIZE:
            raise ObjectError(f"IV should be 16 bytes in length not {len(iv)}",
                              hint="iv= is base64 text of 16 bytes (24 characters)")
        ciphertext = qbase64_decode(raw) if self.get("format") == "base64" else raw
        if len(ciphertext) % _BLOCK_SIZE:
            raise ObjectError(f"Length {len(ciphertext)} must be a multiple of "
                              f"block size {_BLOCK_SIZE}",
                              hint="encrypted data is base64 text: add format=base64")
        if not ciphertext:
            raise ObjectError("Encrypted secret data is empty",
                              hint="AES-CBC with PKCS#7 padding gives at least 16 bytes")
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        plain = decryptor.update(ciphertext) + decryptor.finalize()
        try:
            return unpad_pkcs7(plain, _BLOCK_SIZE)
        except PaddingError as e:
            raise ObjectError(f"Incorrect number of padding bytes ({e.pad}) "
                              "found on decrypted data",
                              hint="wrong key or IV, or the data was not PKCS#7 padded",
                              check="secret") from None
