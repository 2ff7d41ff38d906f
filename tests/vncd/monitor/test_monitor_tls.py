"""The TLS monitor, sharing one tls-creds-x509 object with the VNC display.

vncd only: QEMU 7.2 does not answer OpenSSL TLS clients on a TLS chardev
(see :mod:`tests.compat.test_monitor_qemu`), so there is nothing to
compare with.  ``qemu.qmp`` connects over TLS to a ``-chardev
socket,...,tls-creds=tls0,tls-authz=authz0`` with ``-mon mode=control``
while a VeNCrypt x509 client uses the same ``tls0`` on the display: an
authorised client certificate runs commands, one the authz object refuses
is closed after the handshake (the log says why), one from another CA
fails the handshake (the log names the peer), and a client's TLS
close_notify ends its session quietly.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests import certgen
from tests.compat.helpers import VALIDITY, client_identity, server_dir
from tests.tools import ROOT, free_port
from tests.vncd import realclients
from tests.vncd.monitor.peers import (
    RawQMP, RawVNC, qmp_tls_context, short_dir, start_vncd, with_qmp,
)

#: Seconds to wait for a line in vncd's log.
LOG_TIMEOUT = 10.0


class TLSMonitorTests(SynchronousTestCase):
    """QMP over TLS with the display's credentials object."""

    def setUp(self):
        self.base = short_dir(self)
        root = certgen.ca("monitor TLS CA", not_after=VALIDITY)
        self.x509 = server_dir(os.path.join(self.base, "x509"), root)
        self.ca = os.path.join(self.x509, "ca-cert.pem")
        self.bob = client_identity(os.path.join(self.base, "bob"), root, "bob")
        self.eve = client_identity(os.path.join(self.base, "eve"), root, "eve")
        other = certgen.ca("another CA", not_after=VALIDITY)
        self.mallory = client_identity(os.path.join(self.base, "mallory"), other, "mallory")
        self.port = free_port()
        self.vncd = start_vncd(
            self, self.base,
            objects=(f"tls-creds-x509,id=tls0,endpoint=server,dir={self.x509},verify-peer=on",
                     "authz-simple,id=authz0,identity=CN=bob"),
            vnc="127.0.0.1:{display},tls-creds=tls0",
            extra=("-chardev", f"socket,id=m0,host=127.0.0.1,port={self.port},server=on,"
                   "wait=off,tls-creds=tls0,tls-authz=authz0",
                   "-mon", "chardev=m0,mode=control"))

    def context(self, identity) -> ssl.SSLContext:
        return qmp_tls_context(self.ca, *identity)

    def logged(self, *words: str) -> bool:
        return bool(realclients.wait_until(
            lambda: any(all(w in line for w in words)
                        for line in self.vncd.output().splitlines()), LOG_TIMEOUT))

    def test_authorised_client(self):
        """bob's certificate: QMP commands work while a VNC client uses the same object."""
        vnc = RawVNC(self.vncd.port, tls=self.context(self.bob))
        self.addCleanup(vnc.close)

        async def body(client):
            version = await client.execute("query-version")
            vnc_info = await client.execute("query-vnc")
            creds = await client.execute("vncd-query-credentials")
            return version, vnc_info, creds

        version, vnc_info, creds = with_qmp(("127.0.0.1", self.port), body,
                                            ssl_context=self.context(self.bob))
        # A real client program on the same object: vncd-capture with bob's files.
        bob_dir = os.path.dirname(self.bob[0])
        shutil.copy(self.ca, os.path.join(bob_dir, "ca-cert.pem"))
        out = os.path.join(self.base, "shot.png")
        capture = subprocess.run(
            [sys.executable, "-m", "vncd.capture", f"127.0.0.1::{self.vncd.port}", out,
             "--tls-creds-dir", bob_dir, "--hostname", "localhost", "--timeout", "20"],
            capture_output=True, timeout=60, cwd=ROOT)
        self.assertEqual(capture.returncode, 0, capture.stderr)
        self.assertGreater(os.path.getsize(out), 0)
        self.assertEqual(version["package"].split()[0], "vncd")
        self.assertEqual([c["x509_dname"] for c in vnc_info["clients"]], ["CN=bob"])
        self.assertEqual([(c["id"], c["users"]) for c in creds][:1][0][0], "tls0")
        self.assertTrue(self.logged("monitor m0", "TLS established", "CN=bob"))

    def test_refused_by_authz(self):
        """eve's certificate is valid but not authorised: closed after the handshake, logged."""
        sock = self.context(self.eve).wrap_socket(
            socket.create_connection(("127.0.0.1", self.port), timeout=10),
            server_hostname="localhost")
        self.addCleanup(sock.close)
        try:
            data = sock.recv(65536)
        except (ssl.SSLError, ConnectionResetError):
            data = b""
        self.assertEqual(data, b"")
        self.assertTrue(self.logged("monitor m0", "certificate refused", "CN=eve"),
                        self.vncd.output())

        async def body(client):
            return await client.execute("query-version")

        with self.assertRaises(Exception):
            with_qmp(("127.0.0.1", self.port), body, ssl_context=self.context(self.eve),
                     timeout=10)
        # The display, with the same object and no authz, still lets eve in.
        RawVNC(self.vncd.port, tls=self.context(self.eve)).close()

    def test_wrong_ca(self):
        """A certificate from another CA: the handshake fails and the log names the peer."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(sock.close)
        local = sock.getsockname()
        # TLS 1.3: the client's side of the handshake may finish before the
        # server has looked at its certificate; then the alert (or the end
        # of the connection) comes with the first read.  No greeting either way.
        try:
            tls = self.context(self.mallory).wrap_socket(sock, server_hostname="localhost")
            data = tls.recv(65536)
        except (ssl.SSLError, OSError):
            data = b""
        self.assertEqual(data, b"")
        self.assertTrue(self.logged("monitor m0", f"{local[0]}:{local[1]}"),
                        self.vncd.output())
        ok = RawQMP(sock=self.context(self.bob).wrap_socket(
            socket.create_connection(("127.0.0.1", self.port), timeout=10),
            server_hostname="localhost"))
        self.addCleanup(ok.close)
        self.assertIn("QMP", ok.greeting)

    def test_close_notify(self):
        """A client's close_notify ends its session cleanly; the monitor serves the next one."""
        for _ in range(3):
            tls = self.context(self.bob).wrap_socket(
                socket.create_connection(("127.0.0.1", self.port), timeout=10),
                server_hostname="localhost")
            client = RawQMP(sock=tls)
            client.negotiate()
            self.assertIn("return", client.execute("query-version"))
            plain = tls.unwrap()
            # The server answers with its own close_notify, then closes.
            rest = b""
            while True:
                chunk = plain.recv(65536)
                if not chunk:
                    break
                rest += chunk
            plain.close()
        output = self.vncd.output()
        self.assertNotIn("Traceback", output)
        self.assertNotIn("TLS failure", output)
        self.assertTrue(self.logged("monitor m0", "disconnected"))
