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
    """Handshake in memory; return the protocol and what the server sent once the client was done.

    In TLS 1.3 the client finishes first (it sends its Finished after the
    server's); whatever the server writes after reading that is
    post-handshake: session tickets.
    """
    server = SSL.Connection(server_ctx, None)
    server.set_accept_state()
    client = SSL.Connection(client_ctx, None)
    client.set_connect_state()
    client_done = False
    after = b""
    for _ in range(10):
        try:
            client.do_handshake()
            client_done = True
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
        if client_done:
            after += to_client
        if to_client:
            client.bio_write(to_client)
        if not to_server and not to_client:
            break
    return server.get_protocol_version_name(), after


def tickets_after_handshake() -> str:
    """``STATUS PROTOCOL N``: N bytes the server sent after the client finished."""
    from creds import _openssl_config

    root = certgen.ca()
    srv = certgen.server(root, "localhost", dns=["localhost"])
    server = FakeCreds("x509", Endpoint.SERVER, verify_peer=False).load(x509_material(root, srv))
    client = FakeCreds("x509", Endpoint.CLIENT, verify_peer=False).load(
        x509_material(root, None, role="client"))
    version, extra = _bytes_after_handshake(server.loaded.context, client.loaded.context)
    return f"{_openssl_config.STATUS} {version} {len(extra)}"


def _run_ticket_probe(prelude: str = "") -> str:
    env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    code = (prelude + "import creds\n"
            "from tests.creds.test_openssl_config import tickets_after_handshake\n"
            "print(tickets_after_handshake())\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or out.stderr


class TicketTests(SynchronousTestCase):
    def test_no_session_tickets_at_tls13(self):
        """An x509 server context sends nothing after a TLS 1.3 handshake (no session tickets).

        Run in a fresh interpreter: trial itself imports pyOpenSSL before any
        test module, which is exactly the "too late" case.
        """
        self.assertEqual(_run_ticket_probe(), "applied TLSv1.3 0")

    def test_tickets_without_the_config(self):
        """The probe sees tickets when vncd's configuration is not in force (it can fail)."""
        self.assertRegex(_run_ticket_probe(prelude="import OpenSSL.SSL\n"),
                         r"^too-late TLSv1\.3 [1-9][0-9]*$")

    def test_too_late_is_reported(self):
        """Importing pyOpenSSL before creds leaves tickets on, and the engine says so once."""
        env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
        code = (
            "import OpenSSL.SSL, creds, os, tempfile\n"
            "from creds import _openssl_config as c, pki\n"
            "d = tempfile.mkdtemp(); pki.create(d, force=True)\n"
            "reg = creds.new_registry()\n"
            "for i in range(2):\n"
            "    reg.create('tls-creds-x509', {'id': f't{i}', 'dir': d,"
            " 'endpoint': 'server'})\n"
            "print(c.STATUS, sum('session tickets' in w for w in reg.warnings))\n")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.stdout.strip(), "too-late 1", out.stderr)

    def test_administrator_config_wins(self):
        """With OPENSSL_CONF already set, vncd's configuration is not applied."""
        env = dict(os.environ, OPENSSL_CONF="/dev/null")
        out = subprocess.run(
            [sys.executable, "-c", "import creds; from creds import _openssl_config as c; print(c.STATUS)"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.stdout.strip(), "administrator", out.stderr)

    def test_environment_restored(self):
        """Applying the configuration leaves OPENSSL_CONF unset for child processes."""
        env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
        out = subprocess.run(
            [sys.executable, "-c",
             "import os; from creds import _openssl_config as c;"
             " print(c.STATUS, os.environ.get('OPENSSL_CONF'))"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.stdout.strip(), "applied None", out.stderr)
        self.assertTrue(os.path.exists(_openssl_config.CONFIG_PATH))
