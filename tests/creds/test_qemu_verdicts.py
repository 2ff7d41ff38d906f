"""QEMU 7.2 against vncd on the certificate catalogue: same verdict, same message.

Every directory of :mod:`tests.creds.test_x509_catalogue` is handed to a
real ``qemu-system-x86_64 -object tls-creds-x509,...`` and to vncd.  Both
must load it, or both must refuse it with the same message -- except the
cases in :data:`DIFFERENCES`, where vncd deliberately differs; there the
test pins QEMU's answer and checks that vncd's really is another one.

To learn quickly whether QEMU *loaded* the credentials, each command line
ends with a second object that always fails (a secret encrypted with a
key that does not exist):
QEMU creates objects in order, so reaching that error means the
credentials were accepted.  No process has to be left running or timed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from twisted.trial.unittest import SynchronousTestCase

from creds.objects import ObjectError
from tests import certgen
from tests.creds.test_x509_catalogue import CASES, Case, pki, registry, tls_props, write_case
from tests.tools import QEMU, require_tool

__all__ = ["run_qemu_objects", "object_arg", "DIFFERENCES", "UNPRIVILEGED_UID"]

#: The user QEMU runs as when a test needs permissions to matter and runs as
#: root (root reads every file): Debian's ``nobody``.
UNPRIVILEGED_UID = 65534

#: Parallel QEMU processes: each lives a few tens of milliseconds, mostly
#: starting up; more than this only fights the other test runs for 2 cores.
QEMU_WORKERS = 4

#: Longest a single QEMU start may take before the test gives up on it.
QEMU_TIMEOUT = 30.0

_SENTINEL = ("-object", "secret,id=vncd-verdict-sentinel,data=x,keyid=vncd-no-such-key")
_SENTINEL_MESSAGE = "No secret with id 'vncd-no-such-key'"
_PREFIX = "qemu-system-x86_64: "

_UNKNOWN = "The certificate hasn't got a known issuer"
_SRV_UNKNOWN = ("Our own certificate {d}/server-cert.pem failed validation against "
                "{d}/ca-cert.pem: " + _UNKNOWN)
_CHAIN = ("vncd builds its chain through intermediate certificates placed after the "
          "leaf (as QEMU 10.2 does); QEMU 7.2 verifies the leaf alone")

#: Cases where vncd deliberately differs: QEMU 7.2's verdict (None: it
#: loads) and why vncd answers otherwise.  The manual lists each of them.
DIFFERENCES: dict[str, tuple[str | None, str]] = {
    "serverchain": (_SRV_UNKNOWN, _CHAIN),
    "multiplecaswithchain": (_SRV_UNKNOWN, _CHAIN),
    "clientchain": ("Our own certificate {d}/client-cert.pem failed validation against "
                    "{d}/ca-cert.pem: " + _UNKNOWN, _CHAIN),
    "unsortedserverchain": (_SRV_UNKNOWN,
                            "vncd requires intermediates after the leaf in issuing order "
                            "and says which one is out of place (QEMU 10.2's message)"),
    "intermediatenobc": (_SRV_UNKNOWN,
                         "vncd checks intermediates after the leaf with the CA rules "
                         "(as QEMU 10.2); QEMU 7.2 never looks at them"),
    "bundle17": (_SRV_UNKNOWN,
                 "QEMU 7.2 silently reads only the first 16 certificates of ca-cert.pem; "
                 "vncd reads them all (up to creds.pem.MAX_CERTS), as QEMU 10.1 does"),
    "revokedserver": (None,
                      "vncd refuses to start with its own certificate revoked by its own "
                      "CRL; QEMU 7.2 starts and every checking peer refuses it"),
    "certbadder": ("Unable to import server certificate {d}/server-cert.pem: "
                   "ASN1 parser: Error in TAG.",
                   "the detail of GnuTLS' ASN.1 parser errors is not reproduced; vncd "
                   "says 'Error in DER parsing' for every damaged DER structure"),
    "nosanitycagarbage": (None,
                          "with sanity-check=off QEMU 7.2 runs with an empty trust list "
                          "(no peer can ever be verified); vncd refuses the file"),
}


def object_arg(qom_type: str, props: dict[str, str]) -> str:
    """``-object`` text for ``props`` (commas in values doubled, QEMU's escaping)."""
    fields = [qom_type] + [f"{k}={str(v).replace(',', ',,')}" for k, v in props.items()]
    return ",".join(fields)


def run_qemu_objects(objects: Sequence[str], *, prefix: Sequence[str] = ()) -> str | None:
    """Let QEMU 7.2 create ``objects`` in order: ``None`` if all load, else its message.

    ``prefix`` runs QEMU through another command (``setpriv`` to drop root).
    """
    qemu = require_tool(QEMU)
    args = [*prefix, qemu, "-machine", "none", "-nodefaults", "-display", "none",
            "-monitor", "none", "-serial", "none"]
    for obj in objects:
        args += ["-object", obj]
    proc = subprocess.run([*args, *_SENTINEL], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=QEMU_TIMEOUT)
    lines = [line[len(_PREFIX):] for line in proc.stderr.decode("utf-8", "replace").splitlines()
             if line.startswith(_PREFIX)]
    if proc.returncode != 1 or not lines:
        raise AssertionError(f"unexpected QEMU outcome {proc.returncode}: {proc.stderr!r}")
    message = lines[-1]
    return None if message == _SENTINEL_MESSAGE else message


def _qemu_command(case: Case, directory: str) -> list[str]:
    objects = [object_arg("secret", {"id": sid, "data": data})
               for sid, data in case.secrets.items()]
    objects.append(object_arg("tls-creds-x509", {"id": "tls0", **tls_props(case, directory)}))
    return objects


def _vncd_verdict(case: Case, directory: str) -> str | None:
    r = registry()
    for secret_id, data in case.secrets.items():
        r.create("secret", {"id": secret_id, "data": data})
    try:
        r.create("tls-creds-x509", {"id": "tls0", **tls_props(case, directory)})
    except ObjectError as e:
        return e.message
    return None


class QemuVerdictTests(SynchronousTestCase):
    """QEMU 7.2 and vncd agree on every catalogue directory, except the listed differences."""

    _root: str | None = None
    _qemu: dict[str, str | None] | None = None

    @classmethod
    def tearDownClass(cls) -> None:
        if cls._root is not None:
            shutil.rmtree(cls._root, ignore_errors=True)
            cls._root = None

    def _verdicts(self) -> dict[str, str | None]:
        """QEMU's verdict for every case, computed once, QEMU_WORKERS at a time."""
        require_tool(QEMU)
        cls = type(self)
        if cls._qemu is None:
            cls._root = tempfile.mkdtemp(prefix="qemu-verdicts-", dir=os.getcwd())
            dirs = {c.name: write_case(c, os.path.join(cls._root, c.name)) for c in CASES}
            with ThreadPoolExecutor(QEMU_WORKERS) as pool:
                futures = {c.name: pool.submit(run_qemu_objects,
                                               _qemu_command(c, dirs[c.name]))
                           for c in CASES}
                cls._qemu = {name: f.result() for name, f in futures.items()}
        return cls._qemu

    def _directory(self, case: Case) -> str:
        assert self._root is not None
        return os.path.join(self._root, case.name)

    def test_differences_are_catalogue_cases(self) -> None:
        """Every listed difference names a catalogue case and gives a reason."""
        names = {c.name for c in CASES}
        for name, (_, reason) in DIFFERENCES.items():
            self.assertIn(name, names)
            self.assertTrue(reason)

    def test_sample_is_broad(self) -> None:
        """The comparison covers both endpoints, both verdicts and over 25 cases."""
        self.assertGreater(len(CASES), 25)
        self.assertEqual({c.endpoint for c in CASES}, {"server", "client"})
        self.assertEqual({c.error is None for c in CASES}, {True, False})


def _verdict_test(case: Case):
    def test(self: QemuVerdictTests) -> None:
        qemu = self._verdicts()[case.name]
        d = self._directory(case)
        vncd = _vncd_verdict(case, d)
        if case.name in DIFFERENCES:
            expected = DIFFERENCES[case.name][0]
            self.assertEqual(qemu, expected.replace("{d}", d) if expected else None)
            self.assertNotEqual(vncd, qemu)
        else:
            self.assertEqual(vncd, qemu)

    kind = "differs from" if case.name in DIFFERENCES else "matches"
    test.__doc__ = f"vncd's verdict on '{case.name}' ({case.endpoint}) {kind} QEMU 7.2's."
    test.__name__ = f"test_{case.name}"
    return test


for _case in CASES:
    setattr(QemuVerdictTests, f"test_{_case.name}", _verdict_test(_case))
del _case


class UnreadableFileTests(SynchronousTestCase):
    """Files the server may not read get the same message from QEMU 7.2 and vncd."""

    def test_same_messages(self) -> None:
        """An unreadable CA file, certificate, key or CRL is named alike by both."""
        require_tool(QEMU)
        p = pki()
        real_access = os.access
        # The unprivileged QEMU must be able to reach the directory: trial's
        # temp directory may sit below a checkout nobody else can enter, so
        # use the system temporary directory (world-searchable).
        base = tempfile.mkdtemp(prefix="vncd-unreadable-")
        self.addCleanup(shutil.rmtree, base, True)
        os.chmod(base, 0o755)
        for name in ("ca-cert.pem", "server-cert.pem", "server-key.pem", "ca-crl.pem"):
            d = os.path.join(base, name.replace(".pem", ""))
            certgen.write_dir(d, ca=[p.cacert], server=p.servercert, crl=p.crl_empty,
                              dh=certgen.FFDHE2048_PEM)
            target = os.path.join(d, name)
            props = {"id": "tls0", "dir": d, "endpoint": "server"}
            for f in os.listdir(d):
                os.chmod(os.path.join(d, f), 0o644)
            if os.getuid() == 0:
                # Root reads everything: QEMU drops to nobody, and vncd is told
                # what access(2) would have said to nobody.
                os.chmod(target, 0o600)
                os.chmod(d, 0o755)
                prefix = [require_tool("setpriv"), f"--reuid={UNPRIVILEGED_UID}",
                          f"--regid={UNPRIVILEGED_UID}", "--clear-groups"]
                self.patch(os, "access", lambda path, mode, target=target:
                           path != target and real_access(path, mode))
            else:
                os.chmod(target, 0)
                prefix = []
            qemu = run_qemu_objects([object_arg("tls-creds-x509", props)], prefix=prefix)
            try:
                registry().create("tls-creds-x509", props)
                vncd = None
            except ObjectError as e:
                vncd = e.message
            self.assertIsNotNone(qemu, name)
            self.assertEqual(vncd, qemu, name)
