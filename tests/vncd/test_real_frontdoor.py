"""``-screen vnc`` in front of real upstreams, with real clients on vncd's side.

1. QEMU 7.2 showing its firmware screen (``-vga std``, no disk) on
   ``-vnc unix:PATH``; vncd serves it with x509 TLS and client
   certificates; gvnccapture (with its client certificate) captures
   through vncd, and the capture equals one taken straight from QEMU's
   socket with vncd's own client.
2. x11vnc on Xvfb showing an ``xev`` window; keys typed with vncdotool
   into vncd arrive in that window, as xev reports from the X side.
3. Upstreams that want something: QEMU with a VNC password
   (``password-secret``), and QEMU with VeNCrypt x509 and verify-peer=on,
   to which vncd presents its client certificate.
4. The upstream (QEMU) killed and restarted while 5 downstream clients
   (vncd's own client, in this process) stay connected: all 5 see the
   outage picture, then QEMU's pixels again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

import creds
from compat.config import ListenAddress
from tests import certgen
from tests.tools import QEMU, ROOT, free_display, require_tool
from tests.vncd import realclients
from tests.vncd.realclients import GvncPki
from vncd import api
from vncd.client import ClientOptions, connect, fetch_framebuffer
from vncd.screens.vnc import UpstreamState, VncScreen

#: Seconds QEMU's firmware screen gets to settle (SeaBIOS prints, then
#: waits 60 s before retrying the boot), and attempts to catch it still.
FIRMWARE_SETTLE = 60.0
CAPTURE_ATTEMPTS = 8

#: Pixels allowed to change by themselves between two captures of QEMU's
#: socket: the blinking text cursor, at most one 9x16 character cell.
MAX_BLINK_PIXELS = 9 * 16


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where two captures of the same size differ (any channel), as a boolean mask."""
    if a.shape != b.shape:
        return np.ones(a.shape[:2], dtype=bool)
    return (a[..., :3] != b[..., :3]).any(axis=-1)


def short_dir(test) -> str:
    """A directory with a short path, for UNIX sockets (108 bytes at most)."""
    directory = tempfile.mkdtemp(prefix="vncd-fd-")
    test.addCleanup(shutil.rmtree, directory, True)
    return directory


def capture_direct(test, path: str, out: str) -> np.ndarray:
    """vncd's own client straight at a UNIX socket (gvnccapture takes TCP only)."""
    run = subprocess.run([sys.executable, "-m", "vncd.capture", f"unix:{path}", out],
                         capture_output=True, text=True, cwd=ROOT,
                         timeout=realclients.CLIENT_TIMEOUT)
    test.assertEqual(run.returncode, 0, run.stderr)
    return realclients.read_png(out)


class FirmwareThroughX509Tests(SynchronousTestCase):
    def test_qemu_firmware_gvnccapture(self):
        """gvnccapture with a client certificate through vncd sees exactly what QEMU's socket shows."""
        require_tool("gvnccapture")
        realclients.require_vncd()
        directory = short_dir(self)
        sock = os.path.join(directory, "vm.vnc")
        realclients.start_server(self, [
            require_tool(QEMU), "-machine", "pc", "-m", "64", "-nodefaults", "-vga", "std",
            "-display", "none", "-monitor", "none", "-serial", "none", "-vnc", f"unix:{sock}"],
            [], name="qemu")
        self.assertTrue(realclients.wait_until(lambda: os.path.exists(sock), 30), "no socket")
        ca = certgen.ca("front door CA")
        server = certgen.server(ca, "localhost", dns=["localhost"], ips=["127.0.0.1"])
        creds_dir = certgen.write_dir(os.path.join(directory, "creds"), ca=[ca], server=server)
        client = certgen.client(ca, "gvnccapture")
        pki = GvncPki.borrow(self)
        pki.install(ca=ca.pem(), client_cert=client.pem(), client_key=client.key_pem())
        display = free_display()
        vncd = realclients.start_server(self, realclients.vncd_command([
            "-object", f"tls-creds-x509,id=tls0,endpoint=server,dir={creds_dir}",
            "-vnc", f"127.0.0.1:{display},tls-creds=tls0",
            "-screen", f"vnc,server=unix:{sock}"]), [5900 + display], name="vncd")
        # Pixels that change by themselves on QEMU's own socket (the blinking text
        # cursor) are left out of the comparison; everything else must be equal.
        shots = []
        blink = None
        deadline = time.monotonic() + FIRMWARE_SETTLE
        while time.monotonic() < deadline and not (
                len(shots) > 1 and _changed(shots[-2], shots[-1]).sum() <= MAX_BLINK_PIXELS):
            shots.append(capture_direct(self, sock, os.path.join(directory, "settle.png")))
            time.sleep(1)
        problem = None
        for attempt in range(CAPTURE_ATTEMPTS):
            before = capture_direct(self, sock, os.path.join(directory, f"b{attempt}.png"))
            out = os.path.join(directory, f"through{attempt}.png")
            run = realclients.gvnccapture("127.0.0.1", display, out)
            self.assertTrue(run.ok, f"gvnccapture: {run.output}\n{vncd.describe()}")
            after = capture_direct(self, sock, os.path.join(directory, f"a{attempt}.png"))
            changed = _changed(before, after)
            if changed.sum() > MAX_BLINK_PIXELS:
                continue                       # the firmware drew meanwhile: again
            blink = changed if blink is None else blink | changed
            through = realclients.read_png(out)
            differ = _changed(through, before) & ~blink
            if not differ.any():
                break
            problem = f"{int(differ.sum())} pixels differ, first at {np.argwhere(differ)[0]}"
        else:
            self.fail(f"no capture through vncd matched QEMU's screen: {problem}")
        self.assertGreater(int(before.max()), 0, "QEMU showed a black screen")
        self.assertIn("connected: 720x400", vncd.output())


class X11vncKeysTests(SynchronousTestCase):
    def test_keys_reach_the_x_window(self):
        """Keys typed with vncdotool into vncd arrive in an X window under x11vnc (xev)."""
        realclients.require_vncd()
        x11vnc, xev = require_tool("x11vnc"), require_tool("xev")
        xvfb = realclients.Xvfb(self, 320, 240)
        env = dict(os.environ, DISPLAY=xvfb.display)
        events = os.path.join(short_dir(self), "xev.txt")
        with open(events, "wb") as out:
            watcher = subprocess.Popen([xev, "-geometry", "200x200+0+0", "-event", "keyboard"],
                                       stdout=out, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
        self.addCleanup(lambda: (watcher.kill(), watcher.wait()))
        port = 5900 + free_display()
        realclients.start_server(self, [x11vnc, "-display", xvfb.display, "-rfbport",
                                        str(port), "-localhost", "-nopw", "-forever",
                                        "-shared", "-norc", "-noxrecord"], [port],
                                 name="x11vnc")
        display = free_display()
        vncd = realclients.start_server(self, realclients.vncd_command([
            "-vnc", f"127.0.0.1:{display}", "-screen", f"vnc,server=127.0.0.1:{port}"]),
            [5900 + display], name="vncd")
        self.assertTrue(realclients.wait_until(
            lambda: "connected: 320x240" in vncd.output(), 30), vncd.describe())
        run = realclients.run_vncdo(5900 + display, [["move", 50, 50], ["key", "v"],
                                                     ["key", "n"], ["key", "c"]])
        self.assertTrue(run.ok, run.output)

        def typed():
            with open(events, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            return [chunk.split("keysym 0x")[1].split(",")[1].split(")")[0].strip()
                    for chunk in text.split("KeyPress event")[1:]]

        self.assertTrue(realclients.wait_until(lambda: typed() == ["v", "n", "c"], 20),
                        typed())


class UpstreamSecurityTests(SynchronousTestCase):
    def setUp(self):
        require_tool("gvnccapture")
        realclients.require_vncd()
        self.dir = short_dir(self)

    def assertMirrors(self, upstream: str, objects: list[str], plain: int) -> None:
        """gvnccapture through vncd equals a capture of QEMU's plain display (taken
        before and after, so a blink of QEMU's text cursor between them is retried)."""
        display = free_display()
        while display == plain:
            display = free_display()
        vncd = realclients.start_server(self, realclients.vncd_command(
            objects + ["-vnc", f"127.0.0.1:{display}", "-screen", f"vnc,{upstream}"]),
            [5900 + display], name="vncd")
        self.assertTrue(realclients.wait_until(
            lambda: "connected:" in vncd.output(), 30), vncd.describe())
        self.vncd = vncd
        for attempt in range(CAPTURE_ATTEMPTS):
            before = self.capture(plain, f"before{attempt}")
            got = self.capture(display, f"through{attempt}")
            if realclients.pixel_mismatch(before, self.capture(plain, f"after{attempt}")):
                continue
            realclients.assert_same_pixels(self, got, before, "via vncd")
            return
        self.fail("QEMU's screen never held still for a capture")

    def capture(self, display: int, name: str) -> np.ndarray:
        out = os.path.join(self.dir, f"{name}.png")
        run = realclients.gvnccapture("127.0.0.1", display, out)
        self.assertTrue(run.ok, run.output)
        return realclients.read_png(out)

    def qemu(self, args: list[str], busy: int = 0) -> int:
        """QEMU 7.2 (no machine) with ``args`` plus a plain display; the plain one's number."""
        plain = free_display()
        while plain == busy:
            plain = free_display()
        realclients.start_server(self, realclients.qemu_command(
            args + ["-vnc", f"127.0.0.1:{plain},id=plain"]), [5900 + plain], name="qemu")
        return plain

    def test_password_upstream(self):
        """An upstream asking for a VNC password gets it from a secret object."""
        sock = os.path.join(self.dir, "pw.vnc")
        plain = self.qemu(["-object", "secret,id=pw,data=upstream1",
                           "-vnc", f"unix:{sock},password-secret=pw"])
        self.assertMirrors(f"server=unix:{sock},password-secret=up",
                           ["-object", "secret,id=up,data=upstream1"], plain)
        self.assertIn("(VncAuth)", self.vncd.output())

    def test_x509_upstream_with_client_certificate(self):
        """A VeNCrypt x509 upstream demanding client certificates accepts vncd's."""
        ca = certgen.ca("upstream CA")
        server = certgen.server(ca, "localhost", dns=["localhost"], ips=["127.0.0.1"])
        server_dir = certgen.write_dir(os.path.join(self.dir, "server"), ca=[ca], server=server)
        client_dir = certgen.write_dir(os.path.join(self.dir, "client"), ca=[ca],
                                       client=certgen.client(ca, "vncd front door"))
        port = 5900 + free_display()
        plain = self.qemu(["-object", f"tls-creds-x509,id=t,endpoint=server,dir={server_dir},"
                                      "verify-peer=on",
                           "-vnc", f"127.0.0.1:{port - 5900},tls-creds=t"], port - 5900)
        self.assertMirrors(f"server=localhost:{port},tls-creds=up",
                           ["-object", f"tls-creds-x509,id=up,endpoint=client,"
                                       f"dir={client_dir}"], plain)
        self.assertIn("(VeNCrypt X509None, TLSv1.", self.vncd.output())

    def test_x509_upstream_without_client_certificate(self):
        """Without a client certificate the upstream refuses; vncd logs why and keeps serving
        its own clients the outage picture."""
        ca = certgen.ca("upstream CA")
        server = certgen.server(ca, "localhost", dns=["localhost"], ips=["127.0.0.1"])
        server_dir = certgen.write_dir(os.path.join(self.dir, "server"), ca=[ca], server=server)
        client_dir = certgen.write_dir(os.path.join(self.dir, "client"), ca=[ca])
        port = 5900 + free_display()
        plain = self.qemu(["-object", f"tls-creds-x509,id=t,endpoint=server,dir={server_dir},"
                                      "verify-peer=on",
                           "-vnc", f"127.0.0.1:{port - 5900},tls-creds=t"], port - 5900)
        display = free_display()
        while display in (plain, port - 5900):
            display = free_display()
        vncd = realclients.start_server(self, realclients.vncd_command([
            "-object", f"tls-creds-x509,id=up,endpoint=client,dir={client_dir}",
            "-vnc", f"127.0.0.1:{display}",
            "-screen", f"vnc,server=localhost:{port},tls-creds=up"]), [5900 + display],
            name="vncd")
        self.assertTrue(realclients.wait_until(
            lambda: f"upstream localhost:{port} unavailable" in vncd.output(), 30),
            vncd.describe())
        out = os.path.join(self.dir, "outage.png")
        run = realclients.gvnccapture("127.0.0.1", display, out)
        self.assertTrue(run.ok, run.output)
        self.assertEqual(tuple(int(v) for v in realclients.read_png(out)[2, 2]), (70, 16, 20))
        self.assertEqual(vncd.output().count("unavailable"), 1, vncd.output())


class RestartUnderClientsTests(TestCase):
    timeout = 120

    async def _restart(self):
        directory = short_dir(self)
        sock = os.path.join(directory, "vm.vnc")
        argv = realclients.qemu_command(["-vnc", f"unix:{sock}"])

        def start_qemu():
            proc = realclients.Proc(argv, name="qemu")
            self.addCleanup(proc.stop)
            return proc

        async def until(predicate, what, timeout=30.0):
            for _ in range(int(timeout / 0.05)):
                if predicate():
                    return
                await task.deferLater(reactor, 0.05, lambda: None)
            self.fail(f"timed out waiting for {what}")

        qemu = start_qemu()
        await until(lambda: os.path.exists(sock), "QEMU's socket")
        screen = VncScreen(ListenAddress("unix", sock), ClientOptions(), reactor=reactor)
        display = free_display()
        service = api.serve(screen, f"127.0.0.1:{display}", reactor=reactor)
        self.addCleanup(service.stop)
        await until(lambda: screen._mirroring, "the first upstream frame")
        direct = await self.fetch(ListenAddress("unix", sock))
        clients = [await connect(reactor, ListenAddress("tcp", "127.0.0.1", 5900 + display),
                                 ClientOptions()) for _ in range(5)]
        for client in clients:
            self.addCleanup(client.close)
        for client in clients:
            got = await defer.Deferred.fromCoroutine(fetch_framebuffer(client))
            self.assertTrue(np.array_equal(got[..., :3], direct[..., :3]))
        qemu.stop()
        await until(lambda: screen.state is UpstreamState.WAITING, "the outage")
        outage = screen.framebuffer[..., :3].copy()
        self.assertEqual(tuple(int(v) for v in outage[2, 2]), (70, 16, 20))
        for client in clients:
            got = await defer.Deferred.fromCoroutine(fetch_framebuffer(client))
            self.assertEqual(tuple(int(v) for v in got[2, 2, :3]), (70, 16, 20))
        qemu = start_qemu()
        await until(lambda: screen._mirroring and screen.connections_made == 2,
                    "the upstream again")
        direct = await self.fetch(ListenAddress("unix", sock))
        for client in clients:
            self.assertIsNone(client.error)
            got = await defer.Deferred.fromCoroutine(fetch_framebuffer(client))
            self.assertTrue(np.array_equal(got[..., :3], direct[..., :3]))

    async def fetch(self, address) -> np.ndarray:
        client = await connect(reactor, address, ClientOptions())
        try:
            return await defer.Deferred.fromCoroutine(fetch_framebuffer(client))
        finally:
            client.close()

    def test_restart_under_five_clients(self):
        """QEMU killed and restarted: 5 connected clients see the outage picture, then
        QEMU's pixels, without reconnecting."""
        require_tool("qemu-system-x86_64")
        return defer.ensureDeferred(self._restart())
