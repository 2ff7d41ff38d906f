"""The negotiated key-exchange group (TLSSession.group_name) over real loopback sockets.

vncd's side is always a server TLSSession; the clients are a TLSSession
(pyOpenSSL with the OpenSSL bundled in the cryptography wheel), Python's
``ssl`` module (the system OpenSSL) and ``gnutls-cli`` (GnuTLS, what
gtk-vnc uses).  Every exchange is bounded by SOCKET_TIMEOUT.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import threading

from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from creds.material import AnonMaterial
from creds.session import HandshakeStatus, TLSSession
from creds.tlscreds import Endpoint
from tests import certgen
from tests.creds.sessionpump import (
    SOCKET_TIMEOUT, FakeCreds, SocketLink, accept_one, drive, registry, tcp_pair,
    x509_material,
)
from tests.tools import require_tool

SERVER, CLIENT = Endpoint.SERVER, Endpoint.CLIENT

#: The hybrid post-quantum group OpenSSL 3.5 and later offer first.
HYBRID = "X25519MLKEM768"

#: OpenSSL 3.5.0 as OPENSSL_VERSION_NUMBER: the first to offer HYBRID by default.
OPENSSL_3_5 = 0x30500000

_DONE = (HandshakeStatus.COMPLETE, HandshakeStatus.FAILED)


def _default_group(openssl_version_number: int) -> str:
    """The group an OpenSSL client and vncd agree on by default."""
    return HYBRID if openssl_version_number >= OPENSSL_3_5 else "x25519"


class GroupTests(SynchronousTestCase):

    def setUp(self) -> None:
        self.reg = registry()
        self.ca = certgen.ca("group CA")
        server_cert = certgen.server(self.ca, "localhost", dns=["localhost"],
                                     ips=["127.0.0.1"])
        self.client_cert = certgen.client(self.ca, "group client")
        self.server_creds = FakeCreds("x509", SERVER, registry=self.reg).load(
            x509_material(self.ca, server_cert))
        self.client_dir = certgen.write_dir(os.path.abspath(self.mktemp()), ca=[self.ca],
                                            client=self.client_cert)

    def listener(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        return sock

    def serve_one(self, listener: socket.socket) -> SocketLink:
        conn = accept_one(listener)
        self.addCleanup(conn.close)
        link = SocketLink(conn, TLSSession(self.server_creds, SERVER))
        drive([link], lambda: link.session.handshake_status in _DONE)
        self.assertIs(link.session.handshake_status, HandshakeStatus.COMPLETE,
                      link.session.failure)
        return link

    def test_pyopenssl_client(self) -> None:
        """A TLSSession client and server agree on the hybrid group (OpenSSL >= 3.5)."""
        client_creds = FakeCreds("x509", CLIENT, registry=self.reg).load(
            x509_material(self.ca, self.client_cert, role="client"))
        ssock, csock = tcp_pair()
        self.addCleanup(ssock.close)
        self.addCleanup(csock.close)
        server = SocketLink(ssock, TLSSession(self.server_creds, SERVER))
        client = SocketLink(csock, TLSSession(client_creds, CLIENT, hostname="localhost"))
        self.assertIsNone(server.session.group_name, "no group before the handshake")
        drive([server, client], lambda: server.session.handshake_status in _DONE
              and client.session.handshake_status in _DONE)
        self.assertEqual(server.session.protocol_version, "TLSv1.3")
        self.assertEqual(server.session.group_name, _default_group(SSL.OPENSSL_VERSION_NUMBER))
        self.assertEqual(client.session.group_name, server.session.group_name)

    def test_stdlib_ssl_client(self) -> None:
        """Python's ssl module (the system OpenSSL) gets its own library's default group."""
        listener = self.listener()
        port = listener.getsockname()[1]
        errors = []

        def connect() -> None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(os.path.join(self.client_dir, "ca-cert.pem"))
            ctx.load_cert_chain(os.path.join(self.client_dir, "client-cert.pem"),
                                os.path.join(self.client_dir, "client-key.pem"))
            try:
                with socket.create_connection(("127.0.0.1", port),
                                              timeout=SOCKET_TIMEOUT) as raw:
                    with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                        tls.recv(1)
            except OSError as e:
                errors.append(e)

        thread = threading.Thread(target=connect)
        thread.start()
        try:
            link = self.serve_one(listener)
            self.assertEqual(link.session.group_name,
                             _default_group(ssl.OPENSSL_VERSION_NUMBER))
            link.session.send(b"x")
            link.flush()
        finally:
            thread.join(SOCKET_TIMEOUT)
        self.assertEqual(errors, [])

    def gnutls(self, *priority: str) -> tuple[SocketLink, str]:
        """A gnutls-cli handshake with a client certificate: (our side, its description line)."""
        tool = require_tool("gnutls-cli")
        listener = self.listener()
        argv = [tool, "--x509cafile", os.path.join(self.client_dir, "ca-cert.pem"),
                "--x509certfile", os.path.join(self.client_dir, "client-cert.pem"),
                "--x509keyfile", os.path.join(self.client_dir, "client-key.pem"),
                *priority, "-p", str(listener.getsockname()[1]), "localhost"]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        try:
            link = self.serve_one(listener)
            link.session.send(b"hello\n")
            link.flush()
            link.sock.close()
            out = proc.communicate(timeout=SOCKET_TIMEOUT)[0].decode("utf-8", "replace")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        match = re.search(r"Description: \((.*)\)", out)
        self.assertIsNotNone(match, out)
        return link, match.group(1)

    def test_gnutls_default(self) -> None:
        """gnutls-cli names the same group as the session (GnuTLS 3.7 offers no hybrid)."""
        link, description = self.gnutls()
        group = link.session.group_name
        self.assertIsNotNone(group)
        self.assertIn(f"-(ECDHE-{group.upper()})-", description)

    def test_gnutls_x25519_only(self) -> None:
        """A GnuTLS client limited to X25519 negotiates x25519."""
        link, description = self.gnutls("--priority", "NORMAL:-GROUP-ALL:+GROUP-X25519")
        self.assertEqual(link.session.group_name, "x25519")
        self.assertIn("-(ECDHE-X25519)-", description)

    def test_anonymous(self) -> None:
        """Anonymous TLS 1.2 with the built-in RFC 7919 group reports ffdhe2048."""
        s_creds = FakeCreds("anon", SERVER, registry=self.reg).load(AnonMaterial(None))
        c_creds = FakeCreds("anon", CLIENT, registry=self.reg).load(AnonMaterial(None))
        ssock, csock = tcp_pair()
        self.addCleanup(ssock.close)
        self.addCleanup(csock.close)
        server = SocketLink(ssock, TLSSession(s_creds, SERVER))
        client = SocketLink(csock, TLSSession(c_creds, CLIENT))
        drive([server, client], lambda: server.session.handshake_status in _DONE
              and client.session.handshake_status in _DONE)
        self.assertEqual(server.session.protocol_version, "TLSv1.2")
        self.assertEqual(server.session.group_name, "ffdhe2048")
