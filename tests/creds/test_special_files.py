"""Credential files that are not regular files are refused at once, naming the file and what it is.

A FIFO given as ``ca-cert.pem`` once held vncd's start-up forever (a
plain ``open()`` waits for a writer); ``/dev/zero`` would be read without
end.  Every file creds reads -- certificates, keys, CRLs, DH parameters,
secrets, authorization lists -- is opened without blocking and refused
unless the open descriptor is a regular file.

Each test runs under an alarm, so a reader that blocks fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile

from twisted.trial.unittest import SynchronousTestCase

import creds
from creds import pem
from creds.objects import ObjectError
from tests import certgen
from tests.creds.test_x509_catalogue import pki

#: Seconds a test may take before its alarm fails it: reading a special
#: file must not block at all; this only turns a hang into a failure.
ALARM_SECONDS = 20

#: The special files every test tries, by what the message must call them.
KINDS = ("a named pipe (FIFO)", "a socket", "a character device")


class Blocked(Exception):
    """Raised by the alarm: a read blocked."""


def _on_alarm(signum, frame):
    raise Blocked(f"a read was still blocked after {ALARM_SECONDS} s")


def make_special(path: str, kind: str, stack: contextlib.ExitStack) -> None:
    """Put a file of ``kind`` (one of :data:`KINDS`, or ``directory``) at ``path``."""
    if os.path.lexists(path):
        os.unlink(path)
    if kind == "a named pipe (FIFO)":
        os.mkfifo(path)
    elif kind == "a socket":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stack.callback(sock.close)
        sock.bind(path)
    elif kind == "a character device":
        os.symlink("/dev/zero", path)
    elif kind == "directory":
        os.mkdir(path)
    else:
        raise ValueError(kind)


class SpecialFileCase(SynchronousTestCase):
    """Sets an alarm around every test and gives it a scratch directory."""

    def setUp(self) -> None:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(ALARM_SECONDS)
        self.addCleanup(signal.signal, signal.SIGALRM, previous)
        self.addCleanup(signal.alarm, 0)
        # Under the system temporary directory: a socket's path must stay
        # under 108 bytes, which trial's own directories exceed.
        self.dir = tempfile.mkdtemp(prefix="vncd-special-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.stack = contextlib.ExitStack()
        self.addCleanup(self.stack.close)

    def special(self, name: str, kind: str, directory: str | None = None) -> str:
        path = os.path.join(directory or self.dir, name)
        make_special(path, kind, self.stack)
        return path


class ReadFileTests(SpecialFileCase):
    """creds.pem.read_file reads regular files only."""

    def test_special_files(self) -> None:
        """A FIFO, a socket and a device are refused with the file name and what it is."""
        for kind in KINDS:
            path = self.special("f", kind)
            e = self.assertRaises(pem.NotRegularFileError, pem.read_file, path)
            self.assertEqual(str(e), f"Error reading file “{path}”: Is {kind}, "
                                     "not a regular file")
            self.assertEqual(e.what, kind)

    def test_null_device(self) -> None:
        """A link to /dev/null is a device, not an empty file."""
        path = os.path.join(self.dir, "null")
        os.symlink("/dev/null", path)
        e = self.assertRaises(pem.NotRegularFileError, pem.read_file, path)
        self.assertEqual(e.what, "a character device")

    def test_directory(self) -> None:
        """A directory gets GLib's words, as QEMU prints them."""
        path = self.special("d", "directory")
        e = self.assertRaises(pem.FileReadError, pem.read_file, path)
        self.assertEqual(str(e), f"Error reading file “{path}”: Is a directory")
        self.assertEqual(e.reason, "Is a directory")

    def test_size_checked_before_reading(self) -> None:
        """A regular file over the limit is refused by its size, with the figures."""
        path = os.path.join(self.dir, "big")
        with open(path, "wb") as f:
            f.truncate(1000)
        e = self.assertRaises(pem.FileReadError, pem.read_file, path, 999)
        self.assertEqual(e.reason, "the file is 1000 bytes; the limit is 999")

    def test_regular_file_status(self) -> None:
        """read_regular_file returns the status of the very file it read."""
        path = os.path.join(self.dir, "f")
        with open(path, "wb") as f:
            f.write(b"data")
        data, st = pem.read_regular_file(path)
        self.assertEqual((data, st.st_ino), (b"data", os.stat(path).st_ino))


class ObjectTests(SpecialFileCase):
    """Every object type that reads a file refuses special files, naming the file."""

    def registry(self):
        return creds.new_registry()

    def x509_dir(self, name: str = "x509") -> str:
        p = pki()
        return certgen.write_dir(os.path.join(self.dir, name), ca=[p.cacert],
                                 server=p.servercert, crl=p.crl_empty,
                                 dh=certgen.FFDHE2048_PEM)

    def test_x509_files(self) -> None:
        """ca-cert.pem, server-cert.pem, server-key.pem, ca-crl.pem and dh-params.pem."""
        prefixes = {
            "ca-cert.pem": "Cannot load CA cert list {d}/ca-cert.pem",
            "server-cert.pem": "Cannot load CA cert list {d}/server-cert.pem",
            "server-key.pem": "Cannot load certificate '{d}/server-cert.pem' & key "
                              "'{d}/server-key.pem'",
            "ca-crl.pem": "Cannot load CRL '{d}/ca-crl.pem'",
            "dh-params.pem": None,
        }
        for name, prefix in prefixes.items():
            for kind in KINDS:
                d = self.x509_dir(f"{name}-{kind[2:6]}")
                path = self.special(name, kind, d)
                e = self.assertRaises(ObjectError, self.registry().create, "tls-creds-x509",
                                      {"id": "t", "dir": d, "endpoint": "server"})
                read = f"Error reading file “{path}”: Is {kind}, not a regular file"
                self.assertEqual(e.message,
                                 f"{prefix.format(d=d)}: {read}" if prefix else read)
                self.assertEqual(e.path, path)

    def test_x509_without_sanity_check(self) -> None:
        """With sanity-check=off the certificate and CA files are refused the same way."""
        d = self.x509_dir()
        path = self.special("ca-cert.pem", "a named pipe (FIFO)", d)
        e = self.assertRaises(ObjectError, self.registry().create, "tls-creds-x509",
                              {"id": "t", "dir": d, "endpoint": "server",
                               "sanity-check": "off"})
        self.assertEqual(e.message, f"Cannot load CA certificate '{path}': Error reading "
                                    f"file “{path}”: Is a named pipe (FIFO), not a regular file")

    def test_anon_dh_params(self) -> None:
        """An anonymous server's dh-params.pem."""
        path = self.special("dh-params.pem", "a named pipe (FIFO)")
        e = self.assertRaises(ObjectError, self.registry().create, "tls-creds-anon",
                              {"id": "a", "dir": self.dir, "endpoint": "server"})
        self.assertEqual(e.message, f"Error reading file “{path}”: Is a named pipe (FIFO), "
                                    "not a regular file")

    def test_secret_file(self) -> None:
        """A secret's file=."""
        for kind in KINDS:
            path = self.special("secret", kind)
            e = self.assertRaises(ObjectError, self.registry().create, "secret",
                                  {"id": "s", "file": path})
            self.assertEqual(e.message, f"Unable to read {path}: Error reading file "
                                        f"“{path}”: Is {kind}, not a regular file")

    def test_authz_list_file(self) -> None:
        """An authz-listfile's filename=."""
        for kind in (*KINDS, "directory"):
            path = self.special("list.json", kind)
            e = self.assertRaises(ObjectError, self.registry().create, "authz-listfile",
                                  {"id": "z", "filename": path})
            reason = "Is a directory" if kind == "directory" else f"Is {kind}, not a regular file"
            self.assertEqual(e.message, f"Unable to read '{path}': {reason}")
