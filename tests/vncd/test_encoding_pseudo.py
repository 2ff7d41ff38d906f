"""Tests for pseudo-encoding rectangles and server messages (byte layouts)."""

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from vncd.encoding import messages, pseudo
from vncd.pixels import DEFAULT_FORMAT, PixelFormat


class PseudoLayoutTests(SynchronousTestCase):
    def test_desktop_size(self):
        """DesktopSize: position ignored (0), the new size, encoding -223, no data."""
        self.assertEqual(pseudo.desktop_size(800, 600),
                         bytes.fromhex("0000 0000 0320 0258 ffffff21"))

    def test_extended_desktop_size(self):
        """ExtendedDesktopSize: reason and status as x and y, then screens of 16 bytes."""
        out = pseudo.extended_desktop_size(1, 3, 1024, 768, [(7, 0, 0, 1024, 768, 0x80000001)])
        self.assertEqual(out, bytes.fromhex("0001 0003 0400 0300 fffffecc"
                                            "01 000000" "00000007 0000 0000 0400 0300 80000001"))

    def test_too_many_screens(self):
        """A layout has at most 255 screens."""
        self.assertRaises(ValueError, pseudo.extended_desktop_size, 0, 0, 10, 10,
                          [(i, 0, 0, 1, 1, 0) for i in range(256)])

    def test_desktop_name(self):
        """DesktopName: an all-zero rectangle, then a length and UTF-8 text."""
        self.assertEqual(pseudo.desktop_name("Ünï"),
                         bytes.fromhex("0000 0000 0000 0000 fffffecd 00000005") + "Ünï".encode())

    def test_cursor(self):
        """Cursor: hotspot as position, pixels in the client format, then a 1-bit mask."""
        rgba = np.zeros((2, 9, 4), dtype=np.uint8)
        rgba[0, 0] = (255, 0, 0, 255)
        rgba[1, 8] = (0, 0, 255, 200)
        rgba[1, 1] = (0, 255, 0, 10)
        pf = PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6)
        out = pseudo.cursor(rgba, 3, 1, pf)
        pixels = bytes([0x07] + [0] * 8 + [0, 0x38] + [0] * 6 + [0xC0])
        mask = bytes.fromhex("8000 0080")
        self.assertEqual(out, bytes.fromhex("0003 0001 0009 0002 ffffff11") + pixels + mask)

    def test_empty_cursor(self):
        """A 0x0 cursor has no data (it hides the client-side cursor)."""
        out = pseudo.cursor(np.zeros((0, 0, 4), np.uint8), 0, 0, DEFAULT_FORMAT)
        self.assertEqual(out, bytes.fromhex("0000 0000 0000 0000 ffffff11"))

    def test_last_rect(self):
        """LastRect: encoding -224 and nothing else."""
        self.assertEqual(pseudo.last_rect(), bytes.fromhex("0000 0000 0000 0000 ffffff20"))

    def test_qemu_extended_key_event(self):
        """The QEMU extended key event announcement is an empty -258 rectangle."""
        self.assertEqual(pseudo.qemu_extended_key_event(),
                         bytes.fromhex("0000 0000 0000 0000 fffffefe"))

    def test_led_state(self):
        """QEMU LED state: -261 and one byte of Scroll/Num/Caps bits."""
        self.assertEqual(pseudo.led_state(0b101), bytes.fromhex("0000 0000 0000 0000 fffffefb 05"))


class MessageLayoutTests(SynchronousTestCase):
    def test_framebuffer_update(self):
        """FramebufferUpdate header: type 0, padding, rectangle count."""
        self.assertEqual(messages.framebuffer_update(3), bytes.fromhex("00 00 0003"))

    def test_set_colour_map_entries(self):
        """SetColourMapEntries: type 1, padding, first, count, 16-bit RGB triples."""
        self.assertEqual(messages.set_colour_map_entries(2, [(1, 2, 3), (0xFFFF, 0, 0x8000)]),
                         bytes.fromhex("01 00 0002 0002 0001 0002 0003 ffff 0000 8000"))

    def test_bell(self):
        """Bell is the single byte 2."""
        self.assertEqual(messages.bell(), b"\x02")

    def test_server_cut_text(self):
        """ServerCutText: type 3, 3 padding bytes, length, Latin-1 text."""
        self.assertEqual(messages.server_cut_text(b"hi\xe9"),
                         bytes.fromhex("03 000000 00000003 6869e9"))

    def test_end_of_continuous_updates(self):
        """EndOfContinuousUpdates is the single byte 150."""
        self.assertEqual(messages.end_of_continuous_updates(), b"\x96")

    def test_server_fence(self):
        """ServerFence: type 248, padding, flags, payload length and payload."""
        self.assertEqual(messages.server_fence(messages.FENCE_REQUEST | 1, b"ab"),
                         bytes.fromhex("f8 000000 80000001 02 6162"))

    def test_fence_limits(self):
        """Fence payloads are at most 64 bytes and only known flags are allowed."""
        self.assertRaises(ValueError, messages.server_fence, 0, b"x" * 65)
        self.assertRaises(ValueError, messages.server_fence, 1 << 8, b"")
