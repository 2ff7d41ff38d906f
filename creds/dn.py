"""Distinguished names printed exactly as GnuTLS 3.7 prints them for QEMU.

QEMU 7.2 authorizes a TLS client by the string ``gnutls_x509_crt_get_dn()``
returns for the client certificate's subject, compared byte for byte with
the ``identity`` of an ``authz-simple`` object (or the rules of an
``authz-list``).  An administrator's existing identities must keep
matching, so :func:`certificate_dn` reproduces that string exactly:

* RDNs in the order they are encoded in the certificate (``C=UK,CN=qemu``,
  not the reversed RFC 4514 order ``CN=qemu,C=UK`` most libraries print),
  separated by ``,``; the attributes of a multi-valued RDN in encoding
  order, separated by ``+``;
* GnuTLS' attribute names (``C``, ``CN``, ``EMAIL``, ``DC``, ``UID``,
  ``serialNumber``, ``title``, ``street``...), the dotted OID otherwise;
* values of a known attribute in the string type GnuTLS expects are
  printed as text (BMPString converted to UTF-8, a TeletexString only when
  it is printable ASCII) with ``, + " \\ < > ;`` escaped by a backslash, and
  a leading ``#`` or space and a trailing space escaped too; anything else
  (an unknown OID, an unexpected string type, a NUL inside) is printed as
  ``#`` and the lowercase hex of the value's DER encoding;
* the same failures GnuTLS reports (no subject at all, an OID longer than
  its 126-character buffer, a malformed name), as :class:`DNError` carrying
  GnuTLS' error text, which QEMU puts into "Cannot get client distinguished
  name: <text>".

The rules were established against libgnutls 3.7.9 (Debian 12, the library
QEMU 7.2 uses there) and are pinned by differential tests.

This module reads the DER itself (with :mod:`creds.der`), because the
order and string types of the encoding matter and ``cryptography``'s ``x509.Name``
normalises both.  It knows nothing about TLS sessions or VNC.
"""

from __future__ import annotations

from cryptography import x509

from creds import der

__all__ = [
    "DNError",
    "certificate_dn",
    "issuer_dn",
    "name_dn",
    "name_dn_bytes",
    "MAX_NAME_DER_LENGTH",
    "MAX_OID_TEXT_LENGTH",
]

#: Largest encoded name accepted: OpenSSL refuses certificate lists longer
#: than 100 KiB in a handshake, so no peer certificate holds a longer name.
MAX_NAME_DER_LENGTH = 100 * 1024

#: GnuTLS reads each attribute OID into a 128-byte buffer (``MAX_OID_SIZE``)
#: and fails the whole name when the dotted text does not fit with its NUL.
MAX_OID_TEXT_LENGTH = 126

#: GnuTLS' error texts (``gnutls_strerror``) for the failures it reports.
ERR_NOT_AVAILABLE = "The requested data were not available."
ERR_SHORT_BUFFER = "The given memory buffer is too short to hold parameters."
ERR_DER = "ASN1 parser: Error in DER parsing."
ERR_VALUE = "ASN1 parser: Value is not valid."

# Universal tags of the string types involved.
_UTF8, _PRINTABLE, _TELETEX, _IA5, _UNIVERSAL, _BMP = 0x0C, 0x13, 0x14, 0x16, 0x1C, 0x1E
_OCTET, _NUMERIC = 0x04, 0x12
_SEQUENCE, _SET, _OID = 0x30, 0x31, 0x06

#: ``DirectoryString`` as GnuTLS 3.7 declares it (no IA5String alternative).
_DIRECTORY_STRING = frozenset({_TELETEX, _PRINTABLE, _UNIVERSAL, _UTF8, _BMP})
#: PKCS #9 ``challengePassword``: PrintableString or UTF8String.
_CHALLENGE = frozenset({_PRINTABLE, _UTF8})

_DIR = "directory-string"
_CHAL = "challenge-password"

#: GnuTLS 3.7.9's table of known name attributes: OID -> (printed name or
#: ``None`` for "print the OID", and how the value is decoded: a
#: DirectoryString, a challengePassword, or the one universal tag allowed).
_KNOWN: dict[str, tuple[str | None, object]] = {
    "1.3.6.1.5.5.7.9.2": ("placeOfBirth", _DIR),
    "1.3.6.1.5.5.7.9.3": ("gender", _PRINTABLE),
    "1.3.6.1.5.5.7.9.4": ("countryOfCitizenship", _PRINTABLE),
    "1.3.6.1.5.5.7.9.5": ("countryOfResidence", _PRINTABLE),
    "2.5.4.6": ("C", _PRINTABLE),
    "2.5.4.9": ("street", _DIR),
    "2.5.4.12": ("title", _DIR),
    "2.5.4.10": ("O", _DIR),
    "2.5.4.11": ("OU", _DIR),
    "2.5.4.3": ("CN", _DIR),
    "2.5.4.7": ("L", _DIR),
    "2.5.4.8": ("ST", _DIR),
    "2.5.4.13": ("description", _DIR),
    "2.5.4.5": ("serialNumber", _PRINTABLE),
    "2.5.4.20": ("telephoneNumber", _PRINTABLE),
    "2.5.4.4": ("surName", _DIR),
    "2.5.4.43": ("initials", _DIR),
    "2.5.4.44": ("generationQualifier", _DIR),
    "2.5.4.42": ("givenName", _DIR),
    "2.5.4.65": ("pseudonym", _DIR),
    "2.5.4.46": ("dnQualifier", _PRINTABLE),
    "2.5.4.17": ("postalCode", _DIR),
    "2.5.4.41": ("name", _DIR),
    "2.5.4.15": ("businessCategory", _DIR),
    "0.9.2342.19200300.100.1.25": ("DC", _IA5),
    "0.9.2342.19200300.100.1.1": ("UID", _DIR),
    "1.2.840.113556.1.4.656": ("userPrincipalName", _DIR),
    "1.3.6.1.4.1.311.60.2.1.1": ("jurisdictionOfIncorporationLocalityName", _DIR),
    "1.3.6.1.4.1.311.60.2.1.2": ("jurisdictionOfIncorporationStateOrProvinceName", _DIR),
    "1.3.6.1.4.1.311.60.2.1.3": ("jurisdictionOfIncorporationCountryName", _PRINTABLE),
    "1.2.840.113549.1.9.1": ("EMAIL", _IA5),
    "1.2.840.113549.1.9.7": (None, _CHAL),
    "1.2.840.113549.1.9.20": (None, _BMP),
    "1.2.840.113549.1.9.21": (None, _OCTET),
    "1.2.840.113549.1.9.4": (None, _OCTET),
    "1.3.6.1.5.5.7.8.5": ("XmppAddr", _UTF8),
    "1.2.643.100.1": ("OGRN", _NUMERIC),
    "1.2.643.100.3": ("SNILS", _NUMERIC),
    "1.2.643.100.5": ("OGRNIP", _NUMERIC),
    "1.2.643.3.131.1.1": ("INN", _NUMERIC),
}

#: Bytes RFC 4514 (and GnuTLS) escape wherever they appear.
_SPECIAL = frozenset(b',+"\\<>;')


class DNError(ValueError):
    """The name cannot be printed; ``str()`` is GnuTLS' error text."""


# -- DER reading --------------------------------------------------------------


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int, int]:
    """One element at ``pos``: (first tag byte, content start, content end, element end).

    Read by :mod:`creds.der` the way libtasn1 reads it, which differs from
    strict DER only at the very end of the input (where GnuTLS is lenient;
    a certificate's subject never lies there).  The element must end by
    ``end``.
    """
    try:
        tag, start, stop = der.element(buf, pos, end, libtasn1=True)
    except der.DERError:
        raise DNError(ERR_DER) from None
    return tag, start, stop, stop


def _children(buf: bytes, start: int, end: int, tag: int) -> list[tuple[int, int, int, int]]:
    """The elements inside ``buf[start:end]``, each required to have ``tag``."""
    try:
        return [(pos, cstart, cend, cend) for pos, _, cstart, cend
                in der.children(buf, start, end, tag=tag, libtasn1=True)]
    except der.DERError:
        raise DNError(ERR_DER) from None


def _oid_text(content: bytes) -> str:
    """Dotted text of an OBJECT IDENTIFIER's content, as libtasn1 prints it."""
    if not content:
        raise DNError(ERR_DER)
    arcs: list[int] = []
    value = 0
    started = False
    for byte in content:
        if not started and byte == 0x80:
            # A leading 0x80 would be a non-minimal encoding.
            raise DNError(ERR_DER)
        started = True
        value = (value << 7) | (byte & 0x7F)
        if value >= 1 << 64:
            raise DNError(ERR_DER)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
            started = False
    # libtasn1 drops an unfinished last arc silently.
    if not arcs:
        raise DNError(ERR_DER)
    head = arcs[0]
    if head < 40:
        first, second = 0, head
    elif head < 80:
        first, second = 1, head - 40
    else:
        first, second = 2, head - 80
    # libtasn1 prints arcs as signed 64-bit numbers.
    shown = [first, second, *arcs[1:]]
    return ".".join(str(a - (1 << 64) if a >= 1 << 63 else a) for a in shown)


# -- value printing -----------------------------------------------------------


def _hex(data: bytes) -> bytes:
    return b"#" + data.hex().encode("ascii")


def _escape(text: bytes) -> bytes:
    out = bytearray()
    last = len(text) - 1
    for i, byte in enumerate(text):
        if (byte in _SPECIAL or (i == 0 and byte in b"# ")
                or (i == last and byte == 0x20)):
            out.append(0x5C)
        out.append(byte)
    return bytes(out)


def _bmp_to_utf8(content: bytes) -> bytes | None:
    """UCS-2/UTF-16BE to UTF-8 as GnuTLS converts it.

    A trailing NUL character is dropped first, then the string is read as
    ``len // 2`` 16-bit units (an odd final byte is ignored).  ``None``
    when the units are not valid UTF-16 (an unpaired surrogate).
    """
    if len(content) > 2 and content[-2:] == b"\0\0":
        content = content[:-2]
    try:
        return content[:len(content) & ~1].decode("utf-16-be").encode("utf-8")
    except UnicodeDecodeError:
        return None


def _printable(tag: int, content: bytes) -> bytes:
    """GnuTLS' conversion of a decoded string to text (or ``#hex`` of its content)."""
    if tag == _BMP:
        text = _bmp_to_utf8(content)
        return _hex(content) if text is None else text
    if tag == _TELETEX:
        # Only a TeletexString of printable ASCII is taken as text.
        if all(0x20 <= b < 0x7F for b in content):
            return content
        return _hex(content)
    if tag == _UNIVERSAL:
        return _hex(content)
    return content


def _value(oid: str, value: bytes) -> bytes:
    """The printed form of one attribute value (``value`` is its whole DER element)."""
    known = _KNOWN.get(oid)
    if known is None:
        return _hex(value)
    kind = known[1]
    tag, start, end, _ = _tlv(value, 0, len(value))
    content = value[start:end]
    if kind == _DIR:
        if len(value) == 2 and value[1] == 0:
            # GnuTLS 3.7 fails the whole name on a DirectoryString value
            # that is one tag byte and a zero length, whatever the tag.
            raise DNError(ERR_VALUE)
        if tag not in _DIRECTORY_STRING or not content:
            return _hex(value)
        text = _printable(tag, content)
    elif kind == _CHAL:
        if tag not in _CHALLENGE or not content:
            return _hex(value)
        text = content
    else:
        if tag != kind or not content:
            return _hex(value)
        text = _printable(tag, content)
        if kind == _OCTET:
            if 0 in text:
                raise DNError(ERR_DER)
            return _escape(text)
    if 0 in text:
        return _hex(value)
    return _escape(text)


# -- names --------------------------------------------------------------------


def name_dn_bytes(der: bytes) -> bytes:
    """GnuTLS' (compat-order) text of the DER-encoded X.501 ``Name`` ``der``."""
    if len(der) > MAX_NAME_DER_LENGTH:
        raise DNError(ERR_DER)
    tag, start, end, total = _tlv(der, 0, len(der))
    if tag != _SEQUENCE or total != len(der):
        raise DNError(ERR_DER)
    rdns = _children(der, start, end, _SET)
    if not rdns:
        raise DNError(ERR_NOT_AVAILABLE)
    parsed: list[list[tuple[str, bytes]]] = []
    for _, rstart, rend, _ in rdns:
        attributes = []
        for _, astart, aend, _ in _children(der, rstart, rend, _SEQUENCE):
            otag, ostart, oend, after_oid = _tlv(der, astart, aend)
            if otag != _OID or after_oid >= aend:
                raise DNError(ERR_DER)
            _, _, _, after_value = _tlv(der, after_oid, aend)
            if after_value != aend:
                raise DNError(ERR_DER)
            attributes.append((_oid_text(der[ostart:oend]), der[after_oid:aend]))
        parsed.append(attributes)
    out = bytearray()
    last_rdn = len(parsed) - 1
    for i, attributes in enumerate(parsed):
        for j, (oid, value) in enumerate(attributes):
            if len(oid) > MAX_OID_TEXT_LENGTH:
                raise DNError(ERR_SHORT_BUFFER)
            known = _KNOWN.get(oid)
            label = known[0] if known is not None and known[0] is not None else oid
            out += label.encode("ascii") + b"=" + _value(oid, value)
            if j < len(attributes) - 1:
                out += b"+"
            elif i != last_rdn:
                out += b","
    return bytes(out)


def name_dn(der: bytes) -> str:
    """:func:`name_dn_bytes` as ``str``; bytes that are not UTF-8 become surrogates.

    Command-line arguments reach Python the same way (``surrogateescape``),
    so an identity typed byte for byte as GnuTLS prints it compares equal.
    """
    return name_dn_bytes(der).decode("utf-8", "surrogateescape")


def _tbs_name_der(cert: x509.Certificate, which: int) -> bytes:
    """A name exactly as encoded in the certificate (``which``: 2 issuer, 4 subject)."""
    tbs = cert.tbs_certificate_bytes
    tag, start, end, _ = _tlv(tbs, 0, len(tbs))
    if tag != _SEQUENCE:
        raise DNError(ERR_DER)
    pos = start
    fields = []
    while pos < end and len(fields) < 6:
        element = _tlv(tbs, pos, end)
        fields.append((element[0], pos, element[3]))
        pos = element[3]
    if fields and fields[0][0] == 0xA0:
        # Skip the explicit [0] version.
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5 or fields[which][0] != _SEQUENCE:
        raise DNError(ERR_DER)
    _, s, e = fields[which]
    return tbs[s:e]


def certificate_dn(cert: x509.Certificate) -> str:
    """The subject of ``cert`` as QEMU 7.2 (GnuTLS 3.7) prints it for authz."""
    return name_dn(_tbs_name_der(cert, 4))


def issuer_dn(cert: x509.Certificate) -> str:
    """The issuer of ``cert`` in the same form as :func:`certificate_dn`."""
    return name_dn(_tbs_name_der(cert, 2))
