"""TLSSession over real loopback TCP sockets (IPv4 and IPv6).

Both ends are TLSSession objects, joined through the kernel rather than
a memory pump: partial reads and writes, segment boundaries and EOF come
from real sockets.  Every exchange is bounded by SOCKET_TIMEOUT.
"""

from __future__ import annotations

import socket

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from creds.material import AnonMaterial
from creds.session import HandshakeStatus, TLSCheckError, TLSSession
from creds.tlscreds import Endpoint
from tests import certgen
from tests.creds.sessionpump import (
    FakeCreds,
    SocketLink,
    drive,
    registry,
    tcp_pair,
    x509_material,
)

SERVER, CLIENT = Endpoint.SERVER, Endpoint.CLIENT


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


class SocketSessionTests(SynchronousTestCase):
    """Handshakes, checks, data and close over TCP loopback."""

    def setUp(self) -> None:
        self.reg = registry()
        self.ca = certgen.ca("qemu CA")
        self.server_cert = certgen.server(self.ca, "localhost", dns=["localhost"],
                                          ips=["127.0.0.1", "::1"])
        self.client_cert = certgen.client(self.ca, "qemu")

    def link(self, host: str, s_creds, c_creds, *, hostname=None, authz_id=None):
        ssock, csock = tcp_pair(host)
        self.addCleanup(ssock.close)
        self.addCleanup(csock.close)
        server = SocketLink(ssock, TLSSession(s_creds, SERVER, authz_id=authz_id))
        client = SocketLink(csock, TLSSession(c_creds, CLIENT, hostname=hostname))
        done = (HandshakeStatus.COMPLETE, HandshakeStatus.FAILED)
        drive([server, client], lambda: server.session.handshake_status in done
              and client.session.handshake_status in done)
        return server, client

    def x509(self, *, client_cert="default", server_verify=True, crls=()):
        ident = self.client_cert if client_cert == "default" else client_cert
        s_creds = FakeCreds("x509", SERVER, registry=self.reg, verify_peer=server_verify).load(
            x509_material(self.ca, self.server_cert, crls=crls))
        c_creds = FakeCreds("x509", CLIENT, registry=self.reg).load(
            x509_material(self.ca, ident, role="client"))
        return s_creds, c_creds

    def exchange(self, server: SocketLink, client: SocketLink) -> None:
        """Data both ways, then a clean close from the client."""
        client.session.send(b"from client " * 1000)
        server.session.send(b"from server " * 3000)
        drive([server, client], lambda: len(server.received) >= 12000
              and len(client.received) >= 36000)
        self.assertEqual(bytes(server.received), b"from client " * 1000)
        self.assertEqual(bytes(client.received), b"from server " * 3000)
        client.session.close()
        drive([server, client], lambda: server.session.peer_closed)
        server.session.close()
        drive([server, client], lambda: client.session.peer_closed)
        self.assertTrue(server.session.closed and client.session.closed)

    def test_anon_ipv4(self) -> None:
        """Anonymous TLS over IPv4 loopback: handshake, data both ways, clean close."""
        s_creds = FakeCreds("anon", SERVER, registry=self.reg).load(AnonMaterial(None))
        c_creds = FakeCreds("anon", CLIENT, registry=self.reg).load(AnonMaterial(None))
        server, client = self.link("127.0.0.1", s_creds, c_creds)
        self.assertEqual(server.session.protocol_version, "TLSv1.2")
        server.session.check_credentials()
        self.exchange(server, client)

    def test_x509_ipv4(self) -> None:
        """x509 with a client certificate over IPv4; both checks pass with an IP hostname."""
        server, client = self.link("127.0.0.1", *self.x509(), hostname="127.0.0.1")
        server.session.check_credentials()
        client.session.check_credentials()
        self.assertEqual(server.session.peer_name, "C=UK,CN=qemu")
        self.assertEqual(server.session.protocol_version, "TLSv1.3")
        self.exchange(server, client)

    def test_x509_ipv6(self) -> None:
        """x509 over IPv6 loopback, the server identified by its IPv6 address SAN."""
        if not _ipv6_loopback():
            raise SkipTest("no IPv6 loopback on this host")
        server, client = self.link("::1", *self.x509(), hostname="::1")
        server.session.check_credentials()
        client.session.check_credentials()
        self.exchange(server, client)

    def test_hostname_mismatch(self) -> None:
        """The client rejects a server certificate for another name."""
        server, client = self.link("127.0.0.1", *self.x509(), hostname="vnc.example.org")
        err = self.assertRaises(TLSCheckError, client.session.check_credentials)
        self.assertEqual(err.message, "Certificate does not match the hostname vnc.example.org")

    def test_missing_client_certificate(self) -> None:
        """A client without certificate completes the handshake and fails the server check."""
        server, client = self.link("127.0.0.1", *self.x509(client_cert=None),
                                   hostname="localhost")
        err = self.assertRaises(TLSCheckError, server.session.check_credentials)
        self.assertEqual(err.message, "Verify failed: No certificate was found.")

    def test_revoked_client(self) -> None:
        """A revoked client certificate fails the server check over sockets too."""
        crl = certgen.crl(self.ca, [self.client_cert])
        server, client = self.link("127.0.0.1", *self.x509(crls=[crl]), hostname="localhost")
        err = self.assertRaises(TLSCheckError, server.session.check_credentials)
        self.assertEqual(err.message, "The certificate has been revoked")

    def test_authz_allow_and_deny(self) -> None:
        """The DN is authorized by the named object: one allowed, one denied."""
        self.reg.create("authz-simple", {"id": "yes", "identity": "C=UK,CN=qemu"})
        self.reg.create("authz-simple", {"id": "no", "identity": "C=UK,CN=other"})
        results = []
        for authz in ("yes", "no"):
            server, client = self.link("127.0.0.1", *self.x509(), hostname="localhost",
                                       authz_id=authz)
            try:
                server.session.check_credentials()
            except TLSCheckError as e:
                results.append(e.message)
            else:
                results.append(None)
        self.assertEqual(results, [None, "TLS x509 authz check for C=UK,CN=qemu is denied"])

    def test_garbage_client(self) -> None:
        """A plain-text client makes the server session fail with a reason, no exception."""
        s_creds, _ = self.x509()
        ssock, csock = tcp_pair()
        self.addCleanup(ssock.close)
        self.addCleanup(csock.close)
        server = SocketLink(ssock, TLSSession(s_creds, SERVER))
        csock.sendall(b"RFB 003.008\n")
        drive([server], lambda: server.session.broken)
        self.assertEqual(server.session.failure_code, "not-tls")
        self.assertIn("RFB 003.008", server.session.failure)
        # OpenSSL answers a peer that does not speak TLS with nothing at all.
        self.assertEqual(server.outgoing + server.session.data_to_send(), b"")

    def test_peer_vanishes_mid_handshake(self) -> None:
        """A client that disconnects during the handshake fails it as premature termination."""
        s_creds, _ = self.x509()
        ssock, csock = tcp_pair()
        self.addCleanup(ssock.close)
        server = SocketLink(ssock, TLSSession(s_creds, SERVER))
        csock.sendall(b"\x16\x03\x01\x02\x00\x01")
        csock.close()
        drive([server], lambda: server.session.handshake_status is HandshakeStatus.FAILED)
        self.assertEqual(server.session.failure_code, "premature-eof")


class RealObjectTests(SynchronousTestCase):
    """tls-creds-x509 / tls-creds-anon objects made from files by the registry."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        self.reg = registry()
        self.ca = certgen.ca("qemu CA")
        self.server_cert = certgen.server(self.ca, "localhost", dns=["localhost"],
                                          ips=["127.0.0.1"])
        certgen.write_dir(f"{self.dir}/server", ca=[self.ca], server=self.server_cert)
        certgen.write_dir(f"{self.dir}/client", ca=[self.ca],
                          client=certgen.client(self.ca, "qemu"))

    def handshake(self, s_creds, c_creds, *, authz_id=None, hostname="localhost"):
        ssock, csock = tcp_pair()
        self.addCleanup(ssock.close)
        self.addCleanup(csock.close)
        server = SocketLink(ssock, TLSSession(s_creds, SERVER, authz_id=authz_id))
        client = SocketLink(csock, TLSSession(c_creds, CLIENT, hostname=hostname))
        drive([server, client], lambda: server.session.handshake_status
              is not HandshakeStatus.IN_PROGRESS and client.session.handshake_status
              is not HandshakeStatus.IN_PROGRESS)
        return server, client

    def test_x509_objects_and_authz(self) -> None:
        """Objects loaded from QEMU-style directories handshake, check and authorize."""
        s_creds = self.reg.create("tls-creds-x509", {
            "id": "tls0", "dir": f"{self.dir}/server", "endpoint": "server"})
        c_creds = self.reg.create("tls-creds-x509", {
            "id": "tls1", "dir": f"{self.dir}/client", "endpoint": "client"})
        self.reg.create("authz-simple", {"id": "auth0", "identity": "C=UK,CN=qemu"})
        server, client = self.handshake(s_creds, c_creds, authz_id="auth0")
        server.session.check_credentials()
        client.session.check_credentials()
        self.assertEqual(server.session.peer_name, "C=UK,CN=qemu")
        client.session.send(b"ping")
        drive([server, client], lambda: server.received == b"ping")

    def test_anon_objects(self) -> None:
        """tls-creds-anon objects for both endpoints negotiate ADH."""
        s_creds = self.reg.create("tls-creds-anon", {"id": "a0", "endpoint": "server"})
        c_creds = self.reg.create("tls-creds-anon", {"id": "a1", "endpoint": "client"})
        server, client = self.handshake(s_creds, c_creds)
        self.assertTrue(server.session.cipher_name.startswith("ADH-"))

    def test_reload_keeps_running_session(self) -> None:
        """After reload(), an earlier session keeps the old certificate; new ones get the new."""
        s_creds = self.reg.create("tls-creds-x509", {
            "id": "tls0", "dir": f"{self.dir}/server", "endpoint": "server"})
        c_creds = self.reg.create("tls-creds-x509", {
            "id": "tls1", "dir": f"{self.dir}/client", "endpoint": "client"})
        ssock, csock = tcp_pair()
        self.addCleanup(ssock.close)
        self.addCleanup(csock.close)
        early = SocketLink(ssock, TLSSession(s_creds, SERVER))
        renewed = certgen.server(self.ca, "localhost", dns=["localhost", "vnc.example.org"])
        certgen.write_dir(f"{self.dir}/server", ca=[self.ca], server=renewed)
        s_creds.reload()
        client = SocketLink(csock, TLSSession(c_creds, CLIENT, hostname="vnc.example.org"))
        drive([early, client], lambda: client.session.handshake_status
              is HandshakeStatus.COMPLETE and early.session.handshake_status
              is HandshakeStatus.COMPLETE)
        self.assertRaises(TLSCheckError, client.session.check_credentials)
        late, client2 = self.handshake(s_creds, c_creds, hostname="vnc.example.org")
        client2.session.check_credentials()
        self.assertEqual((early.session.generation, late.session.generation), (1, 2))
