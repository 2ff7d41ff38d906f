"""Certificate refusals explained on both ends, with real peers and real TLS.

- vncd-capture refused by vncd (which checks client certificates after
  the handshake and then closes, as QEMU does) says it was probably its
  certificate, with exit status 4 (TLS failure, vncd-capture(1));
- vncd-capture refused by a server that sends a TLS alert (a small
  VeNCrypt server over Python's ``ssl``, which verifies during the
  handshake) names the alert: "the server refused our certificate
  (unknown CA)";
- gvnccapture refusing vncd's certificate (its subjectAltName lacks the
  host) makes vncd log that the client probably refused the server
  certificate and what to check.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import subprocess
import sys
import threading

from twisted.trial.unittest import SynchronousTestCase

from tests import certgen
from tests.tools import QEMU, ROOT, free_display, require_tool
from tests.vncd import realclients
from tests.vncd.realclients import GvncPki
from vncd.capture import EXIT_CODES

#: Seconds any one client or server step may take.
STEP_TIMEOUT = 20

#: VeNCrypt's X509None subtype and RFB's VeNCrypt security type.
X509_NONE = 260
VENCRYPT = 19


def _pki(base: str):
    """A server dir (CA A) and a client dir whose certificate comes from CA B,
    which the client itself trusts (so only the server objects)."""
    ca_a, ca_b = certgen.ca("CA A"), certgen.ca("CA B")
    server = certgen.server(ca_a, "localhost", dns=["localhost"], ips=["127.0.0.1"])
    stranger = certgen.client(ca_b, "mallory")
    server_dir = certgen.write_dir(os.path.join(base, "server"), ca=[ca_a], server=server)
    client_dir = certgen.write_dir(os.path.join(base, "client"), ca=[ca_a, ca_b],
                                   client=stranger)
    return server_dir, client_dir


def _capture(client_dir: str, port: int, out: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vncd.capture", "--tls-creds-dir", client_dir,
         "--hostname", "localhost", f"127.0.0.1::{port}", out],
        cwd=ROOT, capture_output=True, text=True, timeout=STEP_TIMEOUT * 2)


class _AlertingServer:
    """One-shot VeNCrypt X509None server whose TLS (Python's ssl) verifies the client
    certificate during the handshake, so a stranger gets a TLS alert."""

    def __init__(self, case, server_dir: str):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(os.path.join(server_dir, "server-cert.pem"),
                                     os.path.join(server_dir, "server-key.pem"))
        self.context.load_verify_locations(os.path.join(server_dir, "ca-cert.pem"))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(STEP_TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        case.addCleanup(self.close)

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(STEP_TIMEOUT)
            try:
                conn.sendall(b"RFB 003.008\n")
                _read(conn, 12)
                conn.sendall(bytes([1, VENCRYPT]))
                _read(conn, 1)
                conn.sendall(b"\x00\x02")
                _read(conn, 2)
                conn.sendall(b"\x00" + bytes([1]) + struct.pack(">I", X509_NONE))
                _read(conn, 4)
                conn.sendall(b"\x01")
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError) as e:
                self.error = e

    def close(self) -> None:
        self.listener.close()
        self.thread.join(STEP_TIMEOUT)


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client left")
        data += chunk
    return data


class ClientSideTests(SynchronousTestCase):
    """vncd-capture says why its certificate was refused, with exit status 4."""

    def setUp(self):
        self.base = os.path.abspath(self.mktemp())
        self.server_dir, self.client_dir = _pki(self.base)

    def test_qemu_refusal(self):
        """QEMU 7.2 also closes after the handshake without an alert: the same message."""
        qemu = require_tool(QEMU)
        display = free_display()
        realclients.start_server(self, [
            qemu, "-machine", "none", "-nodefaults", "-display", "none", "-monitor", "none",
            "-object", f"tls-creds-x509,id=t,endpoint=server,dir={self.server_dir}",
            "-vnc", f"127.0.0.1:{display},tls-creds=t"], [5900 + display], name="qemu")
        result = _capture(self.client_dir, 5900 + display, os.path.join(self.base, "q.png"))
        self.assertEqual(result.returncode, EXIT_CODES["tls"], result.stderr)
        self.assertIn("it probably refused our certificate", result.stderr)

    def test_alert_named(self):
        """A server that sends the TLS alert 'unknown CA' is quoted."""
        server = _AlertingServer(self, self.server_dir)
        result = _capture(self.client_dir, server.port, os.path.join(self.base, "out.png"))
        self.assertEqual((result.returncode, result.stderr),
                         (EXIT_CODES["tls"], f"vncd-capture: 127.0.0.1::{server.port}: the"
                                             " server refused our certificate (unknown CA)\n"))
        server.close()
        self.assertIsInstance(server.error, ssl.SSLError)

    def test_vncd_refusal(self):
        """vncd closes after the handshake without an alert (as QEMU does): the client
        says its certificate was probably refused; the server log says why."""
        server = realclients.start_server(
            self, realclients.vncd_command([
                "-object", f"tls-creds-x509,id=t,endpoint=server,dir={self.server_dir}",
                "-vnc", f"127.0.0.1:{(display := free_display())},tls-creds=t"]),
            [5900 + display], name="vncd")
        result = _capture(self.client_dir, 5900 + display, os.path.join(self.base, "out.png"))
        self.assertEqual(result.returncode, EXIT_CODES["tls"], result.stderr)
        self.assertIn("the server closed the connection right after the TLS handshake: it"
                      " probably refused our certificate", result.stderr)
        self.assertTrue(realclients.wait_until(
            lambda: "certificate refused" in server.output(), STEP_TIMEOUT), server.describe())


class ServerSideTests(SynchronousTestCase):
    """vncd explains a client that refuses its certificate, with or without an alert."""

    def test_client_alert(self):
        """A client that verifies during the handshake (Python's ssl, trusting another CA)
        sends 'unknown CA'; vncd logs that the client refused its certificate."""
        realclients.require_vncd()
        base = os.path.abspath(self.mktemp())
        server_dir, _ = _pki(base)
        display = free_display()
        proc = realclients.start_server(
            self, realclients.vncd_command([
                "-object", f"tls-creds-x509,id=t,endpoint=server,verify-peer=off,dir={server_dir}",
                "-vnc", f"127.0.0.1:{display},tls-creds=t"]),
            [5900 + display], name="vncd")
        context = ssl.create_default_context(cafile=certgen.write_pem(
            os.path.join(base, "stranger-ca.pem"), certgen.ca("stranger CA")))
        with socket.create_connection(("127.0.0.1", 5900 + display),
                                      timeout=STEP_TIMEOUT) as conn:
            _read(conn, 12)
            conn.sendall(b"RFB 003.008\n")
            count = _read(conn, 1)[0]
            self.assertIn(VENCRYPT, _read(conn, count))
            conn.sendall(bytes([VENCRYPT]))
            _read(conn, 2)
            conn.sendall(b"\x00\x02")
            self.assertEqual(_read(conn, 1), b"\x00")
            subtypes = _read(conn, 1)[0]
            offered = struct.unpack(f">{subtypes}I", _read(conn, 4 * subtypes))
            self.assertIn(X509_NONE, offered)
            conn.sendall(struct.pack(">I", X509_NONE))
            self.assertEqual(_read(conn, 1), b"\x01")
            with self.assertRaises(ssl.SSLCertVerificationError):
                context.wrap_socket(conn, server_hostname="localhost")
        self.assertTrue(realclients.wait_until(
            lambda: "refused this server's certificate" in proc.output(), STEP_TIMEOUT),
            proc.describe())
        self.assertIn("the client refused this server's certificate (unknown CA): check that"
                      " the name the client connects to is in the certificate's"
                      " subjectAltName", proc.output())

    def test_gvnccapture_refuses_server_certificate(self):
        """gvnccapture connecting to 127.0.0.1 refuses a certificate naming only
        other.example; vncd's log says the client probably refused its certificate."""
        require_tool("gvnccapture")
        realclients.require_vncd()
        pki = GvncPki.borrow(self)
        base = os.path.abspath(self.mktemp())
        ca = certgen.ca("gvnc test CA")
        server = certgen.server(ca, "other.example", dns=["other.example"], ips=[])
        creds_dir = certgen.write_dir(os.path.join(base, "creds"), ca=[ca], server=server)
        pki.install(ca=ca.pem())
        display = free_display()
        proc = realclients.start_server(
            self, realclients.vncd_command([
                "-object", f"tls-creds-x509,id=t,endpoint=server,verify-peer=off,dir={creds_dir}",
                "-vnc", f"127.0.0.1:{display},tls-creds=t"]),
            [5900 + display], name="vncd")
        run = realclients.gvnccapture("127.0.0.1", display, os.path.join(base, "out.png"))
        self.assertNotEqual(run.status, 0, run.output)
        self.assertTrue(realclients.wait_until(
            lambda: "right after the TLS handshake" in proc.output(), STEP_TIMEOUT),
            proc.describe())
        log = proc.output()
        self.assertIn("the client closed the connection right after the TLS handshake", log)
        self.assertIn("it probably refused this server's certificate; check that the name"
                      " the client connects to is in the certificate's subjectAltName", log)
        self.assertNotIn("protocol error", log)
