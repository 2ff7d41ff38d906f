"""Tests for creds.x509: the tls-creds-x509 object beyond the verdict matrix --
what it hands the TLS engine, its properties, secrets and warnings."""

from __future__ import annotations

import datetime
import os

from OpenSSL import SSL, crypto
from twisted.trial.unittest import SynchronousTestCase

from creds.objects import ObjectError
from creds.tlscreds import Endpoint
from tests import certgen
from tests.creds.sessionpump import handshake_raw
from tests.creds.test_x509_catalogue import T0, pki, registry

DAY = datetime.timedelta(days=1)
_REAL_ACCESS = os.access


def make_dir(test: SynchronousTestCase, **kw) -> str:
    d = os.path.abspath(test.mktemp())
    return certgen.write_dir(d, **kw)


class MaterialTests(SynchronousTestCase):
    """load_material() hands the engine exactly what the files hold."""

    def test_server_material(self) -> None:
        """A server directory yields the CA list, chain, key, CRLs, DH and paths."""
        p = pki()
        d = make_dir(self, ca=[p.cacert, p.root], server=p.servercert, crl=p.crl_empty,
                     dh=certgen.FFDHE2048_PEM)
        obj = registry().create("tls-creds-x509", {"id": "t0", "dir": d, "endpoint": "server"})
        m = obj.material
        self.assertEqual(m.ca_certs, (p.cacert.cert, p.root.cert))
        self.assertEqual(m.chain, (p.servercert.cert,))
        self.assertEqual(m.key.private_numbers(), p.servercert.key.private_numbers())
        self.assertEqual(len(m.crls), 1)
        self.assertTrue(m.dh_params_pem.startswith(b"-----BEGIN DH PARAMETERS-----"))
        self.assertEqual(dict(m.paths), {
            "ca": f"{d}/ca-cert.pem", "crl": f"{d}/ca-crl.pem", "dh": f"{d}/dh-params.pem",
            "cert": f"{d}/server-cert.pem", "key": f"{d}/server-key.pem"})
        self.assertEqual(obj.kind, "x509")
        self.assertIs(obj.endpoint, Endpoint.SERVER)

    def test_optional_files_absent(self) -> None:
        """Without CRL and DH files the material has none (the engine's built-in group)."""
        p = pki()
        d = make_dir(self, ca=[p.cacert], server=p.servercert)
        m = registry().create("tls-creds-x509", {"id": "t0", "dir": d,
                                                 "endpoint": "server"}).material
        self.assertEqual(m.crls, ())
        self.assertIsNone(m.dh_params_pem)
        self.assertNotIn("crl", m.paths)

    def test_client_without_certificate(self) -> None:
        """A client directory with only the CA yields an empty chain and no key."""
        p = pki()
        d = make_dir(self, ca=[p.cacert])
        m = registry().create("tls-creds-x509", {"id": "t0", "dir": d}).material
        self.assertEqual((m.chain, m.key), ((), None))
        self.assertEqual(dict(m.paths), {"ca": f"{d}/ca-cert.pem"})

    def test_client_ignores_server_files(self) -> None:
        """A client endpoint does not read the CRL or DH files (as QEMU)."""
        p = pki()
        d = make_dir(self, ca=[p.cacert], client=p.clientcert, crl=p.crl_empty,
                     dh=certgen.FFDHE2048_PEM)
        m = registry().create("tls-creds-x509", {"id": "t0", "dir": d,
                                                 "endpoint": "client"}).material
        self.assertEqual((m.crls, m.dh_params_pem), ((), None))
        self.assertEqual(m.chain, (p.clientcert.cert,))

    def test_chain_after_leaf_is_sent(self) -> None:
        """Intermediates after the leaf reach a client that trusts only the root."""
        p = pki()
        d = make_dir(self, ca=[p.root],
                     server=[p.servercertlevel3a, p.level2a, p.level1a])
        obj = registry().create("tls-creds-x509", {"id": "t0", "dir": d, "endpoint": "server",
                                                   "verify-peer": "off"})
        self.assertEqual(len(obj.material.chain), 3)
        client = SSL.Context(SSL.TLS_CLIENT_METHOD)
        client.get_cert_store().add_cert(crypto.X509.from_cryptography(p.root.cert))
        verdicts = []
        client.set_verify(SSL.VERIFY_PEER,
                          lambda conn, cert, errno, depth, ok: verdicts.append(errno) or ok)
        server, conn = handshake_raw(obj.loaded.context, client)
        self.assertEqual(verdicts, [0, 0, 0, 0])
        self.assertEqual(len(conn.get_peer_cert_chain()), 3)


class PropertyTests(SynchronousTestCase):
    """The object's properties: QEMU's names, types and refusals."""

    def test_props(self) -> None:
        """tls-creds-x509 has the base properties plus sanity-check, passwordid, loaded."""
        p = pki()
        d = make_dir(self, ca=[p.cacert], server=p.servercert)
        r = registry()
        obj = r.create("tls-creds-x509", {"id": "t0", "dir": d, "endpoint": "server",
                                          "verify-peer": "no", "sanity-check": "yes",
                                          "priority": "NORMAL"})
        self.assertFalse(obj.verify_peer)
        self.assertTrue(obj.get("sanity-check"))
        e = self.assertRaises(ObjectError, r.create, "tls-creds-x509",
                              {"id": "t1", "dir": d, "username": "x"})
        self.assertEqual(e.message, "Invalid parameter 'username'")
        e = self.assertRaises(ObjectError, r.create, "tls-creds-x509",
                              {"id": "t1", "dir": d, "sanity-check": "maybe"})
        self.assertEqual(e.message, "Parameter 'sanity-check' expects 'on' or 'off'")

    def test_loaded_is_read_only(self) -> None:
        """Setting the historic loaded property is refused (QEMU 7.2 refuses it too)."""
        p = pki()
        d = make_dir(self, ca=[p.cacert], server=p.servercert)
        e = self.assertRaises(ObjectError, registry().create, "tls-creds-x509",
                              {"id": "t0", "dir": d, "endpoint": "server", "loaded": "on"})
        self.assertTrue(e.message.startswith("Property 'tls-creds-x509.loaded' is "),
                        e.message)

    def test_sanity_check_off_still_loads_keys(self) -> None:
        """With sanity-check=off the certificate and key are still read and matched."""
        p = pki()
        d = make_dir(self, ca=[p.cacert4], server=p.servercert4)
        obj = registry().create("tls-creds-x509", {"id": "t0", "dir": d, "endpoint": "server",
                                                   "sanity-check": "off"})
        self.assertEqual(obj.material.chain, (p.servercert4.cert,))
        self.assertEqual(obj.registry.warnings, [])


class PasswordTests(SynchronousTestCase):
    """passwordid: the secret that decrypts the private key."""

    def test_not_a_secret(self) -> None:
        """passwordid naming another kind of object is refused in QEMU's words."""
        p = pki()
        d = make_dir(self, ca=[p.cacert], server=p.servercert, key_password=b"pw")
        r = registry()
        r.create("tls-creds-anon", {"id": "anon0"})
        e = self.assertRaises(ObjectError, r.create, "tls-creds-x509",
                              {"id": "t0", "dir": d, "endpoint": "server",
                               "passwordid": "anon0"})
        self.assertEqual(e.message, "Object with id 'anon0' is not a secret")

    def test_password_must_be_utf8(self) -> None:
        """A password secret that is not UTF-8 text is refused naming the secret."""
        p = pki()
        d = make_dir(self, ca=[p.cacert], server=p.servercert, key_password=b"pw")
        r = registry()
        r.create("secret", {"id": "s0", "data": "//4=", "format": "base64"})
        e = self.assertRaises(ObjectError, r.create, "tls-creds-x509",
                              {"id": "t0", "dir": d, "endpoint": "server",
                               "passwordid": "s0"})
        self.assertEqual(e.message, "Data from secret s0 is not valid UTF-8")

    def test_password_from_file(self) -> None:
        """A password file decrypts the key; a trailing newline is part of the password."""
        p = pki()
        d = make_dir(self, ca=[p.cacert], server=p.servercert, key_password=b"pw")
        r = registry()
        exact, with_newline = os.path.join(d, "pw"), os.path.join(d, "pw-nl")
        for path, data in ((exact, b"pw"), (with_newline, b"pw\n")):
            with open(path, "wb") as f:
                f.write(data)
        r.create("secret", {"id": "good", "file": exact})
        r.create("secret", {"id": "bad", "file": with_newline})
        r.create("tls-creds-x509", {"id": "t0", "dir": d, "endpoint": "server",
                                    "passwordid": "good"})
        e = self.assertRaises(ObjectError, r.create, "tls-creds-x509",
                              {"id": "t1", "dir": d, "endpoint": "server",
                               "passwordid": "bad"})
        self.assertTrue(e.message.endswith(": Decryption has failed."))
        self.assertIn("newline", e.hint)
        self.assertNotIn("pw\n", str(e))


class WarningTests(SynchronousTestCase):
    """Warnings go to the registry, name the file and say what to do."""

    def create(self, d: str, endpoint: str = "server", clock=None):
        r = registry(clock=clock or (lambda: T0))
        r.create("tls-creds-x509", {"id": "t0", "dir": d, "endpoint": endpoint})
        return r.warnings

    def test_key_permissions(self) -> None:
        """A key readable by group or others is named with a chmod 600 suggestion."""
        p = pki()
        d = make_dir(self, ca=[p.cacert], server=p.servercert)
        key = f"{d}/server-key.pem"
        self.assertEqual([w for w in self.create(d) if "Private key" in w], [])
        for mode in (0o640, 0o604):
            os.chmod(key, mode)
            self.assertIn(f"Private key file {key} is readable by group or others "
                          f"(mode {mode:04o}); run: chmod 600 {key}", self.create(d))

    def test_lone_client_files(self) -> None:
        """A client certificate without key, or key without certificate, is warned about."""
        p = pki()
        d = make_dir(self, ca=[p.cacert], client=p.clientcert, write_key=False)
        self.assertIn(f"{d}/client-cert.pem is ignored because client-key.pem is missing; "
                      "no client certificate will be sent", self.create(d, "client"))
        os.unlink(f"{d}/client-cert.pem")
        certgen.write_pem(f"{d}/client-key.pem", p.clientcert.key_pem(), mode=0o600)
        self.assertIn(f"{d}/client-key.pem is ignored because client-cert.pem is missing; "
                      "no client certificate will be sent", self.create(d, "client"))

    def test_expiry(self) -> None:
        """A certificate expiring within 30 days is warned about with its date."""
        ca = certgen.ca("long CA", at=T0, not_after=400 * DAY)
        short = certgen.server(ca, at=T0, not_after=10 * DAY)
        d = make_dir(self, ca=[ca], server=short)
        warnings = self.create(d)
        self.assertEqual(len(warnings), 1)
        self.assertTrue(warnings[0].startswith(f"The certificate {d}/server-cert.pem "
                                               "(C=UK,CN=qemu.org) expires on "), warnings)
        self.assertIn("in 10 days", warnings[0])
        long_lived = certgen.server(ca, at=T0, not_after=100 * DAY)
        certgen.write_dir(d, server=long_lived)
        self.assertEqual(self.create(d), [])

    def test_crl(self) -> None:
        """A CRL not signed by the CA file is warned about."""
        p = pki()
        d = make_dir(self, ca=[p.cacert], server=p.servercert, crl=p.crl_other)
        self.assertIn(f"The CRL {d}/ca-crl.pem is not signed by any certificate in "
                      f"{d}/ca-cert.pem; it cannot revoke anything and peers may be refused",
                      self.create(d))

    def test_no_warnings_when_sanity_off(self) -> None:
        """sanity-check=off silences the certificate warnings (not the key permissions)."""
        p = pki()
        d = make_dir(self, ca=[p.cacert], server=p.servercert, crl=p.crl_other)
        os.chmod(f"{d}/server-key.pem", 0o644)
        r = registry()
        r.create("tls-creds-x509", {"id": "t0", "dir": d, "endpoint": "server",
                                    "sanity-check": "off"})
        self.assertEqual(len(r.warnings), 1)
        self.assertIn("chmod 600", r.warnings[0])


class UnreadableTests(SynchronousTestCase):
    """Files vncd may not read: QEMU's sanity check skips them and the load that
    follows names them with GnuTLS' "Error while reading file."."""

    def create(self, d: str, unreadable: str, endpoint: str = "server", **files):
        """Create the object while ``unreadable`` in ``d`` fails access(R_OK)."""
        target = f"{d}/{unreadable}"
        self.patch(os, "access", lambda path, mode: path != target and _REAL_ACCESS(path, mode))
        return registry().create("tls-creds-x509", {"id": "t0", "dir": d, "endpoint": endpoint})

    def test_messages(self) -> None:
        """Each unreadable file gets the message QEMU 7.2 prints for it."""
        p = pki()
        pair = "Cannot load certificate '{d}/server-cert.pem' & key '{d}/server-key.pem'"
        for name, message in (
                ("ca-cert.pem", "Cannot load CA certificate '{d}/ca-cert.pem': "
                                "Error while reading file."),
                ("server-cert.pem", pair + ": Error while reading file."),
                ("server-key.pem", pair + ": Error while reading file."),
                ("ca-crl.pem", "Cannot load CRL '{d}/ca-crl.pem': Error while reading file.")):
            d = make_dir(self, ca=[p.cacert], server=p.servercert, crl=p.crl_empty)
            e = self.assertRaises(ObjectError, self.create, d, name)
            self.assertEqual(e.message, message.replace("{d}", d))
            self.assertIn("readable", e.hint)

    def test_sanity_runs_without_the_file(self) -> None:
        """Checks that do not need the unreadable file still run first, as in QEMU."""
        p = pki()
        d = make_dir(self, ca=[p.cacert], server=p.servercert14)
        e = self.assertRaises(ObjectError, self.create, d, "ca-cert.pem")
        self.assertEqual(e.message, f"Certificate {d}/server-cert.pem usage does not permit "
                                    "digital signature")

    def test_lone_unreadable_client_certificate(self) -> None:
        """A client certificate without key is not needed, so being unreadable is no error."""
        p = pki()
        d = make_dir(self, ca=[p.cacert], client=p.clientcert, write_key=False)
        obj = self.create(d, "client-cert.pem", endpoint="client")
        self.assertEqual(obj.material.chain, ())


class MissingDirectoryTests(SynchronousTestCase):
    """A dir= that does not exist is named as such (QEMU names only the file)."""

    def test_missing_directory(self) -> None:
        """QEMU's message, and a hint saying the directory does not exist."""
        d = os.path.abspath(self.mktemp())
        e = self.assertRaises(ObjectError, registry().create, "tls-creds-x509",
                              {"id": "t0", "dir": d, "endpoint": "server"})
        self.assertEqual(e.message,
                         f"Unable to access credentials {d}/ca-cert.pem: No such file or directory")
        self.assertEqual(e.hint, f"the directory {d} does not exist: check dir= "
                                 f"(vncd-certs create {d} makes a new one)")

    def test_directory_is_a_file(self) -> None:
        """dir= naming a file says so."""
        d = os.path.abspath(self.mktemp())
        with open(d, "w"):
            pass
        e = self.assertRaises(ObjectError, registry().create, "tls-creds-x509",
                              {"id": "t0", "dir": d, "endpoint": "server"})
        self.assertIn(f"{d} is not a directory", e.hint)

    def test_missing_file(self) -> None:
        """An existing directory without the file gets the old advice."""
        d = make_dir(self, server=pki().servercert)
        e = self.assertRaises(ObjectError, registry().create, "tls-creds-x509",
                              {"id": "t0", "dir": d, "endpoint": "server"})
        self.assertEqual(e.hint, f"create ca-cert.pem in {d}")
