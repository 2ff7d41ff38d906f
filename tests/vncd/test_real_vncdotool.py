"""vncdotool (PyPI 1.4.2) for None and VNC authentication.

Captures through the ``vncdo`` command and through vncdotool's API (run in
a child process, so its reactor thread never meets trial's) are compared
pixel for pixel with the server's picture, once for each encoding
vncdotool can be limited to (it sends a single encoding): Raw, RRE,
CoRRE, Hextile and ZRLE.  Key and pointer events sent by vncdotool must
reach vncd's screen.  The same capture tests run against QEMU 7.2 (whose
reference picture is a gvnccapture of the same display: two independent
clients must agree).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests.tools import ROOT, free_display, require_tool
from tests.vncd import realclients

PASSWORD = "dotool12"

#: Encodings vncdotool is limited to in turn (it offers one at a time).
VNCDO_ENCODINGS = ("raw", "rre", "corre", "hextile", "zrle")

#: What QEMU 7.2 and vncd send for each: neither has RRE or CoRRE, so Raw.
SERVER_CHOICE = {"raw": "Raw", "rre": "Raw", "corre": "Raw", "hextile": "Hextile",
                 "zrle": "ZRLE"}


class VncdoMixin:
    """The tests; subclasses say which server runs them."""

    server = ""

    def setUp(self):
        if self.server == "vncd":
            realclients.require_vncd()
        else:
            require_tool("gvnccapture")
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.secret = os.path.join(self.dir, "password")
        fd = os.open(self.secret, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(PASSWORD)
        self.picture_path = realclients.write_png(
            os.path.join(self.dir, "screen.png"), realclients.make_picture())
        self.events_path = os.path.join(self.dir, "events.jsonl")

    def serve(self, password: bool = False, events: bool = False) -> int:
        """Start the server on one display; returns its port.

        vncd shows the test picture (``-screen image``), or with ``events``
        a ``-screen pipe`` fed the same picture as one raw frame, which
        writes every input event to :attr:`events_path` as a JSON line.
        """
        display = free_display()
        objects = ["-object", f"secret,id=pw0,file={self.secret}"] if password else []
        spec = f"127.0.0.1:{display}" + (",password-secret=pw0" if password else "")
        if self.server == "qemu":
            argv = realclients.qemu_command(objects + ["-vnc", spec])
        else:
            screen = f"image,file={self.picture_path}"
            if events:
                frame = os.path.join(self.dir, "frame.rgb")
                picture = realclients.read_png(self.picture_path)
                with open(frame, "wb") as f:
                    f.write(picture.tobytes())
                screen = (f"pipe,path={frame},size={picture.shape[1]}x{picture.shape[0]},"
                          f"format=rgb24,events={self.events_path}")
            argv = realclients.vncd_command(objects + ["-vnc", spec, "-screen", screen])
        realclients.start_server(self, argv, [5900 + display], name=self.server)
        self.display = display
        return 5900 + display

    def expected(self):
        if self.server == "vncd":
            return realclients.read_png(self.picture_path)
        reference = os.path.join(self.dir, "reference.png")
        run = realclients.gvnccapture("127.0.0.1", self.display, reference,
                                      password=PASSWORD)
        self.assertTrue(run.ok, f"reference capture failed: {run.output}")
        return realclients.read_png(reference)

    def assertCapture(self, path: str, what: str) -> None:
        realclients.assert_same_pixels(self, realclients.read_png(path), self.expected(),
                                       f"{what} via {self.server}")

    def vncdo(self, port: int, *args: str) -> realclients.ClientRun:
        """The ``vncdo`` command line (no password: it would be on the command line)."""
        exe = os.path.join(os.path.dirname(sys.executable), "vncdo")
        try:
            done = subprocess.run([exe, "-s", f"127.0.0.1::{port}", "-t",
                                   str(realclients.CLIENT_TIMEOUT), *args],
                                  cwd=ROOT, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=realclients.CLIENT_TIMEOUT + realclients.STOP_GRACE)
        except subprocess.TimeoutExpired as e:
            return realclients.ClientRun(None, (e.output or b"").decode("utf-8", "replace"), True)
        return realclients.ClientRun(done.returncode, done.stdout.decode("utf-8", "replace"))

    def test_cli_capture(self):
        """``vncdo capture`` with security type None saves the server's picture."""
        port = self.serve()
        out = os.path.join(self.dir, "cli.png")
        run = self.vncdo(port, "capture", out)
        self.assertTrue(run.ok, run.output)
        self.assertCapture(out, "vncdo capture")

    def test_vnc_auth_capture(self):
        """The API with VNC authentication captures the server's picture."""
        port = self.serve(password=True)
        out = os.path.join(self.dir, "auth.png")
        run = realclients.run_vncdo(port, [["capture", out]], password=PASSWORD)
        self.assertTrue(run.ok, run.output)
        self.assertCapture(out, "vncdotool with VncAuth")

    def test_vnc_auth_wrong_password(self):
        """A wrong password fails the run and captures nothing."""
        port = self.serve(password=True)
        out = os.path.join(self.dir, "never.png")
        run = realclients.run_vncdo(port, [["capture", out]], password="nope")
        self.assertFalse(run.ok, run.output)
        self.assertFalse(os.path.exists(out))

    def test_encodings(self):
        """Limited to each single encoding vncdotool decodes, the capture is exact."""
        # A relay in front of the server reads which encoding the server
        # really used: the one asked for where the server has it, else Raw.
        tap = realclients.RfbTap(self, self.serve())
        for encoding in VNCDO_ENCODINGS:
            out = os.path.join(self.dir, f"{encoding}.png")
            run = realclients.run_vncdo(tap.port, [["capture", out]], encoding=encoding)
            self.assertTrue(run.ok, f"{encoding}: {run.output}")
            self.assertCapture(out, f"vncdotool with {encoding}")
        used = [realclients.ENCODING_NAMES.get(e, e) for e in tap.encodings()]
        self.assertEqual(dict(zip(VNCDO_ENCODINGS, used)), SERVER_CHOICE)


class VncdoQemuTests(VncdoMixin, SynchronousTestCase):
    """The harness against QEMU 7.2."""

    server = "qemu"

    def test_cli_input_actions(self):
        """``vncdo`` sends keys and pointer events without error (QEMU has no input device)."""
        port = self.serve()
        run = self.vncdo(port, "key", "a", "move", "10", "20", "click", "1")
        self.assertTrue(run.ok, run.output)


class VncdoVncdTests(VncdoMixin, SynchronousTestCase):
    """vncdotool against vncd."""

    server = "vncd"

    def events(self) -> list[dict]:
        if not os.path.exists(self.events_path):
            return []
        with open(self.events_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def test_input_reaches_screen(self):
        """Key presses and pointer moves/clicks from ``vncdo`` reach vncd's screen, in order."""
        port = self.serve(events=True)
        run = self.vncdo(port, "key", "a", "move", "10", "20", "click", "1")
        self.assertTrue(run.ok, run.output)
        wanted = [
            {"type": "key", "down": True, "keysym": 0x61},
            {"type": "key", "down": False, "keysym": 0x61},
            {"type": "pointer", "x": 10, "y": 20, "buttons": 0},
            {"type": "pointer", "x": 10, "y": 20, "buttons": 1},
            {"type": "pointer", "x": 10, "y": 20, "buttons": 0},
        ]

        def arrived():
            remaining = list(wanted)
            for event in self.events():
                if remaining and all(event.get(k) == v for k, v in remaining[0].items()):
                    remaining.pop(0)
            return not remaining

        self.assertTrue(realclients.wait_until(arrived, realclients.CLIENT_TIMEOUT),
                        f"events seen: {self.events()}")
