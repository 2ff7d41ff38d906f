"""Tests for creds.demopki: the demo PKI loads in vncd and QEMU and re-runs are idempotent."""

from __future__ import annotations

import datetime
import io
import os
import shutil
from contextlib import redirect_stderr, redirect_stdout

from cryptography import x509
from twisted.trial.unittest import SynchronousTestCase

import creds
from creds import demopki
from creds.dn import certificate_dn
from creds.pem import parse_certificates
from tests.creds.test_qemu_verdicts import object_arg, run_qemu_objects

DAY = datetime.timedelta(days=1)
FILES = ("ca/ca-cert.pem", "ca/ca-key.pem", "server/ca-cert.pem", "server/server-cert.pem",
         "server/server-key.pem", "client/ca-cert.pem", "client/client-cert.pem",
         "client/client-key.pem")


def snapshot(d: str) -> dict[str, tuple[bytes, int, int]]:
    out = {}
    for name in FILES:
        path = os.path.join(d, name)
        st = os.stat(path)
        with open(path, "rb") as f:
            out[name] = (f.read(), st.st_mode & 0o777, st.st_mtime_ns)
    return out


def cert(d: str, name: str) -> x509.Certificate:
    with open(os.path.join(d, name), "rb") as f:
        return parse_certificates(f.read())[0]


class DemoPKITests(SynchronousTestCase):
    """A fresh demo PKI, and what re-running the command does to it."""

    #: One PKI generated per test run and copied for each test (RSA key
    #: generation is the slow part).
    _template: str | None = None

    def setUp(self) -> None:
        self.d = os.path.abspath(self.mktemp())

    def fresh(self) -> None:
        """Give self.d a new demo PKI (a copy of one made by ensure_pki)."""
        cls = type(self)
        if cls._template is None or not os.path.isdir(cls._template):
            cls._template = os.path.abspath(self.mktemp())
            demopki.ensure_pki(cls._template)
        shutil.copytree(cls._template, self.d)

    def test_layout_and_modes(self) -> None:
        """Every file is written; private keys are mode 0600; copies are identical."""
        self.fresh()
        snap = snapshot(self.d)
        for name, (_, mode, _) in snap.items():
            self.assertEqual(mode, 0o600 if "key" in name else 0o644, name)
        self.assertEqual(snap["server/ca-cert.pem"][0], snap["ca/ca-cert.pem"][0])
        self.assertEqual(snap["client/ca-cert.pem"][0], snap["ca/ca-cert.pem"][0])

    def test_server_names_and_validity(self) -> None:
        """The server certificate names loopback plus the given hosts, valid for 90 days."""
        demopki.ensure_pki(self.d, ["vnc.example.org", "192.0.2.7"])
        c = cert(self.d, "server/server-cert.pem")
        san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["localhost", "vnc.example.org"])
        self.assertEqual([str(a) for a in san.get_values_for_type(x509.IPAddress)],
                         ["127.0.0.1", "::1", "192.0.2.7"])
        self.assertEqual(c.not_valid_after_utc - c.not_valid_before_utc,
                         demopki.VALIDITY + datetime.timedelta(minutes=5))

    def test_loads_in_vncd(self) -> None:
        """The server and client directories pass vncd's checks without any warning."""
        self.fresh()
        r = creds.new_registry()
        r.create("tls-creds-x509", {"id": "srv", "dir": f"{self.d}/server",
                                    "endpoint": "server"})
        client = r.create("tls-creds-x509", {"id": "cli", "dir": f"{self.d}/client",
                                             "endpoint": "client"})
        self.assertEqual(len(client.material.chain), 1)
        self.assertEqual(r.warnings, [])

    def test_loads_in_qemu(self) -> None:
        """QEMU 7.2 accepts the server and client directories too."""
        self.fresh()
        self.assertIsNone(run_qemu_objects([
            object_arg("tls-creds-x509", {"id": "srv", "dir": f"{self.d}/server",
                                          "endpoint": "server"}),
            object_arg("tls-creds-x509", {"id": "cli", "dir": f"{self.d}/client",
                                          "endpoint": "client"})]))

    def test_rerun_changes_nothing(self) -> None:
        """Running it again issues nothing and leaves every file untouched."""
        demopki.ensure_pki(self.d, ["vnc.example.org"])
        before = snapshot(self.d)
        _, issued = demopki.ensure_pki(self.d, ["vnc.example.org"])
        self.assertEqual(issued, [])
        self.assertEqual(snapshot(self.d), before)

    def test_new_hostname_reissues_server_only(self) -> None:
        """Asking for another host name reissues the server certificate alone."""
        self.fresh()
        before = snapshot(self.d)
        _, issued = demopki.ensure_pki(self.d, ["vnc.example.org"])
        self.assertEqual(issued, ["server"])
        after = snapshot(self.d)
        self.assertNotEqual(after["server/server-cert.pem"][0],
                            before["server/server-cert.pem"][0])
        for name in ("ca/ca-cert.pem", "client/client-cert.pem", "client/client-key.pem"):
            self.assertEqual(after[name], before[name], name)

    def test_renewal_before_expiry(self) -> None:
        """Certificates are reissued once fewer than 30 days remain, never later."""
        self.fresh()
        start = cert(self.d, "ca/ca-cert.pem").not_valid_before_utc + datetime.timedelta(minutes=5)
        self.assertEqual(demopki.ensure_pki(self.d, now=start + 59 * DAY)[1], [])
        self.assertEqual(demopki.ensure_pki(self.d, now=start + 61 * DAY)[1],
                         ["CA", "server", "client"])

    def test_damaged_files_are_replaced(self) -> None:
        """A damaged or mismatched client key gets a fresh client certificate and key."""
        self.fresh()
        with open(os.path.join(self.d, "client/client-key.pem"), "wb") as f:
            f.write(b"garbage")
        self.assertEqual(demopki.ensure_pki(self.d)[1], ["client"])
        os.replace(os.path.join(self.d, "server/server-key.pem"),
                   os.path.join(self.d, "client/client-key.pem"))
        self.assertEqual(demopki.ensure_pki(self.d)[1], ["server", "client"])

    def test_new_ca_reissues_everything(self) -> None:
        """Leaves signed by a CA that is no longer there are reissued."""
        self.fresh()
        os.unlink(os.path.join(self.d, "ca/ca-key.pem"))
        self.assertEqual(demopki.ensure_pki(self.d)[1], ["CA", "server", "client"])

    def test_main_prints_client_dn(self) -> None:
        """The command prints what it issued and the client certificate's DN."""
        out = io.StringIO()
        with redirect_stdout(out):
            self.assertEqual(demopki.main([self.d, "--hostname", "vnc.example.org"]), 0)
        dn = certificate_dn(cert(self.d, "client/client-cert.pem"))
        self.assertEqual(dn, "O=vncd demo,CN=vncd demo client")
        self.assertEqual(out.getvalue().splitlines(), [
            f"demo PKI in {self.d}: issued CA, server, client",
            f"client certificate DN: {dn}"])

    def test_main_reports_failure(self) -> None:
        """A directory that cannot be written gives a message and exit status 1."""
        blocker = os.path.abspath(self.mktemp())
        with open(blocker, "w") as f:
            f.write("not a directory")
        err = io.StringIO()
        with redirect_stderr(err):
            self.assertEqual(demopki.main([blocker]), 1)
        self.assertTrue(err.getvalue().startswith("demopki: "), err.getvalue())
