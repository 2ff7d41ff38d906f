"""The one DER reader of the creds package, and PKCS#7 unpadding.

:func:`element` reads one tag-length-value element.  Two modes:

* strict (the default): the element must be complete DER with a definite
  length, as :mod:`creds.pem` needs for keys, PBES2 envelopes and DH
  parameters;
* ``libtasn1=True``: the way libtasn1 (GnuTLS) reads tags and lengths,
  which differs from strict DER only at the very end of the input
  (missing length bytes are not read, a missing length is zero); used by
  :mod:`creds.dn` to print names exactly as GnuTLS does.

Both refuse indefinite lengths, lengths of 2**31 or more, tag numbers
over 32 bits and elements that end beyond ``end``.  Errors are
:class:`DERError` (a ``ValueError``).
"""

from __future__ import annotations

__all__ = ["DERError", "PaddingError", "element", "children", "unpad_pkcs7",
           "MAX_TAG_NUMBER", "MAX_LENGTH", "SEQUENCE", "SET", "OID", "INTEGER"]

#: Largest tag number in the high-tag-number form (libtasn1 reads 32 bits).
MAX_TAG_NUMBER = 2 ** 32 - 1
#: Lengths from this one on are refused (libtasn1 uses a signed int).
MAX_LENGTH = 2 ** 31 - 1

SEQUENCE = 0x30
SET = 0x31
OID = 0x06
INTEGER = 0x02


class DERError(ValueError):
    """The bytes are not the DER element expected."""


def element(buf: bytes, pos: int = 0, end: int | None = None, *,
            libtasn1: bool = False) -> tuple[int, int, int]:
    """``(first tag byte, content start, content end)`` of the element at ``pos``.

    The element must end by ``end`` (default: the end of ``buf``).
    """
    if end is None:
        end = len(buf)
    if len(buf) - pos < 2:
        raise DERError("truncated DER")
    tag = buf[pos]
    pos += 1
    if tag & 0x1F == 0x1F:
        # High tag number form: base-128.
        number = 0
        while True:
            if pos >= len(buf):
                raise DERError("truncated DER tag")
            byte = buf[pos]
            pos += 1
            number = (number << 7) | (byte & 0x7F)
            if number > MAX_TAG_NUMBER:
                raise DERError("DER tag number too large")
            if not byte & 0x80:
                break
    length, pos = _length(buf, pos, libtasn1)
    if pos + length > end:
        raise DERError("truncated DER")
    return tag, pos, pos + length


def _length(buf: bytes, pos: int, libtasn1: bool) -> tuple[int, int]:
    remaining = len(buf) - pos
    if remaining <= 0:
        if libtasn1:
            return 0, pos  # nothing after the tag: libtasn1 reads length zero
        raise DERError("truncated DER length")
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if count == 0:
        raise DERError("indefinite length (BER, not DER)")
    if not libtasn1 and count >= remaining:
        raise DERError("truncated DER length")
    value = 0
    used = 1
    # libtasn1 does not read length bytes missing at the end of the input.
    while used <= count and used < remaining:
        value = (value << 8) | buf[pos + used]
        if value > MAX_TAG_NUMBER:
            raise DERError("bad DER length")
        used += 1
    if value >= MAX_LENGTH:
        raise DERError("bad DER length")
    return value, pos + used


def children(buf: bytes, start: int, end: int, *, tag: int | None = None,
             libtasn1: bool = False) -> list[tuple[int, int, int, int]]:
    """``(element start, tag, content start, content end)`` of every element in
    ``buf[start:end]``, which they must fill exactly; each must have ``tag``
    when one is given."""
    out = []
    pos = start
    while pos < end:
        etag, cstart, cend = element(buf, pos, end, libtasn1=libtasn1)
        if tag is not None and etag != tag:
            raise DERError(f"expected tag {tag:#04x}, found {etag:#04x}")
        out.append((pos, etag, cstart, cend))
        pos = cend
    return out


def unpad_pkcs7(plain: bytes, block_size: int = 16) -> bytes:
    """``plain`` without its PKCS#7 padding; :class:`PaddingError` (naming the
    last byte) when the padding is wrong."""
    pad = plain[-1] if plain else 0
    if not 0 < pad <= block_size or len(plain) < pad or plain[-pad:] != bytes([pad]) * pad:
        raise PaddingError(pad)
    return plain[:-pad]


class PaddingError(ValueError):
    """PKCS#7 padding that does not check out; ``pad`` is the last byte."""

    def __init__(self, pad: int) -> None:
        super().__init__(f"bad PKCS#7 padding ({pad})")
        self.pad = pad
