"""check_credentials() against QEMU 7.2's verdicts on the same client certificates.

QEMU 7.2 runs a VNC display with ``tls-creds-x509,verify-peer=on`` and
its trace points ``vnc_auth_fail`` on, so each refused client leaves the
reason QEMU computed.  The same client certificates are then checked by
a TLSSession server with the same CA and CRL, and the two messages are
compared case by case.  Where vncd is deliberately more specific, the
table says so.
"""

from __future__ import annotations

import datetime
import re
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from creds.session import TLSCheckError, TLSSession
from creds.tlscreds import Endpoint
from tests import certgen
from tests.creds.sessionpump import (
    VNC_BASE_PORT,
    FakeCreds,
    pump,
    registry,
    vencrypt_x509none,
    x509_material,
)
from tests.tools import QEMU, free_port, qemu_vnc, require_tool

#: Seconds to wait for QEMU's trace lines after the last client left.
TRACE_TIMEOUT = 10

_TRACE = re.compile(r"vnc_auth_fail .* message=TLS handshake failed reason=(.*)")


class QemuVerdictTests(SynchronousTestCase):
    """The reasons vncd gives for refusing a client certificate, beside QEMU 7.2's."""

    def test_verdicts(self) -> None:
        """Each bad client certificate is refused by both, with the same reason or a noted one."""
        require_tool(QEMU)
        directory = self.mktemp()
        ca = certgen.ca("qemu CA")
        other = certgen.ca("other CA")
        revoked = certgen.client(ca, "revoked")
        crl = certgen.crl(ca, [revoked])
        server = certgen.server(ca, "127.0.0.1", ips=["127.0.0.1"])
        certgen.write_dir(directory, ca=[ca], server=server, crl=crl)

        # case: (client identity, QEMU 7.2's reason, vncd's reason when it differs)
        cases = {
            "expired": (certgen.client(ca, "qemu", not_before=datetime.timedelta(days=-3),
                                       not_after=datetime.timedelta(days=-1)),
                        "The certificate is not trusted", "The certificate has expired"),
            "not-yet-valid": (certgen.client(ca, "qemu", not_before=datetime.timedelta(hours=2),
                                             not_after=datetime.timedelta(days=2)),
                              "The certificate is not trusted",
                              "The certificate is not yet activated"),
            "unknown-ca": (certgen.client(other, "qemu"),
                           "The certificate hasn't got a known issuer", None),
            "self-signed": (certgen.client(None, "qemu"),
                            "The certificate hasn't got a known issuer", None),
            "revoked": (revoked, "The certificate has been revoked", None),
            "no-certificate": (None, "Verify failed: No certificate was found.", None),
            "authz-denied": (certgen.client(ca, "qemu"),
                             "TLS x509 authz check for C=UK,CN=qemu is denied", None),
        }

        port, authz_port = free_port(), free_port()
        proc, started = qemu_vnc([
            "-trace", "vnc_auth_fail",
            "-object", f"tls-creds-x509,id=tls0,dir={directory},endpoint=server,"
                       "verify-peer=on",
            "-object", "authz-simple,id=auth0,identity=C=UK,,CN=someone else",
            "-vnc", f"127.0.0.1:{port - VNC_BASE_PORT},id=plain,tls-creds=tls0",
            "-vnc", f"127.0.0.1:{authz_port - VNC_BASE_PORT},id=authz,tls-creds=tls0,"
                    "tls-authz=auth0"])
        self.addCleanup(lambda: (proc.poll() is None and proc.kill(), proc.communicate()))
        if not started:
            self.fail(f"QEMU did not start: {proc.stderr.read().decode(errors='replace')}")

        reg = registry()
        reg.create("authz-simple", {"id": "auth0", "identity": "C=UK,CN=someone else"})
        s_creds = FakeCreds("x509", Endpoint.SERVER, registry=reg).load(
            x509_material(ca, server, crls=[crl]))
        ours = {}
        for name, (cert, _, _) in cases.items():
            c_creds = FakeCreds("x509", Endpoint.CLIENT, registry=reg).load(
                x509_material(ca, cert, role="client"))
            authz = "auth0" if name == "authz-denied" else None
            self.assertFalse(vencrypt_x509none(authz_port if authz else port, c_creds), name)
            session = TLSSession(s_creds, Endpoint.SERVER, authz_id=authz)
            pump(session, TLSSession(c_creds, Endpoint.CLIENT, hostname="127.0.0.1"))
            try:
                session.check_credentials()
            except TLSCheckError as e:
                ours[name] = e.message
            else:
                ours[name] = None

        proc.terminate()
        try:
            _, err = proc.communicate(timeout=TRACE_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        qemu = [m.group(1) for m in map(_TRACE.search, err.decode(errors="replace").splitlines())
                if m]
        self.assertEqual(qemu, [q for _, q, _ in cases.values()])
        self.assertEqual(ours, {name: v or q for name, (_, q, v) in cases.items()})
