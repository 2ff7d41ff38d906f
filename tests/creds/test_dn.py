"""Tests for creds.dn: distinguished names exactly as GnuTLS 3.7 prints them.

Three kinds of evidence: a table of certificates with pinned strings (the
same table test_dn_qemu.py proves against a real QEMU 7.2), a
differential test against libgnutls itself (``gnutls_x509_dn_get_str2``
with the compat flag, the function behind the ``gnutls_x509_crt_get_dn``
QEMU calls) over generated and mutated names, and the parser's limits and
garbage handling.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import FailTest, SkipTest, SynchronousTestCase

from creds import dn
from tests import certgen

A = x509.NameAttribute


def _rdn(*attributes: x509.NameAttribute) -> x509.RelativeDistinguishedName:
    return x509.RelativeDistinguishedName(attributes)


#: (case name, subject: attributes in encoding order or an RDN list,
#:  the string GnuTLS 3.7 / QEMU 7.2 prints for it).
CASES: list[tuple[str, x509.Name, str]] = [
    ("plain", x509.Name([A(NameOID.COUNTRY_NAME, "UK"), A(NameOID.COMMON_NAME, "qemu")]),
     "C=UK,CN=qemu"),
    ("comma", x509.Name([A(NameOID.COUNTRY_NAME, "UK"),
                         A(NameOID.ORGANIZATION_NAME, "ACME, Inc."),
                         A(NameOID.COMMON_NAME, "qemu")]),
     "C=UK,O=ACME\\, Inc.,CN=qemu"),
    ("plus-quote-backslash", x509.Name([A(NameOID.COMMON_NAME, 'a+b"c\\d')]),
     'CN=a\\+b\\"c\\\\d'),
    ("angle-semicolon-hash", x509.Name([A(NameOID.COMMON_NAME, "x<y>z;w#v")]),
     "CN=x\\<y\\>z\\;w#v"),
    ("leading-hash", x509.Name([A(NameOID.COMMON_NAME, "#hash")]), "CN=\\#hash"),
    ("spaces", x509.Name([A(NameOID.COMMON_NAME, " padded ")]), "CN=\\ padded\\ "),
    ("equals", x509.Name([A(NameOID.COMMON_NAME, "a=b")]), "CN=a=b"),
    ("trailing-backslash", x509.Name([A(NameOID.COMMON_NAME, "end\\")]), "CN=end\\\\"),
    ("utf8", x509.Name([A(NameOID.ORGANIZATION_NAME, "Zürich Ünïcødé"),
                        A(NameOID.COMMON_NAME, "日本")]),
     "O=Zürich Ünïcødé,CN=日本"),
    ("multi-valued", x509.Name([_rdn(A(NameOID.COUNTRY_NAME, "UK")),
                                _rdn(A(NameOID.COMMON_NAME, "qemu"),
                                     A(NameOID.ORGANIZATIONAL_UNIT_NAME, "vnc"))]),
     "C=UK,OU=vnc+CN=qemu"),
    ("email", x509.Name([A(NameOID.COMMON_NAME, "qemu"),
                         A(NameOID.EMAIL_ADDRESS, "admin@example.org")]),
     "CN=qemu,EMAIL=admin@example.org"),
    ("dc-uid", x509.Name([A(NameOID.DOMAIN_COMPONENT, "org"),
                          A(NameOID.DOMAIN_COMPONENT, "example"),
                          A(NameOID.USER_ID, "jdoe"), A(NameOID.COMMON_NAME, "John")]),
     "DC=org,DC=example,UID=jdoe,CN=John"),
    ("serial-number", x509.Name([A(NameOID.SERIAL_NUMBER, "1234"),
                                 A(NameOID.COMMON_NAME, "qemu")]),
     "serialNumber=1234,CN=qemu"),
    ("unknown-oid", x509.Name([A(x509.ObjectIdentifier("1.2.3.4.5"), "opaque"),
                               A(NameOID.COMMON_NAME, "qemu")]),
     "1.2.3.4.5=#0c066f7061717565,CN=qemu"),
    ("printable-string", x509.Name([A(NameOID.COMMON_NAME, "printable",
                                      _type=_ASN1Type.PrintableString)]),
     "CN=printable"),
    ("bmp-string", x509.Name([A(NameOID.COMMON_NAME, "bmp ü", _type=_ASN1Type.BMPString)]),
     "CN=bmp ü"),
    ("country-as-utf8", x509.Name([A(NameOID.COUNTRY_NAME, "UK", _type=_ASN1Type.UTF8String),
                                   A(NameOID.COMMON_NAME, "qemu")]),
     "C=#0c02554b,CN=qemu"),
    ("teletex-ascii", x509.Name([A(NameOID.COMMON_NAME, "teletex",
                                   _type=_ASN1Type.T61String)]),
     "CN=teletex"),
    ("teletex-8bit", x509.Name([A(NameOID.COMMON_NAME, "télé", _type=_ASN1Type.T61String)]),
     "CN=\\#74c3a96cc3a9"),
    ("other-names", x509.Name([A(NameOID.LOCALITY_NAME, "London"),
                               A(NameOID.STATE_OR_PROVINCE_NAME, "England"),
                               A(NameOID.STREET_ADDRESS, "1 Main St"),
                               A(NameOID.TITLE, "Dr"), A(NameOID.GIVEN_NAME, "Ada"),
                               A(NameOID.SURNAME, "Lovelace")]),
     "L=London,ST=England,street=1 Main St,title=Dr,givenName=Ada,surName=Lovelace"),
]


class TableTests(SynchronousTestCase):
    """Certificates with every kind of awkward subject print as pinned."""

    def test_cases(self) -> None:
        """Each subject prints exactly as GnuTLS prints it."""
        root = certgen.ca()
        for name, subject, expected in CASES:
            cert = certgen.client(root, subject=subject).cert
            self.assertEqual(dn.certificate_dn(cert), expected, name)

    def test_raw_cases(self) -> None:
        """Names that exercise GnuTLS' decoding rules print (or fail) as pinned."""
        for name, der, expected in RAW_CASES:
            self.assertEqual(_mine(der), expected, name)

    def test_issuer(self) -> None:
        """The issuer prints in the same form."""
        root = certgen.ca("qemu CA")
        cert = certgen.client(root, "qemu").cert
        self.assertEqual(dn.issuer_dn(cert), "C=UK,CN=qemu CA")

    def test_not_utf8(self) -> None:
        """Bytes that are not UTF-8 survive as surrogates, as command-line arguments do."""
        der = _name([[("2.5.4.3", _tlv(0x0C, b"\xff\xfe"))]])
        self.assertEqual(dn.name_dn_bytes(der), b"CN=\xff\xfe")
        self.assertEqual(dn.name_dn(der), "CN=\udcff\udcfe")

    def test_empty_name(self) -> None:
        """A certificate without subject has no DN: GnuTLS' 'not available'."""
        err = self.assertRaises(dn.DNError, dn.name_dn, _name([]))
        self.assertEqual(str(err), dn.ERR_NOT_AVAILABLE)

    def test_oid_too_long(self) -> None:
        """An OID longer than GnuTLS' buffer fails the whole name with its error text."""
        fits = "1.2.11" + ".1" * 60
        self.assertEqual(len(fits), dn.MAX_OID_TEXT_LENGTH)
        self.assertTrue(dn.name_dn(_name([[(fits, _tlv(0x0C, b"x"))]])).endswith("=#0c0178"))
        err = self.assertRaises(dn.DNError, dn.name_dn,
                                _name([[(fits + "1", _tlv(0x0C, b"x"))]]))
        self.assertEqual(str(err), dn.ERR_SHORT_BUFFER)

    def test_name_too_long(self) -> None:
        """A name over MAX_NAME_DER_LENGTH is refused before parsing."""
        der = _name([[("2.5.4.3", _tlv(0x0C, b"x" * dn.MAX_NAME_DER_LENGTH))]])
        self.assertRaises(dn.DNError, dn.name_dn, der)


# -- raw DER building for the differential tests --------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def _oid(text: str) -> bytes:
    arcs = [int(a) for a in text.split(".")]
    out = b""
    for value in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, out)


def _name(rdns: list[list[tuple[str, bytes]]]) -> bytes:
    return _tlv(0x30, b"".join(
        _tlv(0x31, b"".join(_tlv(0x30, _oid(oid) + value) for oid, value in rdn))
        for rdn in rdns))


#: GnuTLS 3.7 behaviours beyond plain escaping, as raw names: (case, DER,
#: the bytes printed or the GnuTLS error text).  Each was observed with
#: libgnutls 3.7.9 and is re-checked against it by DifferentialTests.
RAW_CASES: list[tuple[str, bytes, bytes | str]] = [
    ("cn-as-ia5string", _name([[("2.5.4.3", _tlv(0x16, b"ia5"))]]), b"CN=#1603696135"),
    ("empty-cn-long-form-length", _name([[("2.5.4.3", b"\x0c\x81\x00")]]), b"CN=#0c8100"),
    ("two-byte-directory-string", _name([[("2.5.4.3", b"\x02\x00")]]), dn.ERR_VALUE),
    ("empty-country", _name([[("2.5.4.6", _tlv(0x13, b""))]]), b"C=#1300"),
    ("bmp-trailing-nul", _name([[("2.5.4.3", _tlv(0x1E, b"\xff\x20\x61\x00\x00"))]]),
     "CN=\uff20".encode("utf-8")),
    ("bmp-odd-length", _name([[("2.5.4.3", _tlv(0x1E, b"\x00a\x00"))]]), b"CN=a"),
    ("bmp-lone-surrogate", _name([[("2.5.4.3", _tlv(0x1E, b"\xd8\x00\x00a"))]]),
     b"CN=\\#d8000061"),
    ("nul-in-utf8", _name([[("2.5.4.3", _tlv(0x0C, b"a\x00b"))]]), b"CN=#0c03610062"),
    ("universal-string", _name([[("2.5.4.3", _tlv(0x1C, b"\x00\x00\x00a"))]]),
     b"CN=\\#00000061"),
    ("nul-in-octet-string", _name([[("1.2.840.113549.1.9.21", _tlv(0x04, b"a\x00"))]]),
     dn.ERR_DER),
    ("friendly-name-bmp", _name([[("1.2.840.113549.1.9.20", _tlv(0x1E, b"\x00f"))]]),
     b"1.2.840.113549.1.9.20=f"),
    ("challenge-password", _name([[("1.2.840.113549.1.9.7", _tlv(0x13, b"pw"))]]),
     b"1.2.840.113549.1.9.7=pw"),
    ("empty-rdn-in-middle", _name([[("2.5.4.6", _tlv(0x13, b"UK"))], [],
                                   [("2.5.4.3", _tlv(0x0C, b"x"))]]), b"C=UK,CN=x"),
    ("empty-rdn-at-end", _name([[("2.5.4.6", _tlv(0x13, b"UK"))], []]), b"C=UK,"),
    ("unsorted-multi-valued", _name([[("2.5.4.3", _tlv(0x0C, b"z")),
                                      ("2.5.4.6", _tlv(0x13, b"UK"))]]), b"CN=z+C=UK"),
    ("large-arc", _name([[("1.2.18446744073709551615", _tlv(0x0C, b"x"))]]),
     b"1.2.-1=#0c0178"),
    ("unfinished-arc", _tlv(0x30, _tlv(0x31, _tlv(0x30, b"\x06\x03\x55\x04\xe6"
                                                     + _tlv(0x0C, b"x")))),
     b"2.5.4=#0c0178"),
]


class _GnuTLS:
    """libgnutls' own DN printer, through ctypes (the oracle)."""

    _COMPAT = 1  # GNUTLS_X509_DN_FLAG_COMPAT: RDNs in encoding order

    class Datum(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("size", ctypes.c_uint)]

    def __init__(self) -> None:
        path = ctypes.util.find_library("gnutls")
        if path is None:
            msg = "*** libgnutls is not installed (Debian package libgnutls30) ***"
            if os.environ.get("VNCD_REQUIRE_TOOLS"):
                raise FailTest(msg)
            raise SkipTest(msg)
        lib = ctypes.CDLL(path)
        lib.gnutls_check_version.restype = ctypes.c_char_p
        self.version = lib.gnutls_check_version(None).decode()
        lib.gnutls_x509_dn_init.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.gnutls_x509_dn_import.argtypes = [ctypes.c_void_p, ctypes.POINTER(self.Datum)]
        lib.gnutls_x509_dn_get_str2.argtypes = [ctypes.c_void_p, ctypes.POINTER(self.Datum),
                                                ctypes.c_uint]
        lib.gnutls_x509_dn_deinit.argtypes = [ctypes.c_void_p]
        lib.gnutls_strerror.restype = ctypes.c_char_p
        # gnutls_free is a variable holding the deallocator, not a function.
        self.free = ctypes.CFUNCTYPE(None, ctypes.c_void_p).in_dll(lib, "gnutls_free")
        self.lib = lib

    def dn(self, der: bytes) -> bytes | tuple[str, str]:
        """The DN bytes, or ("import"|"print", error text)."""
        lib = self.lib
        handle = ctypes.c_void_p()
        if lib.gnutls_x509_dn_init(ctypes.byref(handle)) != 0:
            raise MemoryError("gnutls_x509_dn_init")
        try:
            buf = ctypes.create_string_buffer(der, len(der))
            datum = self.Datum(ctypes.cast(buf, ctypes.c_void_p), len(der))
            ret = lib.gnutls_x509_dn_import(handle, ctypes.byref(datum))
            if ret < 0:
                return ("import", lib.gnutls_strerror(ret).decode())
            out = self.Datum()
            ret = lib.gnutls_x509_dn_get_str2(handle, ctypes.byref(out), self._COMPAT)
            if ret < 0:
                return ("print", lib.gnutls_strerror(ret).decode())
            try:
                return ctypes.string_at(out.data, out.size)
            finally:
                self.free(out.data)
        finally:
            lib.gnutls_x509_dn_deinit(handle)


_ORACLE: _GnuTLS | None = None


def oracle() -> _GnuTLS:
    global _ORACLE
    if _ORACLE is None:
        _ORACLE = _GnuTLS()
    return _ORACLE


_OIDS = [
    "2.5.4.3", "2.5.4.6", "2.5.4.10", "2.5.4.11", "2.5.4.5", "2.5.4.12",
    "1.2.840.113549.1.9.1", "1.2.840.113549.1.9.7", "1.2.840.113549.1.9.20",
    "1.2.840.113549.1.9.21", "0.9.2342.19200300.100.1.25", "0.9.2342.19200300.100.1.1",
    "1.2.643.100.1", "1.3.6.1.5.5.7.8.5", "1.3.6.1.5.5.7.9.1", "1.3.6.1.5.5.7.9.3",
    "1.2.3.4", "2.999.77", "1.3.6.1.4.1.4294967296.1",
]
_TAGS = [0x0C, 0x13, 0x14, 0x16, 0x1C, 0x1E, 0x04, 0x12, 0x02, 0x05, 0x30, 0x18, 0x1F]
_PIECES = [b"a", b"Z", b" ", b"#", b",", b"+", b'"', b"\\", b"<", b">", b";", b"=",
           b"\x00", b"\xff", b"\xc3\xa9", b"\n", b"\x7f", b"\xd8", b"\xdc", b"\x00\x00",
           b"\x00\xe9"]

contents = st.one_of(
    st.lists(st.sampled_from(_PIECES), max_size=6).map(b"".join),
    st.text(max_size=6).map(lambda t: t.encode("utf-8")),
    st.text(max_size=4).map(lambda t: t.encode("utf-16-be", "surrogatepass")),
)
values = st.tuples(st.sampled_from(_TAGS), contents).map(lambda tc: _tlv(*tc))
names = st.lists(st.lists(st.tuples(st.sampled_from(_OIDS), values), max_size=3),
                 max_size=4).map(_name)


def _mine(der: bytes) -> bytes | str:
    try:
        return dn.name_dn_bytes(der)
    except dn.DNError as e:
        return str(e)


class DifferentialTests(SynchronousTestCase):
    """creds.dn agrees with libgnutls on generated, mutated and random names."""

    def setUp(self) -> None:
        self.gnutls = oracle()
        if not self.gnutls.version.startswith("3.7."):
            raise SkipTest("the oracle must be GnuTLS 3.7 (QEMU 7.2's), "
                           f"found {self.gnutls.version}")

    def agree(self, der: bytes) -> None:
        theirs = self.gnutls.dn(der)
        mine = _mine(der)
        if isinstance(theirs, tuple):
            self.assertIsInstance(mine, str, f"{der.hex()}: GnuTLS failed with {theirs}")
            if theirs[0] == "print":
                self.assertEqual(mine, theirs[1], der.hex())
        else:
            self.assertEqual(mine, theirs, der.hex())

    @settings(max_examples=400)
    @given(names)
    def test_generated_names(self, der: bytes) -> None:
        """Structurally valid names with any values print as GnuTLS prints them."""
        self.agree(der)

    @settings(max_examples=300)
    @given(names, st.integers(min_value=0), st.integers(0, 255))
    def test_mutated_names(self, der: bytes, where: int, byte: int) -> None:
        """A name with one byte changed prints, or fails, as in GnuTLS."""
        if der:
            i = where % len(der)
            der = der[:i] + bytes([byte]) + der[i + 1:]
        self.agree(der)

    def test_raw_cases_table(self) -> None:
        """The pinned raw cases are what libgnutls prints."""
        for name, der, expected in RAW_CASES:
            theirs = self.gnutls.dn(der)
            self.assertEqual(theirs[1] if isinstance(theirs, tuple) else theirs, expected, name)

    def test_cases_table(self) -> None:
        """The pinned table is what libgnutls prints for those certificates."""
        root = certgen.ca()
        for name, subject, expected in CASES:
            cert = certgen.client(root, subject=subject).cert
            self.assertEqual(self.gnutls.dn(dn._tbs_name_der(cert, 4)),
                             expected.encode("utf-8"), name)


class GarbageTests(SynchronousTestCase):
    """The DER reader only ever returns text or raises DNError."""

    @settings(max_examples=500)
    @given(st.binary(max_size=300))
    def test_random_bytes(self, data: bytes) -> None:
        """Random bytes give a DN string or DNError, nothing else."""
        for der in (data, _tlv(0x30, data)):
            self.assertIsInstance(_mine(der), (bytes, str))
