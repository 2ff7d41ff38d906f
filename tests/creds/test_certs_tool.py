"""``vncd-certs`` (vncd/certs.py over creds/pki.py) with real files, QEMU 7.2 and gvnccapture.

The directories ``create`` makes load as server and client credentials
with every check on, are accepted by QEMU 7.2 with ``verify-peer=on`` and,
laid out by ``gtk-vnc``, by gvnccapture against vncd and QEMU.  ``revoke``
makes the CRL both servers apply; ``check`` reports every failed check;
bad input gives one ``vncd-certs:`` line and exit status 1 (2 for usage).
"""

from __future__ import annotations

import datetime
import io
import os
import stat
import subprocess
import sys

from cryptography import x509
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

import creds
from creds import pki
from creds.pem import parse_certificates, parse_crls, read_file
from creds.session import TLSCheckError, TLSSession
from creds.tlscreds import Endpoint
from tests import certgen
from tests.creds.sessionpump import VNC_BASE_PORT, pump, vencrypt_x509none
from tests.tools import QEMU, free_port, qemu_vnc, require_tool, wait_for_port
from vncd import certs

#: Seconds one command-line run of the installed script may take.
SCRIPT_TIMEOUT = 60


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = certs.run(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


class CreatedDir:
    """One directory made by ``vncd-certs create`` for the whole module (RSA is slow)."""

    _template: str | None = None

    @classmethod
    def copy(cls, test: SynchronousTestCase) -> str:
        import shutil
        import tempfile

        if cls._template is None:
            cls._template = os.path.join(tempfile.mkdtemp(prefix="vncd-certs-test-"), "pki")
            status, _, err = run("create", cls._template, "--dns", "localhost", "--dns",
                                 "vnc.example.org", "--ip", "127.0.0.1", "--ip", "::1",
                                 "--client-dn", "C=GB,O=ACME,CN=alice")
            assert status == 0, err
        d = os.path.abspath(test.mktemp())
        shutil.copytree(cls._template, d)
        return d


def load(d: str, endpoint: str):
    registry = creds.new_registry()
    obj = registry.create("tls-creds-x509", {"id": "t", "dir": d, "endpoint": endpoint})
    return obj, registry.warnings


def admitted(server_obj, client_obj) -> bool:
    session = TLSSession(server_obj, Endpoint.SERVER)
    pump(session, TLSSession(client_obj, Endpoint.CLIENT, hostname="localhost"))
    try:
        session.check_credentials()
    except TLSCheckError:
        return False
    return True


class CreateTests(SynchronousTestCase):

    def test_layout_modes_and_names(self) -> None:
        """QEMU's file names, keys 0600, SANs and the client DN asked for."""
        d = CreatedDir.copy(self)
        for name, mode in (("ca-cert.pem", 0o644), ("ca-key.pem", 0o600),
                           ("server-cert.pem", 0o644), ("server-key.pem", 0o600),
                           ("client-cert.pem", 0o644), ("client-key.pem", 0o600)):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(d, name)).st_mode), mode, name)
        server = parse_certificates(read_file(f"{d}/server-cert.pem"))[0]
        san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["localhost", "vnc.example.org"])
        self.assertEqual([str(a) for a in san.get_values_for_type(x509.IPAddress)],
                         ["127.0.0.1", "::1"])
        ca = parse_certificates(read_file(f"{d}/ca-cert.pem"))[0]
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertTrue(usage.crl_sign and usage.key_cert_sign)
        client_obj, _ = load(d, "client")
        self.assertEqual(creds.dn.certificate_dn(client_obj.material.chain[0]),
                         "C=GB,O=ACME,CN=alice")

    def test_loads_without_warnings_and_connects(self) -> None:
        """Both endpoints load with every check and no warning, and the client is admitted."""
        d = CreatedDir.copy(self)
        server_obj, warnings = load(d, "server")
        self.assertEqual(warnings, [])
        client_obj, warnings = load(d, "client")
        self.assertEqual(warnings, [])
        self.assertTrue(admitted(server_obj, client_obj))

    def test_several_clients(self) -> None:
        """Further --client-dn values get client directories of their own under clients/;
        revoking one refuses only that client."""
        d = os.path.abspath(self.mktemp())
        status, out, err = run("create", d, "--client-dn", "O=ACME,CN=alice",
                               "--client-dn", "O=ACME,CN=bob", "--client-dn", "O=ACME,CN=../x")
        self.assertEqual(status, 0, err)
        self.assertIn(f"O=ACME,CN=bob (client directory {d}/clients/bob)", out)
        self.assertIn(f"(client directory {d}/clients/x)", out)
        self.assertEqual(sorted(os.listdir(f"{d}/clients/bob")),
                         ["ca-cert.pem", "client-cert.pem", "client-key.pem"])
        self.assertEqual(stat.S_IMODE(os.stat(f"{d}/clients/bob/client-key.pem").st_mode), 0o600)
        server_obj = load(d, "server")[0]
        alice, bob = load(d, "client")[0], load(f"{d}/clients/bob", "client")[0]
        self.assertEqual(creds.dn.certificate_dn(bob.material.chain[0]), "O=ACME,CN=bob")
        self.assertEqual(run("revoke", d, f"{d}/clients/bob/client-cert.pem")[0], 0)
        server_obj = load(d, "server")[0]
        self.assertEqual((admitted(server_obj, alice), admitted(server_obj, bob)),
                         (True, False))
        status, _, err = run("create", d, "--force", "--client-dn", "CN=a", "--client-dn",
                             "CN=bob")
        self.assertEqual(status, 0, err)
        status, _, err = run("create", os.path.abspath(self.mktemp()),
                             *[a for i in range(101) for a in ("--client-dn", f"CN=c{i}")])
        self.assertIn("1 to 100 client distinguished names", err)

    def test_refuses_to_overwrite(self) -> None:
        """Existing files are kept unless --force; --force makes a new CA."""
        d = CreatedDir.copy(self)
        before = read_file(f"{d}/ca-cert.pem")
        status, _, err = run("create", d)
        self.assertEqual(status, 1)
        self.assertIn(f"vncd-certs: {d} already holds ca-cert.pem", err)
        self.assertEqual(read_file(f"{d}/ca-cert.pem"), before)
        status, out, _ = run("create", d, "--force")
        self.assertEqual(status, 0)
        self.assertNotEqual(read_file(f"{d}/ca-cert.pem"), before)
        self.assertIn("client identity (for authz-simple): O=vncd,CN=vncd client", out)

    def test_bad_input(self) -> None:
        """Bad names, addresses, days and too many names: one clear line each, nothing written."""
        d = os.path.abspath(self.mktemp())
        cases = [
            (["--client-dn", "CN"], "'CN' is not ATTRIBUTE=VALUE"),
            (["--client-dn", "XX=1"], "unknown attribute 'XX'"),
            (["--client-dn", "C=GBR"], "C='GBR'"),
            (["--client-dn", "CN=" + "x" * 2000], "1 to 1024 characters"),
            (["--ip", "1.2.3"], "--ip '1.2.3': not an IPv4 or IPv6 address"),
            (["--dns", "a b"], "--dns 'a b': not a DNS name"),
            (["--days", "0"], "--days must be between 1 and 3650 days"),
            (["--days", "99999"], "--days must be between 1 and 3650 days"),
            ([a for i in range(65) for a in ("--dns", f"h{i}")], "at most 64 DNS names"),
        ]
        for extra, message in cases:
            status, _, err = run("create", d, *extra)
            self.assertEqual(status, 1, extra)
            self.assertTrue(err.startswith("vncd-certs: ") and message in err, (extra, err))
            self.assertEqual(err.count("\n"), 1, err)
        self.assertFalse(os.path.exists(d))
        status, _, err = run("create")
        self.assertEqual(status, 2)
        self.assertIn("the following arguments are required: DIR", err)
        self.assertEqual(run("frobnicate", d)[0], 2)

    def test_directory_is_a_file(self) -> None:
        path = os.path.abspath(self.mktemp())
        open(path, "w").close()
        status, _, err = run("create", path)
        self.assertEqual((status, err), (1, f"vncd-certs: {path} exists and is not a directory\n"))


class RevokeTests(SynchronousTestCase):

    def test_revoke_refuses_only_that_client(self) -> None:
        """The revoked client is refused after a reload; another client of the CA is not."""
        d = CreatedDir.copy(self)
        other = os.path.abspath(self.mktemp())
        os.makedirs(other)
        # a second client certificate of the same CA, made with the CA key
        ca_cert = parse_certificates(read_file(f"{d}/ca-cert.pem"))[0]
        ca_key = creds.pem.parse_private_key(read_file(f"{d}/ca-key.pem"), None)
        bob = certgen.client(certgen.Issued(cert=ca_cert, key=ca_key, issuer=None), "bob")
        certgen.write_dir(other, ca=[ca_cert], client=bob)

        status, out, err = run("revoke", d, f"{d}/client-cert.pem")
        self.assertEqual(status, 0, err)
        self.assertIn("revoked in", out)
        server_obj, warnings = load(d, "server")
        self.assertEqual(warnings, [])
        alice, _ = load(d, "client")
        self.assertFalse(admitted(server_obj, alice))
        self.assertTrue(admitted(server_obj, load(other, "client")[0]))

        first = parse_crls(read_file(f"{d}/ca-crl.pem"))
        status, out, _ = run("revoke", d, f"{other}/client-cert.pem")
        self.assertEqual(status, 0)
        crls = parse_crls(read_file(f"{d}/ca-crl.pem"))
        self.assertEqual(len(crls), 1)
        self.assertEqual({r.serial_number for r in crls[0]},
                         {alice.material.chain[0].serial_number, bob.cert.serial_number})
        number = crls[0].extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        self.assertEqual(number, 2)
        self.assertEqual(len(list(first[0])), 1)
        status, out, _ = run("revoke", d, f"{other}/client-cert.pem")
        self.assertIn("was already revoked", out)

    def test_other_issuers_crls_are_kept(self) -> None:
        """CRLs of other issuers in ca-crl.pem survive a revoke unchanged."""
        d = CreatedDir.copy(self)
        foreign = certgen.crl(certgen.ca("another CA"))
        certgen.write_pem(f"{d}/ca-crl.pem", foreign)
        self.assertEqual(run("revoke", d, f"{d}/client-cert.pem")[0], 0)
        crls = parse_crls(read_file(f"{d}/ca-crl.pem"))
        self.assertEqual(len(crls), 2)
        self.assertEqual(crls[1], foreign)
        self.assertEqual(len(list(crls[0])), 1)

    def test_refusals(self) -> None:
        """A stranger's certificate, a wrong CA key and missing files are refused, named."""
        d = CreatedDir.copy(self)
        stranger = os.path.abspath(self.mktemp())
        certgen.write_dir(stranger, ca=[certgen.ca("x")],
                          client=certgen.client(certgen.ca("other"), "eve"))
        status, _, err = run("revoke", d, f"{stranger}/client-cert.pem")
        self.assertEqual(status, 1)
        self.assertIn("was not issued by the CA 'O=vncd,CN=vncd CA'", err)
        status, _, err = run("revoke", d, f"{d}/client-cert.pem", "--ca-key",
                             f"{stranger}/client-key.pem")
        self.assertIn(f"{stranger}/client-key.pem is not the key of the CA", err)
        status, _, err = run("revoke", d, f"{d}/nothing.pem")
        self.assertEqual(status, 1)
        self.assertIn("nothing.pem", err)
        with open(f"{d}/ca-crl.pem", "wb") as f:
            f.write(b"garbage\n")
        status, _, err = run("revoke", d, f"{d}/client-cert.pem")
        self.assertEqual(status, 1)
        self.assertIn("ca-crl.pem", err)


class CheckTests(SynchronousTestCase):

    def test_good_directory(self) -> None:
        d = CreatedDir.copy(self)
        for endpoint in ("server", "client"):
            status, out, _ = run("check", d, "--endpoint", endpoint)
            self.assertEqual(status, 0, out)
            self.assertNotIn("FAIL", out)
            self.assertTrue(out.endswith(f"{d} as {endpoint}: usable\n"), out)
            self.assertIn("ok   tls-creds-x509 object loads", out)

    def test_every_failure_is_listed(self) -> None:
        """A wrong key, our certificate revoked and loose permissions: all three reported."""
        d = CreatedDir.copy(self)
        run("revoke", d, f"{d}/server-cert.pem")
        with open(f"{d}/client-key.pem", "rb") as f:
            certgen.write_pem(f"{d}/server-key.pem", f.read(), mode=0o644)
        status, out, _ = run("check", d)
        self.assertEqual(status, 1)
        self.assertIn("FAIL server key matches the certificate: Cannot load certificate", out)
        self.assertIn("FAIL server certificate not revoked: Our own certificate", out)
        self.assertIn("WARN server private key permissions", out)
        self.assertIn("FAIL tls-creds-x509 object loads", out)
        self.assertIn("     fix: ", out)
        self.assertTrue(out.endswith("3 check(s) failed, 1 warning(s)\n"), out)

    def test_agrees_with_the_object(self) -> None:
        """For damaged directories, check fails exactly when the object refuses to load."""
        cases = {
            "ca garbage": ("ca-cert.pem", b"garbage\n"),
            "cert garbage": ("server-cert.pem", b"-----BEGIN CERTIFICATE-----\n!!\n"),
            "key empty": ("server-key.pem", b""),
            "crl garbage": ("ca-crl.pem", b"hello\n"),
            "dh garbage": ("dh-params.pem", b"-----BEGIN DH PARAMETERS-----\nAA==\n"
                                            b"-----END DH PARAMETERS-----\n"),
            "expired server": ("server-cert.pem", certgen.server(
                certgen.ca("x"), not_before=-3 * datetime.timedelta(days=1),
                not_after=-datetime.timedelta(days=1)).pem()),
        }
        for name, (file, data) in cases.items():
            d = CreatedDir.copy(self)
            certgen.write_pem(os.path.join(d, file), data)
            status, out, _ = run("check", d)
            try:
                load(d, "server")
            except creds.objects.ObjectError as e:
                self.assertEqual(status, 1, (name, out))
                self.assertIn(f"FAIL tls-creds-x509 object loads: {e.message}", out)
            else:
                self.fail(f"{name}: the object loaded")

    @settings(max_examples=40, deadline=None)
    @given(st.sampled_from(["ca-cert.pem", "server-cert.pem", "server-key.pem", "ca-crl.pem",
                            "dh-params.pem"]),
           st.one_of(st.binary(max_size=300),
                     st.binary(max_size=200).map(
                         lambda b: b"-----BEGIN CERTIFICATE-----\n"
                                   + __import__("base64").encodebytes(b)
                                   + b"-----END CERTIFICATE-----\n")))
    def test_garbage_never_crashes(self, name: str, data: bytes) -> None:
        """Any bytes in any file: verdicts, the last one failing, never an exception."""
        d = CreatedDir.copy(self)
        certgen.write_pem(os.path.join(d, name), data, mode=0o600)
        checks = pki.check(d, "server")
        self.assertEqual(checks[-1].name, "tls-creds-x509 object loads")
        self.assertTrue(checks[-1].failed or name in ("dh-params.pem",), checks[-1])

    def test_encrypted_key(self) -> None:
        """An encrypted key fails without --password-file and passes with it."""
        from cryptography.hazmat.primitives import serialization

        d = CreatedDir.copy(self)
        key = creds.pem.parse_private_key(read_file(f"{d}/server-key.pem"), None)
        certgen.write_pem(f"{d}/server-key.pem", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret")), mode=0o600)
        status, out, _ = run("check", d)
        self.assertEqual(status, 1)
        self.assertIn("FAIL server private key", out)
        self.assertIn("passwordid", out)
        secret = os.path.abspath(self.mktemp())
        certgen.write_pem(secret, b"s3cret", mode=0o600)
        status, out, _ = run("check", d, "--password-file", secret)
        self.assertEqual(status, 0, out)
        self.assertNotIn("s3cret", out)

    def test_missing_directory_and_client_alone(self) -> None:
        d = os.path.abspath(self.mktemp())
        status, out, _ = run("check", d)
        self.assertEqual(status, 1)
        self.assertIn(f"FAIL directory: {d} does not exist", out)
        d = CreatedDir.copy(self)
        os.unlink(f"{d}/client-key.pem")
        status, out, _ = run("check", d, "--endpoint", "client")
        self.assertEqual(status, 0, out)
        self.assertIn("WARN client identity", out)


class ShowTests(SynchronousTestCase):

    def test_show(self) -> None:
        d = CreatedDir.copy(self)
        run("revoke", d, f"{d}/client-cert.pem")
        status, out, _ = run("show", d)
        self.assertEqual(status, 0)
        client = parse_certificates(read_file(f"{d}/client-cert.pem"))[0]
        for text in ("ca-cert.pem:", "server-cert.pem:", "client-cert.pem:", "ca-crl.pem:",
                     "subject:     C=GB,O=ACME,CN=alice", "issuer:      O=vncd,CN=vncd CA",
                     "DNS:localhost, DNS:vnc.example.org, IP:127.0.0.1, IP:::1",
                     f"serial:      {client.serial_number:x}", "day(s) left",
                     f"revoked:     {client.serial_number:x}"):
            self.assertIn(text, out)
        self.assertRegex(out, r"sha256:      ([0-9A-F]{2}:){31}[0-9A-F]{2}")
        status, _, err = run("show", os.path.abspath(self.mktemp()))
        self.assertEqual(status, 1)
        self.assertIn("is not a directory", err)


class GtkVncLayoutTests(SynchronousTestCase):

    def test_layout(self) -> None:
        """CA, CRL and the identity where gtk-vnc reads them; the key 0600; no clobbering."""
        d = CreatedDir.copy(self)
        run("revoke", d, f"{d}/server-cert.pem")
        target = os.path.abspath(self.mktemp())
        status, out, err = run("gtk-vnc", d, "--pki-dir", target)
        self.assertEqual(status, 0, err)
        expected = {"CA/cacert.pem": "ca-cert.pem", "CA/cacrl.pem": "ca-crl.pem"}
        for program in ("gvnccapture", "gvncviewer"):
            expected[f"{program}/clientcert.pem"] = "client-cert.pem"
            expected[f"{program}/private/clientkey.pem"] = "client-key.pem"
        for rel, src in expected.items():
            self.assertEqual(read_file(os.path.join(target, rel)), read_file(f"{d}/{src}"))
        self.assertEqual(stat.S_IMODE(os.stat(f"{target}/gvnccapture/private/clientkey.pem")
                                      .st_mode), 0o600)
        self.assertEqual(run("gtk-vnc", d, "--pki-dir", target)[0], 0)  # same content: fine
        with open(f"{target}/CA/cacert.pem", "w") as f:
            f.write("someone else's CA\n")
        status, _, err = run("gtk-vnc", d, "--pki-dir", target)
        self.assertEqual(status, 1)
        self.assertIn("exists with other content; use --force", err)
        self.assertEqual(run("gtk-vnc", d, "--pki-dir", target, "--force")[0], 0)
        status, _, err = run("gtk-vnc", d, "--pki-dir", target, "--program", "../x")
        self.assertIn("not a program name", err)


class ScriptTests(SynchronousTestCase):

    def test_console_script(self) -> None:
        """The installed vncd-certs script runs (and -h lists the commands)."""
        exe = os.path.join(os.path.dirname(sys.executable), "vncd-certs")
        out = subprocess.run([exe, "-h"], capture_output=True, text=True,
                             timeout=SCRIPT_TIMEOUT)
        self.assertEqual(out.returncode, 0)
        for command in ("create", "revoke", "check", "show", "gtk-vnc"):
            self.assertIn(command, out.stdout)


class QemuAcceptsTests(SynchronousTestCase):

    def test_qemu_accepts_and_revokes(self) -> None:
        """QEMU 7.2 (verify-peer=on) admits the client create made, and refuses it once revoked."""
        require_tool(QEMU)
        d = CreatedDir.copy(self)
        client_obj, _ = load(d, "client")
        verdicts = []
        for revoked in (False, True):
            if revoked:
                run("revoke", d, f"{d}/client-cert.pem")
            port = free_port()
            proc, started = qemu_vnc([
                "-object", f"tls-creds-x509,id=tls0,dir={d},endpoint=server,verify-peer=on",
                "-vnc", f"127.0.0.1:{port - VNC_BASE_PORT},tls-creds=tls0"])
            self.addCleanup(lambda p=proc: (p.poll() is None and p.kill(), p.communicate()))
            self.assertTrue(started and wait_for_port("127.0.0.1", port, proc=proc),
                            proc.stderr.read() if not started else "not listening")
            verdicts.append(vencrypt_x509none(port, client_obj))
            proc.kill()
        self.assertEqual(verdicts, [True, False])


class GvncCaptureTests(SynchronousTestCase):
    """gvnccapture, with the files ``vncd-certs gtk-vnc`` laid out, against a
    ``vncd-certs create`` directory served with verify-peer=on."""

    def capture(self, server: str) -> None:
        from tests.vncd import realclients

        require_tool("gvnccapture")
        if server == "vncd":
            realclients.require_vncd()
        d = CreatedDir.copy(self)
        pki_dir = realclients.GvncPki.borrow(self)
        status, _, err = run("gtk-vnc", d, "--pki-dir", pki_dir.user_dir,
                             "--program", "gvnccapture")
        self.assertEqual(status, 0, err)
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        display = realclients.free_display()
        args = ["-object", f"tls-creds-x509,id=tls0,dir={d},endpoint=server,verify-peer=on",
                "-vnc", f"127.0.0.1:{display},tls-creds=tls0"]
        if server == "vncd":
            argv = realclients.vncd_command(args + ["-screen", "testcard"])
        else:
            argv = realclients.qemu_command(args)
        realclients.start_server(self, argv, [5900 + display], name=server)
        out = os.path.join(work, "shot.png")
        result = realclients.gvnccapture("127.0.0.1", display, out)
        self.assertTrue(result.ok, f"gvnccapture failed ({result.status}): {result.output}")
        self.assertTrue(os.path.getsize(out) > 0)

    def test_vncd(self) -> None:
        self.capture("vncd")

    def test_qemu(self) -> None:
        self.capture("qemu")


class ManualTests(SynchronousTestCase):
    """man/vncd-certs.1 documents every command and option, and is clean roff."""

    PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "man", "vncd-certs.1")

    def test_documented(self) -> None:
        with open(self.PAGE) as f:
            page = f.read().replace("\\-", "-")
        parser = certs._parser()
        for action in parser._actions:
            for name, sub in getattr(action, "choices", None) and action.choices.items() or ():
                self.assertIn(f".B {name}" if name != "gtk-vnc" else ".B gtk-vnc", page, name)
                for sub_action in sub._actions:
                    for flag in sub_action.option_strings:
                        if flag.startswith("--") and flag != "--help":
                            self.assertIn(flag, page, f"{name} {flag}")

    def test_clean_roff(self) -> None:
        groff = require_tool("groff")
        result = subprocess.run([groff, "-man", "-t", "-ww", "-z", self.PAGE],
                                capture_output=True, text=True, timeout=SCRIPT_TIMEOUT)
        self.assertEqual((result.returncode, result.stderr), (0, ""))
