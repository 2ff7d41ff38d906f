"""TLSSession against real TLS implementations over loopback sockets.

As a server, the session API talks to ``gnutls-cli`` (GnuTLS 3.7, the
library gtk-vnc and QEMU use) and ``openssl s_client``; as a client, to
``openssl s_server`` (bound to 127.0.0.1; ``gnutls-serv`` cannot be
bound to loopback only).  Data flows both ways in every case, and the
peer's view is read back from the tool's output.  Every tool run is
bounded by TOOL_TIMEOUT and killed in cleanup.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time

from twisted.trial.unittest import SynchronousTestCase

from creds.material import AnonMaterial
from creds.session import HandshakeStatus, TLSCheckError, TLSSession
from creds.tlscreds import Endpoint
from tests import certgen
from tests.creds.sessionpump import (
    FakeCreds,
    SocketLink,
    accept_one,
    drive,
    registry,
    x509_material,
)
from tests.tools import free_port, require_tool

SERVER, CLIENT = Endpoint.SERVER, Endpoint.CLIENT

#: Seconds a tool may take to finish after our side is done (they take
#: milliseconds; this only stops a hung tool).
TOOL_TIMEOUT = 20

#: Seconds to wait for ``openssl s_server`` to say it is accepting.
START_TIMEOUT = 10

#: What the peer sends us and what we send it.
FROM_TOOL = b"hello from the tool\n"
FROM_VNCD = b"hello from vncd\n"


class Pki:
    """Certificates for the interop cases, written as files the tools read."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.ca = certgen.ca("qemu CA")
        self.other_ca = certgen.ca("other CA")
        self.server = certgen.server(self.ca, "localhost", dns=["localhost"],
                                     ips=["127.0.0.1"])
        self.client = certgen.client(self.ca, "gnutls client")
        self.stranger = certgen.client(self.other_ca, "stranger")
        for name, item in (("ca", self.ca), ("other-ca", self.other_ca),
                           ("server", self.server), ("client", self.client),
                           ("stranger", self.stranger)):
            certgen.write_pem(self.path(name), item)
            certgen.write_pem(self.path(name + "-key"), item.key_pem(), mode=0o600)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name + ".pem")


class ToolTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        self.pki = Pki(directory)
        self.reg = registry()

    def start(self, argv: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

        def stop() -> None:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()

        self.addCleanup(stop)
        return proc

    def finish(self, proc: subprocess.Popen) -> tuple[bytes, bytes]:
        try:
            return proc.communicate(timeout=TOOL_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            self.fail(f"{proc.args[0]} did not finish: {err[-500:]!r}")


class ServerInteropTests(ToolTestCase):
    """The session API as a TLS server; gnutls-cli and openssl s_client connect."""

    def serve(self, creds, argv: list[str], *, authz_id=None):
        """Run one connection: the tool sends a line, we answer and close."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        proc = self.start([a.replace("PORT", str(port)) for a in argv])
        proc.stdin.write(FROM_TOOL)
        proc.stdin.flush()
        conn = accept_one(listener)
        self.addCleanup(conn.close)
        link = SocketLink(conn, TLSSession(creds, SERVER, authz_id=authz_id))
        drive([link], lambda: FROM_TOOL in link.received or link.session.broken)
        self.assertEqual(link.session.handshake_status, HandshakeStatus.COMPLETE,
                         link.session.failure)
        self.assertEqual(bytes(link.received), FROM_TOOL)
        try:
            link.session.check_credentials()
            problem = None
        except TLSCheckError as e:
            problem = e.message
        link.session.send(FROM_VNCD)
        link.session.close()
        drive([link], lambda: not link.outgoing)
        out, err = self.finish(proc)
        self.assertIn(FROM_VNCD, out, err[-1000:])
        return link.session, problem

    def gnutls_cli(self, *extra: str) -> list[str]:
        return [require_tool("gnutls-cli"), "-p", "PORT", *extra, "127.0.0.1"]

    def x509_creds(self, verify_peer: bool = True):
        return FakeCreds("x509", SERVER, registry=self.reg, verify_peer=verify_peer).load(
            x509_material(self.pki.ca, self.pki.server))

    def test_gnutls_cli_anon(self) -> None:
        """gnutls-cli with NORMAL:+ANON-DH (as gtk-vnc) gets TLS 1.2 ANON-DH from us."""
        creds = FakeCreds("anon", SERVER, registry=self.reg).load(AnonMaterial(None))
        session, problem = self.serve(creds, self.gnutls_cli("--priority", "NORMAL:+ANON-DH"))
        self.assertIsNone(problem)
        self.assertEqual(session.protocol_version, "TLSv1.2")
        self.assertTrue(session.cipher_name.startswith("ADH-"), session.cipher_name)

    def test_gnutls_cli_client_certificate(self) -> None:
        """gnutls-cli presents its certificate; our check passes and authz sees its DN."""
        self.reg.create("authz-simple", {"id": "acl", "identity": "C=UK,CN=gnutls client"})
        p = self.pki
        session, problem = self.serve(
            self.x509_creds(),
            self.gnutls_cli("--x509cafile", p.path("ca"), "--x509certfile", p.path("client"),
                            "--x509keyfile", p.path("client-key")),
            authz_id="acl")
        self.assertIsNone(problem)
        self.assertEqual(session.peer_name, "C=UK,CN=gnutls client")
        self.assertEqual(session.protocol_version, "TLSv1.3")

    def test_gnutls_cli_tls12(self) -> None:
        """gnutls-cli limited to TLS 1.2 completes with its certificate checked."""
        p = self.pki
        session, problem = self.serve(
            self.x509_creds(),
            self.gnutls_cli("--priority", "NORMAL:-VERS-TLS1.3", "--x509cafile", p.path("ca"),
                            "--x509certfile", p.path("client"),
                            "--x509keyfile", p.path("client-key")))
        self.assertIsNone(problem)
        self.assertEqual(session.protocol_version, "TLSv1.2")

    def test_gnutls_cli_certificate_from_other_ca(self) -> None:
        """A certificate from a CA we do not trust fails the check as having no known issuer."""
        p = self.pki
        session, problem = self.serve(
            self.x509_creds(),
            self.gnutls_cli("--x509cafile", p.path("ca"), "--x509certfile", p.path("stranger"),
                            "--x509keyfile", p.path("stranger-key")))
        self.assertEqual(problem, "The certificate hasn't got a known issuer")

    def s_client(self, *extra: str) -> list[str]:
        return [require_tool("openssl"), "s_client", "-connect", "127.0.0.1:PORT",
                "-CAfile", self.pki.path("ca"), "-verify_return_error",
                "-verify_ip", "127.0.0.1", "-quiet", "-ign_eof", *extra]

    def test_s_client_with_certificate(self) -> None:
        """openssl s_client with a client certificate passes the check."""
        p = self.pki
        session, problem = self.serve(
            self.x509_creds(), self.s_client("-cert", p.path("client"),
                                             "-key", p.path("client-key")))
        self.assertIsNone(problem)
        self.assertEqual(session.peer_name, "C=UK,CN=gnutls client")

    def test_s_client_without_certificate(self) -> None:
        """openssl s_client without a certificate fails the check with QEMU's text."""
        session, problem = self.serve(self.x509_creds(), self.s_client())
        self.assertEqual(problem, "Verify failed: No certificate was found.")

    def test_s_client_without_certificate_verify_off(self) -> None:
        """With verify-peer off, openssl s_client without a certificate is accepted."""
        session, problem = self.serve(self.x509_creds(verify_peer=False), self.s_client())
        self.assertIsNone(problem)


class ClientInteropTests(ToolTestCase):
    """The session API as a TLS client against openssl s_server."""

    def s_server(self, *extra: str) -> tuple[subprocess.Popen, int]:
        port = free_port()
        proc = self.start([require_tool("openssl"), "s_server", "-accept", f"127.0.0.1:{port}",
                           "-naccept", "1", "-rev", *extra])
        deadline = time.monotonic() + START_TIMEOUT
        seen = b""
        while b"ACCEPT" not in seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or proc.poll() is not None:
                self.fail(f"openssl s_server did not start: {seen!r}")
            ready, _, _ = select.select([proc.stdout], [], [], remaining)
            if ready:
                seen += os.read(proc.stdout.fileno(), 4096)
        return proc, port

    def connect(self, creds, port: int, hostname: str):
        sock = socket.create_connection(("127.0.0.1", port), timeout=START_TIMEOUT)
        self.addCleanup(sock.close)
        link = SocketLink(sock, TLSSession(creds, CLIENT, hostname=hostname))
        link.session.send(FROM_VNCD)
        expected = FROM_VNCD[-2::-1] + b"\n"
        drive([link], lambda: expected in link.received or link.session.broken)
        self.assertEqual(bytes(link.received), expected, link.session.failure)
        return link

    def test_x509_with_client_certificate(self) -> None:
        """s_server demanding a client certificate accepts ours; we check it by IP address."""
        p = self.pki
        proc, port = self.s_server("-cert", p.path("server"), "-key", p.path("server-key"),
                                   "-CAfile", p.path("ca"), "-Verify", "1")
        creds = FakeCreds("x509", CLIENT, registry=self.reg).load(
            x509_material(p.ca, p.client, role="client"))
        link = self.connect(creds, port, "127.0.0.1")
        link.session.check_credentials()
        self.assertEqual(link.session.peer_name, "C=UK,CN=localhost")
        link.session.close()
        drive([link], lambda: not link.outgoing)
        out, err = self.finish(proc)
        self.assertIn(b"C = UK, CN = gnutls client", err)

    def test_anon(self) -> None:
        """Anonymous credentials reach an anonymous-DH s_server at TLS 1.2."""
        proc, port = self.s_server("-nocert", "-cipher", "ADH:@SECLEVEL=0", "-tls1_2")
        creds = FakeCreds("anon", CLIENT, registry=self.reg).load(AnonMaterial(None))
        link = self.connect(creds, port, "127.0.0.1")
        self.assertTrue(link.session.cipher_name.startswith("ADH-"))
        link.session.check_credentials()
        link.session.close()
        drive([link], lambda: not link.outgoing)
        self.finish(proc)

    def test_server_certificate_for_other_name(self) -> None:
        """Our client rejects s_server's certificate when it expects another hostname."""
        p = self.pki
        proc, port = self.s_server("-cert", p.path("server"), "-key", p.path("server-key"))
        creds = FakeCreds("x509", CLIENT, registry=self.reg).load(
            x509_material(p.ca, None, role="client"))
        link = self.connect(creds, port, "vnc.example.org")
        err = self.assertRaises(TLSCheckError, link.session.check_credentials)
        self.assertEqual(err.message, "Certificate does not match the hostname vnc.example.org")
        link.session.close()
        drive([link], lambda: not link.outgoing)
        self.finish(proc)
