"""noVNC in headless Chromium, driven over WebDriver, for the real-client tests.

What :mod:`tests.vncd.test_real_novnc` needs to make a browser a client of
vncd:

* :class:`StaticServer` serves noVNC's files (Debian's ``novnc`` package,
  :data:`NOVNC_DIR`) from a loopback HTTP or HTTPS server in a thread --
  never the network;
* :class:`Browser` runs ``chromedriver`` and, through it, one headless
  Chromium with a fresh profile and ``$HOME``, spoken to with the W3C
  WebDriver HTTP API in a few ``urllib`` calls (no selenium): load a page,
  run a script, answer a ``prompt()``, send pointer and key actions, read
  the console;
* :func:`parse_response` and :func:`decode_png_data_url` are the two
  parsers of what the browser sends back (WebDriver's JSON and the
  canvas as a ``data:`` URL), each with named limits;
* :func:`spki_pin` is what ``--ignore-certificate-errors-spki-list``
  takes, so Chromium trusts exactly one test certificate for wss;
* ``python -m tests.vncd.browser ARGS`` (:func:`vncd_command`) runs the
  ``vncd`` command with its Twisted log on standard error: the command
  itself starts no log observer, and the tests want to see what vncd
  reports about a browser's connection.

Every child process has a deadline and is stopped by a cleanup registered
on the test.  Nothing here knows how vncd is built: it talks to vncd only
through its command line and the network.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import http.server
import io
import json
import os
import ssl
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from PIL import Image
from twisted.trial.unittest import FailTest, SkipTest

from tests.tools import free_port, require_tool
from tests.vncd.realclients import Proc, require_vncd

__all__ = [
    "NOVNC_DIR", "require_novnc", "StaticServer", "Browser", "WebDriverError",
    "CanvasError", "parse_response", "decode_png_data_url", "spki_pin", "vncd_command",
    "MAX_RESPONSE_BYTES", "MAX_CANVAS_SIDE", "MAX_LOG_ENTRIES",
]

#: Where Debian's ``novnc`` package (1.3.0) installs the client.
NOVNC_DIR = "/usr/share/novnc"

#: Files of noVNC the tests load: the page and the RFB module it imports.
NOVNC_FILES = ("vnc_lite.html", "core/rfb.js")

#: Seconds chromedriver gets to answer ``/status`` after it starts.  It
#: is ready in well under a second; the slack is for a loaded 2-core box.
DRIVER_START_TIMEOUT = 30.0

#: Seconds a new WebDriver session (starting Chromium) may take.  About a
#: second here; a cold start on a busy CI machine takes several.
SESSION_TIMEOUT = 60.0

#: Seconds one WebDriver command may take over HTTP.  Commands here run
#: scripts of a few milliseconds or load a page from loopback.
COMMAND_TIMEOUT = 30.0

#: Seconds ending the session may take before chromedriver is just killed.
QUIT_TIMEOUT = 5.0

#: Seconds between two polls of the page (status text, canvas, prompt).
POLL_INTERVAL = 0.1

#: Largest WebDriver response read.  The biggest is a canvas as a PNG
#: data URL: a noise-filled 1024x768 canvas is about 4 MB of base64.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024

#: Largest canvas side accepted from the browser; the tests' pictures
#: are a few hundred pixels, and the cap bounds what a bad PNG allocates.
MAX_CANVAS_SIDE = 4096

#: Console entries kept from the browser; a failing connection logs a
#: handful, more would only pad failure messages.
MAX_LOG_ENTRIES = 200

#: Seconds a static-file request may stall before its thread gives up.
REQUEST_TIMEOUT = 10.0

#: The browser window: larger than any test picture, so noVNC shows the
#: whole framebuffer unscaled and unclipped.
WINDOW_SIZE = (1024, 768)

#: Chromium switches: headless as root (no sandbox), no GPU, shared
#: memory in /tmp (CI containers have a tiny /dev/shm), and nothing that
#: talks to the network by itself.  Every host name except the loopback
#: address fails to resolve inside the browser, so nothing it tries
#: leaves the machine (a closed network otherwise sees a flood of refused
#: connections and DNS queries).
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--disable-domain-reliability", "--no-pings",
    "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}",
)

#: The WebDriver error raised while a ``prompt()`` is open (the session
#: leaves dialogs alone, see :meth:`Browser.__init__`).
ALERT_OPEN = "unexpected alert open"

#: The WebDriver error when no dialog is open.
NO_ALERT = "no such alert"

#: How ``canvas.toDataURL("image/png")`` begins.
PNG_DATA_URL_PREFIX = "data:image/png;base64,"

#: Largest canvas data URL accepted (a base64 PNG inside a response).
MAX_DATA_URL = MAX_RESPONSE_BYTES


def require_novnc() -> str:
    """noVNC's directory; skipped (or, in CI, failed) when it is not installed.

    The same rule as :func:`tests.tools.require_tool`, for a package that
    installs files rather than a program.
    """
    missing = [f for f in NOVNC_FILES if not os.path.isfile(os.path.join(NOVNC_DIR, f))]
    if not missing:
        return NOVNC_DIR
    msg = (f"*** noVNC is not installed ({', '.join(missing)} missing under {NOVNC_DIR};"
           " Debian package novnc); this test needs it. Run .ci/run or"
           " apt-get install -y novnc. ***")
    if os.environ.get("VNCD_REQUIRE_TOOLS"):
        raise FailTest(msg)
    sys.stderr.write(msg + "\n")
    raise SkipTest(msg)


def spki_pin(cert_pem: bytes) -> str:
    """Base64 SHA-256 of a certificate's SubjectPublicKeyInfo (Chromium's pin format)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def vncd_command(args: list[str]) -> list[str]:
    """``vncd ARGS`` with its log on standard error (see :func:`_vncd_main`)."""
    require_vncd()
    return [sys.executable, "-m", "tests.vncd.browser", *args]


# -- static files ----------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files read-only, logs nothing (page URLs may carry test data)."""

    timeout = REQUEST_TIMEOUT

    def log_message(self, format, *args) -> None:
        return


class StaticServer:
    """noVNC's files over HTTP, or HTTPS with ``cert_file``/``key_file``, on loopback.

    Runs in a thread until the cleanup registered on ``test``.  The TLS
    handshake of each request happens in its own thread
    (``do_handshake_on_connect=False``), so a stalled client cannot block
    the others.
    """

    def __init__(self, test, root: str = NOVNC_DIR, *, cert_file: str | None = None,
                 key_file: str | None = None) -> None:
        handler = functools.partial(_QuietHandler, directory=root)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if cert_file is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_file, key_file)
            self.httpd.socket = context.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False)
            self.scheme = "https"
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": POLL_INTERVAL},
            daemon=True)
        self._thread.start()
        test.addCleanup(self.stop)

    def url(self, path: str, **query: str) -> str:
        text = f"{self.scheme}://127.0.0.1:{self.port}/{path}"
        if query:
            text += "?" + urllib.parse.urlencode(query)
        return text

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(REQUEST_TIMEOUT)


# -- WebDriver ---------------------------------------------------------------------

class WebDriverError(Exception):
    """A WebDriver command failed: ``error`` is the W3C error code."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(error, message)
        self.error = error
        self.message = message

    def __str__(self) -> str:
        return f"WebDriver {self.error}: {self.message}"


def parse_response(status: int, body: bytes) -> object:
    """The ``value`` of a WebDriver response, or :class:`WebDriverError`.

    A W3C error (``{"value": {"error": ..., "message": ...}}``, any HTTP
    status) raises with its code; so does a body that is too long, not
    JSON, or not an object with a ``value``.
    """
    if len(body) > MAX_RESPONSE_BYTES:
        raise WebDriverError("invalid response",
                             f"{len(body)} bytes, more than {MAX_RESPONSE_BYTES}")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WebDriverError("invalid response", f"HTTP {status}, not JSON: {e}") from None
    if not isinstance(document, dict) or "value" not in document:
        raise WebDriverError("invalid response", f"HTTP {status}, no 'value' member")
    value = document["value"]
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        message = value.get("message")
        raise WebDriverError(value["error"], message if isinstance(message, str) else "")
    if status != 200:
        raise WebDriverError("invalid response", f"HTTP {status} without a W3C error")
    return value


class Browser:
    """One headless Chromium session through chromedriver; ended by a cleanup on ``test``.

    ``spki_pins`` are certificates' :func:`spki_pin` values whose TLS
    errors Chromium ignores (the way a test trusts exactly its own
    server certificate).  Dialogs (``prompt()``) stay open until the test
    answers them, and the browser console is recorded.
    """

    def __init__(self, test, *, spki_pins: tuple[str, ...] = ()) -> None:
        driver = require_tool("chromedriver")
        chromium = require_tool("chromium")
        home = os.path.abspath(test.mktemp())
        profile = os.path.join(home, "profile")
        os.makedirs(profile)
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
                   XDG_CACHE_HOME=os.path.join(home, ".cache"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = Proc([driver, f"--port={self.port}", "--log-level=SEVERE"],
                         name="chromedriver", env=env)
        self.session: str | None = None
        self.log: list[str] = []
        test.addCleanup(self.close)
        self._wait_ready()
        args = list(CHROMIUM_ARGS) + [f"--user-data-dir={profile}"]
        if spki_pins:
            args.append("--ignore-certificate-errors-spki-list=" + ",".join(spki_pins))
        capabilities = {
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }
        value = self._request("POST", "/session",
                              {"capabilities": {"alwaysMatch": capabilities}},
                              timeout=SESSION_TIMEOUT)
        if not isinstance(value, dict) or not isinstance(value.get("sessionId"), str):
            raise WebDriverError("invalid response", f"new session without an id: {value!r}")
        self.session = value["sessionId"]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + DRIVER_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromedriver exited: {self.proc.describe()}")
            try:
                status = self._request("GET", "/status", timeout=POLL_INTERVAL * 10)
                if isinstance(status, dict) and status.get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"chromedriver not ready within {DRIVER_START_TIMEOUT} s:"
                                   f" {self.proc.describe()}")
            time.sleep(POLL_INTERVAL)

    def _request(self, method: str, path: str, body: object = None,
                 timeout: float = COMMAND_TIMEOUT) -> object:
        if body is None and method == "POST":
            body = {}  # chromedriver wants a JSON object even for commands without parameters
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                return parse_response(reply.status, reply.read(MAX_RESPONSE_BYTES + 1))
        except urllib.error.HTTPError as e:
            with e:
                return parse_response(e.code, e.read(MAX_RESPONSE_BYTES + 1))

    def command(self, method: str, path: str, body: object = None) -> object:
        """A command of this session (``path`` after ``/session/ID``)."""
        return self._request(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        """Load ``url``; a ``prompt()`` the page opens while loading is not an error."""
        try:
            self.command("POST", "/url", {"url": url})
        except WebDriverError as e:
            if e.error != ALERT_OPEN:
                raise

    def execute(self, script: str, *args: object) -> object:
        """Run ``script`` (a function body) in the page and return its result."""
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def prompt_text(self) -> str | None:
        """The message of the open dialog, ``None`` when none is open."""
        try:
            text = self.command("GET", "/alert/text")
        except WebDriverError as e:
            if e.error == NO_ALERT:
                return None
            raise
        return text if isinstance(text, str) else ""

    def answer_prompt(self, text: str) -> None:
        """Type ``text`` into the open ``prompt()`` and press OK."""
        self.command("POST", "/alert/text", {"text": text})
        self.command("POST", "/alert/accept")

    def perform(self, *sources: dict) -> None:
        """Run WebDriver input sources (``{"type": "pointer", ...}``), then release them."""
        self.command("POST", "/actions", {"actions": list(sources)})
        self.command("DELETE", "/actions")

    def console(self) -> list[str]:
        """Everything the page logged so far (console and network errors), capped."""
        try:
            entries = self.command("POST", "/se/log", {"type": "browser"})
        except WebDriverError as e:
            if e.error == ALERT_OPEN:
                return self.log
            raise
        for entry in entries if isinstance(entries, list) else ():
            if len(self.log) < MAX_LOG_ENTRIES and isinstance(entry, dict):
                self.log.append(f"{entry.get('level')}: {entry.get('message')}")
        return self.log

    def close(self) -> None:
        """End the session (Chromium exits), then stop chromedriver."""
        if self.session is not None and self.proc.poll() is None:
            try:
                self._request("DELETE", f"/session/{self.session}", timeout=QUIT_TIMEOUT)
            except (OSError, WebDriverError):
                pass
            self.session = None
        self.proc.stop()


def wait_for(predicate, timeout: float):
    """Call ``predicate`` every :data:`POLL_INTERVAL` until it returns something true.

    Returns the last value (false when ``timeout`` passed first).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(POLL_INTERVAL)


# -- the canvas --------------------------------------------------------------------

class CanvasError(ValueError):
    """A canvas image that is not a PNG data URL this harness reads."""


#: What Pillow raises for a corrupt or truncated PNG (it has no single base class).
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error,
               zlib.error, Image.DecompressionBombError)


def decode_png_data_url(url: object) -> np.ndarray:
    """``canvas.toDataURL("image/png")`` as an (h, w, 4) uint8 RGBA array.

    Raises :class:`CanvasError` for anything else: another type or
    scheme, bad base64, a file that is not a PNG, or a side over
    :data:`MAX_CANVAS_SIDE` (checked before the pixels are decoded).
    """
    if not isinstance(url, str):
        raise CanvasError(f"expected a data URL string, got {type(url).__name__}")
    if len(url) > MAX_DATA_URL:
        raise CanvasError(f"data URL of {len(url)} characters (max {MAX_DATA_URL})")
    if not url.startswith(PNG_DATA_URL_PREFIX):
        raise CanvasError(f"not a PNG data URL: {url[:40]!r}")
    try:
        data = base64.b64decode(url[len(PNG_DATA_URL_PREFIX):], validate=True)
    except (binascii.Error, ValueError) as e:
        raise CanvasError(f"bad base64 in the data URL: {e}") from None
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
            width, height = im.size
            if not (0 < width <= MAX_CANVAS_SIDE and 0 < height <= MAX_CANVAS_SIDE):
                raise CanvasError(f"canvas of {width}x{height} pixels"
                                  f" (max {MAX_CANVAS_SIDE} per side)")
            rgba = np.asarray(im.convert("RGBA")).copy()
    except CanvasError:
        raise
    except _PIL_ERRORS as e:
        raise CanvasError(f"not a readable PNG: {type(e).__name__}: {e}") from None
    return rgba


# -- vncd with its log -------------------------------------------------------------

def _vncd_main(argv: list[str]) -> int:
    """Run the ``vncd`` command with a Twisted log observer writing to stderr."""
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)],
                                     redirectStandardIO=False)
    from vncd.cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(_vncd_main(sys.argv[1:]))
