"""QEMU 7.2 decides glob authz rules the way creds.authz does.

A real QEMU VNC server with x509 credentials (verify-peer on) gets one
``authz-list`` per display, each a single glob rule allowing what it
matches (default deny), written in QEMU's JSON ``-object`` syntax.  Client
certificates with chosen common names connect through VeNCrypt/X509None
(:mod:`tests.vncd.qemuprobe`); QEMU either lets the client in (ServerInit)
or drops it after the TLS handshake.  Each verdict must equal
:meth:`AuthzList.is_allowed` on the distinguished name as QEMU passes it
to authz (GnuTLS order, ``C=UK,CN=<name>``).
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from creds.authz import AuthzList
from creds.objects import ObjectRegistry
from tests import certgen
from tests.tools import QEMU, free_display, require_tool
from tests.vncd import realclients
from tests.vncd.qemuprobe import ClientKind, Outcome, run_probe

#: Glob rules, one per display.  Between them they exercise '?' on one
#: non-ASCII character, '?' runs, '*' between fixed runs, '[' and ']' as
#: plain characters, and case sensitivity.
PATTERNS = [
    "C=UK,CN=caf?",
    "C=UK,CN=??",
    "C=UK,CN=[ab]",
    "C=UK,CN=a*b*c",
    "*CN=?",
    "C=UK,*",
    "c=uk,cn=*",
]

#: Client certificate common names.
CLIENT_NAMES = ["café", "cafe", "cafés", "日本", "a", "ab", "[ab]", "aXbYc", "acb", "?"]


def qemu_dn(common_name: str) -> str:
    """The DN QEMU 7.2 hands to authz for a certgen client certificate."""
    return f"C=UK,CN={common_name}"


class QemuGlobTests(SynchronousTestCase):
    """The same glob rules, the same decisions, in QEMU 7.2 and in vncd."""

    def test_qemu_decides_like_authz_list(self):
        """For every rule and client certificate, QEMU admits exactly whom AuthzList allows."""
        require_tool(QEMU)
        base = os.path.abspath(self.mktemp())
        ca = certgen.ca("authz glob CA")
        server = certgen.server(ca, "localhost", dns=["localhost"], ips=["127.0.0.1"])
        server_dir = certgen.write_dir(os.path.join(base, "server"), ca=[ca], server=server)
        clients = {}
        for index, name in enumerate(CLIENT_NAMES):
            cert = certgen.client(ca, name)
            clients[name] = (
                certgen.write_pem(os.path.join(base, f"client{index}.pem"), cert),
                certgen.write_pem(os.path.join(base, f"client{index}-key.pem"),
                                  cert.key_pem(), mode=0o600),
            )
        displays: list[int] = []
        while len(displays) < len(PATTERNS):
            n = free_display()
            if n not in displays:
                displays.append(n)
        args = ["-object", f"tls-creds-x509,id=tls0,endpoint=server,dir={server_dir},"
                           "verify-peer=on"]
        for index, (pattern, display) in enumerate(zip(PATTERNS, displays)):
            args += ["-object", json.dumps({
                "qom-type": "authz-list", "id": f"authz{index}", "policy": "deny",
                "rules": [{"match": pattern, "policy": "allow", "format": "glob"}]})]
            args += ["-vnc", f"127.0.0.1:{display},tls-creds=tls0,tls-authz=authz{index}"]
        realclients.start_server(self, realclients.qemu_command(args),
                                 [5900 + d for d in displays], name="qemu")

        registry = ObjectRegistry()
        registry.register_type(AuthzList)
        mismatches = []
        verdicts = set()
        for index, (pattern, display) in enumerate(zip(PATTERNS, displays)):
            ours = registry.create("authz-list", {
                "id": f"authz{index}", "policy": "deny",
                "rules": [{"match": pattern, "policy": "allow", "format": "glob"}]})
            for name, (cert, key) in clients.items():
                result = run_probe("127.0.0.1", 5900 + display, ClientKind(name, None, cert, key))
                self.assertIn(result.outcome, (Outcome.SERVER_INIT, Outcome.TLS_REFUSED),
                              f"{pattern} / {name}: {result.describe()} {result.detail}")
                qemu_allows = result.outcome is Outcome.SERVER_INIT
                verdicts.add(qemu_allows)
                if qemu_allows != ours.is_allowed(qemu_dn(name)):
                    mismatches.append(f"{pattern!r} vs {qemu_dn(name)!r}: QEMU "
                                      f"{'allows' if qemu_allows else 'denies'}")
        self.assertEqual(mismatches, [])
        self.assertEqual(verdicts, {True, False})
