"""noVNC 1.3 (Debian's ``novnc``) in headless Chromium as a client of vncd.

Each test starts vncd (``python -m tests.vncd.browser``: the ``vncd``
command with its log on stderr) with a WebSocket listener on loopback
and a ``-screen pipe`` showing the test picture and writing every input
event to a JSON-lines file.  A loopback HTTP(S) server in the test
serves noVNC's ``vnc_lite.html``, and Chromium, driven over WebDriver by
chromedriver, opens it with ``?host=127.0.0.1&port=<websocket port>``.
vnc_lite picks ``wss`` exactly when the page itself came over https, so
the wss tests serve the page over https with vncd's own certificate,
which Chromium trusts by its SPKI pin and nothing else.  vnc_lite does
not scale the desktop; the tests check that the canvas is drawn 1:1.

What proves it works: the canvas, read back as PNG, equals the picture
pixel for pixel; a click and a key typed into the page arrive at vncd's
screen; a VNC password typed into noVNC's ``prompt()`` logs in and a
wrong one is refused, visibly in the page and in vncd's log.  Browsers
cannot do anonymous TLS, so with ``tls-creds-anon`` vncd starts (as QEMU
7.2 does) and the browser's connection fails, again visibly on both sides.

For wss with x509 credentials and ``verify-peer=off`` the TLS server must
not ask for a client certificate: Chromium abandons a WebSocket whose TLS
handshake carries a CertificateRequest ("WebSocket opening handshake was
canceled"; noVNC issue #1144 reports the same with QEMU >= 2.5, which
requests one always).  ``openssl s_client`` shows which server sends one.

The parsers in :mod:`tests.vncd.browser` get garbage-input tests here too.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import secrets
import subprocess

import numpy as np
from hypothesis import given, settings, strategies as st
from PIL import Image
from twisted.trial.unittest import SynchronousTestCase

from tests import certgen
from tests.tools import free_display, free_port, qemu_vnc, require_tool, wait_for_port
from tests.vncd import browser, realclients
from tests.vncd.browser import (
    CanvasError, WebDriverError, decode_png_data_url, parse_response, spki_pin,
)

#: Seconds noVNC gets to connect and draw the whole picture (or to show
#: that it failed).  Under a second here; the rest is for a loaded CI box.
CONNECT_TIMEOUT = 30.0

#: Seconds input typed into the page gets to reach vncd's events file.
INPUT_TIMEOUT = 20.0

#: Seconds ``openssl s_client`` gets for one handshake on loopback.
OPENSSL_TIMEOUT = 20.0

#: What vnc_lite.html asks in its ``prompt()`` when the server wants a password.
PASSWORD_PROMPT = "Password Required:"

#: What vncd logs, after the peer's address, when a browser meets anonymous
#: credentials (QEMU's wording: noVNC issue #1144 quotes the same line).
ANON_FAILURE = ": TLS failure: TLS handshake failed: Could not negotiate a supported cipher suite."

#: A password vncd never has: the tests' passwords are hex digits.
WRONG_PASSWORD = "not-it!!"

#: vnc_lite.html's status line after an unclean disconnect (any failure).
FAILED_STATUS = "Something went wrong, connection is closed"

#: Where the tests click, in framebuffer pixels (inside the red block of
#: the test picture, away from every edge).
CLICK_AT = (37, 23)

#: The page state a test reads: vnc_lite's status line and, once noVNC
#: has made it, the canvas (its size, where it is, and its pixels).
PAGE_STATE_JS = """
const status = document.getElementById('status').textContent;
const canvas = document.querySelector('#screen canvas');
if (!canvas || !canvas.width || !canvas.height) {
    return {status: status, canvas: null};
}
const rect = canvas.getBoundingClientRect();
return {status: status, canvas: {
    width: canvas.width, height: canvas.height,
    left: rect.left, top: rect.top, cssWidth: rect.width, cssHeight: rect.height,
    png: canvas.toDataURL('image/png')}};
"""


class NoVNCTests(SynchronousTestCase):
    """noVNC in Chromium against vncd over ws and wss."""

    def setUp(self):
        realclients.require_vncd()
        require_tool("chromium")
        require_tool("chromedriver")
        browser.require_novnc()
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.picture = realclients.make_picture()
        self.frame = os.path.join(self.dir, "frame.rgb")
        with open(self.frame, "wb") as f:
            f.write(self.picture.tobytes())
        self.events_path = os.path.join(self.dir, "events.jsonl")
        self.password = secrets.token_hex(4)
        self.vncd: realclients.Proc | None = None
        self.browser: browser.Browser | None = None

    # -- the server ---------------------------------------------------------------

    def write_secret(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def x509_dir(self, name: str = "creds") -> str:
        """A server credentials directory for 127.0.0.1 under a fresh CA."""
        root = certgen.ca("noVNC test CA")
        server = certgen.server(root, "127.0.0.1", dns=["localhost"], ips=["127.0.0.1"])
        return certgen.write_dir(os.path.join(self.dir, name), ca=[root], server=server)

    def serve(self, objects: tuple[str, ...] = (), options: str = "") -> int:
        """Start vncd with a WebSocket listener; returns its port.

        ``objects`` are ``-object`` values, ``options`` more ``-vnc`` keys.
        """
        display, ws_port = free_display(), free_port()
        spec = f"127.0.0.1:{display},websocket=127.0.0.1:{ws_port}"
        if options:
            spec += "," + options
        height, width = self.picture.shape[:2]
        screen = (f"pipe,path={self.frame},size={width}x{height},format=rgb24,"
                  f"events={self.events_path}")
        args = [word for value in objects for word in ("-object", value)]
        argv = browser.vncd_command(args + ["-vnc", spec, "-screen", screen])
        self.vncd = realclients.start_server(self, argv, [5900 + display, ws_port], name="vncd")
        return ws_port

    def vncd_log(self) -> str:
        return self.vncd.output() if self.vncd is not None else ""

    def events(self) -> list[dict]:
        if not os.path.exists(self.events_path):
            return []
        with open(self.events_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    # -- the browser ----------------------------------------------------------------

    def open_novnc(self, ws_port: int, *, https_creds: str | None = None) -> browser.Browser:
        """Chromium showing vnc_lite.html for ``ws_port``.

        With ``https_creds`` (a credentials directory) the page is served
        over https with that server certificate, which Chromium is told
        to trust by its pin, so noVNC connects with wss.
        """
        pins: tuple[str, ...] = ()
        if https_creds is None:
            files = browser.StaticServer(self)
        else:
            cert = os.path.join(https_creds, "server-cert.pem")
            files = browser.StaticServer(self, cert_file=cert,
                                         key_file=os.path.join(https_creds, "server-key.pem"))
            with open(cert, "rb") as f:
                pins = (spki_pin(f.read()),)
        self.browser = browser.Browser(self, spki_pins=pins)
        self.browser.get(files.url("vnc_lite.html", host="127.0.0.1", port=str(ws_port)))
        return self.browser

    def page_state(self) -> dict:
        state = self.browser.execute(PAGE_STATE_JS)
        self.assertIsInstance(state, dict)
        return state

    def diagnosis(self) -> str:
        """What the page, the browser console and vncd said, for failure messages."""
        lines = []
        if self.browser is not None:
            try:
                lines.append(f"noVNC status: {self.page_state()['status']!r}")
            except WebDriverError as e:
                lines.append(f"noVNC status unreadable: {e}")
            lines += ["browser console:"] + [f"  {line}" for line in self.browser.console()]
        lines.append("vncd log (tail):")
        lines.append(self.vncd_log()[-3000:])
        return "\n".join(lines)

    def observe(self) -> tuple[str, object]:
        """What the page shows now.

        ``("prompt", text)`` while a ``prompt()`` is open, ``("failed",
        state)`` once vnc_lite reports a failure, else ``("page", state)``
        (``state`` from :data:`PAGE_STATE_JS`); ``("busy", None)`` when a
        prompt opened between the two looks (chromedriver then either
        reports the open alert or, when the prompt opened while the script
        ran, returns no value at all).
        """
        text = self.browser.prompt_text()
        if text is not None:
            return "prompt", text
        try:
            state = self.browser.execute(PAGE_STATE_JS)
        except WebDriverError as e:
            if e.error == browser.ALERT_OPEN:
                return "busy", None
            raise
        if state is None:
            return "busy", None
        self.assertIsInstance(state, dict)
        return ("failed" if state["status"] == FAILED_STATUS else "page"), state

    def answer_prompt(self, password: str) -> None:
        """Wait for vnc_lite's password ``prompt()`` and type ``password`` into it."""
        seen = []

        def asked():
            seen[:] = self.observe()
            return seen[0] in ("prompt", "failed")

        if not browser.wait_for(asked, CONNECT_TIMEOUT) or seen[0] != "prompt":
            self.fail(f"noVNC asked for no password\n{self.diagnosis()}")
        self.assertEqual(seen[1], PASSWORD_PROMPT)
        self.browser.answer_prompt(password)

    def assert_picture(self) -> dict:
        """Wait until the canvas shows the whole picture 1:1; returns the canvas state.

        Stops waiting as soon as noVNC reports a failure or asks something.
        """
        seen = []

        def shown():
            seen[:] = self.observe()
            kind, state = seen
            if kind != "page":
                return kind in ("prompt", "failed")
            if state["canvas"] is None:
                return False
            seen.append(decode_png_data_url(state["canvas"]["png"]))
            return realclients.pixel_mismatch(seen[2][..., :3], self.picture) is None

        browser.wait_for(shown, CONNECT_TIMEOUT)
        kind, state = seen[:2]
        if kind == "prompt":
            self.fail(f"noVNC asks {state!r} instead of showing the desktop")
        if kind != "page" or state["canvas"] is None:
            self.fail(f"noVNC shows no desktop\n{self.diagnosis()}")
        pixels = seen[2]
        problem = realclients.pixel_mismatch(pixels[..., :3], self.picture)
        if problem is not None:
            self.fail(f"noVNC does not show the picture: {problem}\n{self.diagnosis()}")
        canvas = state["canvas"]
        height, width = self.picture.shape[:2]
        self.assertEqual((canvas["cssWidth"], canvas["cssHeight"]), (width, height),
                         "noVNC scaled the desktop")
        self.assertTrue(np.all(pixels[..., 3] == 255), "the canvas is not opaque")
        self.assertTrue(state["status"].startswith("Connected to "), state["status"])
        return canvas

    def assert_input_arrives(self, canvas: dict) -> None:
        """A click at :data:`CLICK_AT` and the key ``a`` reach vncd's screen, in order.

        The pointer goes to the first whole CSS pixel at or right of the
        target's left edge (the canvas is centred, so it may sit on a half
        pixel); noVNC truncates the offset, which gives the target back.
        """
        x, y = CLICK_AT
        client_x = math.ceil(canvas["left"] + x)
        client_y = math.ceil(canvas["top"] + y)
        self.browser.perform({
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "duration": 0, "origin": "viewport",
                 "x": client_x, "y": client_y},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerUp", "button": 0},
            ]})
        self.browser.perform({
            "type": "key", "id": "keyboard",
            "actions": [{"type": "keyDown", "value": "a"}, {"type": "keyUp", "value": "a"}]})
        wanted = [
            {"type": "pointer", "x": x, "y": y, "buttons": 1},
            {"type": "pointer", "x": x, "y": y, "buttons": 0},
            {"type": "key", "down": True, "keysym": 0x61},
            {"type": "key", "down": False, "keysym": 0x61},
        ]

        def arrived():
            remaining = list(wanted)
            for event in self.events():
                if remaining and all(event.get(k) == v for k, v in remaining[0].items()):
                    remaining.pop(0)
            return not remaining

        if not browser.wait_for(arrived, INPUT_TIMEOUT):
            self.fail(f"input from noVNC did not reach the screen; events: {self.events()}"
                      f"\n{self.diagnosis()}")

    def assert_failed(self) -> None:
        """noVNC reports the failed connection and never draws a desktop."""
        seen = []

        def ended():
            seen[:] = self.observe()
            return seen[0] in ("prompt", "failed")

        if not browser.wait_for(ended, CONNECT_TIMEOUT) or seen[0] != "failed":
            self.fail(f"noVNC did not report a failure\n{self.diagnosis()}")
        self.assertIsNone(seen[1]["canvas"])
        self.assertIsNone(self.vncd.poll(), "vncd exited")

    # -- ws ---------------------------------------------------------------------------

    def test_ws_no_auth(self):
        """Over ws without authentication, noVNC shows the picture and its click and key arrive."""
        ws_port = self.serve()
        self.open_novnc(ws_port)
        canvas = self.assert_picture()
        self.assert_input_arrives(canvas)

    def test_ws_vnc_password(self):
        """Over ws, the VNC password typed into noVNC's prompt logs in; picture and input work."""
        secret = self.write_secret("password", self.password)
        ws_port = self.serve((f"secret,id=pw0,file={secret}",), "password-secret=pw0")
        self.open_novnc(ws_port)
        self.answer_prompt(self.password)
        canvas = self.assert_picture()
        self.assert_input_arrives(canvas)

    def test_ws_wrong_password(self):
        """A wrong VNC password fails in noVNC with vncd's reason, and vncd logs the failure."""
        secret = self.write_secret("password", self.password)
        ws_port = self.serve((f"secret,id=pw0,file={secret}",), "password-secret=pw0")
        self.open_novnc(ws_port)
        self.answer_prompt(WRONG_PASSWORD)
        self.assert_failed()
        # vncd, like QEMU, counts a NUL into the reason's length; noVNC
        # prints it (as \u0000), so only the text before it is compared.
        console = "\n".join(self.browser.console())
        self.assertIn("Security negotiation failed on security result"
                      " (reason: Authentication failed", console)
        logged = realclients.wait_until(
            lambda: re.search(r"127\.0\.0\.1:\d+: authentication failed: ", self.vncd_log()),
            CONNECT_TIMEOUT)
        self.assertTrue(logged, f"vncd logged no failure:\n{self.vncd_log()}")
        self.assertEqual(self.events(), [])
        self.assertNotIn(self.password, self.vncd_log())

    # -- wss --------------------------------------------------------------------------

    def test_wss_x509(self):
        """Over wss (x509, verify-peer=off), noVNC shows the picture and its input arrives."""
        creds = self.x509_dir()
        ws_port = self.serve(
            (f"tls-creds-x509,id=tls0,endpoint=server,dir={creds},verify-peer=off",),
            "tls-creds=tls0")
        self.open_novnc(ws_port, https_creds=creds)
        canvas = self.assert_picture()
        self.assert_input_arrives(canvas)

    def test_wss_x509_vnc_password(self):
        """Over wss (x509, no peer check), a VNC password typed into noVNC shows the picture."""
        creds = self.x509_dir()
        secret = self.write_secret("password", self.password)
        ws_port = self.serve(
            (f"tls-creds-x509,id=tls0,endpoint=server,dir={creds},verify-peer=off",
             f"secret,id=pw0,file={secret}"),
            "tls-creds=tls0,password-secret=pw0")
        self.open_novnc(ws_port, https_creds=creds)
        self.answer_prompt(self.password)
        self.assert_picture()

    def test_wss_anon_fails_in_browser(self):
        """With anonymous credentials vncd starts, and a browser's wss handshake fails visibly."""
        ws_port = self.serve(("tls-creds-anon,id=tls0,endpoint=server",), "tls-creds=tls0")
        self.open_novnc(ws_port, https_creds=self.x509_dir("page"))
        self.assert_failed()
        console = "\n".join(self.browser.console())
        self.assertIn(f"wss://127.0.0.1:{ws_port}/websockify", console)
        logged = realclients.wait_until(
            lambda: re.search(r"127\.0\.0\.1:\d+" + re.escape(ANON_FAILURE), self.vncd_log()),
            CONNECT_TIMEOUT)
        self.assertTrue(logged, f"vncd logged no TLS failure:\n{self.vncd_log()}")
        self.assertEqual(self.events(), [])


# -- what a browser needs from the wss TLS server ------------------------------------

def certificate_request_seen(port: int) -> tuple[bool, str]:
    """Whether the TLS server on ``port`` sends a CertificateRequest (``openssl s_client -msg``).

    Returns the verdict and the handshake messages the tool saw (for
    failure messages).
    """
    openssl = require_tool("openssl")
    done = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-msg", "-no_ign_eof"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=OPENSSL_TIMEOUT)
    output = done.stdout.decode("utf-8", "replace")
    if "ServerHello" not in output:
        raise AssertionError(f"no TLS handshake with 127.0.0.1:{port}:\n{output[-3000:]}")
    handshake = "\n".join(line for line in output.splitlines() if "Handshake" in line)
    return "CertificateRequest" in output, handshake


class CertificateRequestTests(SynchronousTestCase):
    """Chromium cancels a WebSocket when the TLS server asks for a client certificate."""

    def setUp(self):
        require_tool("openssl")
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        root = certgen.ca("noVNC test CA")
        server = certgen.server(root, "127.0.0.1", ips=["127.0.0.1"])
        self.creds = certgen.write_dir(os.path.join(self.dir, "creds"), ca=[root],
                                       server=server)

    def test_vncd_verify_peer_off_asks_no_client_certificate(self):
        """vncd's wss listener with verify-peer=off sends no CertificateRequest."""
        display, ws_port = free_display(), free_port()
        argv = browser.vncd_command([
            "-object", f"tls-creds-x509,id=tls0,endpoint=server,dir={self.creds},verify-peer=off",
            "-vnc", f"127.0.0.1:{display},websocket=127.0.0.1:{ws_port},tls-creds=tls0"])
        realclients.start_server(self, argv, [5900 + display, ws_port], name="vncd")
        requested, output = certificate_request_seen(ws_port)
        self.assertFalse(requested, f"vncd asked a browser for a client certificate:\n{output}")

    def test_vncd_verify_peer_on_asks_client_certificate(self):
        """vncd's wss listener with verify-peer=on sends a CertificateRequest."""
        display, ws_port = free_display(), free_port()
        argv = browser.vncd_command([
            "-object", f"tls-creds-x509,id=tls0,endpoint=server,dir={self.creds},verify-peer=on",
            "-vnc", f"127.0.0.1:{display},websocket=127.0.0.1:{ws_port},tls-creds=tls0"])
        realclients.start_server(self, argv, [5900 + display, ws_port], name="vncd")
        requested, output = certificate_request_seen(ws_port)
        self.assertTrue(requested, output)

    def test_qemu_asks_client_certificate_even_with_verify_peer_off(self):
        """QEMU 7.2 sends a CertificateRequest even with verify-peer=off (noVNC fails there)."""
        display, ws_port = free_display(), free_port()
        proc, started = qemu_vnc([
            "-object", f"tls-creds-x509,id=tls0,endpoint=server,dir={self.creds},verify-peer=off",
            "-vnc", f"127.0.0.1:{display},websocket=127.0.0.1:{ws_port},tls-creds=tls0"])
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        if not started:
            self.fail(f"QEMU did not start: {proc.stderr.read().decode()}")
        self.assertTrue(wait_for_port("127.0.0.1", ws_port, realclients.START_TIMEOUT, proc))
        requested, output = certificate_request_seen(ws_port)
        self.assertTrue(requested, output)


# -- the harness's parsers -------------------------------------------------------------

def _png_data_url(rgba: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, "PNG")
    return browser.PNG_DATA_URL_PREFIX + base64.b64encode(out.getvalue()).decode()


class ParserTests(SynchronousTestCase):
    """The harness's readers of what the browser sends back."""

    def test_canvas_round_trip(self):
        """A PNG data URL of the test picture decodes to exactly its pixels."""
        picture = realclients.make_picture(31, 17)
        rgba = np.dstack([picture, np.full(picture.shape[:2], 255, np.uint8)])
        self.assertTrue(np.array_equal(decode_png_data_url(_png_data_url(rgba)), rgba))

    def test_canvas_too_large(self):
        """A PNG wider than MAX_CANVAS_SIDE is refused before its pixels are decoded."""
        wide = np.zeros((1, browser.MAX_CANVAS_SIDE + 1, 4), np.uint8)
        with self.assertRaises(CanvasError) as caught:
            decode_png_data_url(_png_data_url(wide))
        self.assertIn(f"{browser.MAX_CANVAS_SIDE + 1}x1", str(caught.exception))

    def test_canvas_not_png(self):
        """Another type, another scheme or bad base64 is a CanvasError."""
        for value in (None, 3, "data:image/jpeg;base64,AAAA",
                      browser.PNG_DATA_URL_PREFIX + "!!!!"):
            self.assertRaises(CanvasError, decode_png_data_url, value)

    @settings(max_examples=300, deadline=None)
    @given(st.one_of(st.text(max_size=200),
                     st.binary(max_size=300).map(
                         lambda b: browser.PNG_DATA_URL_PREFIX + base64.b64encode(b).decode()),
                     st.binary(max_size=300).map(
                         lambda b: browser.PNG_DATA_URL_PREFIX
                         + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b).decode())))
    def test_canvas_garbage(self, value):
        """Any string gives an RGBA array or a CanvasError, nothing else."""
        try:
            rgba = decode_png_data_url(value)
        except CanvasError:
            return
        self.assertEqual(rgba.ndim, 3)
        self.assertEqual(rgba.shape[2], 4)

    def test_response_value(self):
        """A successful response gives its value."""
        self.assertEqual(parse_response(200, b'{"value": {"ready": true}}'), {"ready": True})

    def test_response_error(self):
        """A W3C error becomes a WebDriverError with its code and message."""
        body = b'{"value": {"error": "no such alert", "message": "none open"}}'
        with self.assertRaises(WebDriverError) as caught:
            parse_response(404, body)
        self.assertEqual((caught.exception.error, caught.exception.message),
                         ("no such alert", "none open"))

    def test_response_too_long(self):
        """A body over MAX_RESPONSE_BYTES is refused without parsing it."""
        body = b" " * (browser.MAX_RESPONSE_BYTES + 1)
        with self.assertRaises(WebDriverError) as caught:
            parse_response(200, body)
        self.assertEqual(caught.exception.error, "invalid response")

    @settings(max_examples=300, deadline=None)
    @given(st.integers(100, 599),
           st.one_of(st.binary(max_size=200),
                     st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                                  lambda inner: st.lists(inner, max_size=4)
                                  | st.dictionaries(st.sampled_from(
                                      ["value", "error", "message", "x"]), inner, max_size=4),
                                  max_leaves=12).map(lambda v: json.dumps(v).encode())))
    def test_response_garbage(self, status, body):
        """Any status and body give a value or a WebDriverError, nothing else."""
        try:
            parse_response(status, body)
        except WebDriverError as e:
            self.assertIsInstance(e.error, str)

    def test_spki_pin_matches_openssl(self):
        """The pin is the base64 SHA-256 of the DER SubjectPublicKeyInfo, as openssl has it."""
        openssl = require_tool("openssl")
        cert = certgen.server(certgen.ca("pin CA"), "127.0.0.1").pem()
        spki = subprocess.run([openssl, "x509", "-noout", "-pubkey"], input=cert,
                              capture_output=True, check=True, timeout=OPENSSL_TIMEOUT).stdout
        der = subprocess.run([openssl, "pkey", "-pubin", "-outform", "DER"], input=spki,
                             capture_output=True, check=True, timeout=OPENSSL_TIMEOUT).stdout
        digest = subprocess.run([openssl, "dgst", "-sha256", "-binary"], input=der,
                                capture_output=True, check=True, timeout=OPENSSL_TIMEOUT).stdout
        self.assertEqual(spki_pin(cert), base64.b64encode(digest).decode())
