"""Client messages after ServerInit: layout, limits, round trips, garbage."""

from __future__ import annotations

import struct

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vncd.pixels import DEFAULT_FORMAT, PixelFormat
from vncd.rfb import messages as m
from vncd.rfb.errors import RemoteProtocolError
from vncd.rfb.events import NEED_DATA
from vncd.rfb.limits import Limits

LIMITS = Limits()

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
pixel_formats = st.sampled_from([
    DEFAULT_FORMAT,
    PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0),
    PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6),
    PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0),
])
client_messages = st.one_of(
    pixel_formats.map(m.SetPixelFormat),
    st.lists(st.integers(-(1 << 31), (1 << 31) - 1), max_size=40).map(m.SetEncodings),
    st.builds(m.FramebufferUpdateRequest, st.booleans(), u16, u16, u16, u16),
    st.builds(m.KeyEvent, st.booleans(), u32),
    st.builds(m.PointerEvent, st.integers(0, 255), u16, u16),
    st.binary(max_size=300).map(m.ClientCutText),
    st.builds(m.QEMUExtendedKeyEvent, st.booleans(), u32, u32),
    st.builds(m.EnableContinuousUpdates, st.booleans(), u16, u16, u16, u16),
    st.builds(m.ClientFence, u32, st.binary(max_size=64)),
    st.builds(m.SetDesktopSize, u16, u16, st.lists(
        st.builds(m.Screen, u32, u16, u16, u16, u16, u32), max_size=4)),
)


def parse_all(data: bytes, limits: Limits = LIMITS) -> list:
    buf, out = bytearray(data), []
    while True:
        parsed = m.parse_client_message(buf, limits)
        if parsed is NEED_DATA:
            return out
        message, size = parsed
        del buf[:size]
        out.append(message)


class LayoutTests(SynchronousTestCase):

    def test_sizes(self):
        """Fixed messages have rfbproto's sizes."""
        self.assertEqual(len(m.SetPixelFormat(DEFAULT_FORMAT).encode()), 20)
        self.assertEqual(len(m.SetEncodings((0, 16, -223)).encode()), 4 + 12)
        self.assertEqual(len(m.FramebufferUpdateRequest(True, 0, 0, 1, 1).encode()), 10)
        self.assertEqual(len(m.KeyEvent(True, 0xFF0D).encode()), 8)
        self.assertEqual(len(m.PointerEvent(1, 2, 3).encode()), 6)
        self.assertEqual(len(m.ClientCutText(b"abc").encode()), 11)
        self.assertEqual(len(m.QEMUExtendedKeyEvent(True, 97, 30).encode()), 12)
        self.assertEqual(len(m.EnableContinuousUpdates(True, 0, 0, 9, 9).encode()), 10)
        self.assertEqual(len(m.ClientFence(1, b"xy").encode()), 11)
        self.assertEqual(len(m.SetDesktopSize(8, 8, [m.Screen(0, 0, 0, 8, 8, 0)]).encode()), 24)

    def test_known_bytes(self):
        """A KeyEvent and a QEMU extended key event look as rfbproto draws them."""
        self.assertEqual(m.KeyEvent(True, 0xFF0D).encode(), b"\x04\x01\x00\x00\x00\x00\xff\x0d")
        self.assertEqual(m.QEMUExtendedKeyEvent(False, 0x61, 0x1E).encode(),
                         b"\xff\x00\x00\x00" + struct.pack(">II", 0x61, 0x1E))

    @given(st.lists(client_messages, max_size=6))
    def test_round_trip(self, messages):
        """Parsing the encoding of any messages gives them back."""
        self.assertEqual(parse_all(b"".join(x.encode() for x in messages)), messages)

    @given(st.lists(client_messages, min_size=1, max_size=4), st.data())
    def test_chunking(self, messages, data):
        """A message split at any point needs more data, never misparses."""
        wire = b"".join(x.encode() for x in messages)
        cut = data.draw(st.integers(0, len(wire)))
        first = parse_all(wire[:cut])
        self.assertEqual(first, messages[:len(first)])

    def test_constructors_validate(self):
        """Out-of-range fields are refused when a message is built."""
        self.assertRaises(ValueError, m.KeyEvent, True, -1)
        self.assertRaises(ValueError, m.PointerEvent, 256, 0, 0)
        self.assertRaises(ValueError, m.FramebufferUpdateRequest, True, 0, 0, 70000, 1)
        self.assertRaises(ValueError, m.ClientFence, 0, b"x" * 65)
        self.assertRaises(ValueError, m.SetEncodings, [1 << 31])


class LimitTests(SynchronousTestCase):

    def test_cut_text_limit(self):
        """A ClientCutText over the limit fails on its header, before any payload."""
        header = b"\x06\x00\x00\x00" + struct.pack(">I", LIMITS.max_cut_text + 1)
        with self.assertRaises(RemoteProtocolError) as cm:
            m.parse_client_message(bytearray(header), LIMITS)
        self.assertIn(str(LIMITS.max_cut_text), cm.exception.reason)
        exactly = b"\x06\x00\x00\x00" + struct.pack(">I", 5)
        self.assertIs(m.parse_client_message(bytearray(exactly), Limits(max_cut_text=5)),
                      NEED_DATA)

    def test_extended_clipboard_not_negotiated(self):
        """A negative ClientCutText length (extended clipboard) is refused."""
        with self.assertRaises(RemoteProtocolError):
            m.parse_client_message(bytearray(b"\x06\x00\x00\x00\xff\xff\xff\xfc"), LIMITS)

    def test_encodings_limit(self):
        """SetEncodings listing more than the limit fails on its 4-byte header."""
        limits = Limits(max_encodings=3)
        self.assertEqual(parse_all(m.SetEncodings((1, 2, 3)).encode(), limits),
                         [m.SetEncodings((1, 2, 3))])
        with self.assertRaises(RemoteProtocolError):
            m.parse_client_message(bytearray(b"\x02\x00\x00\x04"), limits)

    def test_fence_limit(self):
        """A fence payload over 64 bytes is refused from its length byte."""
        with self.assertRaises(RemoteProtocolError):
            m.parse_client_message(bytearray(b"\xf8\x00\x00\x00\x00\x00\x00\x00\x41"), LIMITS)

    def test_bad_pixel_format(self):
        """SetPixelFormat with 24 bpp or an impossible channel is refused with the reason."""
        bad = PixelFormat(24, 24, False, True, 255, 255, 255, 16, 8, 0)
        with self.assertRaises(RemoteProtocolError) as cm:
            parse_all(m.SetPixelFormat(bad).encode())
        self.assertIn("24", cm.exception.reason)

    def test_unknown_and_unnegotiated_types(self):
        """Unknown types, xvp, QEMU audio and unknown QEMU sub-messages are refused."""
        for data in (b"\x07", b"\xfa\x00\x01\x02", b"\xff\x01\x00\x00", b"\xff\x07"):
            with self.assertRaises(RemoteProtocolError):
                m.parse_client_message(bytearray(data), LIMITS)


class GarbageTests(SynchronousTestCase):

    @given(st.binary(max_size=400))
    def test_garbage(self, data):
        """Arbitrary bytes parse into messages, need more data, or raise RemoteProtocolError."""
        limits = Limits(max_cut_text=100, max_encodings=10)
        buf = bytearray(data)
        try:
            while True:
                parsed = m.parse_client_message(buf, limits)
                if parsed is NEED_DATA:
                    break
                del buf[:parsed[1]]
        except RemoteProtocolError:
            pass


class ServerMessageTests(SynchronousTestCase):

    def test_round_trips(self):
        """The server messages the client parses come back from their encoding."""
        cases = [
            (m.Bell(), m.parse_bell),
            (m.SetColourMapEntries(3, [(1, 2, 3), (65535, 0, 7)]), m.parse_colour_map_entries),
            (m.ServerCutText(b"hello"), m.parse_server_cut_text),
            (m.EndOfContinuousUpdates(), m.parse_end_of_continuous_updates),
            (m.ServerFence(0x80000001, b"abc"), m.parse_server_fence),
        ]
        for message, parser in cases:
            wire = message.encode()
            self.assertEqual(parser(bytearray(wire), LIMITS), (message, len(wire)))
            if len(wire) > 1:
                self.assertIs(parser(bytearray(wire[:-1]), LIMITS), NEED_DATA)

    def test_server_cut_text_limit(self):
        """The client refuses a ServerCutText over its limit from the header alone."""
        header = b"\x03\x00\x00\x00" + struct.pack(">I", 11)
        with self.assertRaises(RemoteProtocolError):
            m.parse_server_cut_text(bytearray(header), Limits(max_server_cut_text=10))

    def test_server_init(self):
        """ServerInit's head parses back to size, pixel format and name length."""
        wire = m.encode_server_init(800, 600, DEFAULT_FORMAT, "desk", 1024)
        self.assertEqual(m.parse_server_init_header(wire),
                         (800, 600, DEFAULT_FORMAT.to_bytes(), 4))
        self.assertIs(m.parse_server_init_header(wire[:23]), NEED_DATA)
