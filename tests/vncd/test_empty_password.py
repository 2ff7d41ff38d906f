"""An empty VNC password never lets anyone in.

QEMU 7.2 starts with ``-object secret,id=s0,data= -vnc ...,password-secret=s0``
and then admits a client sending an empty password; so did vncd, announcing
the display as "(VNC password)".  vncd now refuses such a secret at
start-up (the command and the embedding API), ``SecurityConfig`` refuses an
empty password set at run time, and the RFB core refuses every attempt
should an empty password reach it anyway.  The real clients here are
vncdotool (PyPI, in a child process) and vncd's own client.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.internet import reactor, threads
from twisted.trial.unittest import SynchronousTestCase, TestCase

import creds
from compat.config import ListenAddress
from tests.tools import ROOT, free_display
from tests.vncd import realclients
from vncd import api
from vncd.client import ClientOptions, RFBClientError, connect
from vncd.rfb.security import EMPTY_PASSWORD
from vncd.service import StartupError

#: Seconds a refused ``python -m vncd`` start may take (imports on a busy machine).
START_TIMEOUT = 60

#: The message for a password-secret holding an empty password, after the option.
REFUSAL = f"secret 's0' (password-secret): {EMPTY_PASSWORD}"


def _write(path: str, data: bytes) -> str:
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
        f.write(data)
    return path


class CommandLineTests(SynchronousTestCase):
    """``python -m vncd`` refuses every way of giving it an empty password."""

    def test_refused_at_start(self):
        """Empty data, an empty file and base64 decoding to nothing stop the start,
        naming the secret and the -vnc option (or the -object, for malformed base64)."""
        realclients.require_vncd()
        d = os.path.abspath(self.mktemp())
        os.makedirs(d)
        empty = _write(os.path.join(d, "empty"), b"")
        vnc = f"127.0.0.1:{free_display()},password-secret=s0"
        # Inline secret data is never echoed, not even in the option as typed.
        hidden = "-object secret,id=s0,data=<hidden>,format=base64"
        cases = [
            ("secret,id=s0,data=", f"-vnc {vnc}: {REFUSAL}"),
            (f"secret,id=s0,file={empty}", f"-vnc {vnc}: {REFUSAL}"),
            ("secret,id=s0,data=,format=base64", f"{hidden}: Base64 data is empty"),
            ("secret,id=s0,data=x,format=base64", f"{hidden}: Base64 data has 1 characters"),
            ("secret,id=s0,data=eA=,format=base64", f"{hidden}: Base64 data has 3 characters"),
            ("secret,id=s0,data=====,format=base64",  # the value is "===="
             f"{hidden}: Base64 padding '=' at character 1 of 4 is not at the end"),
        ]
        procs = [subprocess.Popen([sys.executable, "-m", "vncd", "-object", obj, "-vnc", vnc],
                                  cwd=ROOT, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for obj, _ in cases]
        problems = []
        for proc, (obj, message) in zip(procs, cases):
            try:
                _, err = proc.communicate(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                problems.append((obj, "still running: it started"))
                continue
            text = err.decode("utf-8", "replace")
            if proc.returncode != 1 or not text.startswith("vncd: " + message):
                problems.append((obj, proc.returncode, text))
        self.assertEqual(problems, [])


class ApiTests(SynchronousTestCase):
    """The embedding API refuses an empty password secret like the command does."""

    def test_serve_refuses(self):
        """api.serve raises StartupError naming the secret and the option."""
        registry = creds.new_registry()
        registry.create("secret", {"id": "s0", "data": ""})
        vnc = f"127.0.0.1:{free_display()},password-secret=s0"
        with self.assertRaises(StartupError) as cm:
            api.serve(api.ArrayScreen(16, 16), vnc, registry=registry, reactor=reactor)
        self.assertEqual(str(cm.exception).split(" (hint: ")[0], f"-vnc {vnc}: {REFUSAL}")


class QemuTests(SynchronousTestCase):
    """What vncd refuses, QEMU 7.2 does: the difference the manual states."""

    def test_qemu_admits_an_empty_password(self):
        """QEMU 7.2 starts with an empty password secret and admits vncdotool sending
        an empty password."""
        display = free_display()
        argv = realclients.qemu_command(["-object", "secret,id=s0,data=",
                                         "-vnc", f"127.0.0.1:{display},password-secret=s0"])
        realclients.start_server(self, argv, [5900 + display], name="qemu")
        out = os.path.abspath(self.mktemp()) + ".png"
        run = realclients.run_vncdo(5900 + display, [["capture", out]], password="")
        self.assertTrue(run.ok, run.output)
        self.assertTrue(os.path.exists(out))


class RunTimeTests(TestCase):
    """Should an empty password reach a serving display, no client gets in."""

    timeout = 120

    def serve_with_leaked_empty_password(self) -> int:
        """A display whose password box was emptied behind SecurityConfig's back."""
        registry = creds.new_registry()
        registry.create("secret", {"id": "s0", "data": "not-empty"})
        display = free_display()
        service = api.serve(api.ArrayScreen(16, 16),
                            f"127.0.0.1:{display},password-secret=s0",
                            registry=registry, reactor=reactor)
        self.addCleanup(service.stop)
        security = service.display("default").server.security
        # What no code path allows: the test stands for a future bug.
        security._password.value = b""
        self.assertRaises(ValueError, security.set_password, b"")
        return 5900 + display

    async def test_vncdotool_refused(self):
        """vncdotool sending an empty password is refused and captures nothing."""
        port = self.serve_with_leaked_empty_password()
        out = os.path.abspath(self.mktemp()) + ".png"
        run = await threads.deferToThread(realclients.run_vncdo, port, [["capture", out]],
                                          password="")
        self.assertFalse(run.ok, run.output)
        self.assertFalse(os.path.exists(out))

    async def test_own_client_refused(self):
        """vncd's own client sending an empty password gets an authentication failure."""
        port = self.serve_with_leaked_empty_password()
        with self.assertRaises(RFBClientError) as cm:
            await connect(reactor, ListenAddress("tcp", "127.0.0.1", port),
                          ClientOptions(password=b""), timeout=10)
        self.assertEqual(cm.exception.kind, "auth")
