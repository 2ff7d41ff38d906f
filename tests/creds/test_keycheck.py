"""creds.keycheck: private keys checked in a child process give what parse_private_key gives."""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from creds import keycheck, pem
from tests import certgen


def numbers(key):
    return key.private_numbers()


def request(data: bytes, password: bytes | None) -> bytes:
    """What the parent writes on the child's standard input."""
    out = struct.pack(">I", len(data)) + data
    if password is None:
        return out + struct.pack(">I", 0xFFFFFFFF)
    return out + struct.pack(">I", len(password)) + password


class ChildTests(SynchronousTestCase):
    """check_in_child against a real child process."""

    def test_same_keys(self) -> None:
        """RSA, EC and an encrypted key come back equal to parse_private_key's."""
        rsa, ec = certgen.key("rsa", 2048), certgen.key("ec", 256)
        for key, password in ((rsa, None), (ec, None), (rsa, b"pw")):
            data = certgen.key_pem(key, password)
            got = keycheck.check_in_child(data, password)
            self.assertEqual(numbers(got), numbers(pem.parse_private_key(data, password)))

    def test_faults_come_back(self) -> None:
        """A bad key, or a wrong password, raises the fault the child found."""
        data = certgen.key_pem(certgen.key("rsa", 2048), b"pw")
        for args in ((b"garbage", None), (data, b"wrong"), (data, None)):
            with self.assertRaises(pem.PEMError) as child:
                keycheck.check_in_child(*args)
            with self.assertRaises(pem.PEMError) as here:
                pem.parse_private_key(*args)
            self.assertEqual((child.exception.kind, child.exception.detail),
                             (here.exception.kind, here.exception.detail))

    def test_child_failure(self) -> None:
        """A child that cannot run or answer gives a CHECK fault saying so."""
        self.patch(keycheck.sys, "executable", "/bin/false")
        with self.assertRaises(pem.PEMError) as cm:
            keycheck.check_in_child(b"x", None)
        self.assertEqual(cm.exception.kind, pem.Fault.CHECK)
        self.assertIn("exit status 1", cm.exception.detail)

    def test_child_stops_on_sigterm_from_a_blocking_parent(self) -> None:
        """vncd blocks SIGTERM to wait for it in a thread; its key-check child
        unblocks it, so a SIGTERM still stops a child waiting for its request."""
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            child = subprocess.Popen([sys.executable, "-m", "creds.keycheck"],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     cwd=os.path.dirname(os.path.dirname(keycheck.__file__)))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        self.addCleanup(child.stdin.close)
        try:
            # Sent at once: blocked, it stays pending until the child unblocks it.
            child.send_signal(signal.SIGTERM)
            self.assertEqual(child.wait(10), -signal.SIGTERM)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()

    def test_child_timeout(self) -> None:
        """A child slower than CHECK_TIMEOUT is stopped and the check fails."""
        self.patch(keycheck, "CHECK_TIMEOUT", 0.001)
        with self.assertRaises(pem.PEMError) as cm:
            keycheck.check_in_child(b"x", None)
        self.assertEqual(cm.exception.kind, pem.Fault.CHECK)
        self.assertIn("took longer than", cm.exception.detail)

    def test_limits(self) -> None:
        """Oversized input is refused before any child starts."""
        self.patch(keycheck.sys, "executable", "/nonexistent")
        with self.assertRaises(pem.PEMError) as cm:
            keycheck.check_in_child(b"x" * (pem.MAX_FILE_SIZE + 1), None)
        self.assertEqual(cm.exception.kind, pem.Fault.LIMIT)


class ChildSideTests(SynchronousTestCase):
    """The child's request reader, run in this process."""

    def run_child(self, raw: bytes) -> bytes:
        out = io.BytesIO()
        keycheck._child(io.BytesIO(raw), out)
        return out.getvalue()

    def test_answers(self) -> None:
        """A key comes back as PKCS#8 DER after 'K'; a fault as JSON after 'F'."""
        data = certgen.key_pem(certgen.key("ec", 256))
        self.assertEqual(self.run_child(request(data, None))[:1], b"K")
        self.assertEqual(self.run_child(request(b"junk", b"pw"))[:1], b"F")

    @settings(max_examples=200)
    @given(st.binary(max_size=64))
    def test_garbage_request(self, raw: bytes) -> None:
        """Any request bytes give an answer or a ValueError, never anything else."""
        try:
            answer = self.run_child(raw)
        except ValueError:
            return
        self.assertIn(answer[:1], (b"K", b"F"))

    def test_field_limits(self) -> None:
        """A field announcing more than its limit is refused before it is read."""
        raw = struct.pack(">I", pem.MAX_FILE_SIZE + 1)
        self.assertRaises(ValueError, self.run_child, raw)
        raw = request(b"x", None)[:-4] + struct.pack(">I", keycheck.MAX_PASSWORD + 1)
        self.assertRaises(ValueError, self.run_child, raw)

