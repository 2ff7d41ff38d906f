"""creds.dn against a real QEMU 7.2: our DN strings are the identities QEMU matches.

One QEMU process serves one VNC display per case of the DN table
(tests/creds/test_dn.py CASES), each guarded by an ``authz-simple`` object
whose ``identity`` is the string creds.dn prints for that case's client
certificate (commas doubled, as on any QEMU command line).  A client made
of the session API (RFB 3.8, VeNCrypt 0.2, subtype 260 X509None, TLS with
the case's certificate) connects to each display: QEMU sends
SecurityResult 0 if and only if the identity matched.  Controls prove the
test can fail: each certificate against another case's display, and the
RFC 4514 (reversed) spelling of a DN.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from creds import dn
from creds.tlscreds import Endpoint
from tests import certgen
from tests.creds.sessionpump import (
    VNC_BASE_PORT,
    FakeCreds,
    qemu_opt,
    registry,
    vencrypt_x509none,
    x509_material,
)
from tests.creds.test_dn import CASES
from tests.tools import free_port, qemu_vnc, require_tool, QEMU

class QemuIdentityTests(SynchronousTestCase):
    """QEMU 7.2 authorizes exactly the DN strings creds.dn prints."""

    def test_identities(self) -> None:
        """Every table case passes its own authz-simple display and no other."""
        require_tool(QEMU)
        directory = self.mktemp()
        ca = certgen.ca("qemu CA")
        server = certgen.server(ca, "127.0.0.1", ips=["127.0.0.1"])
        certgen.write_dir(os.path.join(directory, "server"), ca=[ca], server=server)
        reg = registry()

        # (display label, expected identity, client certificate)
        clients = []
        for name, subject, expected in CASES:
            cert = certgen.client(ca, subject=subject)
            self.assertEqual(dn.certificate_dn(cert.cert), expected, name)
            creds = FakeCreds("x509", Endpoint.CLIENT, registry=reg).load(
                x509_material(ca, cert, role="client"))
            clients.append((name, expected, creds))
        plain_name, plain_dn, plain_creds = clients[0]
        reversed_dn = ",".join(reversed(plain_dn.split(",")))
        displays = [(name, identity) for name, identity, _ in clients]
        displays.append(("reversed-order", reversed_dn))

        args: list[bytes | str] = [
            "-object", f"tls-creds-x509,id=tls0,dir={directory}/server,endpoint=server,"
                       "verify-peer=on"]
        ports = []
        for i, (_, identity) in enumerate(displays):
            port = free_port()
            ports.append(port)
            args += ["-object", b"authz-simple,id=authz%d,identity=" % i + qemu_opt(identity),
                     "-vnc", f"127.0.0.1:{port - VNC_BASE_PORT},id=vnc{i},tls-creds=tls0,"
                             f"tls-authz=authz{i}"]
        proc, started = qemu_vnc(args)
        self.addCleanup(lambda: (proc.kill(), proc.communicate()))
        if not started:
            self.fail(f"QEMU did not start: {proc.stderr.read().decode(errors='replace')}")

        outcomes = {}
        for i, (name, _, creds) in enumerate(clients):
            outcomes[name] = vencrypt_x509none(ports[i], creds)
        self.assertEqual(outcomes, {name: True for name, _, _ in clients})

        # Controls: the same certificates are refused where the identity differs.
        controls = {
            "plain on reversed-order display": vencrypt_x509none(ports[-1], plain_creds),
            "comma on plain display": vencrypt_x509none(ports[0], clients[1][2]),
            "plain on comma display": vencrypt_x509none(ports[1], plain_creds),
        }
        self.assertEqual(controls, {k: False for k in controls})
