"""QMP's JSON stream: messages cut and parsed as QEMU 7.2 does, within limits."""

from __future__ import annotations

import contextlib
import json
import signal

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from vncd.monitor.jsonstream import JSONStream, dumps
from vncd.monitor.limits import MonitorLimits


def feed(data: bytes, limits: MonitorLimits | None = None) -> list:
    stream = JSONStream(limits)
    return [m.error if m.error is not None else m.value for m in stream.feed(data)]


def errors(*messages: str) -> list[str]:
    return [f"JSON parse error, {m}" for m in messages]


@contextlib.contextmanager
def hang_guard(seconds: int):
    """Fail instead of hanging when the code inside takes far longer than it
    should (a guard against quadratic behaviour, not a speed measurement)."""
    def expired(signum, frame):
        raise AssertionError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class ParseTests(TestCase):

    def test_values(self):
        """Objects, arrays, strings in both quotes, numbers and keywords parse."""
        self.assertEqual(feed(b'{"a": [1, -2.5e1, true, false, null], \'b\': \'x\\\'y\'}'),
                         [{"a": [1, -25.0, True, False, None], "b": "x'y"}])

    def test_back_to_back(self):
        """Messages need no separator; each completes at its closing brace."""
        self.assertEqual(feed(b'{"a":1}{"b":2}\n[3]'), [{"a": 1}, {"b": 2}, [3]])

    def test_split_anywhere(self):
        """A message split into single bytes gives the same result."""
        data = b'{"execute": "query-version", "id": "\\u00e9\\ud83d\\ude00"}'
        stream = JSONStream()
        out = []
        for byte in data:
            out += stream.feed(bytes([byte]))
        self.assertEqual([m.value for m in out], [json.loads(data)])

    def test_numbers(self):
        """Integers stay integers within the 64-bit ranges, as in QEMU."""
        self.assertEqual(feed(b'[18446744073709551615, -9223372036854775808, 1.5e3, -0]'),
                         [[18446744073709551615, -9223372036854775808, 1500.0, 0]])
        self.assertEqual(feed(b'[-9223372036854775809]'), [[-9.223372036854776e18]])

    def test_qemu_errors(self):
        """Malformed input gets QEMU 7.2's descriptions (recorded from QEMU)."""
        cases = {
            b'garbage {"a":1}': [*errors("invalid keyword 'garbage'"), {"a": 1}],
            b'@@@ {"a":1}': [*errors("stray '@'"), {"a": 1}],
            b'}': errors("expecting value"),
            b']]': errors("expecting value", "expecting value"),
            b'{"a":3,}': errors("expecting value"),
            b'{"id":"tab\tx"}': errors("stray '\"tab\t'", "expecting value"),
            b'{"id":true,"id":false}': errors("duplicate key"),
            b'{"a":1 "b":2}': errors("expected separator in dict"),
            b'{"id":01}': errors("stray '01'", "expecting value"),
            b'{"id":-}': errors("stray '-}'"),
            b'{"id":1.}': errors("stray '1.}'"),
            b'{"id":TRUE}': errors("stray 'T'", "expecting value"),
            b'{"id":"\\x"}': errors("invalid escape sequence in string"),
            b'{1:2}': errors("key is not a string in object"),
            b'{"a" 1}': errors("missing : in object pair"),
            b'[1 2]': errors("expected separator in list"),
            b'{"id":[1,]}': errors("expecting value"),
            b'{"id":"\\uDC00"}': errors("\\uDC00 is not a valid Unicode character"),
            b'{"id":"\\ud800"}': errors("\\uD800 is not a valid Unicode character"),
            b'{"id":"a\xffb"}': errors("stray '\"a\ufffd'", "expecting value"),
        }
        for data, expected in cases.items():
            self.assertEqual(feed(data), expected, data)

    def test_scalars_wait_for_a_delimiter(self):
        """A number or keyword at top level ends only when something follows it."""
        stream = JSONStream()
        self.assertEqual(stream.feed(b"12"), [])
        self.assertEqual([m.value for m in stream.feed(b"3 ")], [123])

    def test_infinite_number(self):
        """A number beyond a double's range is an error (QEMU answers with 'inf')."""
        self.assertEqual(feed(b'{"id":1e400}'), errors("number out of range"))

    def test_long_numbers_are_linear(self):
        """Numbers up to the size limit, whole or in pieces, are lexed in linear
        time (the number lexer once re-checked the whole text at every digit:
        40,000 digits held the reactor for 54 s, a 1 MiB one for hours)."""
        digits = b"7" * 400_000
        too_big = errors("number out of range")
        cases = [(b"[" + digits + b"]", too_big), (b"[-" + digits + b"]", too_big),
                 (b"[1." + digits + b"]", [[1.7777777777777777]]),
                 (b"[1e" + digits + b"]", too_big), (b"[1.5e+" + digits + b"]", too_big)]
        with hang_guard(60):
            for data, expected in cases:
                self.assertEqual(feed(data + b"[1]"), expected + [[1]])
                stream = JSONStream()
                out = []
                for i in range(0, len(data), 4096):
                    out += stream.feed(data[i:i + 4096])
                self.assertEqual([m.error or m.value for m in out], expected)
            self.assertEqual(feed(b"[0" + digits + b"]"), errors("stray '07'", "expecting value"))

    def test_number_grammar(self):
        """Each malformed number is reported as QEMU reports it; valid ones parse."""
        self.assertEqual(feed(b"[0, -0, 10, 1.5, -2.25e-2, 3E+2, 4e1]"),
                         [[0, 0, 10, 1.5, -0.0225, 300.0, 40.0]])
        for bad, shown in ((b"[01]", "01"), (b"[1.]", "1.]"), (b"[-]", "-]"),
                           (b"[1e]", "1e]"), (b"[1e+]", "1e+]"), (b"[--1]", "--"),
                           (b"[1.2.3]", "1.2."), (b"[.5]", "."), (b"[1e5e]", "1e5e")):
            self.assertEqual(feed(bad)[0], errors(f"stray '{shown}'")[0], bad)


class LimitTests(TestCase):

    def test_size(self):
        """An oversized message is reported once and its remainder skipped."""
        limits = MonitorLimits(max_message_bytes=100)
        data = b'{"a": "' + b"x" * 1000 + b'", "b": [1, 2]}{"ok": 1}'
        self.assertEqual(feed(data, limits), ["JSON token size limit exceeded", {"ok": 1}])

    def test_string_up_to_the_limit(self):
        """A string whose message fits the byte limit is accepted, one just over is not."""
        limits = MonitorLimits(max_message_bytes=100)
        fits = b'{"a": "' + b"x" * 90 + b'"}'
        over = b'{"a": "' + b"x" * 95 + b'"}'
        self.assertEqual(feed(fits + over + b"[1]", limits),
                         [{"a": "x" * 90}, "JSON token size limit exceeded", [1]])

    def test_size_across_tokens(self):
        """Many small tokens add up to the size limit."""
        limits = MonitorLimits(max_message_bytes=100)
        data = b"[" + b"1," * 200 + b"1]" + b'{"ok": 1}'
        self.assertEqual(feed(data, limits), ["JSON token size limit exceeded", {"ok": 1}])

    def test_tokens(self):
        """The token count is bounded."""
        limits = MonitorLimits(max_message_tokens=50)
        data = b"[" + b"1," * 100 + b"1]" + b"[2]"
        self.assertEqual(feed(data, limits), ["JSON token count limit exceeded", [2]])

    def test_nesting(self):
        """Nesting deeper than the limit is refused before the parser recurses."""
        limits = MonitorLimits(max_nesting=8)
        data = b"[" * 1000 + b"]" * 1000 + b"[1]"
        self.assertEqual(feed(data, limits), ["JSON nesting depth limit exceeded", [1]])

    def test_endless_string_holds_no_memory(self):
        """A string that never ends is dropped at the limit, not kept."""
        stream = JSONStream(MonitorLimits(max_message_bytes=1000))
        stream.feed(b'{"a": "')
        for _ in range(100):
            stream.feed(b"y" * 1000)
        self.assertLess(len(stream._text) + len(stream._string), 2000)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
    def test_garbage(self, data, chunk):
        """Arbitrary bytes, in any chunking, give messages or errors and nothing else;
        the result does not depend on how the bytes were split."""
        limits = MonitorLimits(max_message_bytes=64, max_nesting=4, max_message_tokens=20)
        whole = JSONStream(limits).feed(data + b" ")
        stream = JSONStream(limits)
        pieces = []
        for start in range(0, len(data), chunk):
            pieces += stream.feed(data[start:start + chunk])
        pieces += stream.feed(b" ")
        self.assertEqual(pieces, whole)
        for message in whole:
            self.assertTrue((message.error is None) or isinstance(message.error, str))

    @settings(max_examples=200, deadline=None)
    @given(st.recursive(
        st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                    max_size=4),
        max_leaves=20))
    def test_round_trip(self, value):
        """What dumps writes, the stream reads back."""
        text = dumps({"v": value}).encode("ascii")
        self.assertEqual(feed(text), [{"v": value}])
        self.assertEqual(json.loads(text), {"v": value})


class DumpsTests(TestCase):

    def test_qemu_format(self):
        """Separators, escapes and floats as QEMU writes them."""
        self.assertEqual(dumps({"return": {}, "id": "\u00e9\x7f/\U0001f600\n"}),
                         '{"return": {}, "id": "\\u00E9\\u007F/\\uD83D\\uDE00\\n"}')
        self.assertEqual(dumps([1500.0, 1.2345678901234568e+22, -0.5]),
                         "[1500, 1.2345678901234568e+22, -0.5]")

    def test_pretty(self):
        """pretty=True indents by four spaces, one member per line; empty ones break too."""
        self.assertEqual(dumps({"a": [1], "b": {}, "c": []}, pretty=True),
                         '{\n    "a": [\n        1\n    ],\n    "b": {\n    },'
                         '\n    "c": [\n    ]\n}')
        self.assertEqual(dumps({}, pretty=True), "{\n}")
        self.assertEqual(dumps({"b": {}, "c": []}), '{"b": {}, "c": []}')


def feed_byte_by_byte(data: bytes, limits: MonitorLimits) -> list:
    """The reference: every byte through the per-byte lexer, no fast paths."""
    stream = JSONStream(limits)
    for byte in data:
        stream._lex(byte)
    return [m.error if m.error is not None else m.value for m in stream.feed(b"")]


#: Pieces that exercise strings, escapes, whitespace, recovery and limits.
_PIECES = st.sampled_from([
    b'{"execute": "', b"'", b'"', b"abc", b"\xc3\xa9", b"\\n", b"\\u00e9", b"\\", b"\x01",
    b"   ", b"\n", b"{", b"}", b"[", b"]", b":", b",", b"1", b"true", b"@", b"x" * 40,
])


class FastPathTests(TestCase):

    @settings(max_examples=400, deadline=None)
    @given(st.lists(_PIECES, max_size=40), st.integers(min_value=1, max_value=64),
           st.integers(min_value=20, max_value=200))
    def test_same_as_byte_by_byte(self, pieces, chunk, limit):
        """Taking runs whole gives exactly what the per-byte lexer gives, in any chunking."""
        data = b"".join(pieces)
        limits = MonitorLimits(max_message_bytes=limit)
        stream = JSONStream(limits)
        got = []
        for offset in range(0, len(data), chunk):
            got += [m.error if m.error is not None else m.value
                    for m in stream.feed(data[offset:offset + chunk])]
        self.assertEqual(got, feed_byte_by_byte(data, limits))
