"""CRLs from a CA made as QEMU's documentation says, judged by vncd and by QEMU 7.2.

QEMU's documented certtool CA template (``ca`` + ``cert_signing_key``)
gives a CA whose keyUsage lacks cRLSign.  OpenSSL rejects every CRL such
a CA signs, so vncd used to refuse every client once ``ca-crl.pem``
existed; QEMU 7.2 (GnuTLS) refuses only the revoked ones.

The CA, the server and the clients are made with certtool; the CRLs with
certtool or, for cases certtool cannot produce (a CRL already expired,
a forged one), with ``cryptography`` and the certtool CA key.  Each CRL
file is served by QEMU 7.2 (``tls-creds-x509,verify-peer=on``) and loaded
by a real ``tls-creds-x509`` object in vncd; a valid and a revoked client
try both.  The verdicts must agree, except where the table notes vncd's
deliberately stricter one.
"""

from __future__ import annotations

import datetime
import io
import os
import re
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from twisted.trial.unittest import SynchronousTestCase

import creds
from creds.objects import ObjectError
from creds.session import TLSCheckError, TLSSession
from creds.tlscreds import Endpoint
from tests import certgen
from tests.creds.sessionpump import (
    VNC_BASE_PORT, FakeCreds, pump, registry, vencrypt_x509none, x509_material,
)
from tests.creds.test_x509_tools import run
from tests.tools import QEMU, free_port, qemu_vnc, require_tool, wait_for_port
from vncd import certs

#: Seconds QEMU may take to leave its trace lines once terminated.
TRACE_TIMEOUT = 10

_TRACE = re.compile(r"vnc_auth_fail .* message=TLS handshake failed reason=(.*)")
_REVOKED = "The certificate has been revoked"
_DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class CerttoolPKI:
    """QEMU's documented PKI made with certtool in ``directory``."""

    def __init__(self, directory: str) -> None:
        self.certtool = require_tool("certtool")
        self.d = directory
        os.makedirs(directory)
        self.make_key("ca-key.pem")
        run(self.certtool, "--generate-self-signed", "--load-privkey", self.path("ca-key.pem"),
            "--template", self.template("ca.info", "cn = vncd test CA", "ca",
                                        "cert_signing_key"),
            "--outfile", self.path("ca-cert.pem"))
        self.leaf("server", "organization = vncd", "cn = 127.0.0.1",
                  "ip_address = 127.0.0.1", "tls_www_server", "encryption_key",
                  "signing_key")
        for name in ("valid", "revoked"):
            self.leaf(name, "country = GB", "organization = vncd", f"cn = {name}",
                      "tls_www_client", "encryption_key", "signing_key")

    def path(self, name: str) -> str:
        return os.path.join(self.d, name)

    def template(self, name: str, *lines: str) -> str:
        with open(self.path(name), "w") as f:
            f.write("\n".join(lines) + "\n")
        return self.path(name)

    def make_key(self, name: str) -> None:
        # RSA: certtool's EC keys sometimes drop a leading zero of the
        # private value, which cryptography then refuses to load.
        run(self.certtool, "--generate-privkey", "--key-type=rsa", "--bits=2048",
            "--outfile", self.path(name))
        os.chmod(self.path(name), 0o600)

    def leaf(self, name: str, *lines: str) -> None:
        self.make_key(f"{name}-key.pem")
        run(self.certtool, "--generate-certificate",
            "--load-ca-certificate", self.path("ca-cert.pem"),
            "--load-ca-privkey", self.path("ca-key.pem"),
            "--load-privkey", self.path(f"{name}-key.pem"),
            "--template", self.template(f"{name}.info", *lines),
            "--outfile", self.path(f"{name}-cert.pem"))

    def certtool_crl(self) -> bytes:
        """The CRL certtool makes revoking the ``revoked`` client."""
        run(self.certtool, "--generate-crl",
            "--load-ca-certificate", self.path("ca-cert.pem"),
            "--load-ca-privkey", self.path("ca-key.pem"),
            "--load-certificate", self.path("revoked-cert.pem"),
            "--template", self.template("crl.info", "crl_next_update = 30",
                                        "crl_number = 1"),
            "--outfile", self.path("crl.pem"))
        with open(self.path("crl.pem"), "rb") as f:
            return f.read()

    def issued(self, name: str) -> certgen.Issued:
        with open(self.path(f"{name}-cert.pem"), "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(self.path(f"{name}-key.pem"), "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        return certgen.Issued(cert=cert, key=key, issuer=None)


def _crl(issuer_name: x509.Name, key, revoked: list[x509.Certificate], *,
         last: datetime.timedelta, next_: datetime.timedelta) -> bytes:
    now = _now()
    b = (x509.CertificateRevocationListBuilder().issuer_name(issuer_name)
         .last_update(now + last).next_update(now + next_))
    for cert in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
            .revocation_date(now + last).build())
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class CertToolCRLTests(SynchronousTestCase):
    """The same CRL files, the same clients: QEMU 7.2's verdicts and vncd's."""

    def test_crls_against_qemu(self) -> None:
        """Revoked refused, valid admitted, as QEMU 7.2 does (a forged CRL: vncd refuses
        to load it, where QEMU applies it)."""
        require_tool(QEMU)
        pki = CerttoolPKI(os.path.abspath(self.mktemp()))
        ca, valid, revoked = pki.issued("ca"), pki.issued("valid"), pki.issued("revoked")
        other = certgen.ca("other CA")
        name = ca.cert.subject

        def own(**kw) -> bytes:
            return _crl(name, ca.key, [revoked.cert], **kw)

        # case: (ca-crl.pem content, QEMU's verdicts (valid, revoked), vncd's when different)
        cases = {
            "certtool": (pki.certtool_crl(), (True, False), None),
            "expired": (own(last=-3 * _DAY, next_=-_DAY), (True, False), None),
            "not-yet-valid": (own(last=_DAY, next_=3 * _DAY), (True, False), None),
            "other-ca": (_crl(other.cert.subject, other.key, [revoked.cert],
                              last=-_DAY, next_=_DAY), (True, True), None),
            "two-crls": (_crl(other.cert.subject, other.key, [], last=-_DAY, next_=_DAY)
                         + own(last=-_DAY, next_=_DAY), (True, False), None),
            # Our CA's name, another key: QEMU 7.2 does not check CRL signatures
            # and refuses the listed client; vncd refuses to load a CRL whose
            # signature does not verify (ignoring it would admit the listed client).
            "forged": (_crl(name, other.key, [valid.cert], last=-_DAY, next_=_DAY),
                       (False, True), "load refused"),
        }

        procs = {}
        for case, (crl, _, _) in cases.items():
            d = os.path.join(pki.d, case)
            os.makedirs(d)
            for src, dst in (("ca-cert.pem", "ca-cert.pem"), ("server-cert.pem",
                             "server-cert.pem"), ("server-key.pem", "server-key.pem")):
                with open(pki.path(src), "rb") as f:
                    certgen.write_pem(os.path.join(d, dst), f.read(), mode=0o600)
            certgen.write_pem(os.path.join(d, "ca-crl.pem"), crl)
            port = free_port()
            proc, started = qemu_vnc([
                "-trace", "vnc_auth_fail",
                "-object", f"tls-creds-x509,id=tls0,dir={d},endpoint=server,verify-peer=on",
                "-vnc", f"127.0.0.1:{port - VNC_BASE_PORT},tls-creds=tls0"])
            self.addCleanup(lambda p=proc: (p.poll() is None and p.kill(), p.communicate()))
            if not started or not wait_for_port("127.0.0.1", port, proc=proc):
                self.fail(f"QEMU did not start ({case}): "
                          f"{proc.stderr.read().decode(errors='replace')}")
            procs[case] = (proc, port, d)

        reg = creds.new_registry()
        ca_material = [ca]
        theirs, ours, reasons, warned = {}, {}, {}, {}
        for case, (proc, port, d) in procs.items():
            try:
                server = reg.create("tls-creds-x509", {"id": f"s-{case}", "dir": d,
                                                       "endpoint": "server"})
            except ObjectError as e:
                server = None
                reasons[case] = f"{e.message} ({e.path})"
            warned[case] = list(reg.warnings)
            del reg.warnings[:]
            verdicts_q, verdicts_v = [], []
            for client in (valid, revoked):
                c_creds = FakeCreds("x509", Endpoint.CLIENT, registry=registry()).load(
                    x509_material(ca_material, client, role="client"))
                verdicts_q.append(vencrypt_x509none(port, c_creds))
                if server is None:
                    continue
                session = TLSSession(server, Endpoint.SERVER)
                pump(session, TLSSession(c_creds, Endpoint.CLIENT, hostname="127.0.0.1"))
                try:
                    session.check_credentials()
                    verdicts_v.append(True)
                except TLSCheckError as e:
                    verdicts_v.append(False)
                    reasons.setdefault(case, e.message)
            theirs[case] = tuple(verdicts_q)
            ours[case] = tuple(verdicts_v) if server is not None else "load refused"
            proc.terminate()
            try:
                _, err = proc.communicate(timeout=TRACE_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            for m in map(_TRACE.search, err.decode(errors="replace").splitlines()):
                if m:
                    self.assertEqual(m.group(1), _REVOKED, case)

        self.assertEqual(theirs, {c: q for c, (_, q, _) in cases.items()})
        self.assertEqual(ours, {c: v or q for c, (_, q, v) in cases.items()})
        for case in ("certtool", "expired", "not-yet-valid", "two-crls"):
            self.assertEqual(reasons[case], _REVOKED, case)
            self.assertTrue(any("keyUsage does not include cRLSign" in w
                                and "crl_signing_key" in w and "cRLSign" in w
                                and procs[case][2] + "/ca-cert.pem" in w
                                for w in warned[case]), warned[case])
        self.assertIn("signature does not verify with that CA's key", reasons["forged"])
        self.assertIn(procs["forged"][2] + "/ca-crl.pem", reasons["forged"])

    def test_check_warns_about_the_documented_ca(self) -> None:
        """vncd-certs check on QEMU's documented certtool PKI with a CRL: usable, one
        warning naming the CA file and both fixes."""
        pki = CerttoolPKI(os.path.abspath(self.mktemp()))
        certgen.write_pem(pki.path("ca-crl.pem"), pki.certtool_crl())
        out, err = io.StringIO(), io.StringIO()
        status = certs.run(["check", pki.d, "--endpoint", "server"], out, err)
        self.assertEqual(status, 0, out.getvalue())
        warnings = [line for line in out.getvalue().splitlines() if line.startswith("WARN")]
        self.assertEqual(len(warnings), 1, out.getvalue())
        self.assertIn(f"in {pki.d}/ca-cert.pem signs CRL {pki.d}/ca-crl.pem but its keyUsage "
                      "does not include cRLSign", warnings[0])
        self.assertIn("crl_signing_key", warnings[0])
