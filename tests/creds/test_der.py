"""creds.der: the one DER reader (strict and libtasn1 modes) and PKCS#7 unpadding."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from creds import der


class ElementTests(SynchronousTestCase):

    def test_short_and_long_lengths(self) -> None:
        self.assertEqual(der.element(bytes.fromhex("0203010001")), (0x02, 2, 5))
        body = bytes(200)
        self.assertEqual(der.element(b"\x04\x81\xc8" + body), (0x04, 3, 203))
        self.assertEqual(der.element(b"\x30\x82\x00\x02\x05\x00"), (0x30, 4, 6))

    def test_high_tag_number(self) -> None:
        self.assertEqual(der.element(b"\x1f\x81\x00\x01\xaa"), (0x1F, 4, 5))
        self.assertRaises(der.DERError, der.element, b"\x1f" + b"\xff" * 5 + b"\x01\x00")

    def test_refusals(self) -> None:
        for bad in (b"", b"\x30", b"\x30\x80\x00\x00", b"\x30\x05\x00",
                    b"\x30\x84\x80\x00\x00\x00", b"\x30\x82\x01"):
            self.assertRaises(der.DERError, der.element, bad)

    def test_libtasn1_tail(self) -> None:
        """At the very end of the input libtasn1 reads what is there; strict DER refuses."""
        self.assertEqual(der.element(b"\x30\x82", libtasn1=True), (0x30, 2, 2))
        self.assertRaises(der.DERError, der.element, b"\x30\x82")

    def test_end_bound(self) -> None:
        self.assertRaises(der.DERError, der.element, b"\x04\x02ab", 0, 3)

    def test_children(self) -> None:
        data = bytes.fromhex("3006020101020102")
        self.assertEqual(der.children(data, 2, 8, tag=der.INTEGER),
                         [(2, 2, 4, 5), (5, 2, 7, 8)])
        self.assertRaises(der.DERError, der.children, data, 2, 8, tag=der.SEQUENCE)
        self.assertRaises(der.DERError, der.children, data, 2, 7)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=64), st.booleans())
    def test_garbage(self, data: bytes, libtasn1: bool) -> None:
        """Any bytes: a result inside the input, or DERError, nothing else."""
        try:
            tag, start, stop = der.element(data, libtasn1=libtasn1)
        except der.DERError:
            return
        self.assertTrue(0 < start <= stop <= len(data))
        self.assertEqual(tag, data[0])


class PaddingTests(SynchronousTestCase):

    def test_unpad(self) -> None:
        self.assertEqual(der.unpad_pkcs7(b"abc" + b"\x0d" * 13), b"abc")
        self.assertEqual(der.unpad_pkcs7(b"\x10" * 16), b"")
        for bad in (b"", b"abc\x00", b"abc\x11" + bytes(12), b"ab\x02\x03", b"\x05"):
            e = self.assertRaises(der.PaddingError, der.unpad_pkcs7, bad)
            self.assertEqual(e.pad, bad[-1] if bad else 0)
