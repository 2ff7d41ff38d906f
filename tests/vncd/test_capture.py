"""vncd-capture: PNGs equal to the served framebuffer, TLS options, exit codes."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys

import numpy as np
from hypothesis import given, strategies as st
from PIL import Image
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase

from tests.tools import ROOT, free_display, free_port
from tests.vncd.test_service import ServiceCase, display, pattern_screen, tcp
from tests.vncd.test_vencrypt import PASSWORD
from vncd import capture


class CaptureTests(ServiceCase):

    async def run_capture(self, *argv):
        err = io.StringIO()
        status = await capture.run(reactor, list(argv), err=err)
        return status, err.getvalue()

    def png(self, path):
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    def password_file(self, data=PASSWORD):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        return path

    async def test_png_equals_framebuffer(self):
        """The PNG's pixels equal the screen's framebuffer, for every encoding."""
        port = free_port()
        screen = pattern_screen(130, 50)
        self.serve(display(listen=(tcp(port),)), screen=screen)
        for name in ("raw", "hextile", "zlib", "zrle", "tight"):
            out = self.mktemp() + ".png"
            status, err = await self.run_capture(f"127.0.0.1::{port}", out, "--encodings", name)
            self.assertEqual((status, err), (0, ""))
            self.assertEqual(self.png(out).tolist(), screen.framebuffer[..., :3].tolist())

    async def test_x509_client_certificate(self):
        """--tls-creds-dir with a client certificate and --hostname captures over X509Vnc."""
        registry = self.pki.registry
        if "vncpw" not in registry:
            registry.create("secret", {"id": "vncpw", "data": PASSWORD.decode()})
        port = free_port()
        screen = pattern_screen()
        self.serve(display(listen=(tcp(port),), tls_creds="x509v", password_secret="vncpw"),
                   screen=screen)
        out = self.mktemp() + ".png"
        status, err = await self.run_capture(
            f"127.0.0.1::{port}", out, "--tls-creds-dir", self.pki.client_dirs["alice"],
            "--hostname", "localhost", "--password-file", self.password_file())
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(self.png(out).tolist(), screen.framebuffer[..., :3].tolist())

    async def test_anon_tls(self):
        """--anon-tls captures from a TLSNone display."""
        port = free_port()
        self.serve(display(listen=(tcp(port),), tls_creds="anon"))
        out = self.mktemp() + ".png"
        status, err = await self.run_capture(f"127.0.0.1::{port}", out, "--anon-tls")
        self.assertEqual((status, err), (0, ""))

    async def test_display_number(self):
        """HOST:N means port 5900 + N."""
        n = free_display()
        self.serve(display(listen=(tcp(5900 + n),)))
        status, err = await self.run_capture(f"127.0.0.1:{n}", self.mktemp() + ".png")
        self.assertEqual((status, err), (0, ""))

    async def test_exit_codes(self):
        """Each kind of failure has its exit status and a one-line message."""
        port = free_port()
        self.serve(display(listen=(tcp(port),), tls_creds="x509v",
                           password_secret=self._secret()))
        server = f"127.0.0.1::{port}"
        alice = self.pki.client_dirs["alice"]
        cases = [
            ((server, "o.png", "--tls-creds-dir", alice, "--hostname", "localhost",
              "--password-file", self.password_file(b"guessed")), 3, "authentication failed"),
            ((server, "o.png", "--password-file", self.password_file()), 3, "requires VeNCrypt"),
            ((server, "o.png", "--tls-creds-dir", alice, "--hostname", "wrong.example",
              "--password-file", self.password_file()), 4,
             "does not match the hostname wrong.example"),
            ((f"127.0.0.1::{free_port()}", "o.png"), 1, "cannot connect"),
            ((server, "o.png", "--tls-creds-dir", "/nonexistent/creds"), 1,
             "/nonexistent/creds/ca-cert.pem"),
            (("not a server", "o.png"), 2, "expected HOST:DISPLAY"),
            ((server, "o.png", "--encodings", "jpeg"), 2, "unknown encoding 'jpeg'"),
        ]
        for argv, status, text in cases:
            got, err = await self.run_capture(*argv)
            self.assertEqual(got, status, err)
            self.assertTrue(err.startswith("vncd-capture: "), err)
            self.assertIn(text, err)
            self.assertEqual(err.count("\n"), 1)
            self.assertNotIn(PASSWORD.decode(), err)

    async def test_timeout(self):
        """A server that accepts but never speaks ends in exit status 5."""
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        self.addCleanup(silent.close)
        server = f"127.0.0.1::{silent.getsockname()[1]}"
        status, err = await self.run_capture(server, self.mktemp(), "--timeout", "0.5")
        self.assertEqual(status, 5)
        self.assertIn("no complete screen within 0.5 s", err)

    async def test_unwritable_output(self):
        """A PNG that cannot be written is exit status 1 naming the file."""
        port = free_port()
        self.serve(display(listen=(tcp(port),)))
        status, err = await self.run_capture(f"127.0.0.1::{port}", "/nonexistent/dir/x.png")
        self.assertEqual(status, 1)
        self.assertIn("cannot write /nonexistent/dir/x.png", err)

    def _secret(self):
        registry = self.pki.registry
        if "vncpw" not in registry:
            registry.create("secret", {"id": "vncpw", "data": PASSWORD.decode()})
        return "vncpw"


class ParseServerTests(SynchronousTestCase):

    def test_forms(self):
        """Display numbers, explicit ports, IPv6 and UNIX paths are understood."""
        cases = {
            "host:1": ("tcp", "host", 5901), "host::5999": ("tcp", "host", 5999),
            ":2": ("tcp", "localhost", 5902), "[::1]:3": ("tcp", "::1", 5903),
            "unix:/run/vnc": ("unix", "/run/vnc", 0), "host": ("tcp", "host", 5900),
        }
        for text, (kind, host, port) in cases.items():
            address = capture.parse_server(text)
            self.assertEqual((address.kind, address.host, address.port), (kind, host, port))

    @given(st.text(max_size=80))
    def test_garbage(self, text):
        """Any SERVER text parses to an address or is a usage error, nothing else."""
        try:
            address = capture.parse_server(text)
        except capture.UsageError:
            return
        self.assertIn(address.kind, ("tcp", "unix"))
        if address.kind == "tcp":
            self.assertTrue(0 < address.port <= 65535)

    @given(st.text(max_size=80))
    def test_encodings_garbage(self, text):
        """Any --encodings text gives known encodings or a usage error."""
        try:
            numbers = capture._encodings(text)
        except capture.UsageError:
            return
        self.assertTrue(set(numbers) - set(capture._PSEUDO) <= set(capture.ENCODING_NAMES.values()))

    def test_bad_forms(self):
        """Out-of-range and malformed servers are usage errors."""
        for text in ("host:70000", "host:x", "unix:", "host::0"):
            self.assertRaises(capture.UsageError, capture.parse_server, text)


class ConsoleScriptTests(SynchronousTestCase):

    def test_exit_status_from_the_command(self):
        """``python -m vncd.capture`` exits with the documented status."""
        port = free_port()
        result = subprocess.run([sys.executable, "-m", "vncd.capture", f"127.0.0.1::{port}",
                                 os.path.join(self.mktemp(), "x.png"), "--timeout", "5"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("cannot connect", result.stderr)
        help_run = subprocess.run([sys.executable, "-m", "vncd.capture", "--help"], cwd=ROOT,
                                  capture_output=True, text=True, timeout=60)
        self.assertEqual(help_run.returncode, 0)
        self.assertIn("Exit status", help_run.stdout)


class PasswordFileTests(SynchronousTestCase):

    def test_content_byte_for_byte(self):
        """The password is the file's content, newline included, as -object secret reads it."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"s3cret\n")
        self.assertEqual(capture._read_password(path), b"s3cret\n")

    def test_too_large(self):
        """A password file larger than the limit is a usage error naming it."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"x" * (capture.MAX_PASSWORD_FILE + 1))
        with self.assertRaises(capture.UsageError) as cm:
            capture._read_password(path)
        self.assertIn(path, str(cm.exception))


class ManualAgreesTests(SynchronousTestCase):
    """vncd-capture(1) documents exactly the exit statuses the code uses."""

    def test_exit_statuses(self):
        """The EXIT STATUS section lists every status in EXIT_CODES and no other; TLS is 4."""
        import re

        with open(os.path.join(ROOT, "man", "vncd-capture.1"), encoding="utf-8") as f:
            page = f.read()
        section = page.split('.SH "EXIT STATUS"', 1)[1].split(".SH ", 1)[0]
        documented = {int(n) for n in re.findall(r"^\.TP\n(\d+)\n", section, re.M)}
        self.assertEqual(documented, set(capture.EXIT_CODES.values()))
        tls = section.split(f".TP\n{capture.EXIT_CODES['tls']}\n", 1)[1].split(".TP", 1)[0]
        self.assertIn("TLS failure", tls)
        self.assertIn("refusing our certificate", tls)
