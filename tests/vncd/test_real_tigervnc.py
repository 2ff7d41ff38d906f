"""TigerVNC vncviewer under Xvfb: X509None, TLSNone, TLSVnc, VncAuth, each encoding.

X509None runs at TLS 1.3 (GnuTLS's default) and held to TLS 1.2: TigerVNC
1.12 can hang at 1.3 when a server sends session tickets, as vncd once
did.  The viewer runs windowed near the top-left of an Xvfb screen larger
than the desktop (found with :func:`realclients.locate`); the test reads
Xvfb's framebuffer back from its ``-fbdir`` XWD file and waits (bounded)
until the window shows exactly the server's picture -- which proves the
viewer got through the handshake, decoded every rectangle and drew it.
The viewer's log confirms the security type it chose.  Encodings: with
automatic selection off, Tight (JPEG off), ZRLE, Hextile and Raw are each
put first in turn; a relay reads which encoding the server really sent
(:data:`CHOSEN`), and every one must give the same pixels.  The same tests
run against QEMU 7.2 (reference: a gvnccapture of a plain display of that
QEMU) and against vncd (reference: the PNG its ``-screen image`` shows).
"""

from __future__ import annotations

import os
import struct

import numpy as np
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests import certgen
from tests.tools import require_tool
from tests.vncd import realclients
from tests.vncd.realclients import TapError, XwdError, first_encoding, parse_xwd

PASSWORD = "tiger123"

#: The encoding each server uses when TigerVNC puts the given one first
#: (TigerVNC lists all its encodings every time).  Both take the client's
#: first choice.
CHOSEN = {
    "qemu": {"Tight": "Tight", "ZRLE": "ZRLE", "Hextile": "Hextile", "Raw": "Raw"},
    "vncd": {"Tight": "Tight", "ZRLE": "ZRLE", "Hextile": "Hextile", "Raw": "Raw"},
}

#: Seconds a viewer gets to show the whole picture.  It takes about a second
#: on loopback; the rest is headroom for a loaded 2-core machine.
VIEW_TIMEOUT = 20.0

#: Seconds a viewer that must fail gets to exit.
FAIL_TIMEOUT = 20.0


class TigerVncMixin(realclients.PictureServerMixin):
    """The tests; subclasses say which server runs them."""

    server = ""

    def setUp(self):
        require_tool("vncviewer")
        if self.server == "vncd":
            realclients.require_vncd()
        else:
            require_tool("gvnccapture")
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.ca = certgen.ca("tiger test CA")
        server = certgen.server(self.ca, "localhost", dns=["localhost"], ips=["127.0.0.1"])
        self.creds_dir = certgen.write_dir(os.path.join(self.dir, "creds"),
                                           ca=[self.ca], server=server)
        self.secret = os.path.join(self.dir, "password")
        fd = os.open(self.secret, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(PASSWORD)
        self.picture_path = realclients.write_png(
            os.path.join(self.dir, "screen.png"), realclients.make_picture())
        self.xvfb = realclients.Xvfb(self, 800, 600)

    def serve(self, vnc_options: str, objects: tuple[str, ...] = ()) -> int:
        """Start the server with ``-vnc 127.0.0.1:N,<options>``; returns the port."""
        return 5900 + self.start_display(vnc_options, objects)

    def password_file(self, password: str) -> str:
        path = os.path.join(self.dir, "passwd")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(realclients.vnc_password_file_bytes(password))
        return path

    def assertShows(self, port: int, security_types: str, chosen: str, **kw) -> None:
        """The viewer comes up showing exactly the server's picture, via ``chosen``."""
        expected = self.expected()
        height, width = expected.shape[:2]
        viewer = realclients.start_vncviewer(self, realclients.vncviewer_command(
            self.xvfb, port, security_types=security_types, **kw))

        def shown():
            if realclients.locate(self.xvfb.screenshot(), expected) is not None:
                return "shown"
            return "exited" if viewer.poll() is not None else None

        state = realclients.wait_until(shown, VIEW_TIMEOUT, 0.2)
        if state != "shown":
            corner = self.xvfb.screenshot()[20:20 + height, 1:1 + width]
            self.fail(f"vncviewer ({security_types}) never showed the picture"
                      f" (at the usual place: {realclients.pixel_mismatch(corner, expected)});"
                      f" {viewer.describe()}")
        self.assertIn(f"Choosing security type {chosen}", viewer.output())

    def assertFails(self, port: int, security_types: str, message: str, **kw) -> None:
        """The viewer gives up with ``message`` in its log, never showing the picture."""
        expected = self.expected()
        viewer = realclients.start_vncviewer(self, realclients.vncviewer_command(
            self.xvfb, port, security_types=security_types, **kw))
        status = viewer.wait(FAIL_TIMEOUT)
        self.assertIsNotNone(status, f"vncviewer did not give up: {viewer.describe()}")
        self.assertIn(message, viewer.output())
        self.assertIsNone(realclients.locate(self.xvfb.screenshot(), expected))

    def anon(self) -> tuple[str, ...]:
        return ("-object", "tls-creds-anon,id=tls0,endpoint=server")

    def test_x509_none(self):
        """X509None (TLS 1.3): the viewer checks the server against -X509CA (verify-peer=off)."""
        port = self.serve("tls-creds=tls0", (
            "-object", f"tls-creds-x509,id=tls0,endpoint=server,dir={self.creds_dir},"
                       "verify-peer=off"))
        self.assertShows(port, "X509None", "X509None (260)",
                         x509_ca=os.path.join(self.creds_dir, "ca-cert.pem"))

    def test_x509_none_tls12(self):
        """X509None held to TLS 1.2 by the viewer's GnuTLS priority string."""
        port = self.serve("tls-creds=tls0", (
            "-object", f"tls-creds-x509,id=tls0,endpoint=server,dir={self.creds_dir},"
                       "verify-peer=off"))
        self.assertShows(port, "X509None", "X509None (260)",
                         x509_ca=os.path.join(self.creds_dir, "ca-cert.pem"),
                         gnutls_priority="NORMAL:-VERS-TLS1.3")

    def test_tls_none(self):
        """TLSNone: anonymous TLS between GnuTLS and the server."""
        self.assertShows(self.serve("tls-creds=tls0", self.anon()),
                         "TLSNone", "TLSNone (257)")

    def test_tls_vnc(self):
        """TLSVnc: anonymous TLS, then the password from -PasswordFile."""
        port = self.serve("tls-creds=tls0,password-secret=pw0",
                          self.anon() + ("-object", f"secret,id=pw0,file={self.secret}"))
        self.assertShows(port, "TLSVnc", "TLSVnc (258)",
                         password_file=self.password_file(PASSWORD))

    def test_vnc_auth(self):
        """VncAuth with the password in vncpasswd's obfuscated file format."""
        port = self.serve("password-secret=pw0", ("-object", f"secret,id=pw0,file={self.secret}"))
        self.assertShows(port, "VncAuth", "VncAuth(2)",
                         password_file=self.password_file(PASSWORD))

    def test_vnc_auth_wrong_password(self):
        """A wrong password file gets the server's refusal and no picture."""
        port = self.serve("password-secret=pw0", ("-object", f"secret,id=pw0,file={self.secret}"))
        self.assertFails(port, "VncAuth", "Authentication failed",
                         password_file=self.password_file("not-it"))

    def assertEncoding(self, preferred: str) -> None:
        """With ``preferred`` first the picture is exact, sent in :data:`CHOSEN`'s encoding.

        A relay in front of the server reads the encoding of the first
        rectangle: TigerVNC always lists all its encodings, so the server's
        own preference decides.
        """
        tap = realclients.RfbTap(self, self.serve(""))
        self.assertShows(tap.port, "None", "None(1)", encoding=preferred)
        used = realclients.ENCODING_NAMES.get(tap.encodings()[0], tap.encodings()[0])
        self.assertEqual(used, CHOSEN[self.server][preferred])

    def test_encoding_tight(self):
        """Tight (no JPEG) put first gives the exact picture."""
        self.assertEncoding("Tight")

    def test_encoding_zrle(self):
        """ZRLE put first gives the exact picture."""
        self.assertEncoding("ZRLE")

    def test_encoding_hextile_first(self):
        """Hextile put first gives the exact picture."""
        self.assertEncoding("Hextile")

    def test_encoding_raw_first(self):
        """Raw put first gives the exact picture."""
        self.assertEncoding("Raw")


class TigerVncQemuTests(TigerVncMixin, SynchronousTestCase):
    """The harness against QEMU 7.2."""

    server = "qemu"


class TigerVncVncdTests(TigerVncMixin, SynchronousTestCase):
    """TigerVNC vncviewer against vncd."""

    server = "vncd"


def _xwd(rgb: np.ndarray, byte_order: int = 0, name: bytes = b"Xvfb main window\0",
         ncolors: int = 0) -> bytes:
    """An XWD file of ``rgb`` laid out the way Xvfb writes one."""
    height, width = rgb.shape[:2]
    pixels = ((rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8)
              | rgb[..., 2].astype(np.uint32))
    data = pixels.astype("<u4" if byte_order == 0 else ">u4").tobytes()
    header_size = 100 + len(name)
    header = struct.pack(">25I", header_size, 7, 2, 24, width, height, 0, byte_order,
                         32, byte_order, 32, 32, width * 4, 4, 0xFF0000, 0xFF00, 0xFF,
                         8, 256, ncolors, width, height, 0, 0, 0)
    return header + name + bytes(12 * ncolors) + data


class XwdTests(SynchronousTestCase):
    """Reading Xvfb's framebuffer file."""

    def test_round_trip(self):
        """A picture written as XWD, either byte order, reads back unchanged."""
        picture = realclients.make_picture(37, 23)
        self.assertTrue(np.array_equal(parse_xwd(_xwd(picture)), picture))
        self.assertTrue(np.array_equal(parse_xwd(_xwd(picture, 1, ncolors=3)), picture))

    def test_truncated(self):
        """A file shorter than its header says is an XwdError naming the sizes."""
        data = _xwd(realclients.make_picture(8, 8))
        error = self.assertRaises(XwdError, parse_xwd, data[:-1])
        self.assertIn("needs", str(error))

    def test_huge_dimensions(self):
        """A header claiming a giant image is refused before any allocation."""
        data = bytearray(_xwd(realclients.make_picture(4, 4)))
        data[16:20] = struct.pack(">I", 1 << 30)
        self.assertRaises(XwdError, parse_xwd, bytes(data))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=400))
    def test_garbage(self, data):
        """Arbitrary bytes give an RGB array or an XwdError, nothing else."""
        try:
            rgb = parse_xwd(data)
        except XwdError:
            return
        self.assertEqual(rgb.dtype, np.uint8)

    @settings(max_examples=200, deadline=None)
    @given(st.integers(0, len(_xwd(np.zeros((3, 3, 3), np.uint8))) - 1), st.integers(0, 255))
    def test_corrupted_byte(self, index, value):
        """One corrupted byte in a real header gives an array or an XwdError."""
        data = bytearray(_xwd(realclients.make_picture(3, 3)))
        data[index] = value
        try:
            parse_xwd(bytes(data))
        except XwdError:
            pass


def _session(*messages: bytes, types: bytes = b"\x01\x01") -> bytes:
    """Server bytes of a None session: greeting, types, result, ServerInit, ``messages``."""
    init = (struct.pack(">HH", 4, 2) + bytes([32, 24, 0, 1]) + bytes(12)
            + struct.pack(">I", 2) + b"hi")
    return b"RFB 003.008\n" + types + b"\0\0\0\0" + init + b"".join(messages)


def _rect(encoding: int, width: int = 4, height: int = 2) -> bytes:
    return struct.pack(">HHHHi", 0, 0, width, height, encoding)


class TapParserTests(SynchronousTestCase):
    """Reading the first rectangle's encoding from recorded server bytes."""

    def test_after_pseudo_and_clipboard(self):
        """Extended Clipboard, DesktopSize, ExtendedDesktopSize and Cursor are skipped."""
        clipboard = b"\x03\0\0\0" + struct.pack(">i", -8) + bytes(8)
        update = (b"\x00\x00" + struct.pack(">H", 4) + _rect(-223)
                  + _rect(-308) + b"\x01\0\0\0" + bytes(16)
                  + _rect(-239, 2, 2) + bytes(2 * 2 * 4 + 2) + _rect(16))
        self.assertEqual(first_encoding(_session(clipboard, update)), 16)

    def test_incomplete(self):
        """Bytes that stop before the first real rectangle give None."""
        data = _session(b"\x00\x00\x00\x01" + _rect(5))
        self.assertEqual(first_encoding(data), 5)
        for cut in range(len(data)):
            self.assertIsNone(first_encoding(data[:cut]))

    def test_other_security(self):
        """A session with security other than None is refused, not misread."""
        self.assertRaises(TapError, first_encoding, _session(types=b"\x01\x02"))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=300))
    def test_garbage(self, tail):
        """Any bytes after a valid ServerInit give an encoding, None or a TapError."""
        try:
            result = first_encoding(_session(tail))
        except TapError:
            return
        self.assertTrue(result is None or isinstance(result, int))
