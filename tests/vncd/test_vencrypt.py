"""VeNCrypt with real TLS: server and client stacks joined in memory.

Certificates come from :mod:`tests.certgen`, credentials objects from
``creds.new_registry()``; the only thing not real is the socket.
:class:`Pki` is shared with the other test modules that need TLS.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

import creds
from creds.session import TLSSession
from creds.tlscreds import Endpoint
from tests import certgen
from vncd.rfb.client import ClientConnection, ClientSecurity
from vncd.rfb.errors import RemoteProtocolError
from vncd.rfb.events import (
    AuthenticationSucceeded, ServerInitReceived, StartTLS,
)
from vncd.rfb.security import SecurityConfig, auth_for
from vncd.rfb.server import ServerConnection
from vncd.rfb.stack import RFBStack, TLSEstablished
from vncd.rfb.states import ClientState, ServerState
from vncd.rfb.testing import MemoryPeer, converse
from vncd.rfb.tls import CredentialsRejected, TLSFailed

PASSWORD = b"s3cret!!"


class Pki:
    """A CA, a server certificate for localhost/127.0.0.1, clients alice and bob
    (same CA) and mallory (another CA), laid out as creds directories, and a
    registry holding the matching credentials objects:

    server: ``x509v`` (verify-peer on), ``x509n`` (off), ``anon``;
    client: ``c-alice``, ``c-bob``, ``c-mallory``, ``c-nocert`` (CA only),
    ``c-anon``; authz: ``allow-alice`` (authz-simple), ``deny-all`` (authz-list).
    """

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        ca = certgen.ca("vncd test CA")
        other = certgen.ca("other CA")
        server = certgen.server(ca, "localhost", dns=["localhost"], ips=["127.0.0.1", "::1"])
        alice = certgen.client(ca, "alice")
        bob = certgen.client(ca, "bob")
        mallory = certgen.client(other, "mallory")
        self.dir = directory
        self.server_dir = certgen.write_dir(os.path.join(directory, "server"),
                                            ca=[ca], server=server)
        self.client_dirs = {
            name: certgen.write_dir(os.path.join(directory, name), ca=cas, client=cert)
            for name, cert, cas in (("alice", alice, [ca]), ("bob", bob, [ca]),
                                    ("mallory", mallory, [other, ca]))
        }
        self.client_dirs["nocert"] = certgen.write_dir(os.path.join(directory, "nocert"),
                                                       ca=[ca])
        self.client_dirs["otherca"] = certgen.write_dir(os.path.join(directory, "otherca"),
                                                        ca=[other])
        self.registry = creds.new_registry()
        reg = self.registry
        reg.create("tls-creds-x509", {"id": "x509v", "endpoint": "server",
                                      "dir": self.server_dir})
        reg.create("tls-creds-x509", {"id": "x509n", "endpoint": "server",
                                      "dir": self.server_dir, "verify-peer": "off"})
        reg.create("tls-creds-anon", {"id": "anon", "endpoint": "server"})
        for name, path in self.client_dirs.items():
            reg.create("tls-creds-x509", {"id": f"c-{name}", "endpoint": "client",
                                          "dir": path})
        reg.create("tls-creds-anon", {"id": "c-anon", "endpoint": "client"})
        reg.create("authz-simple", {"id": "allow-alice", "identity": "C=UK,CN=alice"})
        reg.create("authz-list", {"id": "deny-all", "policy": "deny"})

    def server_session(self, creds_id: str, authz: str | None = None):
        obj = self.registry.get(creds_id)
        return lambda: TLSSession(obj, Endpoint.SERVER, authz_id=authz)

    def client_session(self, creds_id: str, hostname: str = "localhost"):
        obj = self.registry.get(creds_id)
        return lambda: TLSSession(obj, Endpoint.CLIENT, hostname=hostname)


_PKI: dict[str, Pki] = {}


def shared_pki(case: SynchronousTestCase) -> Pki:
    """One Pki per test process (key generation is the slow part)."""
    if "pki" not in _PKI:
        _PKI["pki"] = Pki(os.path.abspath(case.mktemp()))
    return _PKI["pki"]


def pair(pki: Pki, server_creds: str | None, client_creds: str | None, *,
         password: bool = False, authz: str | None = None, client_password=PASSWORD,
         hostname: str = "localhost", max_minor: int = 8):
    kind = None if server_creds is None else ("anon" if server_creds == "anon" else "x509")
    security = SecurityConfig(auth_for(kind, password), PASSWORD if password else None)
    server = RFBStack(ServerConnection(security),
                      pki.server_session(server_creds, authz) if server_creds else None)
    client_kind = None
    if client_creds is not None:
        client_kind = "anon" if client_creds == "c-anon" else "x509"
    client_security = ClientSecurity(tls=client_kind, password=client_password)
    client = RFBStack(ClientConnection(client_security, max_minor=max_minor),
                      pki.client_session(client_creds, hostname) if client_creds else None)
    a, b = MemoryPeer(server), MemoryPeer(client)
    converse(a, b)
    return a, b


class VeNCryptTLSTests(SynchronousTestCase):

    def setUp(self):
        self.pki = shared_pki(self)

    def assertReachedInit(self, server, client):
        self.assertIsNone(server.error, server.error)
        self.assertIsNone(client.error, client.error)
        self.assertIs(server.stack.rfb.state, ServerState.RUNNING)
        self.assertIs(client.stack.rfb.state, ClientState.RUNNING)
        self.assertEqual(len(client.of_type(ServerInitReceived)), 1)

    def test_anon_tls_none(self):
        """Anonymous credentials: TLSNone over TLS 1.2 with an anonymous DH suite."""
        server, client = pair(self.pki, "anon", "c-anon")
        self.assertReachedInit(server, client)
        self.assertEqual(server.of_type(StartTLS), [StartTLS(257)])
        (established,) = server.of_type(TLSEstablished)
        self.assertEqual(established.info.protocol_version, "TLSv1.2")
        self.assertIn("ADH", established.info.cipher_name)
        self.assertIsNone(established.info.peer_name)

    def test_anon_tls_vnc(self):
        """Anonymous credentials with a password: TLSVnc, DES inside TLS."""
        server, client = pair(self.pki, "anon", "c-anon", password=True)
        self.assertReachedInit(server, client)
        self.assertEqual(server.of_type(StartTLS), [StartTLS(258)])

    def test_anon_tls_vnc_wrong_password(self):
        """A wrong password inside TLSVnc fails with QEMU's reason, in TLS."""
        server, client = pair(self.pki, "anon", "c-anon", password=True,
                              client_password=b"guessed")
        (failed,) = [e for e in client.events if type(e).__name__ == "AuthenticationFailed"]
        self.assertEqual(failed.reason, "Authentication failed")
        self.assertIs(server.stack.rfb.state, ServerState.CLOSED)

    def test_x509_client_certificate(self):
        """x509 with verify-peer: alice's certificate is checked and her DN recorded."""
        server, client = pair(self.pki, "x509v", "c-alice")
        self.assertReachedInit(server, client)
        (established,) = server.of_type(TLSEstablished)
        self.assertEqual(established.info.peer_name, "C=UK,CN=alice")
        (client_side,) = client.of_type(TLSEstablished)
        self.assertEqual(client_side.info.peer_name, "C=UK,CN=localhost")

    def test_x509_vnc(self):
        """X509Vnc: certificate check, then VNC authentication inside TLS."""
        server, client = pair(self.pki, "x509v", "c-alice", password=True)
        self.assertReachedInit(server, client)
        self.assertEqual(server.of_type(StartTLS), [StartTLS(261)])

    def test_x509_ip_address_hostname(self):
        """The client verifies an IP address against the certificate's IP SAN."""
        server, client = pair(self.pki, "x509n", "c-nocert", hostname="127.0.0.1")
        self.assertReachedInit(server, client)

    def test_no_client_certificate(self):
        """verify-peer on and no client certificate: refused before inner authentication."""
        server, client = pair(self.pki, "x509v", "c-nocert", password=True)
        self.assertIsInstance(server.error, CredentialsRejected)
        self.assertIn("No certificate was found", server.error.reason)
        self.assertIs(server.stack.rfb.state, ServerState.TLS_HANDSHAKE)
        self.assertEqual(server.of_type(AuthenticationSucceeded), [])
        self.assertIsNone(server.stack.rfb._challenge)

    def test_verify_peer_off(self):
        """verify-peer off admits a client without a certificate and records no DN."""
        server, client = pair(self.pki, "x509n", "c-nocert")
        self.assertReachedInit(server, client)
        self.assertIsNone(server.of_type(TLSEstablished)[0].info.peer_name)

    def test_other_ca(self):
        """A client certificate from another CA is refused (unknown issuer)."""
        server, client = pair(self.pki, "x509v", "c-mallory")
        self.assertIsInstance(server.error, CredentialsRejected)
        self.assertIn("known issuer", server.error.reason)

    def test_authz(self):
        """tls-authz: alice is allowed by her DN, bob is denied with QEMU's message."""
        server, client = pair(self.pki, "x509v", "c-alice", authz="allow-alice")
        self.assertReachedInit(server, client)
        server, client = pair(self.pki, "x509v", "c-bob", authz="allow-alice")
        self.assertIsInstance(server.error, CredentialsRejected)
        self.assertIn("TLS x509 authz check for C=UK,CN=bob is denied", server.error.reason)

    def test_client_checks_hostname(self):
        """The client refuses a server whose certificate does not carry the host name."""
        server, client = pair(self.pki, "x509n", "c-alice", hostname="vnc.example.org")
        self.assertIsInstance(client.error, CredentialsRejected)
        self.assertIn("does not match the hostname vnc.example.org", client.error.reason)
        self.assertEqual(client.of_type(ServerInitReceived), [])

    def test_client_checks_issuer(self):
        """The client refuses a server certificate its CA file does not vouch for."""
        server, client = pair(self.pki, "x509n", "c-otherca")
        self.assertIsInstance(client.error, CredentialsRejected)

    def test_anon_client_against_x509_server(self):
        """A client holding anonymous credentials refuses X509 subtypes (no downgrade)."""
        server, client = pair(self.pki, "x509n", "c-anon")
        self.assertIsInstance(client.error, RemoteProtocolError)
        self.assertIn("X509None", client.error.reason)
        self.assertIsNone(server.stack.tls)

    def test_x509_client_against_anon_server(self):
        """A client holding x509 credentials refuses anonymous TLS subtypes."""
        server, client = pair(self.pki, "anon", "c-alice")
        self.assertIn("TLSNone", client.error.reason)

    def test_tls_client_against_plain_server(self):
        """A client with TLS credentials refuses a server without VeNCrypt."""
        server, client = pair(self.pki, None, "c-alice")
        self.assertIn("TLS is required", client.error.reason)

    def test_starttls_injection_over_the_stack(self):
        """Bytes sent with the subtype choice close the connection before any TLS."""
        security = SecurityConfig(auth_for("x509", False))
        server = MemoryPeer(RFBStack(ServerConnection(security),
                                     self.pki.server_session("x509n")))
        server.drain()
        server.feed(b"RFB 003.008\n\x13\x00\x02")
        server.stack.data_to_send()
        server.feed(b"\x00\x00\x01\x04" + b"\x16\x03\x01\x00")
        self.assertIn("STARTTLS injection", server.error.reason)
        self.assertIsNone(server.stack.tls)
        self.assertEqual(server.stack.data_to_send(), b"\x00")

    def test_not_tls_after_accept(self):
        """Plaintext where the ClientHello belongs fails the TLS handshake."""
        security = SecurityConfig(auth_for("anon", False))
        server = MemoryPeer(RFBStack(ServerConnection(security),
                                     self.pki.server_session("anon")))
        server.drain()
        server.stack.data_to_send()
        server.feed(b"RFB 003.008\n\x13\x00\x02\x00\x00\x01\x01")
        self.assertIsNotNone(server.stack.tls)
        server.feed(b"\x01" * 64)
        self.assertIsInstance(server.error, TLSFailed)
        self.assertIn("TLS handshake failed", server.error.reason)

    def test_37_client(self):
        """VeNCrypt works the same for an RFB 3.7 client."""
        server, client = pair(self.pki, "x509v", "c-alice", password=True, max_minor=7)
        self.assertReachedInit(server, client)
        self.assertEqual(client.stack.rfb.minor, 7)

    def test_close_sends_close_notify(self):
        """Closing the server stack sends TLS close_notify; the client sees a clean end."""
        server, client = pair(self.pki, "x509v", "c-alice")
        self.assertReachedInit(server, client)
        server.stack.close()
        converse(server, client)
        self.assertTrue(client.stack.tls.peer_closed)
        self.assertTrue(client.closed)
        self.assertIsNone(client.error)
