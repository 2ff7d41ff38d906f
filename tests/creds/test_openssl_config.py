"""Tests for the process-wide OpenSSL configuration (creds._openssl_config)."""

import os
import subprocess
import sys

from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from creds import _openssl_config
from creds.tlscreds import Endpoint
from tests import certgen
from tests.creds.sessionpump import FakeCreds, x509_material
from tests.tools import ROOT


def _drain(conn):
    out = b""
    while True:
        try:
            chunk = conn.bio_read(65536)
        except SSL.WantReadError:
            return out
        out += chunk


def _bytes_after_handshake(server_ctx, client_ctx):
    """Handshake step by step; return the bytes the server sends after the client's Finished."""
    server = SSL.Connection(server_ctx, None)
    server.set_accept_state()
    client = SSL.Connection(client_ctx, None)
    client.set_connect_state()
    for _ in range(10):
        for conn in (client, server):
            try:
                conn.do_handshake()
            except SSL.WantReadError:
                pass
        to_server = _drain(client)
        if to_server:
            server.bio_write(to_server)
            try:
                server.do_handshake()
            except SSL.WantReadError:
                pass
        to_client = _drain(server)
        if to_client:
            client.bio_write(to_client)
        if not to_server and not to_client:
            break
    # The handshake is over on both sides; anything the server still says is post-handshake.
    try:
        server.do_handshake()
    except SSL.WantReadError:
        pass
    return server.get_protocol_version_name(), _drain(server)


class TicketTests(SynchronousTestCase):
    def test_no_session_tickets_at_tls13(self):
        """An x509 server context sends nothing after a TLS 1.3 handshake (no session tickets)."""
        root = certgen.ca()
        srv = certgen.server(root, "localhost", dns=["localhost"])
        server = FakeCreds("x509", Endpoint.SERVER, verify_peer=False).load(
            x509_material(root, srv))
        client = FakeCreds("x509", Endpoint.CLIENT, verify_peer=False).load(
            x509_material(root, None, role="client"))
        version, extra = _bytes_after_handshake(server.loaded.context, client.loaded.context)
        self.assertEqual(version, "TLSv1.3")
        self.assertEqual(extra, b"")

    def test_administrator_config_wins(self):
        """With OPENSSL_CONF already set, vncd's configuration is not applied."""
        env = dict(os.environ, OPENSSL_CONF="/dev/null")
        out = subprocess.run(
            [sys.executable, "-c", "from creds import _openssl_config as c; print(c.apply())"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.stdout.strip(), "False", out.stderr)

    def test_environment_restored(self):
        """Applying the configuration leaves OPENSSL_CONF unset for child processes."""
        env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
        out = subprocess.run(
            [sys.executable, "-c",
             "import os; from creds import _openssl_config as c;"
             " print(c.apply(), os.environ.get('OPENSSL_CONF'))"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.stdout.strip(), "True None", out.stderr)
        self.assertTrue(os.path.exists(_openssl_config.CONFIG_PATH))
