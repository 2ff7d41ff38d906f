# -*- test-case-name: tests.creds.test_priority -*-
"""GnuTLS priority strings, translated into settings an OpenSSL context takes.

QEMU hands the ``priority`` property of a TLS credentials object straight
to GnuTLS (``gnutls_priority_set_direct``).  vncd's TLS engine is OpenSSL
(through pyOpenSSL), so this module reads the GnuTLS syntax and computes
what the same string means there: the protocol versions, the TLS <= 1.2
cipher suites in GnuTLS's preference order, the TLS 1.3 suites, and
whether the server's order wins.  The model follows GnuTLS 3.7 (Debian 12)
and is checked against ``gnutls-cli --priority ... -l`` by the tests.

:func:`parse_priority` is a pure function: no files, no OpenSSL calls, no
warnings.  Tokens that are valid GnuTLS but that vncd cannot honour are
accepted and described in :attr:`TLSPolicy.notes`, for the caller to pass
to its warning channel.  This module knows nothing about certificates,
sessions or VNC, and does not import OpenSSL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from creds.objects import ObjectError

__all__ = [
    "TLSPolicy",
    "parse_priority",
    "DEFAULT_PRIORITY",
    "MAX_PRIORITY_LENGTH",
    "MAX_PRIORITY_ELEMENTS",
    "TLS12",
    "TLS13",
]

#: QEMU's build-time default (meson option ``tls_priority``), used when the
#: credentials object has no ``priority`` property.
DEFAULT_PRIORITY = "NORMAL"

#: Longest priority string accepted.  A string of the maximum number of
#: elements, each a long GnuTLS name (``+SIGN-RSA-PSS-RSAE-SHA512`` is 25
#: characters), stays well below this; anything longer is not a priority
#: string and is refused before it is split.
MAX_PRIORITY_LENGTH = 2048

#: Most ``:``-separated elements accepted.  GnuTLS reads at most 64 elements
#: and silently ignores the rest (``MAX_ELEMENTS`` in ``lib/priority.c``);
#: vncd refuses such a string instead of ignoring part of it.
MAX_PRIORITY_ELEMENTS = 64

#: Protocol version names, as the TLS engine expects them.
TLS12 = "TLSv1.2"
TLS13 = "TLSv1.3"

#: OpenSSL refuses a cipher list with no TLS <= 1.2 suite in it, even when
#: the context will only ever speak TLS 1.3.  When a priority string leaves
#: TLS 1.3 alone (say ``NORMAL:-KX-ALL``), this entry fills the list; it is
#: never negotiated, because the policy's minimum version is then TLS 1.3.
_TLS13_ONLY_FILLER = "ECDHE-ECDSA-AES256-GCM-SHA384"

#: Appended to every cipher list: the suites are named one by one and none
#: is a NULL cipher, and this makes OpenSSL guarantee it as well.
_NO_NULL = "!eNULL"

#: Anonymous suites are below OpenSSL's default security level.
_ANON_SECLEVEL = "@SECLEVEL=0"


@dataclass(frozen=True)
class TLSPolicy:
    """What a priority string asks of an OpenSSL context.

    The TLS engine applies the fields as: ``cipher_list`` to
    ``Context.set_cipher_list``, ``tls13_ciphersuites`` to
    ``Context.set_tls13_ciphersuites`` (an empty string disables every
    TLS 1.3 suite), ``min_version``/``max_version`` to
    ``set_min_proto_version``/``set_max_proto_version``, and
    ``server_preference`` to ``OP_CIPHER_SERVER_PREFERENCE``.

    Accepted without effect (each use gives a note): key-exchange groups
    and curves (``GROUP-*``, ``CURVE-*``; pyOpenSSL has no way to set the
    group list, so OpenSSL's defaults apply -- except that, as in GnuTLS,
    removing every group leaves no TLS 1.3), signature algorithms
    (``SIGN-*``), certificate types (``CTYPE-*``), compression other than
    ``COMP-NULL``, TLS 1.0/1.1, SSL 3.0 and DTLS versions (vncd speaks
    TLS 1.2 and 1.3 only), GnuTLS names for which OpenSSL has no suite
    (3DES, RC4, Camellia-GCM, GOST, PSK, SRP, export ciphers), and every
    ``%`` flag except ``%SERVER_PRECEDENCE``.  ``%NO_TICKETS`` asks for
    what vncd's engine always does (no session tickets), and still gets a
    note so the user knows the flag itself is not read.

    ``notes`` holds one line per such token, in the order written.
    """

    #: The priority string this policy was computed from.
    priority: str
    min_version: str
    max_version: str
    #: OpenSSL cipher string for TLS <= 1.2 (never admits a NULL cipher).
    cipher_list: str
    #: OpenSSL TLS 1.3 suite string; empty when TLS 1.3 is off.
    tls13_ciphersuites: str
    server_preference: bool
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if (self.min_version, self.max_version) not in _VERSION_RANGES:
            raise ValueError(
                f"invalid TLS version range {self.min_version}..{self.max_version}"
            )
        if not self.cipher_list:
            raise ValueError("a TLS policy needs a non-empty cipher list")


_VERSION_RANGES = frozenset({(TLS12, TLS12), (TLS12, TLS13), (TLS13, TLS13)})


# -- GnuTLS vocabulary (3.7) ----------------------------------------------
#
# Names are kept upper-case; GnuTLS compares them without regard to case.

_VERS_TLS13 = "VERS-TLS1.3"
_VERS_TLS12 = "VERS-TLS1.2"
_VERS_TLS = ("VERS-TLS1.3", "VERS-TLS1.2", "VERS-TLS1.1", "VERS-TLS1.0")
_VERS_DTLS = ("VERS-DTLS1.2", "VERS-DTLS1.0")
_VERS_KNOWN = _VERS_TLS + _VERS_DTLS + ("VERS-DTLS0.9", "VERS-SSL3.0")

_CIPHERS_NORMAL = (
    "AES-256-GCM", "CHACHA20-POLY1305", "AES-256-CCM", "AES-256-CBC",
    "AES-128-GCM", "AES-128-CCM", "AES-128-CBC",
)
_CIPHERS_SECURE128 = (
    "AES-256-GCM", "CHACHA20-POLY1305", "AES-256-CBC", "AES-256-CCM",
    "AES-128-GCM", "AES-128-CBC", "AES-128-CCM",
)
_CIPHERS_SECURE192 = ("AES-256-GCM", "CHACHA20-POLY1305", "AES-256-CBC", "AES-256-CCM")
_CIPHERS_PERFORMANCE = (
    "AES-128-GCM", "AES-256-GCM", "CHACHA20-POLY1305", "AES-128-CCM",
    "AES-256-CCM", "AES-128-CBC", "AES-256-CBC",
)
_CIPHERS_GOST = ("GOST28147-TC26Z-CNT",)
_CIPHERS_KNOWN = frozenset(
    _CIPHERS_NORMAL + _CIPHERS_GOST + (
        "AES-192-CBC", "AES-192-GCM", "AES-128-CCM-8", "AES-256-CCM-8",
        "ARCFOUR-128", "ESTREAM-SALSA20-256", "SALSA20-256", "CHACHA20-32",
        "CHACHA20-64", "CAMELLIA-256-CBC", "CAMELLIA-192-CBC",
        "CAMELLIA-128-CBC", "CAMELLIA-128-GCM", "CAMELLIA-256-GCM",
        "GOST28147-TC26Z-CFB", "GOST28147-CPA-CFB", "GOST28147-CPB-CFB",
        "GOST28147-CPC-CFB", "GOST28147-CPD-CFB", "AES-128-CFB8",
        "AES-192-CFB8", "AES-256-CFB8", "AES-128-XTS", "AES-256-XTS",
        "AES-128-SIV", "AES-256-SIV", "MAGMA-CTR-ACPKM",
        "KUZNYECHIK-CTR-ACPKM", "3DES-CBC", "DES-CBC", "RC2-40",
    )
)
#: Refused outright: vncd never offers an unencrypted TLS connection.
_CIPHER_NULL = "NULL"

_MACS_NORMAL = ("SHA1", "AEAD")
_MACS_GOST = ("GOST28147-TC26Z-IMIT",)
_MACS_KNOWN = frozenset(
    _MACS_NORMAL + _MACS_GOST + (
        "SHA256", "SHA384", "SHA512", "SHA224", "UMAC-96", "UMAC-128", "MD5",
        "GOSTR341194", "STREEBOG-256", "STREEBOG-512", "AES-CMAC-128",
        "AES-CMAC-256", "AES-GMAC-128", "AES-GMAC-192", "AES-GMAC-256",
        "OMAC-MAGMA", "OMAC-KUZNYECHIK",
    )
)

_KX_NORMAL = ("ECDHE-ECDSA", "ECDHE-RSA", "RSA", "DHE-RSA")
_KX_PERFORMANCE = ("RSA", "ECDHE-ECDSA", "ECDHE-RSA", "DHE-RSA")
_KX_PFS = ("ECDHE-ECDSA", "ECDHE-RSA", "DHE-RSA")
_KX_GOST = ("VKO-GOST-12",)
_KX_ANON_DH = "ANON-DH"
_KX_ANON_ECDH = "ANON-ECDH"
_KX_KNOWN = frozenset(
    _KX_NORMAL + _KX_GOST + (
        "DHE-DSS", "PSK", "RSA-PSK", "DHE-PSK", "ECDHE-PSK", "SRP-DSS",
        "SRP-RSA", "SRP", _KX_ANON_DH, _KX_ANON_ECDH, "RSA-EXPORT",
    )
)

_GROUPS_EC = (
    "GROUP-SECP256R1", "GROUP-SECP384R1", "GROUP-SECP521R1", "GROUP-X25519",
    "GROUP-X448",
)
_GROUPS_DH = (
    "GROUP-FFDHE2048", "GROUP-FFDHE3072", "GROUP-FFDHE4096", "GROUP-FFDHE6144",
    "GROUP-FFDHE8192",
)
_GROUPS_NORMAL = _GROUPS_EC + _GROUPS_DH
_GROUPS_GOST = (
    "GROUP-GC256A", "GROUP-GC256B", "GROUP-GC256C", "GROUP-GC256D",
    "GROUP-GC512A", "GROUP-GC512B", "GROUP-GC512C",
)
_GROUPS_KNOWN = frozenset(
    _GROUPS_NORMAL + _GROUPS_GOST + ("GROUP-SECP192R1", "GROUP-SECP224R1")
)
#: ``CURVE-x`` is GnuTLS's older spelling of ``GROUP-x`` for elliptic curves.
_CURVES = {
    "CURVE-" + g[len("GROUP-"):]: g
    for g in _GROUPS_EC + ("GROUP-SECP192R1", "GROUP-SECP224R1")
}

_SIGNATURES = frozenset(
    "SIGN-" + s for s in (
        "RSA-SHA256", "RSA-SHA384", "RSA-SHA512", "RSA-PSS-SHA256",
        "RSA-PSS-RSAE-SHA256", "RSA-PSS-SHA384", "RSA-PSS-RSAE-SHA384",
        "RSA-PSS-SHA512", "RSA-PSS-RSAE-SHA512", "EDDSA-ED25519",
        "EDDSA-ED448", "ECDSA-SHA256", "ECDSA-SHA384", "ECDSA-SHA512",
        "ECDSA-SECP256R1-SHA256", "ECDSA-SECP384R1-SHA384",
        "ECDSA-SECP521R1-SHA512", "ECDSA-SHA3-224", "ECDSA-SHA3-256",
        "ECDSA-SHA3-384", "ECDSA-SHA3-512", "RSA-SHA3-224", "RSA-SHA3-256",
        "RSA-SHA3-384", "RSA-SHA3-512", "DSA-SHA3-224", "DSA-SHA3-256",
        "DSA-SHA3-384", "DSA-SHA3-512", "RSA-RAW", "RSA-SHA1", "RSA-SHA224",
        "RSA-RMD160", "DSA-SHA1", "DSA-SHA224", "DSA-SHA256", "RSA-MD5",
        "RSA-MD2", "ECDSA-SHA1", "ECDSA-SHA224", "GOSTR341012-512",
        "GOSTR341012-256", "GOSTR341001", "DSA-SHA384", "DSA-SHA512",
        "ALL", "GOST-ALL",
    )
)
_CERT_TYPES = frozenset(
    {"CTYPE-OPENPGP"} | {
        prefix + t
        for prefix in ("CTYPE-", "CTYPE-CLI-", "CTYPE-SRV-")
        for t in ("ALL", "X509", "X.509", "RAWPK")
    }
)
_COMPRESSION_NONE = frozenset({"COMP-NULL", "COMP-ALL"})
_COMPRESSION_OTHER = frozenset({"COMP-DEFLATE"})

_GROUPS_NOTE = (
    "is not applied: pyOpenSSL cannot choose key-exchange groups, so OpenSSL's"
    " defaults are used"
)

_FLAG_SERVER_PRECEDENCE = "%SERVER_PRECEDENCE"
_FLAGS = frozenset({
    _FLAG_SERVER_PRECEDENCE, "%COMPAT", "%NO_EXTENSIONS", "%NO_TICKETS",
    "%NO_TICKETS_TLS12", "%NO_SESSION_HASH", "%SSL3_RECORD_VERSION",
    "%LATEST_RECORD_VERSION", "%STATELESS_COMPRESSION", "%DUMBFW",
    "%NO_ETM", "%FORCE_ETM", "%VERIFY_ALLOW_SIGN_RSA_MD5",
    "%VERIFY_DISABLE_CRL_CHECKS", "%VERIFY_ALLOW_X509_V1_CA_CRT",
    "%VERIFY_ALLOW_BROKEN", "%VERIFY_ALLOW_SIGN_WITH_SHA1",
    "%PROFILE_VERY_WEAK", "%PROFILE_LOW", "%PROFILE_LEGACY",
    "%PROFILE_MEDIUM", "%PROFILE_HIGH", "%PROFILE_ULTRA", "%PROFILE_FUTURE",
    "%PROFILE_SUITEB128", "%PROFILE_SUITEB192", "%NEW_PADDING",
    "%DEBUG_ALLOW_KEY_USAGE_VIOLATIONS", "%ALLOW_SMALL_RECORDS",
    "%DISABLE_TLS13_COMPAT_MODE", "%DISABLE_WILDCARDS",
    "%DISABLE_SAFE_RENEGOTIATION", "%UNSAFE_RENEGOTIATION",
    "%PARTIAL_RENEGOTIATION", "%SAFE_RENEGOTIATION", "%FALLBACK_SCSV",
})


@dataclass(frozen=True)
class _Level:
    """The lists a GnuTLS keyword (``NORMAL``, ``SECURE256`` ...) starts from."""

    versions: tuple[str, ...] = ()
    ciphers: tuple[str, ...] = ()
    macs: tuple[str, ...] = ()
    kx: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


_VERS_ALL = _VERS_TLS + _VERS_DTLS
_NORMAL = _Level(_VERS_ALL, _CIPHERS_NORMAL, _MACS_NORMAL, _KX_NORMAL, _GROUPS_NORMAL)
_SECURE128 = _Level(_VERS_ALL, _CIPHERS_SECURE128, _MACS_NORMAL, _KX_NORMAL, _GROUPS_NORMAL)
_SECURE192 = _Level(
    _VERS_ALL, _CIPHERS_SECURE192, ("AEAD",), _KX_NORMAL,
    ("GROUP-SECP384R1", "GROUP-SECP521R1", "GROUP-FFDHE8192"),
)

#: The keywords of GnuTLS 3.7 as ``gnutls-cli --priority KEYWORD -l`` lists them.
_LEVELS: dict[str, _Level] = {
    "NONE": _Level(),
    "NORMAL": _NORMAL,
    "LEGACY": _NORMAL,
    "PFS": _Level(_VERS_ALL, _CIPHERS_NORMAL, _MACS_NORMAL, _KX_PFS, _GROUPS_NORMAL),
    "SECURE128": _SECURE128,
    "SECURE": _SECURE128,
    "SECURE192": _SECURE192,
    "SECURE256": _SECURE192,
    "SUITEB128": _Level(
        (_VERS_TLS12,), ("AES-256-GCM", "AES-128-GCM"), ("AEAD",),
        ("ECDHE-ECDSA",), ("GROUP-SECP256R1", "GROUP-SECP384R1"),
    ),
    "SUITEB192": _Level(
        (_VERS_TLS12,), ("AES-256-GCM",), ("AEAD",), ("ECDHE-ECDSA",),
        ("GROUP-SECP384R1",),
    ),
    "PERFORMANCE": _Level(
        _VERS_ALL, _CIPHERS_PERFORMANCE, _MACS_NORMAL, _KX_PERFORMANCE,
        _GROUPS_NORMAL,
    ),
}
_SYSTEM = "@SYSTEM"

#: ``+NAME-ALL`` adds these; ``-NAME-ALL`` clears the whole list when the
#: flag is true (GnuTLS's ``_clear_priorities``), else removes just these.
_ALL_TOKENS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "VERS-ALL": ("versions", _VERS_ALL, True),
    "VERS-TLS-ALL": ("versions", _VERS_TLS, False),
    "VERS-DTLS-ALL": ("versions", _VERS_DTLS, False),
    "CIPHER-ALL": ("ciphers", _CIPHERS_NORMAL, True),
    "CIPHER-GOST-ALL": ("ciphers", _CIPHERS_GOST, False),
    "MAC-ALL": ("macs", _MACS_NORMAL, True),
    "MAC-GOST-ALL": ("macs", _MACS_GOST, False),
    "KX-ALL": ("kx", _KX_NORMAL, True),
    "KX-GOST-ALL": ("kx", _KX_GOST, False),
    "GROUP-ALL": ("groups", _GROUPS_NORMAL, True),
    "CURVE-ALL": ("groups", _GROUPS_EC, True),
    "GROUP-EC-ALL": ("groups", _GROUPS_EC, False),
    "GROUP-DH-ALL": ("groups", _GROUPS_DH, False),
    "GROUP-GOST-ALL": ("groups", _GROUPS_GOST, False),
}


# -- cipher suites ----------------------------------------------------------

def _suites(kx: str, rows: str) -> dict[tuple[str, str, str], str]:
    table = {}
    for row in rows.split(";"):
        cipher, mac, name = row.split()
        table[(kx, cipher, mac)] = name
    return table


#: GnuTLS's TLS <= 1.2 suites (key exchange, cipher, MAC) that OpenSSL also
#: implements, with OpenSSL's name.  GnuTLS suites absent here (3DES, RC4,
#: Camellia-GCM, NULL, PSK, SRP, GOST) have no OpenSSL counterpart.
_TLS12_SUITES: dict[tuple[str, str, str], str] = {
    **_suites("ECDHE-ECDSA", """
        AES-256-GCM AEAD ECDHE-ECDSA-AES256-GCM-SHA384;
        CHACHA20-POLY1305 AEAD ECDHE-ECDSA-CHACHA20-POLY1305;
        AES-256-CCM AEAD ECDHE-ECDSA-AES256-CCM;
        AES-256-CBC SHA1 ECDHE-ECDSA-AES256-SHA;
        AES-256-CBC SHA384 ECDHE-ECDSA-AES256-SHA384;
        AES-128-GCM AEAD ECDHE-ECDSA-AES128-GCM-SHA256;
        AES-128-CCM AEAD ECDHE-ECDSA-AES128-CCM;
        AES-128-CBC SHA1 ECDHE-ECDSA-AES128-SHA;
        AES-128-CBC SHA256 ECDHE-ECDSA-AES128-SHA256;
        CAMELLIA-128-CBC SHA256 ECDHE-ECDSA-CAMELLIA128-SHA256;
        CAMELLIA-256-CBC SHA384 ECDHE-ECDSA-CAMELLIA256-SHA384;
        AES-128-CCM-8 AEAD ECDHE-ECDSA-AES128-CCM8;
        AES-256-CCM-8 AEAD ECDHE-ECDSA-AES256-CCM8"""),
    **_suites("ECDHE-RSA", """
        AES-256-GCM AEAD ECDHE-RSA-AES256-GCM-SHA384;
        CHACHA20-POLY1305 AEAD ECDHE-RSA-CHACHA20-POLY1305;
        AES-256-CBC SHA1 ECDHE-RSA-AES256-SHA;
        AES-256-CBC SHA384 ECDHE-RSA-AES256-SHA384;
        AES-128-GCM AEAD ECDHE-RSA-AES128-GCM-SHA256;
        AES-128-CBC SHA1 ECDHE-RSA-AES128-SHA;
        AES-128-CBC SHA256 ECDHE-RSA-AES128-SHA256;
        CAMELLIA-128-CBC SHA256 ECDHE-RSA-CAMELLIA128-SHA256;
        CAMELLIA-256-CBC SHA384 ECDHE-RSA-CAMELLIA256-SHA384"""),
    **_suites("RSA", """
        AES-256-GCM AEAD AES256-GCM-SHA384;
        AES-256-CCM AEAD AES256-CCM;
        AES-256-CBC SHA1 AES256-SHA;
        AES-256-CBC SHA256 AES256-SHA256;
        AES-128-GCM AEAD AES128-GCM-SHA256;
        AES-128-CCM AEAD AES128-CCM;
        AES-128-CBC SHA1 AES128-SHA;
        AES-128-CBC SHA256 AES128-SHA256;
        CAMELLIA-256-CBC SHA1 CAMELLIA256-SHA;
        CAMELLIA-256-CBC SHA256 CAMELLIA256-SHA256;
        CAMELLIA-128-CBC SHA1 CAMELLIA128-SHA;
        CAMELLIA-128-CBC SHA256 CAMELLIA128-SHA256;
        AES-128-CCM-8 AEAD AES128-CCM8;
        AES-256-CCM-8 AEAD AES256-CCM8"""),
    **_suites("DHE-RSA", """
        AES-256-GCM AEAD DHE-RSA-AES256-GCM-SHA384;
        CHACHA20-POLY1305 AEAD DHE-RSA-CHACHA20-POLY1305;
        AES-256-CCM AEAD DHE-RSA-AES256-CCM;
        AES-256-CBC SHA1 DHE-RSA-AES256-SHA;
        AES-256-CBC SHA256 DHE-RSA-AES256-SHA256;
        AES-128-GCM AEAD DHE-RSA-AES128-GCM-SHA256;
        AES-128-CCM AEAD DHE-RSA-AES128-CCM;
        AES-128-CBC SHA1 DHE-RSA-AES128-SHA;
        AES-128-CBC SHA256 DHE-RSA-AES128-SHA256;
        CAMELLIA-256-CBC SHA1 DHE-RSA-CAMELLIA256-SHA;
        CAMELLIA-256-CBC SHA256 DHE-RSA-CAMELLIA256-SHA256;
        CAMELLIA-128-CBC SHA1 DHE-RSA-CAMELLIA128-SHA;
        CAMELLIA-128-CBC SHA256 DHE-RSA-CAMELLIA128-SHA256;
        AES-128-CCM-8 AEAD DHE-RSA-AES128-CCM8;
        AES-256-CCM-8 AEAD DHE-RSA-AES256-CCM8"""),
    **_suites("DHE-DSS", """
        AES-256-GCM AEAD DHE-DSS-AES256-GCM-SHA384;
        AES-256-CBC SHA1 DHE-DSS-AES256-SHA;
        AES-256-CBC SHA256 DHE-DSS-AES256-SHA256;
        AES-128-GCM AEAD DHE-DSS-AES128-GCM-SHA256;
        AES-128-CBC SHA1 DHE-DSS-AES128-SHA;
        AES-128-CBC SHA256 DHE-DSS-AES128-SHA256;
        CAMELLIA-256-CBC SHA1 DHE-DSS-CAMELLIA256-SHA;
        CAMELLIA-256-CBC SHA256 DHE-DSS-CAMELLIA256-SHA256;
        CAMELLIA-128-CBC SHA1 DHE-DSS-CAMELLIA128-SHA;
        CAMELLIA-128-CBC SHA256 DHE-DSS-CAMELLIA128-SHA256"""),
    **_suites(_KX_ANON_DH, """
        AES-256-GCM AEAD ADH-AES256-GCM-SHA384;
        AES-256-CBC SHA1 ADH-AES256-SHA;
        AES-256-CBC SHA256 ADH-AES256-SHA256;
        AES-128-GCM AEAD ADH-AES128-GCM-SHA256;
        AES-128-CBC SHA1 ADH-AES128-SHA;
        AES-128-CBC SHA256 ADH-AES128-SHA256;
        CAMELLIA-256-CBC SHA1 ADH-CAMELLIA256-SHA;
        CAMELLIA-256-CBC SHA256 ADH-CAMELLIA256-SHA256;
        CAMELLIA-128-CBC SHA1 ADH-CAMELLIA128-SHA;
        CAMELLIA-128-CBC SHA256 ADH-CAMELLIA128-SHA256"""),
    **_suites(_KX_ANON_ECDH, """
        AES-256-CBC SHA1 AECDH-AES256-SHA;
        AES-128-CBC SHA1 AECDH-AES128-SHA"""),
}

#: TLS 1.3 suites by bulk cipher (their GnuTLS MAC is ``AEAD``).  The names
#: are the same in GnuTLS, OpenSSL and the RFC.
_TLS13_SUITES: dict[str, str] = {
    "AES-256-GCM": "TLS_AES_256_GCM_SHA384",
    "CHACHA20-POLY1305": "TLS_CHACHA20_POLY1305_SHA256",
    "AES-128-GCM": "TLS_AES_128_GCM_SHA256",
    "AES-128-CCM": "TLS_AES_128_CCM_SHA256",
    "AES-128-CCM-8": "TLS_AES_128_CCM_8_SHA256",
}
_TLS13_MAC = "AEAD"

_USABLE_CIPHERS = frozenset(c for (_, c, _) in _TLS12_SUITES) | frozenset(_TLS13_SUITES)
_USABLE_MACS = frozenset(m for (_, _, m) in _TLS12_SUITES)
_USABLE_KX = frozenset(k for (k, _, _) in _TLS12_SUITES)


# -- parsing ------------------------------------------------------------------

class _PriorityError(Exception):
    """A reason the string is refused; :func:`parse_priority` adds the prefix."""


@dataclass
class _State:
    """The lists as the elements are applied, in GnuTLS's order."""

    versions: list[str] = field(default_factory=list)
    ciphers: list[str] = field(default_factory=list)
    macs: list[str] = field(default_factory=list)
    kx: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    server_preference: bool = False
    #: Key exchanges the user removed by name (for the anonymous ECDH default).
    removed_kx: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def set_level(self, level: _Level) -> None:
        for name in ("versions", "ciphers", "macs", "kx", "groups"):
            setattr(self, name, list(getattr(level, name)))

    def add_level(self, level: _Level) -> None:
        for name in ("versions", "ciphers", "macs", "kx", "groups"):
            self.add(name, getattr(level, name))

    def add(self, name: str, items: tuple[str, ...]) -> None:
        current = getattr(self, name)
        current.extend(i for i in items if i not in current)

    def remove(self, name: str, items: tuple[str, ...]) -> None:
        setattr(self, name, [i for i in getattr(self, name) if i not in items])

    def note(self, token: str, text: str) -> None:
        line = f"priority element '{_show(token)}' {text}"
        if line not in self.notes:
            self.notes.append(line)


def _show(text: str) -> str:
    """``text`` fit for a one-line message (control characters escaped)."""
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


def _apply(state: _State, raw: str, first: bool) -> None:
    token = raw.upper()
    if token in _LEVELS:
        if first:
            state.set_level(_LEVELS[token])
        elif token == "NONE":
            raise _PriorityError("'NONE' is only valid as the first element")
        else:
            state.add_level(_LEVELS[token])
        return
    if token == _SYSTEM:
        if not first:
            raise _PriorityError(f"'{_SYSTEM}' is only valid as the first element")
        state.set_level(_NORMAL)
        state.note(raw, "uses NORMAL: vncd does not read GnuTLS's system configuration")
        return
    if token.startswith("%"):
        if token not in _FLAGS:
            raise _PriorityError(f"unknown flag '{_show(raw)}'")
        if token == _FLAG_SERVER_PRECEDENCE:
            state.server_preference = True
        else:
            state.note(raw, "has no effect in vncd")
        return
    if token[:1] not in ("+", "-", "!"):
        raise _PriorityError(
            f"unknown element '{_show(raw)}' (algorithms need a '+' or '-' prefix)"
        )
    adding = token[0] == "+"
    name = token[1:]
    if name in _LEVELS and name != "NONE":
        if not adding:
            raise _PriorityError(f"a keyword cannot be removed: '{_show(raw)}'")
        state.add_level(_LEVELS[name])
        return
    _apply_algorithm(state, raw, name, adding)


def _apply_algorithm(state: _State, raw: str, name: str, adding: bool) -> None:
    if name in _ALL_TOKENS:
        list_name, members, clears = _ALL_TOKENS[name]
        if adding:
            state.add(list_name, members)
        elif clears:
            setattr(state, list_name, [])
        else:
            state.remove(list_name, members)
        if list_name == "groups":
            state.note(raw, _GROUPS_NOTE)
        if name.endswith("GOST-ALL") and adding:
            state.note(raw, "has no effect: vncd has no GOST cipher suites")
        return
    if name in _CURVES:
        name = _CURVES[name]
    if name in _VERS_KNOWN:
        _change(state, "versions", name, adding)
        if name not in (_VERS_TLS12, _VERS_TLS13) and adding:
            state.note(raw, "has no effect: vncd speaks TLS 1.2 and TLS 1.3 only")
    elif name == _CIPHER_NULL:
        if adding:
            raise _PriorityError(
                f"'{_show(raw)}' would allow unencrypted connections, which vncd never does"
            )
    elif name in _CIPHERS_KNOWN:
        _change(state, "ciphers", name, adding)
        if adding and name not in _USABLE_CIPHERS:
            state.note(raw, "has no effect: OpenSSL has no TLS cipher suite with this cipher")
    elif name in _MACS_KNOWN:
        _change(state, "macs", name, adding)
        if adding and name not in _USABLE_MACS:
            state.note(raw, "has no effect: OpenSSL has no TLS cipher suite with this MAC")
    elif name in _KX_KNOWN:
        _change(state, "kx", name, adding)
        if adding:
            state.removed_kx.discard(name)
            if name not in _USABLE_KX:
                state.note(raw, "has no effect: vncd has no credentials for this key exchange")
        else:
            state.removed_kx.add(name)
    elif name in _GROUPS_KNOWN:
        _change(state, "groups", name, adding)
        state.note(raw, _GROUPS_NOTE)
    elif name in _SIGNATURES:
        state.note(raw, "has no effect: OpenSSL's default signature algorithms are used")
    elif name in _CERT_TYPES:
        state.note(raw, "has no effect: vncd uses X.509 certificates only")
    elif name in _COMPRESSION_NONE:
        return
    elif name in _COMPRESSION_OTHER:
        if adding:
            state.note(raw, "has no effect: vncd never compresses TLS records")
    else:
        raise _PriorityError(f"unknown element '{_show(raw)}'")


def _change(state: _State, list_name: str, item: str, adding: bool) -> None:
    if adding:
        state.add(list_name, (item,))
    else:
        state.remove(list_name, (item,))


def _tls12_suites(state: _State, kx_order: list[str]) -> list[str]:
    """GnuTLS order: key exchange first, then cipher, then MAC."""
    return [
        _TLS12_SUITES[(kx, cipher, mac)]
        for kx in kx_order
        for cipher in state.ciphers
        for mac in state.macs
        if (kx, cipher, mac) in _TLS12_SUITES
    ]


def _tls13_suites(state: _State) -> list[str]:
    if _TLS13_MAC not in state.macs:
        return []
    return [_TLS13_SUITES[c] for c in state.ciphers if c in _TLS13_SUITES]


def _build(text: str, state: _State, anon: bool) -> TLSPolicy:
    notes = state.notes
    want12 = _VERS_TLS12 in state.versions
    want13 = _VERS_TLS13 in state.versions
    if want13 and not state.groups:
        want13 = False
        notes.append(
            "no key-exchange group is left in the priority string, so TLS 1.3"
            " is off (as in GnuTLS)"
        )
    if anon:
        kx_order = [_KX_ANON_DH]
        if _KX_ANON_ECDH not in state.removed_kx:
            kx_order.append(_KX_ANON_ECDH)
        if not want12:
            raise _PriorityError(
                "anonymous credentials need TLS 1.2 (TLS 1.3 has no anonymous"
                " key exchange), and the string does not enable VERS-TLS1.2"
            )
        want13 = False
    else:
        kx_order = state.kx
    if not (want12 or want13):
        raise _PriorityError(
            "no usable protocol version: vncd speaks TLS 1.2 and TLS 1.3,"
            " and the string enables neither"
        )
    suites12 = _tls12_suites(state, kx_order)
    suites13 = _tls13_suites(state) if want13 else []
    use12 = want12 and bool(suites12)
    use13 = want13 and bool(suites13)
    if not (use12 or use13):
        raise _PriorityError(
            "no usable cipher suite: no enabled key exchange, cipher and MAC"
            " combine into a suite for an enabled protocol version"
        )
    if want12 and not use12:
        notes.append("no TLS 1.2 cipher suite is left, so only TLS 1.3 is offered")
    if want13 and not use13:
        notes.append("no TLS 1.3 cipher suite is left, so only TLS 1.2 is offered")
    parts = suites12 or [_TLS13_ONLY_FILLER]
    parts.append(_NO_NULL)
    if anon:
        parts.append(_ANON_SECLEVEL)
    return TLSPolicy(
        priority=text,
        min_version=TLS12 if use12 else TLS13,
        max_version=TLS13 if use13 else TLS12,
        cipher_list=":".join(parts),
        tls13_ciphersuites=":".join(suites13) if use13 else "",
        server_preference=state.server_preference,
        notes=tuple(notes),
    )


def parse_priority(text: str | None, *, anon: bool) -> TLSPolicy:
    """Translate a GnuTLS priority string into a :class:`TLSPolicy`.

    ``None`` means QEMU's default, ``NORMAL``.  ``anon`` is true for
    anonymous credentials: QEMU appends ``+ANON-DH`` to their priority;
    vncd lists the finite-field anonymous suites (``ADH``, the only ones
    GnuTLS clients such as gtk-vnc offer) first, then the elliptic-curve
    ones (``AECDH``, unless the string removes ``ANON-ECDH`` by name), each
    restricted to the ciphers and MACs the string allows, at OpenSSL
    security level 0, and caps the version at TLS 1.2 because TLS 1.3
    has no anonymous key exchange.

    The grammar is GnuTLS's: a first element that is a keyword (``NONE``,
    ``NORMAL``, ``PFS``, ``SECURE``/``SECURE128``, ``SECURE192``,
    ``SECURE256``, ``SUITEB128``, ``SUITEB192``, ``PERFORMANCE``,
    ``LEGACY``, or ``@SYSTEM``, which vncd treats as ``NORMAL`` because it
    does not read GnuTLS's system configuration), then ``:``-separated
    elements: ``+NAME`` appends an algorithm, ``-NAME`` or ``!NAME``
    removes it, ``+KEYWORD`` (or a bare keyword) adds that keyword's
    algorithms, ``%FLAG`` sets a flag.  Names compare without regard to
    case.  A string that does not start with a keyword starts from
    ``NONE``.

    Raises :class:`ObjectError` naming the offending element, or saying
    why nothing usable is left, in QEMU's wording
    ``Unable to set TLS session priority <text>: <reason>``.  QEMU only
    finds such faults at the first connection; vncd finds them here.
    """
    source = DEFAULT_PRIORITY if text is None else text
    try:
        if len(source) > MAX_PRIORITY_LENGTH:
            raise _PriorityError(
                f"the string is {len(source)} characters long; the limit is"
                f" {MAX_PRIORITY_LENGTH}"
            )
        elements = source.split(":")
        if len(elements) > MAX_PRIORITY_ELEMENTS:
            raise _PriorityError(
                f"the string has {len(elements)} elements; the limit is"
                f" {MAX_PRIORITY_ELEMENTS}"
            )
        state = _State()
        for position, element in enumerate(elements, start=1):
            token = element.strip(" \t")
            if not token:
                raise _PriorityError(f"element {position} is empty")
            try:
                _apply(state, token, first=position == 1)
            except _PriorityError as e:
                raise _PriorityError(f"{e} (element {position})") from None
        return _build(source, state, anon)
    except _PriorityError as e:
        shown = _show(source) if len(source) <= MAX_PRIORITY_LENGTH else "(too long to show)"
        raise ObjectError(
            f"Unable to set TLS session priority {shown}: {e}",
            hint="use GnuTLS priority syntax, e.g. NORMAL:-VERS-TLS1.3",
            check="priority",
        ) from None
