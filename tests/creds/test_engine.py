"""Tests for creds.engine: the pyOpenSSL contexts built from credentials."""

from __future__ import annotations

from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from creds import engine
from creds.material import AnonMaterial
from creds.objects import ObjectError
from creds.tlscreds import Endpoint
from tests import certgen
from tests.creds.sessionpump import FakeCreds, handshake_raw, x509_material


def _options(ctx: SSL.Context) -> int:
    """The option bits a connection made from ``ctx`` starts with."""
    return SSL.Connection(ctx, None).set_options(0)


class AnonContextTests(SynchronousTestCase):
    """Anonymous contexts: ADH suites, never NULL, never TLS 1.3."""

    def setUp(self) -> None:
        self.server = engine.build_context(
            FakeCreds("anon", Endpoint.SERVER), AnonMaterial(dh_params_pem=None))
        self.client = engine.build_context(
            FakeCreds("anon", Endpoint.CLIENT), AnonMaterial(dh_params_pem=None))

    def test_cipher_list_has_adh_and_no_null(self) -> None:
        """A connection's cipher list offers ADH suites and no cipher without encryption."""
        for ctx in (self.server, self.client):
            names = SSL.Connection(ctx, None).get_cipher_list()
            self.assertTrue(any(n.startswith("ADH-") for n in names), names)
            self.assertFalse([n for n in names if "NULL" in n.split("-")], names)
            self.assertFalse([n for n in names if n.startswith("TLS_")], names)

    def test_tls13_never_negotiated(self) -> None:
        """A client that allows TLS 1.3 still gets TLS 1.2 from an anonymous server."""
        client = SSL.Context(SSL.TLS_CLIENT_METHOD)
        client.set_cipher_list(b"aNULL:!eNULL:@SECLEVEL=0")
        s, c = handshake_raw(self.server, client)
        self.assertEqual(s.get_protocol_version_name(), "TLSv1.2")
        self.assertTrue(s.get_cipher_name().startswith("ADH-"))

    def test_adh_negotiated_with_adh_only_client(self) -> None:
        """A client offering only finite-field ADH (as gtk-vnc) gets an ADH suite."""
        client = SSL.Context(SSL.TLS_CLIENT_METHOD)
        client.set_max_proto_version(SSL.TLS1_2_VERSION)
        client.set_cipher_list(b"ADH:!eNULL:@SECLEVEL=0")
        s, c = handshake_raw(self.server, client)
        self.assertTrue(c.get_cipher_name().startswith("ADH-"), c.get_cipher_name())

    def test_dh_params_file_is_used(self) -> None:
        """DH parameters from the material are loaded into the context."""
        ctx = engine.build_context(FakeCreds("anon", Endpoint.SERVER),
                                   AnonMaterial(dh_params_pem=certgen.FFDHE2048_PEM))
        client = SSL.Context(SSL.TLS_CLIENT_METHOD)
        client.set_cipher_list(b"ADH:!eNULL:@SECLEVEL=0")
        s, c = handshake_raw(ctx, client)
        self.assertTrue(s.get_cipher_name().startswith("ADH-"))

    def test_bad_dh_params_named(self) -> None:
        """Unparseable DH parameters fail with QEMU's message naming the file."""
        err = self.assertRaises(
            ObjectError, engine.build_context, FakeCreds("anon", Endpoint.SERVER),
            AnonMaterial(dh_params_pem=b"not pem", paths={"dh": "/d/dh-params.pem"}))
        self.assertTrue(
            str(err).startswith("Unable to load DH parameters from /d/dh-params.pem: "), str(err))
        self.assertEqual(err.path, "/d/dh-params.pem")


class OptionTests(SynchronousTestCase):
    """Renegotiation, tickets, compression and the session cache are off everywhere."""

    def test_options(self) -> None:
        """Every context has OP_NO_RENEGOTIATION, OP_NO_TICKET and OP_NO_COMPRESSION."""
        root = certgen.ca()
        contexts = [
            engine.build_context(FakeCreds("anon", ep), AnonMaterial(dh_params_pem=None))
            for ep in Endpoint
        ] + [
            engine.build_context(FakeCreds("x509", Endpoint.SERVER),
                                 x509_material(root, certgen.server(root))),
            engine.build_context(FakeCreds("x509", Endpoint.CLIENT),
                                 x509_material(root, None)),
        ]
        for ctx in contexts:
            opts = _options(ctx)
            for bit in (SSL.OP_NO_RENEGOTIATION, SSL.OP_NO_TICKET, SSL.OP_NO_COMPRESSION):
                self.assertTrue(opts & bit, hex(bit))
            self.assertEqual(ctx.get_session_cache_mode(), SSL.SESS_CACHE_OFF)

    def test_renegotiation_refused(self) -> None:
        """A TLS 1.2 peer asking to renegotiate does not get a new handshake."""
        ctx = engine.build_context(FakeCreds("anon", Endpoint.SERVER),
                                   AnonMaterial(dh_params_pem=None))
        client = SSL.Context(SSL.TLS_CLIENT_METHOD)
        client.set_cipher_list(b"ADH:!eNULL:@SECLEVEL=0")
        s, c = handshake_raw(ctx, client)
        self.assertTrue(c.renegotiate())
        handshake_raw(ctx, client, pair=(s, c), tolerate_errors=True)
        self.assertEqual(s.total_renegotiations(), 0)

    def test_no_session_resumption(self) -> None:
        """A TLS 1.2 client offering its previous session gets a full handshake."""
        root = certgen.ca()
        ctx = engine.build_context(FakeCreds("x509", Endpoint.SERVER),
                                   x509_material(root, certgen.server(root)))
        client = SSL.Context(SSL.TLS_CLIENT_METHOD)
        client.set_max_proto_version(SSL.TLS1_2_VERSION)
        s, c = handshake_raw(ctx, client)
        c2 = SSL.Connection(client, None)
        c2.set_session(c.get_session())
        c2.set_connect_state()
        s2 = SSL.Connection(ctx, None)
        s2.set_accept_state()
        handshake_raw(ctx, client, pair=(s2, c2))
        # A resumed TLS 1.2 session keeps its master secret; a full handshake makes a new one.
        self.assertNotEqual(c2.master_key(), c.master_key())


class X509ContextTests(SynchronousTestCase):
    """x509 contexts: identity, trust store, client CA names, key mismatch."""

    def test_key_mismatch(self) -> None:
        """A key that does not belong to the certificate fails with QEMU's message."""
        root = certgen.ca()
        srv = certgen.server(root)
        material = x509_material(root, srv, key=certgen.key("ec", 256))
        err = self.assertRaises(ObjectError, engine.build_context,
                                FakeCreds("x509", Endpoint.SERVER), material)
        self.assertEqual(
            err.message,
            "Cannot load certificate '/creds/server-cert.pem' & key '/creds/server-key.pem': "
            "The certificate and the given key do not match.")
        self.assertEqual(err.path, "/creds/server-cert.pem")

    def test_certificate_refused_by_security_level(self) -> None:
        """A certificate OpenSSL refuses (a P-192 key: "ee key too small") is an
        ObjectError naming the file, not an OpenSSL exception (found by fuzzing)."""
        root = certgen.ca()
        srv = certgen.server(root, key_kind="ec", key_size=192)
        err = self.assertRaises(ObjectError, engine.build_context,
                                FakeCreds("x509", Endpoint.SERVER), x509_material(root, srv))
        self.assertEqual(err.message,
                         "Cannot load certificate '/creds/server-cert.pem': ee key too small")
        self.assertEqual(err.path, "/creds/server-cert.pem")
        # P-521, an unusual but strong curve, is accepted.
        srv = certgen.server(root, key_kind="ec", key_size=521)
        engine.build_context(FakeCreds("x509", Endpoint.SERVER), x509_material(root, srv))

    def test_intermediates_sent(self) -> None:
        """The whole certificate file (leaf then intermediates) reaches the peer."""
        root = certgen.ca("qemu root")
        inter = certgen.intermediate(root, "qemu level 1a")
        srv = certgen.server(inter)
        ctx = engine.build_context(FakeCreds("x509", Endpoint.SERVER),
                                   x509_material(root, [srv, inter]))
        client = SSL.Context(SSL.TLS_CLIENT_METHOD)
        s, c = handshake_raw(ctx, client)
        chain = c.get_peer_cert_chain(as_cryptography=True)
        self.assertEqual([x.subject for x in chain], [srv.subject, inter.subject])

    def test_client_ca_names_sent(self) -> None:
        """The CertificateRequest lists the subjects of the trusted CAs."""
        root = certgen.ca("qemu CA")
        alt = certgen.ca("qemu CA 1")
        ctx = engine.build_context(FakeCreds("x509", Endpoint.SERVER),
                                   x509_material([root, alt], certgen.server(root)))
        client = SSL.Context(SSL.TLS_CLIENT_METHOD)
        s, c = handshake_raw(ctx, client)
        names = [n.CN for n in c.get_client_ca_list()]
        self.assertEqual(names, ["qemu CA", "qemu CA 1"])

    def test_client_without_certificate_completes(self) -> None:
        """A server context lets a client without certificate finish the handshake."""
        root = certgen.ca()
        ctx = engine.build_context(FakeCreds("x509", Endpoint.SERVER),
                                   x509_material(root, certgen.server(root)))
        s, c = handshake_raw(ctx, SSL.Context(SSL.TLS_CLIENT_METHOD))
        self.assertIsNone(s.get_peer_certificate())
        self.assertEqual(s.get_protocol_version_name(), "TLSv1.3")


class PriorityTests(SynchronousTestCase):
    """The ``priority`` property reaches the context through creds.priority."""

    def test_bad_priority_fails_creation(self) -> None:
        """An unknown priority token fails building the context, naming the string."""
        err = self.assertRaises(
            ObjectError, engine.build_context,
            FakeCreds("anon", Endpoint.SERVER, priority="NORMAL:+BOGUS-THING"),
            AnonMaterial(dh_params_pem=None))
        self.assertIn("NORMAL:+BOGUS-THING", str(err))

    def test_tls12_only_priority(self) -> None:
        """``NORMAL:-VERS-TLS1.3`` makes an x509 server negotiate TLS 1.2."""
        root = certgen.ca()
        ctx = engine.build_context(
            FakeCreds("x509", Endpoint.SERVER, priority="NORMAL:-VERS-TLS1.3"),
            x509_material(root, certgen.server(root)))
        s, c = handshake_raw(ctx, SSL.Context(SSL.TLS_CLIENT_METHOD))
        self.assertEqual(s.get_protocol_version_name(), "TLSv1.2")

    def test_anon_priority_keeps_adh_only(self) -> None:
        """A restrictive priority on anonymous credentials still yields only anonymous suites."""
        ctx = engine.build_context(
            FakeCreds("anon", Endpoint.SERVER, priority="SECURE256"),
            AnonMaterial(dh_params_pem=None))
        names = SSL.Connection(ctx, None).get_cipher_list()
        self.assertTrue(names)
        self.assertTrue(all(n.startswith(("ADH-", "AECDH-")) for n in names), names)
        self.assertFalse([n for n in names if "NULL" in n.split("-")], names)

    def test_notes_become_warnings(self) -> None:
        """Priority tokens vncd cannot honour are reported as warnings naming the object."""
        from creds.objects import ObjectRegistry

        registry = ObjectRegistry()
        creds = FakeCreds("anon", Endpoint.SERVER, priority="NORMAL:%COMPAT",
                          registry=registry)
        engine.build_context(creds, AnonMaterial(dh_params_pem=None))
        self.assertTrue(registry.warnings)
        self.assertTrue(all(w.startswith(f"object '{creds.id}': priority NORMAL:%COMPAT: ")
                            for w in registry.warnings), registry.warnings)
