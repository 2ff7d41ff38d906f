"""Tests for creds.priority: GnuTLS priority strings as OpenSSL settings.

Three kinds of evidence: tables of what each keyword and modifier yields,
a real pyOpenSSL context that takes every produced string and completes
(or refuses) handshakes accordingly, and GnuTLS itself (``gnutls-cli
--priority STRING -l``) as the oracle for which suites a string selects
and in what order.
"""

from __future__ import annotations

import re
import subprocess

from hypothesis import given, strategies as st
from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from creds import priority as prio
from creds.objects import ObjectError
from creds.priority import TLS12, TLS13, TLSPolicy, parse_priority
from tests import certgen
from tests.tools import require_tool

_VERSIONS = {TLS12: SSL.TLS1_2_VERSION, TLS13: SSL.TLS1_3_VERSION}

#: Rounds of the in-memory handshake pump; a TLS 1.2 or 1.3 handshake
#: needs fewer than ten.
_MAX_PUMP_ROUNDS = 20

#: Seconds a gnutls-cli or openssl listing may take (they answer in
#: milliseconds; this only stops a hung tool).
_TOOL_TIMEOUT = 30


def suites(policy: TLSPolicy) -> list[str]:
    """The suite names in a policy's cipher list, without OpenSSL's directives."""
    return [p for p in policy.cipher_list.split(":") if p[:1] not in ("!", "@")]


def tls13(policy: TLSPolicy) -> list[str]:
    return [s for s in policy.tls13_ciphersuites.split(":") if s]


def context(policy: TLSPolicy, *, server: bool, cert: certgen.Issued | None = None) -> SSL.Context:
    """A context configured from ``policy`` the way the TLS engine is told to."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD if server else SSL.TLS_CLIENT_METHOD)
    ctx.set_cipher_list(policy.cipher_list.encode("ascii"))
    ctx.set_tls13_ciphersuites(policy.tls13_ciphersuites.encode("ascii"))
    ctx.set_min_proto_version(_VERSIONS[policy.min_version])
    ctx.set_max_proto_version(_VERSIONS[policy.max_version])
    if policy.server_preference:
        ctx.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
    if cert is not None:
        ctx.use_certificate(cert.cert)
        ctx.use_privatekey(cert.key)
    return ctx


def client_context(cipher_list: str, *, tls13_suites: str = "", max_version=SSL.TLS1_2_VERSION):
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_cipher_list(cipher_list.encode("ascii"))
    ctx.set_tls13_ciphersuites(tls13_suites.encode("ascii"))
    ctx.set_max_proto_version(max_version)
    ctx.set_verify(SSL.VERIFY_NONE)
    return ctx


def _move(src: SSL.Connection, dst: SSL.Connection) -> None:
    while True:
        try:
            data = src.bio_read(65536)
        except SSL.WantReadError:
            return
        dst.bio_write(data)


def handshake(server_ctx: SSL.Context, client_ctx: SSL.Context) -> SSL.Connection:
    """Run a handshake on memory BIOs; return the server connection or raise SSL.Error."""
    server = SSL.Connection(server_ctx, None)
    server.set_accept_state()
    client = SSL.Connection(client_ctx, None)
    client.set_connect_state()
    done = {"server": False, "client": False}
    for _ in range(_MAX_PUMP_ROUNDS):
        for name, conn, peer in (("client", client, server), ("server", server, client)):
            if not done[name]:
                try:
                    conn.do_handshake()
                    done[name] = True
                except SSL.WantReadError:
                    pass
            _move(conn, peer)
        if all(done.values()):
            return server
    raise AssertionError("handshake did not finish")


_SERVER_CERT = None


def server_cert() -> certgen.Issued:
    global _SERVER_CERT
    if _SERVER_CERT is None:
        _SERVER_CERT = certgen.server(certgen.ca(), "qemu.org")
    return _SERVER_CERT


class KeywordTests(SynchronousTestCase):
    """What the GnuTLS keywords select."""

    def test_default_is_normal(self):
        """No priority means QEMU's default NORMAL: TLS 1.2 and 1.3, ECDHE suites first."""
        policy = parse_priority(None, anon=False)
        self.assertEqual(policy.priority, "NORMAL")
        self.assertEqual((policy.min_version, policy.max_version), (TLS12, TLS13))
        self.assertEqual(suites(policy)[0], "ECDHE-ECDSA-AES256-GCM-SHA384")
        self.assertEqual(tls13(policy), [
            "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_AES_128_GCM_SHA256", "TLS_AES_128_CCM_SHA256"])
        self.assertFalse(policy.server_preference)
        self.assertEqual(policy.notes, ())
        self.assertEqual(parse_priority("NORMAL", anon=False), policy)

    def test_secure256_has_no_128_bit_cipher(self):
        """SECURE256 selects 256-bit ciphers only, in TLS 1.2 and TLS 1.3."""
        policy = parse_priority("SECURE256", anon=False)
        self.assertTrue(suites(policy))
        self.assertEqual([s for s in suites(policy) + tls13(policy) if "128" in s], [])
        self.assertIn("ECDHE-RSA-AES256-GCM-SHA384", suites(policy))
        self.assertEqual(tls13(policy), ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"])
        self.assertEqual(parse_priority("SECURE192", anon=False), policy.__class__(
            **{**policy.__dict__, "priority": "SECURE192"}))

    def test_secure128_is_secure(self):
        """SECURE is another name for SECURE128, which keeps CBC ahead of CCM."""
        policy = parse_priority("SECURE", anon=False)
        self.assertEqual(suites(policy), suites(parse_priority("SECURE128", anon=False)))
        ecdsa = [s for s in suites(policy) if s.startswith("ECDHE-ECDSA-AES256")]
        self.assertEqual(ecdsa, ["ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES256-SHA",
                                 "ECDHE-ECDSA-AES256-CCM"])

    def test_suiteb(self):
        """SUITEB128/192 are TLS 1.2 ECDHE-ECDSA with AES-GCM only."""
        b128 = parse_priority("SUITEB128", anon=False)
        self.assertEqual(suites(b128), ["ECDHE-ECDSA-AES256-GCM-SHA384",
                                        "ECDHE-ECDSA-AES128-GCM-SHA256"])
        self.assertEqual((b128.min_version, b128.max_version, b128.tls13_ciphersuites),
                         (TLS12, TLS12, ""))
        b192 = parse_priority("SUITEB192", anon=False)
        self.assertEqual(suites(b192), ["ECDHE-ECDSA-AES256-GCM-SHA384"])

    def test_pfs_drops_rsa_key_exchange(self):
        """PFS keeps only ephemeral key exchanges."""
        names = suites(parse_priority("PFS", anon=False))
        self.assertTrue(names)
        self.assertEqual([n for n in names if not n.startswith(("ECDHE-", "DHE-"))], [])

    def test_performance_order(self):
        """PERFORMANCE puts RSA key exchange and AES-128-GCM first."""
        policy = parse_priority("PERFORMANCE", anon=False)
        self.assertEqual(suites(policy)[:2], ["AES128-GCM-SHA256", "AES256-GCM-SHA384"])
        self.assertEqual(tls13(policy)[0], "TLS_AES_128_GCM_SHA256")

    def test_legacy_is_normal(self):
        """LEGACY selects what NORMAL does in GnuTLS 3.7."""
        self.assertEqual(suites(parse_priority("LEGACY", anon=False)),
                         suites(parse_priority("NORMAL", anon=False)))

    def test_system_is_normal_with_a_note(self):
        """@SYSTEM is read as NORMAL, and a note says so."""
        policy = parse_priority("@SYSTEM:-VERS-TLS1.3", anon=False)
        self.assertEqual(suites(policy), suites(parse_priority("NORMAL", anon=False)))
        self.assertEqual(policy.max_version, TLS12)
        self.assertEqual(len(policy.notes), 1)
        self.assertIn("'@SYSTEM' uses NORMAL", policy.notes[0])

    def test_case_insensitive(self):
        """Keywords and algorithm names match without regard to case."""
        lower = parse_priority("secure256:-vers-tls1.3:%server_precedence", anon=False)
        upper = parse_priority("SECURE256:-VERS-TLS1.3:%SERVER_PRECEDENCE", anon=False)
        self.assertEqual((lower.cipher_list, lower.max_version, lower.server_preference),
                         (upper.cipher_list, upper.max_version, True))

    def test_elements_trimmed(self):
        """Blanks around an element are ignored, as GnuTLS does."""
        self.assertEqual(parse_priority("NORMAL: -VERS-TLS1.3 ", anon=False).max_version, TLS12)


class ModifierTests(SynchronousTestCase):
    """What '+', '-', '!' and '%' elements do."""

    def test_versions(self):
        """VERS- elements set the protocol range."""
        cases = {
            "NORMAL:-VERS-TLS1.3": (TLS12, TLS12),
            "NORMAL:!VERS-TLS1.3": (TLS12, TLS12),
            "NORMAL:-VERS-TLS1.2": (TLS13, TLS13),
            "NORMAL:-VERS-ALL:+VERS-TLS1.3": (TLS13, TLS13),
            "NORMAL:-VERS-TLS-ALL:+VERS-TLS1.2:+VERS-TLS1.3": (TLS12, TLS13),
            "NORMAL:-VERS-TLS1.0:-VERS-TLS1.1": (TLS12, TLS13),
            "SUITEB128": (TLS12, TLS12),
            "SUITEB128:+VERS-TLS1.3": (TLS12, TLS13),
            "NORMAL:-VERS-TLS1.3:+VERS-TLS1.3": (TLS12, TLS13),
        }
        for text, expected in cases.items():
            policy = parse_priority(text, anon=False)
            self.assertEqual((policy.min_version, policy.max_version), expected, text)
            self.assertEqual(bool(policy.tls13_ciphersuites), expected[1] == TLS13, text)

    def test_tls13_needs_a_group(self):
        """Removing every group turns TLS 1.3 off (as in GnuTLS), with notes."""
        policy = parse_priority("NORMAL:-GROUP-ALL", anon=False)
        self.assertEqual((policy.max_version, policy.tls13_ciphersuites), (TLS12, ""))
        self.assertIn("TLS 1.3 is off", policy.notes[-1])
        self.assertEqual(parse_priority("NORMAL:-CURVE-ALL", anon=False).max_version, TLS12)
        kept = parse_priority("NORMAL:-GROUP-ALL:+GROUP-X25519", anon=False)
        self.assertEqual(kept.max_version, TLS13)

    def test_ciphers_and_macs(self):
        """Cipher and MAC elements add and remove the matching suites."""
        policy = parse_priority("NORMAL:+CAMELLIA-128-CBC:+SHA256", anon=False)
        self.assertIn("CAMELLIA128-SHA", suites(policy))
        self.assertIn("CAMELLIA128-SHA256", suites(policy))
        self.assertIn("ECDHE-RSA-AES128-SHA256", suites(policy))
        no_gcm = parse_priority("NORMAL:-AES-256-GCM:-AES-128-GCM", anon=False)
        self.assertEqual([s for s in suites(no_gcm) + tls13(no_gcm) if "GCM" in s], [])
        cbc_only = parse_priority("NORMAL:-AEAD", anon=False)
        self.assertEqual(cbc_only.tls13_ciphersuites, "")
        self.assertTrue(all(s.endswith("-SHA") for s in suites(cbc_only)), suites(cbc_only))
        only = parse_priority("NORMAL:-CIPHER-ALL:+AES-128-GCM", anon=False)
        self.assertEqual(suites(only), ["ECDHE-ECDSA-AES128-GCM-SHA256",
                                        "ECDHE-RSA-AES128-GCM-SHA256",
                                        "AES128-GCM-SHA256", "DHE-RSA-AES128-GCM-SHA256"])
        self.assertEqual(tls13(only), ["TLS_AES_128_GCM_SHA256"])

    def test_key_exchanges(self):
        """Key-exchange elements add and remove suites; readding moves to the end."""
        no_rsa = parse_priority("NORMAL:-RSA", anon=False)
        self.assertNotIn("AES256-GCM-SHA384", suites(no_rsa))
        moved = parse_priority("NORMAL:-ECDHE-RSA:+ECDHE-RSA", anon=False)
        self.assertEqual(suites(moved)[-1], "ECDHE-RSA-AES128-SHA")
        dss = parse_priority("NORMAL:+DHE-DSS", anon=False)
        self.assertEqual(suites(dss)[-1], "DHE-DSS-AES128-SHA")

    def test_order_follows_additions(self):
        """A removed and re-added cipher moves to the end of the preference order."""
        policy = parse_priority("NORMAL:-AES-256-GCM:+AES-256-GCM", anon=False)
        ecdsa = [s for s in suites(policy) if s.startswith("ECDHE-ECDSA-")]
        self.assertEqual(ecdsa[-1], "ECDHE-ECDSA-AES256-GCM-SHA384")
        self.assertEqual(tls13(policy)[-1], "TLS_AES_256_GCM_SHA384")

    def test_later_keywords_add(self):
        """A keyword after the first element adds its algorithms to the lists."""
        policy = parse_priority("SECURE256:+SECURE128", anon=False)
        self.assertIn("ECDHE-RSA-AES128-GCM-SHA256", suites(policy))
        self.assertEqual(suites(parse_priority("NORMAL:PERFORMANCE", anon=False)),
                         suites(parse_priority("NORMAL", anon=False)))

    def test_no_keyword_starts_from_none(self):
        """A string that does not start with a keyword builds on an empty set."""
        policy = parse_priority("+VERS-TLS1.2:+AES-128-GCM:+AEAD:+ECDHE-RSA", anon=False)
        self.assertEqual(suites(policy), ["ECDHE-RSA-AES128-GCM-SHA256"])
        self.assertEqual(policy.max_version, TLS12)
        flag_first = parse_priority("%SERVER_PRECEDENCE:NORMAL", anon=False)
        self.assertTrue(flag_first.server_preference)
        self.assertEqual(suites(flag_first), suites(parse_priority("NORMAL", anon=False)))

    def test_server_precedence(self):
        """%SERVER_PRECEDENCE, and only it, makes the server's order win."""
        self.assertTrue(parse_priority("NORMAL:%SERVER_PRECEDENCE", anon=False).server_preference)
        self.assertFalse(parse_priority("NORMAL:%COMPAT", anon=False).server_preference)

    def test_tls13_only_keeps_a_valid_cipher_list(self):
        """When only TLS 1.3 is left, the cipher list is still one OpenSSL accepts."""
        policy = parse_priority("NORMAL:-KX-ALL", anon=False)
        self.assertEqual((policy.min_version, policy.max_version), (TLS13, TLS13))
        self.assertEqual(len(suites(policy)), 1)
        self.assertIn("only TLS 1.3 is offered", policy.notes[0])

    def test_notes_name_ignored_elements(self):
        """Elements vncd cannot honour are accepted and each named in one note."""
        cases = [
            "+GROUP-X25519", "-GROUP-FFDHE2048", "+CURVE-SECP256R1", "+SIGN-RSA-SHA256",
            "+SIGN-ALL", "+CTYPE-X509", "+COMP-DEFLATE", "+VERS-TLS1.1", "+VERS-DTLS1.2",
            "+3DES-CBC", "+ARCFOUR-128", "+CAMELLIA-128-GCM", "+MD5", "+PSK", "+SRP",
            "+RSA-EXPORT", "%COMPAT", "%NO_TICKETS", "%NO_EXTENSIONS",
            "%VERIFY_ALLOW_BROKEN", "+CIPHER-GOST-ALL",
        ]
        for element in cases:
            policy = parse_priority(f"NORMAL:{element}", anon=False)
            self.assertEqual(len(policy.notes), 1, element)
            self.assertIn(f"'{element}'", policy.notes[0])
        quiet = parse_priority("NORMAL:+COMP-NULL:-ARCFOUR-128:+AES-128-GCM:+SHA256:"
                               "+VERS-TLS1.2:+ECDHE-RSA:%SERVER_PRECEDENCE", anon=False)
        self.assertEqual(quiet.notes, ())

    def test_repeated_note_once(self):
        """The same ignored element written twice gives one note."""
        policy = parse_priority("NORMAL:+GROUP-X448:+GROUP-X448", anon=False)
        self.assertEqual(len(policy.notes), 1)


class AnonTests(SynchronousTestCase):
    """Priorities of anonymous credentials."""

    def test_default(self):
        """Anonymous NORMAL: ADH first, then AECDH, security level 0, TLS 1.2 only."""
        policy = parse_priority(None, anon=True)
        self.assertEqual(suites(policy), [
            "ADH-AES256-GCM-SHA384", "ADH-AES256-SHA", "ADH-AES128-GCM-SHA256",
            "ADH-AES128-SHA", "AECDH-AES256-SHA", "AECDH-AES128-SHA"])
        self.assertTrue(policy.cipher_list.endswith(":!eNULL:@SECLEVEL=0"))
        self.assertEqual((policy.min_version, policy.max_version), (TLS12, TLS12))
        self.assertEqual(policy.tls13_ciphersuites, "")
        self.assertEqual(policy.notes, ())

    def test_restrictions_apply(self):
        """The string's ciphers and MACs restrict the anonymous suites too."""
        self.assertEqual(suites(parse_priority("SECURE256", anon=True)),
                         ["ADH-AES256-GCM-SHA384"])
        cbc = parse_priority("NORMAL:+SHA256:-AEAD", anon=True)
        self.assertEqual(suites(cbc), ["ADH-AES256-SHA", "ADH-AES256-SHA256", "ADH-AES128-SHA",
                                       "ADH-AES128-SHA256", "AECDH-AES256-SHA",
                                       "AECDH-AES128-SHA"])

    def test_ecdh_can_be_removed(self):
        """Removing ANON-ECDH by name leaves ADH alone; re-adding brings it back."""
        self.assertFalse([s for s in suites(parse_priority("NORMAL:-ANON-ECDH", anon=True))
                          if s.startswith("AECDH")])
        back = parse_priority("NORMAL:-ANON-ECDH:+ANON-ECDH", anon=True)
        self.assertIn("AECDH-AES128-SHA", suites(back))

    def test_anon_dh_always_present(self):
        """ANON-DH is always allowed, as QEMU appends +ANON-DH to anonymous priorities."""
        policy = parse_priority("NORMAL:-ANON-DH:-KX-ALL", anon=True)
        self.assertEqual(suites(policy)[0], "ADH-AES256-GCM-SHA384")

    def test_certificate_suites_left_out(self):
        """Certificate key exchanges in the string add nothing to an anonymous list."""
        policy = parse_priority("NORMAL:+DHE-DSS", anon=True)
        self.assertTrue(all(s.startswith(("ADH-", "AECDH-")) for s in suites(policy)))


class ErrorTests(SynchronousTestCase):
    """Strings refused when the object is created, naming the element."""

    def check(self, text, message, *, anon=False):
        e = self.assertRaises(ObjectError, parse_priority, text, anon=anon)
        self.assertEqual(e.message, message)
        self.assertEqual(e.check, "priority")
        return e

    def test_unknown_elements(self):
        """An element GnuTLS does not know is an error naming it and its position."""
        p = "Unable to set TLS session priority "
        self.check("NORMAL:+FOO", p + "NORMAL:+FOO: unknown element '+FOO' (element 2)")
        self.check("NORMAL:-VERS-TLS1.3:%FOO",
                   p + "NORMAL:-VERS-TLS1.3:%FOO: unknown flag '%FOO' (element 3)")
        self.check("NORMAL:+SIGN-FOO",
                   p + "NORMAL:+SIGN-FOO: unknown element '+SIGN-FOO' (element 2)")
        self.check("NORMAL:+VERS-TLS1.4",
                   p + "NORMAL:+VERS-TLS1.4: unknown element '+VERS-TLS1.4' (element 2)")
        self.check("NORMAL:+CURVE-FFDHE2048",
                   p + "NORMAL:+CURVE-FFDHE2048: unknown element '+CURVE-FFDHE2048' (element 2)")
        self.check("NORMAL,SECURE128", p + "NORMAL,SECURE128: unknown element 'NORMAL,SECURE128'"
                   " (algorithms need a '+' or '-' prefix) (element 1)")
        self.check("NORMAL:AES-128-GCM", p + "NORMAL:AES-128-GCM: unknown element 'AES-128-GCM'"
                   " (algorithms need a '+' or '-' prefix) (element 2)")
        self.check("NORMAL:-SECURE128",
                   p + "NORMAL:-SECURE128: a keyword cannot be removed: '-SECURE128' (element 2)")
        self.check("NORMAL:NONE", p + "NORMAL:NONE: 'NONE' is only valid as the first element"
                   " (element 2)")
        self.check("NORMAL:+NONE", p + "NORMAL:+NONE: unknown element '+NONE' (element 2)")
        self.check("NORMAL:@SYSTEM", p + "NORMAL:@SYSTEM: '@SYSTEM' is only valid as the first"
                   " element (element 2)")
        self.check("@OTHER", p + "@OTHER: unknown element '@OTHER' (algorithms need a '+' or '-'"
                   " prefix) (element 1)")

    def test_empty_elements(self):
        """Empty strings and empty elements are errors."""
        p = "Unable to set TLS session priority "
        self.check("", p + ": element 1 is empty")
        self.check("NORMAL:", p + "NORMAL:: element 2 is empty")
        self.check("NORMAL::+AES-128-GCM", p + "NORMAL::+AES-128-GCM: element 2 is empty")
        self.check("NORMAL: :+AES-128-GCM", p + "NORMAL: :+AES-128-GCM: element 2 is empty")

    def test_null_cipher_refused(self):
        """Asking for the NULL cipher is refused; removing it is fine."""
        self.check("NORMAL:+NULL", "Unable to set TLS session priority NORMAL:+NULL: '+NULL'"
                   " would allow unencrypted connections, which vncd never does (element 2)")
        parse_priority("NORMAL:-NULL", anon=False)

    def test_nothing_usable(self):
        """A string that leaves no protocol version or no suite is an error saying which."""
        p = "Unable to set TLS session priority "
        versions = (": no usable protocol version: vncd speaks TLS 1.2 and TLS 1.3,"
                    " and the string enables neither")
        self.check("NONE", p + "NONE" + versions)
        self.check("NORMAL:-VERS-TLS-ALL:+VERS-TLS1.1", p + "NORMAL:-VERS-TLS-ALL:+VERS-TLS1.1"
                   + versions)
        ciphers = (": no usable cipher suite: no enabled key exchange, cipher and MAC combine"
                   " into a suite for an enabled protocol version")
        for text in ("NORMAL:-CIPHER-ALL", "NORMAL:-MAC-ALL", "NORMAL:-VERS-TLS1.3:-KX-ALL",
                     "NORMAL:-CIPHER-ALL:+3DES-CBC", "SUITEB128:-AEAD"):
            self.check(text, p + text + ciphers)
        self.check("NORMAL:-CIPHER-ALL:+CAMELLIA-128-CBC:-SHA1", p +
                   "NORMAL:-CIPHER-ALL:+CAMELLIA-128-CBC:-SHA1" + ciphers, anon=True)

    def test_anon_needs_tls12(self):
        """Anonymous credentials with TLS 1.2 removed are refused."""
        self.check("NORMAL:-VERS-TLS1.2", "Unable to set TLS session priority NORMAL:-VERS-TLS1.2:"
                   " anonymous credentials need TLS 1.2 (TLS 1.3 has no anonymous key exchange),"
                   " and the string does not enable VERS-TLS1.2", anon=True)

    def test_limits(self):
        """Over-long strings and too many elements are refused without echoing them."""
        long_text = "NORMAL:" + "+AES-128-GCM:" * 200
        e = self.check(long_text, "Unable to set TLS session priority (too long to show):"
                       f" the string is {len(long_text)} characters long; the limit is 2048")
        self.assertNotIn("AES", str(e))
        many = "NORMAL" + ":+AES-128-GCM" * prio.MAX_PRIORITY_ELEMENTS
        self.check(many, f"Unable to set TLS session priority {many}: the string has"
                   f" {prio.MAX_PRIORITY_ELEMENTS + 1} elements; the limit is 64")
        parse_priority("NORMAL" + ":+AES-128-GCM" * (prio.MAX_PRIORITY_ELEMENTS - 1), anon=False)

    def test_control_characters_escaped(self):
        """Control characters in a bad element are shown escaped."""
        self.check("NORMAL:+A\x1b[2J", "Unable to set TLS session priority NORMAL:+A\\x1b[2J:"
                   " unknown element '+A\\x1b[2J' (element 2)")

    def test_str_has_hint(self):
        """The error's text carries a hint about the expected syntax."""
        e = self.check("NORMAL:+FOO", "Unable to set TLS session priority NORMAL:+FOO:"
                       " unknown element '+FOO' (element 2)")
        self.assertIn("(hint: use GnuTLS priority syntax", str(e))


#: Priority strings whose produced settings the OpenSSL tests feed to a context.
CORPUS = [
    None, "NORMAL", "SECURE128", "SECURE", "SECURE192", "SECURE256", "SUITEB128",
    "SUITEB192", "PERFORMANCE", "LEGACY", "PFS", "@SYSTEM", "NORMAL:-VERS-TLS1.3",
    "NORMAL:-VERS-ALL:+VERS-TLS1.3", "NORMAL:-AEAD", "NORMAL:+SHA256:+SHA384",
    "NORMAL:+CAMELLIA-128-CBC:+CAMELLIA-256-CBC:+SHA256:+SHA384",
    "NORMAL:+AES-128-CCM-8:+AES-256-CCM-8", "NORMAL:+DHE-DSS", "NORMAL:-RSA",
    "NORMAL:-CIPHER-ALL:+AES-128-GCM", "NORMAL:-AES-256-GCM:+AES-256-GCM",
    "NORMAL:-ECDHE-RSA:+ECDHE-RSA", "SECURE256:+SECURE128", "NORMAL:PERFORMANCE",
    "PFS:+RSA", "NORMAL:+ARCFOUR-128:+3DES-CBC:+CAMELLIA-128-GCM", "NORMAL:-KX-ALL",
    "NORMAL:-MAC-ALL:+AEAD", "SECURE192:+SHA256", "NORMAL:%SERVER_PRECEDENCE",
    "NORMAL:-GROUP-ALL", "NONE:+VERS-TLS1.2:+AES-128-GCM:+AEAD:+ECDHE-RSA",
]

#: The anonymous-credential subset of the corpus (TLS 1.2 must stay enabled).
ANON_CORPUS = [
    None, "NORMAL", "SECURE128", "SECURE256", "PERFORMANCE", "NORMAL:-AEAD",
    "NORMAL:+CAMELLIA-128-CBC:+CAMELLIA-256-CBC:+SHA256", "NORMAL:-ANON-ECDH",
    "SUITEB128", "NORMAL:-VERS-TLS1.3",
]


class OpenSSLTests(SynchronousTestCase):
    """Every produced policy is taken by a real pyOpenSSL context and behaves as asked."""

    def assertAccepted(self, policy: TLSPolicy) -> None:
        ctx = context(policy, server=True)
        listed = SSL.Connection(ctx, None).get_cipher_list()
        expected = tls13(policy) + suites(policy)
        self.assertEqual(listed, expected, policy.priority)
        self.assertEqual([n for n in listed if "NULL" in n.split("-")], [])

    def test_corpus_accepted(self):
        """OpenSSL takes every cipher list and TLS 1.3 string unchanged, with no NULL cipher."""
        for text in CORPUS:
            self.assertAccepted(parse_priority(text, anon=False))
        for text in ANON_CORPUS:
            self.assertAccepted(parse_priority(text, anon=True))

    def test_secure256_refuses_128_bit_client(self):
        """A SECURE256 server refuses a client offering only 128-bit suites and accepts 256-bit."""
        server = context(parse_priority("SECURE256", anon=False), server=True, cert=server_cert())
        self.assertRaises(SSL.Error, handshake, server,
                          client_context("ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA"))
        self.assertRaises(SSL.Error, handshake, server, client_context(
            "ECDHE-RSA-AES128-GCM-SHA256", tls13_suites="TLS_AES_128_GCM_SHA256",
            max_version=SSL.TLS1_3_VERSION))
        conn = handshake(server, client_context("ECDHE-RSA-AES256-GCM-SHA384"))
        self.assertEqual(conn.get_cipher_name(), "ECDHE-RSA-AES256-GCM-SHA384")
        conn = handshake(server, client_context(
            "ECDHE-RSA-AES256-GCM-SHA384", tls13_suites="TLS_AES_256_GCM_SHA384",
            max_version=SSL.TLS1_3_VERSION))
        self.assertEqual((conn.get_protocol_version_name(), conn.get_cipher_name()),
                         ("TLSv1.3", "TLS_AES_256_GCM_SHA384"))

    def test_version_cap(self):
        """-VERS-TLS1.3 caps the server at TLS 1.2; NORMAL negotiates TLS 1.3."""
        modern_client = client_context("ECDHE-RSA-AES256-GCM-SHA384",
                                        tls13_suites="TLS_AES_256_GCM_SHA384",
                                        max_version=SSL.TLS1_3_VERSION)
        capped = context(parse_priority("NORMAL:-VERS-TLS1.3", anon=False), server=True,
                         cert=server_cert())
        self.assertEqual(handshake(capped, modern_client).get_protocol_version_name(), "TLSv1.2")
        normal = context(parse_priority("NORMAL", anon=False), server=True, cert=server_cert())
        self.assertEqual(handshake(normal, modern_client).get_protocol_version_name(), "TLSv1.3")
        only13 = context(parse_priority("NORMAL:-VERS-TLS1.2", anon=False), server=True,
                         cert=server_cert())
        self.assertRaises(SSL.Error, handshake, only13,
                          client_context("ECDHE-RSA-AES256-GCM-SHA384"))

    def test_server_preference(self):
        """With %SERVER_PRECEDENCE the server's order picks the suite, else the client's."""
        offer = "AES128-SHA:ECDHE-RSA-AES256-GCM-SHA384"
        ours = context(parse_priority("NORMAL:-VERS-TLS1.3:%SERVER_PRECEDENCE", anon=False),
                       server=True, cert=server_cert())
        self.assertEqual(handshake(ours, client_context(offer)).get_cipher_name(),
                         "ECDHE-RSA-AES256-GCM-SHA384")
        theirs = context(parse_priority("NORMAL:-VERS-TLS1.3", anon=False), server=True,
                         cert=server_cert())
        self.assertEqual(handshake(theirs, client_context(offer)).get_cipher_name(), "AES128-SHA")

    def test_anon_negotiates_adh_never_null(self):
        """An anonymous server negotiates ADH and refuses a client offering only NULL."""
        server = context(parse_priority(None, anon=True), server=True)
        conn = handshake(server, client_context("ADH-AES256-GCM-SHA384:@SECLEVEL=0",
                                                tls13_suites="TLS_AES_128_GCM_SHA256",
                                                max_version=SSL.TLS1_3_VERSION))
        self.assertEqual((conn.get_protocol_version_name(), conn.get_cipher_name()),
                         ("TLSv1.2", "ADH-AES256-GCM-SHA384"))
        self.assertRaises(SSL.Error, handshake, server,
                          client_context("AECDH-NULL-SHA:@SECLEVEL=0"))

    @given(st.lists(st.sampled_from([
        "+VERS-TLS1.2", "-VERS-TLS1.2", "+VERS-TLS1.3", "-VERS-TLS1.3", "+AES-128-GCM",
        "-AES-256-GCM", "+CAMELLIA-128-CBC", "-CHACHA20-POLY1305", "+SHA256", "-AEAD",
        "-SHA1", "+RSA", "-ECDHE-RSA", "+DHE-DSS", "-KX-ALL", "+ANON-ECDH", "-ANON-ECDH",
        "-GROUP-ALL", "+GROUP-X25519", "%SERVER_PRECEDENCE", "SECURE256", "+PERFORMANCE",
        "-CIPHER-ALL", "+AES-128-CCM-8", "+CIPHER-ALL",
    ]), max_size=10), st.sampled_from(["NORMAL", "NONE", "SECURE128", "SUITEB192", "PFS"]),
        st.booleans())
    def test_any_policy_accepted(self, elements, first, anon):
        """Whatever combination of valid elements, a returned policy is one OpenSSL takes."""
        try:
            policy = parse_priority(":".join([first, *elements]), anon=anon)
        except ObjectError:
            return
        self.assertAccepted(policy)
        if anon:
            self.assertEqual(policy.max_version, TLS12)
            self.assertTrue(suites(policy)[0].startswith("ADH-"))


class GarbageTests(SynchronousTestCase):
    """Garbage priority strings give ObjectError and nothing else."""

    @given(st.one_of(st.text(max_size=300),
                     st.lists(st.text(alphabet="+-!%:@ ,ALNORM.-0123SHAECD", max_size=12),
                              max_size=80).map(":".join)),
           st.booleans())
    def test_garbage(self, text, anon):
        """Any string either parses to a policy or raises ObjectError."""
        try:
            policy = parse_priority(text, anon=anon)
        except ObjectError as e:
            self.assertTrue(e.message.startswith("Unable to set TLS session priority "))
            return
        self.assertIsInstance(policy, TLSPolicy)
        self.assertEqual([s for s in suites(policy) if "NULL" in s.split("-")], [])


# -- GnuTLS as the oracle -------------------------------------------------------


def _run(args: list[str]) -> str:
    """The program's output, standard error included (gnutls-cli reports syntax errors there)."""
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=_TOOL_TIMEOUT, check=False).stdout


def gnutls_listing(gnutls_cli: str, text: str) -> list[tuple[str, tuple[int, int]]]:
    """``gnutls-cli --priority TEXT -l``: the suites it selects, in order, with their codes."""
    out = _run([gnutls_cli, "--priority", text, "-l"])
    rows = []
    for line in out.splitlines():
        m = re.match(r"(TLS_\S+)\s+0x([0-9a-f]{2}), 0x([0-9a-f]{2})\s", line)
        if m:
            rows.append((m.group(1), (int(m.group(2), 16), int(m.group(3), 16))))
    return rows


def openssl_by_code(openssl: str) -> dict[tuple[int, int], str]:
    """OpenSSL suite names by their two-byte code, for the suites pyOpenSSL here offers."""
    every = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_cipher_list(every.encode("ascii"))
    available = set(SSL.Connection(ctx, None).get_cipher_list())
    table = {}
    for line in _run([openssl, "ciphers", "-V", every]).splitlines():
        m = re.match(r"\s*0x([0-9A-F]{2}),0x([0-9A-F]{2}) - (\S+)", line)
        if m and m.group(3) in available:
            table[(int(m.group(1), 16), int(m.group(2), 16))] = m.group(3)
    return table


class GnuTLSOracleTests(SynchronousTestCase):
    """GnuTLS 3.7 selects the same suites, in the same order, from the same strings."""

    def setUp(self):
        self.gnutls_cli = require_tool("gnutls-cli")
        self.by_code = openssl_by_code(require_tool("openssl"))

    def expected(self, text: str) -> tuple[list[str], list[str]]:
        """(TLS <= 1.2 OpenSSL names, TLS 1.3 names) GnuTLS lists for ``text``."""
        rows = gnutls_listing(self.gnutls_cli, text)
        self.assertTrue(rows, f"gnutls-cli refused {text!r}")
        tls13_names = [name for name, code in rows if code[0] == 0x13]
        supported = {
            "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256",
            "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"}
        older = [self.by_code[code] for name, code in rows
                 if code[0] != 0x13 and code in self.by_code]
        return older, [n for n in tls13_names if n in supported]

    def test_same_suites_as_gnutls(self):
        """For each corpus string our cipher lists equal GnuTLS's selection, order included."""
        for text in CORPUS:
            if text in (None, "@SYSTEM"):
                continue
            gnutls_text = text if text.startswith("NONE") is False else (
                text + ":+COMP-NULL:+SIGN-ALL:+GROUP-ALL")
            older, newer = self.expected(gnutls_text)
            policy = parse_priority(text, anon=False)
            if older:
                self.assertEqual(suites(policy), older, text)
            self.assertEqual(tls13(policy), newer, text)

    def test_same_anonymous_suites_as_gnutls(self):
        """Anonymous lists equal GnuTLS's ANON-DH then ANON-ECDH suites for the string."""
        for text in ANON_CORPUS:
            if text is None:
                text = "NORMAL"
            gnutls_text = text + ":+ANON-DH" + ("" if "-ANON-ECDH" in text else ":+ANON-ECDH")
            older, _ = self.expected(gnutls_text)
            anon = [n for n in older if n.startswith(("ADH-", "AECDH-"))]
            self.assertEqual(suites(parse_priority(text, anon=True)), anon, text)

    def test_gnutls_accepts_our_vocabulary(self):
        """Every element name vncd accepts is one GnuTLS 3.7 accepts too."""
        names = sorted(
            prio._CIPHERS_KNOWN | prio._MACS_KNOWN | prio._KX_KNOWN | prio._GROUPS_KNOWN
            | set(prio._CURVES) | prio._SIGNATURES | prio._CERT_TYPES
            | prio._COMPRESSION_NONE | prio._COMPRESSION_OTHER | set(prio._ALL_TOKENS)
            | set(prio._VERS_KNOWN) | {"NULL"})
        elements = ["+" + n for n in names] + sorted(prio._FLAGS) + [
            k for k in prio._LEVELS if k != "NONE"]
        # GnuTLS reads 64 elements at most: ask in batches of 60 after NORMAL.
        for start in range(0, len(elements), 60):
            text = ":".join(["NORMAL", *elements[start:start + 60]])
            out = _run([self.gnutls_cli, "--priority", text, "-l"])
            self.assertNotIn("Syntax error", out, out.splitlines()[0])

    def test_gnutls_refuses_what_we_refuse_as_unknown(self):
        """Elements we call unknown are syntax errors for GnuTLS as well."""
        for element in ("+FOO", "%FOO", "+SIGN-FOO", "+VERS-TLS1.4", "-SECURE128", "+NONE",
                        "NONE", "+CURVE-FFDHE2048", "AES-128-GCM"):
            text = f"NORMAL:{element}"
            self.assertRaises(ObjectError, parse_priority, text, anon=False)
            out = _run([self.gnutls_cli, "--priority", text, "-l"])
            self.assertIn("Syntax error", out, text)
