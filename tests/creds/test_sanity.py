"""Tests for creds.sanity: QEMU's per-certificate rules, GnuTLS-style verification,
vncd's extra checks (chain order, revocation) and the warnings."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU, ExtensionOID
from twisted.trial.unittest import SynchronousTestCase

from creds import sanity
from creds.objects import ObjectError
from tests import certgen

NOW = datetime.datetime(2030, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def ca(cn: str, **kw) -> certgen.Issued:
    return certgen.ca(cn, at=NOW, **kw)


def srv(issuer, cn: str = "qemu.org", **kw) -> certgen.Issued:
    return certgen.server(issuer, cn, at=NOW, **kw)


ROOT = ca("root", key_index=0)
OTHER = ca("other", key_index=1)


class TimeTests(SynchronousTestCase):
    """Validity periods, with the clock given."""

    def test_messages_by_role(self) -> None:
        """Expired and not-yet-active certificates are named by role and file."""
        old = srv(ROOT, not_before=-2 * DAY, not_after=-DAY).cert
        new = srv(ROOT, not_before=DAY, not_after=2 * DAY).cert
        for role in ("CA", "server", "client"):
            e = self.assertRaises(ObjectError, sanity.check_times, old, "/f", role=role, now=NOW)
            self.assertEqual(e.message, f"The {role} certificate /f has expired")
            self.assertTrue(e.hint)
            e = self.assertRaises(ObjectError, sanity.check_times, new, "/f", role=role, now=NOW)
            self.assertEqual(e.message, f"The {role} certificate /f is not yet active")
            self.assertEqual(e.check, "not-yet-active")

    def test_hints_give_the_dates(self) -> None:
        """The hints give the validity window and the clock's time."""
        old = srv(ROOT, not_before=-2 * DAY, not_after=-DAY).cert
        new = srv(ROOT, not_before=DAY, not_after=2 * DAY).cert
        e = self.assertRaises(ObjectError, sanity.check_times, old, "/f", role="server", now=NOW)
        self.assertTrue(e.hint.startswith(
            "'C=UK,CN=qemu.org' expired on 2030-05-31 12:00 UTC (valid from 2030-05-30 12:00 "
            "UTC); it is now 2030-06-01 12:00 UTC; issue a new certificate"), e.hint)
        e = self.assertRaises(ObjectError, sanity.check_times, new, "/f", role="CA", now=NOW)
        self.assertTrue(e.hint.startswith(
            "'C=UK,CN=qemu.org' is valid from 2030-06-02 12:00 UTC (until 2030-06-03 12:00 "
            "UTC); it is now 2030-06-01 12:00 UTC; check the system clock"), e.hint)

    def test_boundaries(self) -> None:
        """A certificate is valid from its first to its last second inclusive."""
        cert = srv(ROOT, not_before=datetime.timedelta(0), not_after=DAY).cert
        sanity.check_times(cert, "/f", role="server", now=NOW)
        sanity.check_times(cert, "/f", role="server", now=NOW + DAY)
        self.assertRaises(ObjectError, sanity.check_times, cert, "/f", role="server",
                          now=NOW + DAY + datetime.timedelta(seconds=1))
        self.assertRaises(ObjectError, sanity.check_times, cert, "/f", role="server",
                          now=NOW - datetime.timedelta(seconds=1))

    def test_uses_given_clock(self) -> None:
        """The same certificate passes or fails depending only on 'now'."""
        cert = srv(ROOT).cert
        sanity.check_certificate(cert, "/f", server=True, is_ca=False, now=NOW)
        self.assertRaises(ObjectError, sanity.check_certificate, cert, "/f", server=True,
                          is_ca=False, now=NOW + 30 * DAY)


class RuleTests(SynchronousTestCase):
    """check_certificate(): basicConstraints, keyUsage, extendedKeyUsage."""

    def check(self, cert, *, server: bool = True, is_ca: bool = False) -> None:
        sanity.check_certificate(cert.cert, "/f", server=server, is_ca=is_ca, now=NOW)

    def assertFails(self, message: str, cert, *, hint_has: str = "", **kw) -> None:
        e = self.assertRaises(ObjectError, self.check, cert, **kw)
        self.assertEqual(e.message, message)
        self.assertIn(hint_has, e.hint)
        self.assertEqual(e.path, "/f")

    def test_first_failure_wins(self) -> None:
        """Checks run in QEMU's order: an expired leaf that is also a CA reports expiry."""
        cert = srv(ROOT, basic_constraints=(True, True), not_before=-2 * DAY, not_after=-DAY)
        self.assertFails("The server certificate /f has expired", cert)

    def test_basic_constraints(self) -> None:
        """A leaf must not be a CA; a CA must say so, critical or not."""
        self.assertFails("The certificate /f basic constraints show a CA, but we need one "
                         "for a client", srv(ROOT, basic_constraints=(True, False)),
                         server=False, hint_has="CA:FALSE")
        self.assertFails("The certificate /f basic constraints do not show a CA",
                         ca("x", basic_constraints=(False, False)), is_ca=True,
                         hint_has="CA:TRUE")
        self.assertFails("The certificate /f is missing basic constraints for a CA",
                         ca("x", basic_constraints=None), is_ca=True, hint_has='"ca"')
        self.check(srv(ROOT, basic_constraints=None))
        self.check(ca("x", basic_constraints=(True, False)), is_ca=True)

    def test_key_usage(self) -> None:
        """Missing keyUsage bits matter only when the extension is critical."""
        self.assertFails("Certificate /f usage does not permit certificate signing",
                         ca("x", key_usage=({"crl_sign"}, True)), is_ca=True,
                         hint_has="cert_signing_key")
        self.check(ca("x", key_usage=({"crl_sign"}, False)), is_ca=True)
        self.assertFails("Certificate /f usage does not permit digital signature",
                         srv(ROOT, key_usage=({"key_encipherment"}, True)),
                         hint_has="digitalSignature")
        self.check(srv(ROOT, key_usage=({"key_encipherment"}, False)))

    def test_key_encipherment_not_required(self) -> None:
        """digitalSignature alone is enough for a leaf (RFC 8813; Debian's QEMU 7.2)."""
        self.check(srv(ROOT, key_usage=({"digital_signature"}, True)))
        self.check(srv(ROOT, key_usage=({"digital_signature"}, True), key_kind="ec",
                       key_size=256))

    def test_key_purpose(self) -> None:
        """A critical extendedKeyUsage must allow the endpoint's role (or anything)."""
        client_only = srv(ROOT, ext_key_usage=([EKU.CLIENT_AUTH], True))
        self.assertFails("Certificate /f purpose does not allow use with a TLS server",
                         client_only, hint_has="tls_www_server")
        self.check(client_only, server=False)
        server_only = srv(ROOT, ext_key_usage=([EKU.SERVER_AUTH], True))
        self.assertFails("Certificate /f purpose does not allow use with a TLS client",
                         server_only, server=False, hint_has="clientAuth")
        anything = srv(ROOT, ext_key_usage=([EKU.ANY_EXTENDED_KEY_USAGE], True))
        self.check(anything)
        self.check(anything, server=False)
        self.check(srv(ROOT, ext_key_usage=([EKU.CLIENT_AUTH], False)))

    def test_key_purpose_ignored_for_ca(self) -> None:
        """A CA's extendedKeyUsage is not looked at."""
        self.check(ca("x", ext_key_usage=([EKU.CODE_SIGNING], True)), is_ca=True)

    def test_damaged_extension(self) -> None:
        """An extension that cannot be decoded is reported with GnuTLS' wording."""
        bad = x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x01\x02")
        cert = certgen.make_cert(certgen.name("x"), at=NOW, extra_extensions=[(bad, True)])
        self.assertFails("Unable to query certificate /f basic constraints: "
                         "ASN1 parser: Error in DER parsing.", cert)


class VerifyTests(SynchronousTestCase):
    """verify_status(): GnuTLS' verdict on our own chain against the CA list."""

    def test_trusted(self) -> None:
        """A leaf issued by an anchor, or equal to one, is trusted."""
        leaf = srv(ROOT)
        self.assertEqual(sanity.verify_status([leaf.cert], [OTHER.cert, ROOT.cert]), set())
        self.assertEqual(sanity.verify_status([ROOT.cert], [ROOT.cert]), set())

    def test_intermediate_as_anchor(self) -> None:
        """An intermediate in the CA list is an anchor: the root is not needed."""
        inter = ca("inter", issuer=ROOT)
        self.assertEqual(sanity.verify_status([srv(inter).cert], [inter.cert]), set())

    def test_unknown_issuer(self) -> None:
        """No anchor and no following certificate names the issuer."""
        self.assertEqual(sanity.verify_status([srv(ROOT).cert], [OTHER.cert]),
                         {sanity.NOT_TRUSTED, sanity.UNKNOWN_ISSUER})

    def test_forged_issuer(self) -> None:
        """An anchor with the right name but another key does not make it trusted."""
        impostor = certgen.ca("root", at=NOW, key_index=3)
        leaf = srv(ROOT)
        self.assertNotEqual(impostor.key, ROOT.key)
        self.assertEqual(sanity.verify_status([leaf.cert], [impostor.cert]),
                         {sanity.NOT_TRUSTED})
        self.assertEqual(sanity.verify_status([leaf.cert], [impostor.cert, ROOT.cert]), set())

    def test_issuer_without_cert_sign(self) -> None:
        """An issuer whose keyUsage lacks keyCertSign, even non-critically, is not trusted."""
        weak = ca("weak", key_usage=({"digital_signature"}, False))
        self.assertEqual(sanity.verify_status([srv(weak).cert], [weak.cert]),
                         {sanity.NOT_TRUSTED})

    def test_through_intermediates(self) -> None:
        """Intermediates after the leaf lead to an anchor."""
        i1 = ca("i1", issuer=ROOT)
        i2 = ca("i2", issuer=i1)
        leaf = srv(i2)
        self.assertEqual(sanity.verify_status([leaf.cert, i2.cert, i1.cert], [ROOT.cert]), set())
        self.assertEqual(sanity.verify_status([leaf.cert, i2.cert], [ROOT.cert]),
                         {sanity.NOT_TRUSTED, sanity.UNKNOWN_ISSUER})

    def test_path_length(self) -> None:
        """An issuer's pathLenConstraint limits the CAs below it."""
        limited = ca("limited", basic_constraints=(True, True, 0))
        inter = ca("inter", issuer=limited)
        leaf = srv(inter)
        self.assertEqual(sanity.verify_status([leaf.cert, inter.cert], [limited.cert]),
                         {sanity.NOT_TRUSTED})
        self.assertEqual(sanity.verify_status([srv(limited).cert], [limited.cert]), set())


class ConfigurationTests(SynchronousTestCase):
    """check_configuration(): the order of checks and the whole-file messages."""

    def test_chain_order(self) -> None:
        """Intermediates after the leaf must each certify the one before (QEMU 10.2's text)."""
        i1 = ca("qemu level 1a", issuer=ROOT)
        i2 = ca("qemu level 2a", issuer=i1)
        leaf = srv(i2)
        e = self.assertRaises(ObjectError, sanity.check_configuration, server=True,
                              ca_certs=[ROOT.cert], ca_path="/ca",
                              chain=[leaf.cert, i1.cert, i2.cert], chain_path="/own", now=NOW)
        self.assertEqual(e.message, "Cert 'C=UK,CN=qemu level 1a' does not match issuer of "
                                    "cert 'C=UK,CN=qemu.org'")
        self.assertEqual(e.path, "/own")
        self.assertIn("leaf first", e.hint)

    def test_intermediate_checked_as_ca(self) -> None:
        """An expired intermediate after the leaf is a CA certificate of the own file."""
        inter = ca("inter", issuer=ROOT, not_before=-2 * DAY, not_after=-DAY)
        e = self.assertRaises(ObjectError, sanity.check_configuration, server=True,
                              ca_certs=[ROOT.cert], ca_path="/ca",
                              chain=[srv(inter).cert, inter.cert], chain_path="/own", now=NOW)
        self.assertEqual(e.message, "The CA certificate /own has expired")

    def test_leaf_before_ca_file(self) -> None:
        """Our own certificate is checked before the CA file, as in QEMU."""
        bad_leaf = srv(ROOT, basic_constraints=(True, True))
        expired_ca = ca("old", not_before=-2 * DAY, not_after=-DAY)
        e = self.assertRaises(ObjectError, sanity.check_configuration, server=True,
                              ca_certs=[expired_ca.cert], ca_path="/ca",
                              chain=[bad_leaf.cert], chain_path="/own", now=NOW)
        self.assertIn("basic constraints show a CA", e.message)

    def test_verification_message(self) -> None:
        """A verification failure names both files and GnuTLS' reason, with a hint."""
        e = self.assertRaises(ObjectError, sanity.check_configuration, server=False,
                              ca_certs=[OTHER.cert], ca_path="/ca",
                              chain=[certgen.client(ROOT, at=NOW).cert], chain_path="/own",
                              now=NOW)
        self.assertEqual(e.message, "Our own certificate /own failed validation against /ca: "
                                    "The certificate hasn't got a known issuer")
        self.assertIn("ca-cert.pem", e.hint)

    def test_no_own_certificate(self) -> None:
        """Without an own certificate only the CA file is checked."""
        sanity.check_configuration(server=False, ca_certs=[ROOT.cert], ca_path="/ca",
                                   chain=[], chain_path=None, now=NOW)
        self.assertRaises(ObjectError, sanity.check_configuration, server=False,
                          ca_certs=[srv(ROOT).cert], ca_path="/ca", chain=[],
                          chain_path=None, now=NOW)


class RevocationTests(SynchronousTestCase):
    """check_revocation(): our own certificate must not be on our own CRL."""

    def test_revoked_leaf_and_intermediate(self) -> None:
        """A revoked leaf, or a revoked intermediate, is refused naming the CRL."""
        inter = ca("inter", issuer=ROOT)
        leaf = srv(inter)
        for revoked, crl in ((leaf, certgen.crl(inter, [leaf], at=NOW)),
                             (inter, certgen.crl(ROOT, [inter], at=NOW))):
            e = self.assertRaises(ObjectError, sanity.check_revocation,
                                  chain=[leaf.cert, inter.cert], chain_path="/own",
                                  crls=[crl], crl_path="/crl", ca_certs=[ROOT.cert])
            self.assertEqual(e.message, "Our own certificate /own failed validation "
                                        "against /crl: The certificate has been revoked")

    def test_other_issuers_crl_does_not_count(self) -> None:
        """A CRL of another CA listing the same serial number revokes nothing of ours."""
        leaf = srv(ROOT, serial=4242)
        other_leaf = srv(OTHER, serial=4242)
        sanity.check_revocation(chain=[leaf.cert], chain_path="/own",
                                crls=[certgen.crl(OTHER, [other_leaf], at=NOW)],
                                crl_path="/crl", ca_certs=[ROOT.cert, OTHER.cert])

    def test_unsigned_crl_does_not_count(self) -> None:
        """A CRL with our CA's name but another key revokes nothing."""
        leaf = srv(ROOT)
        impostor = certgen.ca("root", at=NOW, key_index=3)
        sanity.check_revocation(chain=[leaf.cert], chain_path="/own",
                                crls=[certgen.crl(impostor, [leaf], at=NOW)],
                                crl_path="/crl", ca_certs=[ROOT.cert])


class WarningTests(SynchronousTestCase):
    """expiry_warnings() and crl_warnings()."""

    def test_expiry(self) -> None:
        """Certificates expiring within 30 days are named with their file and date."""
        soon = srv(ROOT, not_after=29 * DAY).cert
        later = srv(ROOT, not_after=31 * DAY).cert
        today = srv(ROOT, not_after=datetime.timedelta(hours=3)).cert
        gone = srv(ROOT, not_before=-2 * DAY, not_after=-DAY).cert
        warnings = sanity.expiry_warnings([(soon, "/a"), (later, "/b"), (today, "/c"),
                                           (gone, "/d")], NOW)
        self.assertEqual(warnings, [
            "The certificate /a (C=UK,CN=qemu.org) expires on 2030-06-30 12:00 UTC, "
            "in 29 days; renew it soon",
            "The certificate /c (C=UK,CN=qemu.org) expires on 2030-06-01 15:00 UTC, "
            "in less than a day; renew it soon",
        ])

    def test_usable_crls(self) -> None:
        """A CRL from a CA without cRLSign is kept with a fix; a forged one stops the load."""
        plain = certgen.ca("plain CA", crl_sign=False, at=NOW)
        good = certgen.crl(ROOT, at=NOW)
        no_sign = certgen.crl(plain, at=NOW)
        forged = certgen.crl(certgen.Issued(cert=ROOT.cert, key=OTHER.key, issuer=None), at=NOW)
        foreign = certgen.crl(OTHER, at=NOW)
        kept, warnings = sanity.usable_crls(crls=[good, no_sign, foreign],
                                            crl_path="/crl", ca_certs=[ROOT.cert, plain.cert],
                                            ca_path="/ca")
        self.assertEqual(kept, (good, no_sign, foreign))
        self.assertEqual(len(warnings), 1, warnings)
        self.assertTrue(warnings[0].startswith(
            "The CA 'C=UK,CN=plain CA' in /ca signs CRL /crl (CRL 2) but its keyUsage does "
            "not include cRLSign"), warnings[0])
        self.assertIn("crl_signing_key", warnings[0])
        self.assertIn("keyUsage=critical,keyCertSign,cRLSign", warnings[0])
        with self.assertRaises(ObjectError) as cm:
            sanity.usable_crls(crls=[good, forged], crl_path="/crl",
                               ca_certs=[ROOT.cert], ca_path="/ca")
        self.assertEqual(cm.exception.message,
                         "The CRL /crl (CRL 2) claims to be issued by 'C=UK,CN=root' in /ca,"
                         " but its signature does not verify with that CA's key")
        self.assertEqual(cm.exception.path, "/crl")

    def test_crl(self) -> None:
        """A CRL no CA signed, or past its nextUpdate, is warned about."""
        good = certgen.crl(ROOT, at=NOW)
        self.assertEqual(sanity.crl_warnings(crls=[good], crl_path="/crl",
                                             ca_certs=[ROOT.cert], ca_path="/ca", now=NOW), [])
        stale = certgen.crl(ROOT, at=NOW, last_update=-3 * DAY, next_update=-DAY)
        foreign = certgen.crl(OTHER, at=NOW)
        warnings = sanity.crl_warnings(crls=[stale, foreign], crl_path="/crl",
                                       ca_certs=[ROOT.cert], ca_path="/ca", now=NOW)
        self.assertEqual(len(warnings), 2)
        self.assertTrue(warnings[0].startswith("The CRL /crl (CRL 1) expired on 2030-05-31"))
        self.assertTrue(warnings[1].startswith("The CRL /crl (CRL 2) is not signed by any "
                                               "certificate in /ca"))
