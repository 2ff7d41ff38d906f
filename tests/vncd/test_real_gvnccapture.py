"""gtk-vnc's gvnccapture against every security configuration.

None, VNC password (typed into gvnccapture's terminal), anonymous TLS with
and without a password, x509 with and without a client certificate, x509
plus password, an authz-list, and the legacy ``-vnc ...,tls``,
``tls,x509=DIR`` and ``tls,x509verify=DIR`` forms (which QEMU 7.2 refuses).  Each
capture is compared pixel for pixel with what the server shows: for vncd
the PNG its ``-screen image`` serves, for QEMU 7.2 (the same tests, proving
the harness) a capture through a plain display of the same process.
gvnccapture negotiates ZRLE, Hextile, RRE, CopyRect and Raw, in that
order of preference.

gvnccapture finds its CA and client certificate under ``/etc/pki`` and the
passwd home's ``.pki``; :class:`realclients.GvncPki` lends those places to
one test at a time and restores them (also after a crash).
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from tests import certgen
from tests.tools import free_display, require_tool
from tests.vncd import realclients
from tests.vncd.realclients import GvncPki

PASSWORD = "pa55word"


class GvncCaptureMixin(realclients.PictureServerMixin):
    """The tests; subclasses say which server runs them."""

    #: ``qemu`` or ``vncd``.
    server = ""

    def setUp(self):
        require_tool("gvnccapture")
        if self.server == "vncd":
            realclients.require_vncd()
        self.pki = GvncPki.borrow(self)
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.ca = certgen.ca("gvnc test CA")
        self.other_ca = certgen.ca("stranger CA")
        server = certgen.server(self.ca, "localhost", dns=["localhost"], ips=["127.0.0.1"])
        self.creds_dir = certgen.write_dir(os.path.join(self.dir, "creds"),
                                           ca=[self.ca], server=server)
        self.client = certgen.client(self.ca, "gvnccapture")
        self.secret = os.path.join(self.dir, "password")
        fd = os.open(self.secret, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(PASSWORD)
        self.picture_path = realclients.write_png(
            os.path.join(self.dir, "screen.png"), realclients.make_picture())

    # -- serving -----------------------------------------------------------

    def serve(self, vnc_options: str, objects: tuple[str, ...] = ()) -> int:
        """Start the server with one ``-vnc 127.0.0.1:N,<options>``; returns N."""
        return self.start_display(vnc_options, objects)

    def x509(self, verify: bool) -> tuple[str, ...]:
        return ("-object", f"tls-creds-x509,id=tls0,endpoint=server,dir={self.creds_dir},"
                           f"verify-peer={'on' if verify else 'off'}")

    def anon(self) -> tuple[str, ...]:
        return ("-object", "tls-creds-anon,id=tls0,endpoint=server")

    def password_secret(self) -> tuple[str, ...]:
        return ("-object", f"secret,id=pw0,file={self.secret}")

    # -- capturing ---------------------------------------------------------

    def capture(self, display: int, password: str | None = None):
        out = os.path.join(self.dir, f"capture-{display}.png")
        run = realclients.gvnccapture("127.0.0.1", display, out, password=password)
        self.assertTrue(run.ok, f"gvnccapture failed ({run.status}): {run.output}")
        self.assertTrue(os.path.exists(out), run.output)
        return run, realclients.read_png(out)

    def assertCaptures(self, display: int, password: str | None = None) -> None:
        run, got = self.capture(display, password)
        realclients.assert_same_pixels(self, got, self.expected(),
                                       f"gvnccapture via {self.server}")
        self.assertEqual(password is not None, b"Password:" in run.output.encode(),
                         run.output)

    def assertRefused(self, display: int, password: str | None = None) -> None:
        out = os.path.join(self.dir, f"refused-{display}.png")
        run = realclients.gvnccapture("127.0.0.1", display, out, password=password)
        self.assertFalse(run.timed_out, run.output)
        self.assertNotEqual(run.status, 0, run.output)
        self.assertFalse(os.path.exists(out))

    def install(self, *, client: bool, ca_in: str = "user") -> None:
        self.pki.install(ca=self.ca.pem(), ca_in=ca_in,
                         client_cert=self.client.pem() if client else None,
                         client_key=self.client.key_pem() if client else None)

    # -- the configurations ------------------------------------------------

    def test_none(self):
        """Security type None: the capture is exact, sent as ZRLE (gtk-vnc's first choice)."""
        display = self.serve("")
        relay = free_display()
        tap = realclients.RfbTap(self, 5900 + display, listen_port=5900 + relay)
        self.assertCaptures(relay)
        self.assertEqual([realclients.ENCODING_NAMES.get(e, e) for e in tap.encodings()],
                         ["ZRLE"])

    def test_vnc_password(self):
        """VNC authentication: the password typed at the prompt gets the screen."""
        self.assertCaptures(self.serve("password-secret=pw0", self.password_secret()),
                            PASSWORD)

    def test_vnc_wrong_password(self):
        """A wrong password typed at the prompt is refused; nothing is saved."""
        self.assertRefused(self.serve("password-secret=pw0", self.password_secret()),
                           "wrong")

    def test_tls_none(self):
        """Anonymous TLS (VeNCrypt TLSNone) with gtk-vnc's ANON-DH-only offer."""
        self.assertCaptures(self.serve("tls-creds=tls0", self.anon()))

    def test_tls_vnc(self):
        """Anonymous TLS plus password (TLSVnc)."""
        self.assertCaptures(self.serve("tls-creds=tls0,password-secret=pw0",
                                       self.anon() + self.password_secret()), PASSWORD)

    def test_x509_none_without_client_cert(self):
        """x509 with verify-peer=off admits gvnccapture without a client certificate."""
        self.install(client=False)
        self.assertCaptures(self.serve("tls-creds=tls0", self.x509(False)))

    def test_x509_client_cert(self):
        """x509 with verify-peer=on admits gvnccapture's certificate from the CA."""
        self.install(client=True)
        self.assertCaptures(self.serve("tls-creds=tls0", self.x509(True)))

    def test_x509_client_cert_missing(self):
        """x509 with verify-peer=on refuses gvnccapture when it has no certificate."""
        self.install(client=False)
        self.assertRefused(self.serve("tls-creds=tls0", self.x509(True)))

    def test_x509_vnc(self):
        """x509 plus password (X509Vnc), client certificate checked first."""
        self.install(client=True)
        self.assertCaptures(self.serve("tls-creds=tls0,password-secret=pw0",
                                       self.x509(True) + self.password_secret()), PASSWORD)

    def test_x509_ca_in_system_dir(self):
        """A CA installed in /etc/pki (searched first) is found as well."""
        self.install(client=True, ca_in="system")
        self.assertCaptures(self.serve("tls-creds=tls0", self.x509(True)))

    def test_x509_untrusted_server(self):
        """gvnccapture refuses a server whose certificate its CA did not sign."""
        self.pki.install(ca=self.other_ca.pem())
        self.assertRefused(self.serve("tls-creds=tls0", self.x509(False)))

    def test_authz_list(self):
        """An authz-list naming gvnccapture's DN (GnuTLS order) admits it."""
        rules = {"qom-type": "authz-list", "id": "authz0", "policy": "deny",
                 "rules": [{"match": "C=UK,CN=gvnccapture", "policy": "allow"}]}
        self.install(client=True)
        self.assertCaptures(self.serve("tls-creds=tls0,tls-authz=authz0",
                                       self.x509(True) + ("-object", json.dumps(rules))))

    def assertLegacy(self, options: str) -> None:
        """``-vnc 127.0.0.1:N,<options>`` serves gvnccapture (vncd); QEMU 7.2 refuses ``tls``."""
        display = free_display()
        spec = f"127.0.0.1:{display},{options}"
        if self.server == "qemu":
            proc = realclients.launch(realclients.qemu_command(["-vnc", spec]),
                                      [5900 + display], name="qemu")
            self.addCleanup(proc.stop)
            proc.wait(realclients.START_TIMEOUT)
            self.assertIn("Invalid parameter 'tls'", proc.output())
            return
        realclients.start_server(
            self, realclients.vncd_command(
                ["-vnc", spec, "-screen", f"image,file={self.picture_path}"]),
            [5900 + display], name="vncd")
        self.assertCaptures(display)

    def test_legacy_x509verify(self):
        """The pre-3.1 form -vnc HOST:N,tls,x509verify=DIR admits a client certificate."""
        self.install(client=True)
        self.assertLegacy(f"tls,x509verify={self.creds_dir}")

    def test_legacy_x509(self):
        """The pre-3.1 form -vnc HOST:N,tls,x509=DIR admits a client without a certificate."""
        self.install(client=False)
        self.assertLegacy(f"tls,x509={self.creds_dir}")

    def test_legacy_tls(self):
        """The pre-3.1 form -vnc HOST:N,tls gives anonymous TLS."""
        self.assertLegacy("tls")


class GvncCaptureQemuTests(GvncCaptureMixin, SynchronousTestCase):
    """The harness against QEMU 7.2."""

    server = "qemu"


class GvncCaptureVncdTests(GvncCaptureMixin, SynchronousTestCase):
    """gvnccapture against vncd."""

    server = "vncd"


class GvncPkiTests(SynchronousTestCase):
    """The certificate-directory loan, on private directories."""

    def setUp(self):
        self.root = self.mktemp()
        os.makedirs(self.root)
        self.system = os.path.join(self.root, "etc-pki")
        self.user = os.path.join(self.root, "home", ".pki")
        os.makedirs(os.path.join(self.system, "CA"))
        with open(os.path.join(self.system, "CA", "cacert.pem"), "w") as f:
            f.write("system CA\n")
        os.makedirs(os.path.join(self.user, "nssdb"))

    def pki(self) -> GvncPki:
        return GvncPki(system_dir=self.system, user_dir=self.user,
                       lock_path=os.path.join(self.root, "lock"),
                       backup_dir=os.path.join(self.root, "backup"))

    def tree(self) -> dict:
        found = {}
        for base, _dirs, files in os.walk(self.root):
            for name in files:
                path = os.path.join(base, name)
                if name != "lock":
                    with open(path) as f:
                        found[os.path.relpath(path, self.root)] = f.read()
        return found

    def test_install_and_restore(self):
        """Installed files replace the originals and the originals come back on release."""
        before = self.tree()
        pki = self.pki()
        pki.acquire()
        pki.install(ca=b"test CA\n", client_cert=b"cert\n", client_key=b"key\n")
        during = self.tree()
        self.assertNotIn("etc-pki/CA/cacert.pem", during)
        self.assertEqual(during["home/.pki/CA/cacert.pem"], "test CA\n")
        self.assertEqual(during["home/.pki/gvnccapture/private/clientkey.pem"], "key\n")
        pki.release()
        self.assertEqual(self.tree(), before)
        self.assertTrue(os.path.isdir(os.path.join(self.user, "nssdb")))

    def test_crash_recovery(self):
        """A holder that died without releasing is undone by the next acquire."""
        before = self.tree()
        crashed = self.pki()
        crashed.acquire()
        crashed.install(ca=b"stale\n", ca_in="system")
        crashed._unlock()
        survivor = self.pki()
        survivor.acquire()
        self.assertNotIn("etc-pki/CA/cacert.pem", self.tree())
        survivor.release()
        self.assertEqual(self.tree(), before)

    def test_crash_before_moving(self):
        """A manifest written before anything moved leaves the originals untouched."""
        before = self.tree()
        pki = self.pki()
        os.makedirs(pki.backup_dir)
        entries = [{"path": p, "existed": os.path.lexists(p),
                    "backup": os.path.join(pki.backup_dir, str(i))}
                   for i, p in enumerate(pki.managed)]
        with open(pki.manifest_path, "w") as f:
            json.dump({"entries": entries, "parents": []}, f)
        self.assertTrue(pki.recover())
        self.assertEqual(self.tree(), before)
        self.assertFalse(os.path.exists(pki.backup_dir))

    def test_install_needs_lock(self):
        """Installing without holding the loan is a harness bug."""
        self.assertRaises(RuntimeError, self.pki().install, ca=b"x")
