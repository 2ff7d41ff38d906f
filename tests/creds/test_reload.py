"""Reloading credentials: a good reload installs a new generation, a bad one changes nothing."""

from __future__ import annotations

import datetime
import os

from twisted.trial.unittest import SynchronousTestCase

import creds
from creds import keycheck, pem
from creds.objects import ObjectError
from tests import certgen
from tests.creds.test_x509_catalogue import T0, pki

DAY = datetime.timedelta(days=1)


class Clock:
    """A settable clock for the registry."""

    def __init__(self, now: datetime.datetime) -> None:
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now


class X509ReloadTests(SynchronousTestCase):
    """tls-creds-x509 re-reads its directory (QEMU's display-reload tls-certs)."""

    def setUp(self) -> None:
        self.p = pki()
        self.d = os.path.abspath(self.mktemp())
        certgen.write_dir(self.d, ca=[self.p.cacert], server=self.p.servercert)
        self.clock = Clock(T0)
        self.registry = creds.new_registry(clock=self.clock)
        self.obj = self.registry.create("tls-creds-x509", {"id": "t0", "dir": self.d,
                                                           "endpoint": "server"})
        self.first = self.obj.loaded

    def assertUnchanged(self) -> None:
        self.assertIs(self.obj.loaded, self.first)
        self.assertEqual(self.obj.loaded.generation, 1)
        self.assertEqual(self.obj.material.chain, (self.p.servercert.cert,))

    def test_good_reload(self) -> None:
        """New files become a new generation with a new context; the old one is intact."""
        certgen.write_dir(self.d, server=self.p.server_ec)
        self.obj.reload()
        self.assertEqual(self.obj.loaded.generation, 2)
        self.assertEqual(self.obj.material.chain, (self.p.server_ec.cert,))
        self.assertIsNot(self.obj.loaded.context, self.first.context)
        self.assertEqual(self.first.material.chain, (self.p.servercert.cert,))

    def test_failed_reload_keeps_old(self) -> None:
        """Each kind of fault raises its message and leaves the loaded credentials alone."""
        faults = [
            (lambda: certgen.write_dir(self.d, server=self.p.servercert14),
             f"Certificate {self.d}/server-cert.pem usage does not permit digital signature"),
            (lambda: certgen.write_pem(f"{self.d}/server-key.pem",
                                       certgen.key_pem(self.p.wrong_key), mode=0o600),
             f"Cannot load certificate '{self.d}/server-cert.pem' & key "
             f"'{self.d}/server-key.pem': The certificate and the given key do not match."),
            (lambda: os.unlink(f"{self.d}/ca-cert.pem"),
             f"Unable to access credentials {self.d}/ca-cert.pem: No such file or directory"),
        ]
        for damage, message in faults:
            certgen.write_dir(self.d, ca=[self.p.cacert], server=self.p.servercert)
            damage()
            e = self.assertRaises(ObjectError, self.obj.reload)
            self.assertEqual(e.message, message)
            self.assertUnchanged()

    def test_reload_after_failure(self) -> None:
        """Fixing the files after a failed reload gives generation 2."""
        os.unlink(f"{self.d}/server-key.pem")
        self.assertRaises(ObjectError, self.obj.reload)
        certgen.write_dir(self.d, server=self.p.servercert)
        self.obj.reload()
        self.assertEqual(self.obj.loaded.generation, 2)

    def test_reload_uses_the_clock(self) -> None:
        """A certificate that expired since creation makes the reload fail."""
        self.clock.now = T0 + 2 * DAY
        e = self.assertRaises(ObjectError, self.obj.reload)
        self.assertEqual(e.message, f"The server certificate {self.d}/server-cert.pem has expired")
        self.assertUnchanged()

    def test_reload_warns_again(self) -> None:
        """Warnings are given on every successful load, naming the new files' faults."""
        first = list(self.registry.warnings)
        self.assertTrue(first)  # the catalogue's certificates expire within a day
        os.chmod(f"{self.d}/server-key.pem", 0o644)
        self.obj.reload()
        key = f"{self.d}/server-key.pem"
        self.assertEqual(self.registry.warnings, first + first + [
            f"Private key file {key} is readable by group or others (mode 0644); "
            f"run: chmod 600 {key}"])

    def test_reload_reads_new_password(self) -> None:
        """The passwordid secret is looked up again at each reload."""
        certgen.write_dir(self.d, server=self.p.servercert, key_password=b"pw")
        self.assertRaises(ObjectError, self.obj.reload)
        self.assertUnchanged()


class AnonReloadTests(SynchronousTestCase):
    """tls-creds-anon can be reloaded too (QEMU cannot): dh-params.pem is re-read."""

    def setUp(self) -> None:
        self.d = os.path.abspath(self.mktemp())
        os.makedirs(self.d)
        self.obj = creds.new_registry().create("tls-creds-anon", {"id": "a0", "dir": self.d,
                                                                  "endpoint": "server"})

    def test_reload_picks_up_dh_params(self) -> None:
        """A dh-params.pem added after creation is used from the next generation on."""
        self.assertIsNone(self.obj.material.dh_params_pem)
        certgen.write_pem(f"{self.d}/dh-params.pem", certgen.FFDHE2048_PEM)
        self.obj.reload()
        self.assertEqual(self.obj.loaded.generation, 2)
        self.assertIsNotNone(self.obj.material.dh_params_pem)

    def test_bad_dh_params_keep_old(self) -> None:
        """A damaged dh-params.pem fails the reload and keeps the previous generation."""
        first = self.obj.loaded
        certgen.write_pem(f"{self.d}/dh-params.pem", b"garbage\n")
        e = self.assertRaises(ObjectError, self.obj.reload)
        self.assertEqual(e.message, f"Unable to load DH parameters from {self.d}/dh-params.pem: "
                                    "Base64 unexpected header error.")
        self.assertIs(self.obj.loaded, first)
        self.assertEqual(first.generation, 1)


class TwoStepReloadTests(SynchronousTestCase):
    """prepare_reload() loads without touching the object; commit_reload() installs."""

    def setUp(self) -> None:
        self.p = pki()
        self.d = os.path.abspath(self.mktemp())
        certgen.write_dir(self.d, ca=[self.p.cacert], server=self.p.servercert)
        self.registry = creds.new_registry(clock=Clock(T0))
        self.obj = self.registry.create("tls-creds-x509", {"id": "t0", "dir": self.d,
                                                           "endpoint": "server"})
        self.first = self.obj.loaded

    def test_prepare_changes_nothing(self) -> None:
        """Preparing reads the new files but leaves the object and the registry alone;
        committing installs them as the next generation and reports their warnings."""
        certgen.write_dir(self.d, server=self.p.server_ec)
        warned = list(self.registry.warnings)
        loaded = self.obj.prepare_reload()
        self.assertIs(self.obj.loaded, self.first)
        self.assertEqual(self.registry.warnings, warned)
        self.assertEqual(loaded.generation, 0)
        self.assertEqual(loaded.material.chain, (self.p.server_ec.cert,))
        self.assertTrue(loaded.warnings)
        self.obj.commit_reload(loaded)
        self.assertEqual(self.obj.loaded.generation, 2)
        self.assertEqual(self.obj.material.chain, (self.p.server_ec.cert,))
        self.assertEqual(self.registry.warnings, warned + list(loaded.warnings))

    def test_failed_prepare_keeps_old(self) -> None:
        """A failing prepare raises and the object keeps serving its credentials."""
        os.unlink(f"{self.d}/server-key.pem")
        self.assertRaises(ObjectError, self.obj.prepare_reload)
        self.assertIs(self.obj.loaded, self.first)

    def test_commit_once(self) -> None:
        """Committed credentials cannot be committed again."""
        self.obj.commit_reload(self.obj.prepare_reload())
        self.assertRaises(ValueError, self.obj.commit_reload, self.obj.loaded)
        self.assertEqual(self.obj.loaded.generation, 2)

    def test_key_loader(self) -> None:
        """The key_loader given parses the key; its faults are reported as the key's."""
        seen = []

        def loader(data, password):
            seen.append(password)
            return pem.parse_private_key(data, password)

        self.obj.commit_reload(self.obj.prepare_reload(key_loader=loader))
        self.assertEqual(seen, [None])

        def refuses(data, password):
            raise pem.PEMError(pem.Fault.CHECK, "no checker today")

        e = self.assertRaises(ObjectError, self.obj.prepare_reload, key_loader=refuses)
        self.assertEqual(e.message, f"Cannot load certificate '{self.d}/server-cert.pem' & key "
                                    f"'{self.d}/server-key.pem': no checker today")

    def test_key_checked_in_child(self) -> None:
        """With creds.keycheck.check_in_child the reload gives the same key."""
        loaded = self.obj.prepare_reload(key_loader=keycheck.check_in_child)
        self.assertEqual(loaded.material.key.private_numbers(),
                         self.first.material.key.private_numbers())


class RegistryPrepareTests(SynchronousTestCase):
    """ObjectRegistry.prepare() completes an object without registering it; add() does."""

    def setUp(self) -> None:
        self.p = pki()
        self.d = os.path.abspath(self.mktemp())
        certgen.write_dir(self.d, ca=[self.p.cacert], server=self.p.servercert,
                          key_password=b"pw")
        self.registry = creds.new_registry(clock=Clock(T0))
        self.registry.create("secret", {"id": "pw", "data": "pw"})
        self.props = {"id": "t0", "dir": self.d, "endpoint": "server", "passwordid": "pw"}

    def test_prepare_then_add(self) -> None:
        """The prepared object reads the registered secret; it is registered, and its
        warnings reported, only by add()."""
        obj = self.registry.prepare("tls-creds-x509", self.props)
        self.assertNotIn("t0", self.registry)
        self.assertEqual(self.registry.warnings, [])
        self.assertEqual(obj.loaded.generation, 1)
        self.assertIs(self.registry.add(obj), obj)
        self.assertIs(self.registry.get("t0"), obj)
        self.assertTrue(self.registry.warnings)

    def test_duplicate_checked_again(self) -> None:
        """An id taken between prepare() and add() is refused at add()."""
        obj = self.registry.prepare("tls-creds-x509", self.props)
        self.registry.create("secret", {"id": "t0", "data": "x"})
        e = self.assertRaises(ObjectError, self.registry.add, obj)
        self.assertEqual(e.message, "Duplicate ID 't0' for object")
        self.assertEqual(self.registry.warnings, [])

    def test_load_options(self) -> None:
        """prepare() hands its options to the object: here the key loader."""
        seen = []

        def loader(data, password):
            seen.append(password)
            return pem.parse_private_key(data, password)

        self.registry.prepare("tls-creds-x509", self.props, key_loader=loader)
        self.assertEqual(seen, [b"pw"])

    def test_foreign_object(self) -> None:
        """An object prepared by one registry cannot be added to another."""
        obj = self.registry.prepare("secret", {"id": "s1", "data": "x"})
        self.assertRaises(ValueError, creds.new_registry().add, obj)
