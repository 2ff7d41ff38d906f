# -*- test-case-name: tests.vncd.monitor.test_jsonstream -*-
"""QMP's JSON: a byte stream cut into messages, parsed as QEMU parses them.

QMP has no framing: a client writes JSON values one after another and
the server finds where each ends by counting brackets, as QEMU's
``json-streamer`` does.  :class:`JSONStream` is that, sans-I/O:
:meth:`JSONStream.feed` takes bytes and returns the messages completed
by them, each a :class:`Message` holding either the parsed value or the
error QEMU would report (``JSON parse error, stray '@'`` ...).

QEMU's dialect is followed where a client could notice: strings may be
single-quoted (``{'execute': 'query-version'}``); a malformed token is
reported, then the input is skipped up to the next bracket or brace so
that the following command still works; numbers become ``int`` within
the 64-bit ranges, else ``float``; duplicate keys and lone surrogates
are errors.  Deliberate differences: a message over a limit is reported
once and its remainder skipped (QEMU resets and reports every piece of
the remainder as garbage), and numbers too large for a double are
errors (QEMU answers them with ``inf``, which is not JSON).

:func:`dumps` writes values back as QEMU does (``", "`` and ``": "``
separators, non-ASCII as upper-case ``\\uXXXX``, floats as ``%.17g``),
optionally pretty-printed like ``-mon pretty=on``.

This module knows nothing about QMP commands, sockets or Twisted.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from typing import Any

from vncd.monitor.limits import MonitorLimits

__all__ = ["JSONStream", "Message", "dumps", "JSONError"]

_STRUCTURAL = frozenset(b"{}[]")
_WHITESPACE = frozenset(b" \t\n\r")
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_KEYWORD_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz")
_ESCAPES = {ord('"'): '"', ord("'"): "'", ord("\\"): "\\", ord("/"): "/",
            ord("b"): "\b", ord("f"): "\f", ord("n"): "\n", ord("r"): "\r", ord("t"): "\t"}
#: Runs of string bytes that need no decision (not the quote, a backslash
#: or a control character), per quote character.
_PLAIN_STRING = {0x22: re.compile(rb'[^"\\\x00-\x1f]+'),
                 0x27: re.compile(rb"[^'\\\x00-\x1f]+")}
_SPACES = re.compile(rb"[ \t\n\r]+")
_NOT_STRUCTURAL = re.compile(rb"[^{}\[\]]+")
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64_MAX = (1 << 64) - 1


class JSONError(Exception):
    """A message that is not valid QMP JSON; ``str()`` is QEMU's description."""


class _Tok(enum.Enum):
    LCURLY = "{"
    RCURLY = "}"
    LSQUARE = "["
    RSQUARE = "]"
    COLON = ":"
    COMMA = ","
    STRING = "string"
    NUMBER = "number"
    KEYWORD = "keyword"
    #: A well-formed token whose value is not acceptable (a bad escape in a
    #: string): the message is still delimited normally, and parsing it
    #: reports the problem, as QEMU's parser does.
    BAD_VALUE = "bad-value"
    #: A malformed token: the message ends here with an error.
    ERROR = "error"


_PUNCTUATION = {ord(t.value): t for t in (_Tok.LCURLY, _Tok.RCURLY, _Tok.LSQUARE,
                                          _Tok.RSQUARE, _Tok.COLON, _Tok.COMMA)}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Tok
    #: The decoded value (strings, numbers), the keyword, or the error text.
    value: Any = None


#: One shared token per punctuation byte (tokens are immutable; most
#: tokens of a message are punctuation, and building each was a third of
#: the lexer's time).
_PUNCT_TOKENS = {c: _Token(kind) for c, kind in _PUNCTUATION.items()}


@dataclass(frozen=True)
class Message:
    """One complete QMP input: a parsed JSON value, or why it is not one."""

    value: Any = None
    error: str | None = None


class _Lex(enum.Enum):
    """Where the lexer is inside the current token."""

    START = "start"
    STRING = "string"
    STRING_ESCAPE = "string-escape"
    STRING_UNICODE = "string-unicode"
    NUMBER = "number"
    KEYWORD = "keyword"
    RECOVERY = "recovery"


class JSONStream:
    """Bytes in, complete QMP messages out (QEMU's streamer and parser)."""

    def __init__(self, limits: MonitorLimits | None = None) -> None:
        self._limits = limits or MonitorLimits()
        self._state = _Lex.START
        self._text = bytearray()        # the current token's raw bytes
        self._string = bytearray()      # the current string, decoded (UTF-8)
        self._quote = 0
        self._number_state = _NumberAt.BEGIN
        self._unicode = bytearray()
        self._pending_high: int | None = None
        self._string_error: str | None = None
        self._tokens: list[_Token] = []
        self._size = 0
        self._braces = 0
        self._brackets = 0
        #: True while the remainder of an over-limit message is skipped.
        self._skipping = False
        self._skip_depth = 0
        self._out: list[Message] = []

    # -- input ----------------------------------------------------------------

    def feed(self, data: bytes) -> list[Message]:
        """Feed bytes; return the messages they completed, in order.

        Runs that need no decision byte by byte -- a string's ordinary
        characters, whitespace between tokens, what error recovery
        skips -- are taken whole (the per-byte lexer moves about 1 MB/s,
        so a 1 MiB argument held the reactor for a second).  Every other
        byte goes through :meth:`_lex`.
        """
        i, end = 0, len(data)
        while i < end:
            state = self._state
            if state is _Lex.STRING:
                run = _PLAIN_STRING[self._quote].match(data, i)
                if run is not None:
                    i = self._string_run(data, i, run.end())
                    continue
            elif state is _Lex.START:
                punct = _PUNCT_TOKENS.get(data[i])
                if punct is not None:
                    self._text.clear()
                    self._token(punct, 1)
                    i += 1
                    continue
                run = _SPACES.match(data, i)
                if run is not None:
                    self._text.clear()
                    i = run.end()
                    continue
            elif state is _Lex.RECOVERY:
                run = _NOT_STRUCTURAL.match(data, i)
                if run is not None:
                    i = run.end()
                    continue
            elif state is _Lex.NUMBER and self._number_state in _DIGIT_LOOPS:
                run = _DIGIT_RUN.match(data, i)
                if run is not None:
                    i = self._digit_run(data, i, run.end())
                    continue
            self._lex(data[i])
            i += 1
        out, self._out = self._out, []
        return out

    def _string_run(self, data: bytes, start: int, stop: int) -> int:
        """Take ordinary string bytes ``data[start:stop]``, as :meth:`_in_string`
        would one by one; returns where to go on."""
        return self._take_run(data, start, stop, self._string)

    def _digit_run(self, data: bytes, start: int, stop: int) -> int:
        """Take digits ``data[start:stop]`` into a number whose state stays
        where it is on a digit, as :meth:`_in_number` would one by one;
        returns where to go on."""
        return self._take_run(data, start, stop, None)

    def _take_run(self, data: bytes, start: int, stop: int, decoded: bytearray | None) -> int:
        """Add ``data[start:stop]`` to the token (and to ``decoded``) up to the
        size limit; the byte that would pass it goes through :meth:`_lex`."""
        if self._skipping:
            return stop
        room = self._limits.max_message_bytes - len(self._text) - self._size
        if stop - start > room:
            # The byte after ``room`` overflows: the per-byte path reports it.
            stop = start + max(room, 0)
            if stop == start:
                self._lex(data[start])
                return start + 1
        chunk = data[start:stop]
        self._text += chunk
        if decoded is not None:
            decoded += chunk
        return stop

    def _lex(self, c: int) -> None:
        state = self._state
        if state is _Lex.START:
            self._start(c)
        elif state is _Lex.RECOVERY:
            if c in _STRUCTURAL:
                self._state = _Lex.START
                self._start(c)
        elif state is _Lex.STRING:
            self._in_string(c)
        elif state is _Lex.STRING_ESCAPE:
            self._in_escape(c)
        elif state is _Lex.STRING_UNICODE:
            self._in_unicode(c)
        elif state is _Lex.NUMBER:
            self._in_number(c)
        else:
            self._in_keyword(c)

    def _start(self, c: int) -> None:
        self._text.clear()
        if c in _WHITESPACE:
            return
        punct = _PUNCT_TOKENS.get(c)
        if punct is not None:
            self._token(punct, 1)
        elif c in (0x22, 0x27):
            self._quote = c
            self._string = bytearray()
            self._string_error = None
            self._pending_high = None
            self._text.append(c)
            self._state = _Lex.STRING
        elif c == 0x2D or c in _DIGITS:
            self._text.append(c)
            self._number_state = _NUMBER_MOVES[_NumberAt.BEGIN][c]
            self._state = _Lex.NUMBER
        elif c in _KEYWORD_CHARS:
            self._text.append(c)
            self._state = _Lex.KEYWORD
        else:
            self._text.append(c)
            self._error()

    def _keep(self, c: int) -> bool:
        """Add ``c`` to the current token; False (and nothing kept) while the
        rest of an over-limit message is skipped."""
        if self._skipping:
            return False
        # The raw text of the token counts (a string's characters are in
        # both ``_text`` and ``_string``: counting both halved the limit).
        if len(self._text) + self._size >= self._limits.max_message_bytes:
            self._overflow("JSON token size limit exceeded")
            return False
        self._text.append(c)
        return True

    # strings: QEMU decodes escapes in the parser; doing it here keeps
    # only the decoded text, and the errors are QEMU's.
    def _in_string(self, c: int) -> None:
        if c == self._quote:
            self._text.append(c)
            self._finish_string()
        elif c == 0x5C:
            self._keep(c)
            self._state = _Lex.STRING_ESCAPE
        elif c < 0x20:
            self._text.append(c)
            self._error()
        elif self._keep(c):
            self._string.append(c)

    def _in_escape(self, c: int) -> None:
        kept = self._keep(c)
        if c == ord("u"):
            self._unicode.clear()
            self._state = _Lex.STRING_UNICODE
            return
        decoded = _ESCAPES.get(c)
        if decoded is None:
            self._string_error = self._string_error or "invalid escape sequence in string"
        elif kept:
            self._string.extend(decoded.encode())
        self._state = _Lex.STRING

    def _in_unicode(self, c: int) -> None:
        if c not in _HEX:
            self._string_error = self._string_error or (
                f"\\u{self._unicode.decode('ascii')}{chr(c)} is not a valid Unicode character")
            self._state = _Lex.STRING
            self._in_string(c)
            return
        self._keep(c)
        self._unicode.append(c)
        if len(self._unicode) < 4:
            return
        self._state = _Lex.STRING
        text = self._unicode.decode("ascii")
        code = int(text, 16)
        high = self._pending_high
        self._pending_high = None
        if 0xD800 <= code <= 0xDBFF:
            if high is not None:
                self._bad_unicode(f"\\u{high:04X}")
            self._pending_high = code
            return
        if 0xDC00 <= code <= 0xDFFF:
            if high is None:
                self._bad_unicode(f"\\u{text}")
                return
            code = 0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00)
        elif high is not None:
            self._bad_unicode(f"\\u{high:04X}")
        if self._skipping:
            return
        if code == 0:
            self._string.extend(b"\xc0\x80")      # QEMU's "modified UTF-8" NUL
        else:
            self._string.extend(chr(code).encode("utf-8", "surrogatepass"))

    def _bad_unicode(self, text: str) -> None:
        self._string_error = self._string_error or f"{text} is not a valid Unicode character"

    def _finish_string(self) -> None:
        if self._pending_high is not None:
            self._bad_unicode(f"\\u{self._pending_high:04X}")
        raw = bytes(self._string).replace(b"\xc0\x80", b"\0")
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            # QEMU's lexer stops at the bad byte: report the string so far.
            shown = raw.decode("utf-8", "replace")
            cut = shown.index("\ufffd")
            self._text[:] = (chr(self._quote) + shown[:cut + 1]).encode()
            self._error()
            return
        self._state = _Lex.START
        if self._string_error is not None:
            self._token(_Token(_Tok.BAD_VALUE, self._string_error), len(self._text))
        else:
            self._token(_Token(_Tok.STRING, value), len(self._text))

    def _in_number(self, c: int) -> None:
        # One step of a small state machine per byte: checking the whole
        # text again at every digit made a long number quadratic (40,000
        # digits held the reactor for 54 s).
        if c in _NUMBER_BYTES:
            if self._keep(c):
                state = _NUMBER_MOVES[self._number_state].get(c)
                if state is None:
                    self._error()
                else:
                    self._number_state = state
            return
        if self._number_state not in _NUMBER_COMPLETE:
            self._text.append(c)
            self._error()
            return
        text = self._text.decode("ascii")
        self._state = _Lex.START
        try:
            value = _number(text)
        except ValueError:
            self._token(_Token(_Tok.BAD_VALUE, "number out of range"), len(text))
        else:
            self._token(_Token(_Tok.NUMBER, value), len(text))
        self._start(c)

    def _in_keyword(self, c: int) -> None:
        if c in _KEYWORD_CHARS:
            self._keep(c)
            return
        self._state = _Lex.START
        self._token(_Token(_Tok.KEYWORD, self._text.decode("ascii")), len(self._text))
        self._start(c)

    def _error(self) -> None:
        """A malformed token: report it, then skip to the next bracket or brace."""
        shown = self._text.decode("utf-8", "replace")
        self._state = _Lex.RECOVERY
        self._token(_Token(_Tok.ERROR, f"stray '{shown}'"), 0)

    # -- the streamer -----------------------------------------------------------

    def _token(self, token: _Token, size: int) -> None:
        if self._skipping:
            self._skip(token)
            return
        kind = token.kind
        if kind is _Tok.ERROR:
            self._emit_error(token.value)
            return
        if kind is _Tok.LCURLY:
            self._braces += 1
        elif kind is _Tok.RCURLY:
            self._braces -= 1
        elif kind is _Tok.LSQUARE:
            self._brackets += 1
        elif kind is _Tok.RSQUARE:
            self._brackets -= 1
        self._tokens.append(token)
        self._size += size
        if self._braces < 0 or self._brackets < 0 or (self._braces == 0 and self._brackets == 0):
            tokens = self._tokens
            self._reset()
            self._out.append(_parse(tokens))
            return
        limits = self._limits
        if self._size > limits.max_message_bytes:
            self._overflow("JSON token size limit exceeded")
        elif len(self._tokens) > limits.max_message_tokens:
            self._overflow("JSON token count limit exceeded")
        elif self._braces + self._brackets > limits.max_nesting:
            self._overflow("JSON nesting depth limit exceeded")

    def _reset(self) -> None:
        self._tokens = []
        self._size = 0
        self._braces = self._brackets = 0

    def _emit_error(self, description: str) -> None:
        self._reset()
        self._out.append(Message(error=f"JSON parse error, {description}"))

    def _overflow(self, description: str) -> None:
        """Report an over-limit message once and skip the rest of it."""
        depth = self._braces + self._brackets
        self._tokens = []
        self._size = 0
        self._out.append(Message(error=description))
        if self._state in (_Lex.STRING, _Lex.STRING_ESCAPE, _Lex.STRING_UNICODE):
            self._text.clear()
            self._string = bytearray()
        in_string = self._state in (_Lex.STRING, _Lex.STRING_ESCAPE, _Lex.STRING_UNICODE)
        self._skipping = depth > 0 or in_string
        self._skip_depth = depth
        if self._state in (_Lex.NUMBER, _Lex.KEYWORD):
            self._state = _Lex.RECOVERY

    def _skip(self, token: _Token) -> None:
        if token.kind in (_Tok.LCURLY, _Tok.LSQUARE):
            self._skip_depth += 1
        elif token.kind in (_Tok.RCURLY, _Tok.RSQUARE):
            self._skip_depth -= 1
        if self._skip_depth <= 0:
            self._skipping = False
            self._reset()


# -- numbers ------------------------------------------------------------------------

class _NumberAt(enum.Enum):
    """Where a JSON number's text has got to (RFC 8259's grammar)."""

    BEGIN = "begin"              # nothing yet
    SIGN = "sign"                # "-"
    ZERO = "zero"                # "0" or "-0": no more integer digits
    INTEGER = "integer"          # "12"
    POINT = "point"              # "1."
    FRACTION = "fraction"        # "1.5"
    EXPONENT = "exponent"        # "1e"
    EXPONENT_SIGN = "exp-sign"   # "1e-"
    EXPONENT_DIGITS = "exp-digits"


def _number_moves() -> dict[_NumberAt, dict[int, _NumberAt]]:
    at = _NumberAt
    digits = {c: c for c in b"0123456789"}
    nonzero = {c: c for c in b"123456789"}

    def to(state, chars):
        return {c: state for c in chars}
    exponent = to(at.EXPONENT, b"eE")
    return {
        at.BEGIN: {**to(at.SIGN, b"-"), **to(at.ZERO, b"0"), **to(at.INTEGER, nonzero)},
        at.SIGN: {**to(at.ZERO, b"0"), **to(at.INTEGER, nonzero)},
        at.ZERO: {**to(at.POINT, b"."), **exponent},
        at.INTEGER: {**to(at.INTEGER, digits), **to(at.POINT, b"."), **exponent},
        at.POINT: to(at.FRACTION, digits),
        at.FRACTION: {**to(at.FRACTION, digits), **exponent},
        at.EXPONENT: {**to(at.EXPONENT_SIGN, b"+-"), **to(at.EXPONENT_DIGITS, digits)},
        at.EXPONENT_SIGN: to(at.EXPONENT_DIGITS, digits),
        at.EXPONENT_DIGITS: to(at.EXPONENT_DIGITS, digits),
    }


#: Per state, the next state for each byte that may follow (absent: malformed).
_NUMBER_MOVES = _number_moves()
#: States where the number may end.
_NUMBER_COMPLETE = frozenset({_NumberAt.ZERO, _NumberAt.INTEGER, _NumberAt.FRACTION,
                              _NumberAt.EXPONENT_DIGITS})
#: States a digit leaves unchanged (a run of digits is taken whole there).
_DIGIT_LOOPS = frozenset({_NumberAt.INTEGER, _NumberAt.FRACTION, _NumberAt.EXPONENT_DIGITS})
_DIGIT_RUN = re.compile(rb"[0-9]+")
#: Bytes that continue a number's token (valid there or not).
_NUMBER_BYTES = frozenset(b"0123456789.eE+-")


def _number(text: str) -> int | float:
    if not any(ch in text for ch in ".eE"):
        value = int(text)
        if _INT64[0] <= value <= _UINT64_MAX:
            return value
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


# -- the parser ---------------------------------------------------------------------

class _Parser:
    """QEMU's recursive-descent parser over one message's tokens."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._pos = 0

    def _peek(self) -> _Token | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _pop(self) -> _Token | None:
        token = self._peek()
        if token is not None:
            self._pos += 1
        return token

    def value(self) -> Any:
        token = self._peek()
        if token is None:
            raise JSONError("premature EOI")
        kind = token.kind
        if kind is _Tok.LCURLY:
            return self._object()
        if kind is _Tok.LSQUARE:
            return self._array()
        self._pos += 1
        if kind in (_Tok.STRING, _Tok.NUMBER):
            return token.value
        if kind is _Tok.BAD_VALUE:
            raise JSONError(token.value)
        if kind is _Tok.KEYWORD:
            keyword = {"true": True, "false": False, "null": None}
            if token.value in keyword:
                return keyword[token.value]
            raise JSONError(f"invalid keyword '{token.value}'")
        raise JSONError("expecting value")

    def _object(self) -> dict:
        self._pop()
        result: dict[str, Any] = {}
        if self._peek() is not None and self._peek().kind is _Tok.RCURLY:
            self._pop()
            return result
        while True:
            key_token = self._peek()
            if key_token is None:
                raise JSONError("premature EOI")
            if key_token.kind is not _Tok.STRING:
                if key_token.kind in (_Tok.RCURLY, _Tok.RSQUARE, _Tok.COMMA, _Tok.COLON):
                    raise JSONError("expecting value")
                self.value()
                raise JSONError("key is not a string in object")
            self._pop()
            colon = self._pop()
            if colon is None:
                raise JSONError("premature EOI")
            if colon.kind is not _Tok.COLON:
                raise JSONError("missing : in object pair")
            value = self.value()
            if key_token.value in result:
                raise JSONError("duplicate key")
            result[key_token.value] = value
            separator = self._pop()
            if separator is None:
                raise JSONError("premature EOI")
            if separator.kind is _Tok.RCURLY:
                return result
            if separator.kind is not _Tok.COMMA:
                raise JSONError("expected separator in dict")

    def _array(self) -> list:
        self._pop()
        result: list[Any] = []
        if self._peek() is not None and self._peek().kind is _Tok.RSQUARE:
            self._pop()
            return result
        while True:
            result.append(self.value())
            separator = self._pop()
            if separator is None:
                raise JSONError("premature EOI")
            if separator.kind is _Tok.RSQUARE:
                return result
            if separator.kind is not _Tok.COMMA:
                raise JSONError("expected separator in list")


def _parse(tokens: list[_Token]) -> Message:
    parser = _Parser(tokens)
    try:
        value = parser.value()
    except JSONError as e:
        return Message(error=f"JSON parse error, {e}")
    return Message(value=value)


# -- output -------------------------------------------------------------------------

#: Characters QEMU writes as a two-character escape.
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                  "\r": "\\r", "\t": "\\t"}


def _escape(text: str) -> str:
    """A JSON string as QEMU writes it: ASCII only, other characters as ``\\uXXXX``."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04X}")
        else:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04X}\\u{0xDC00 + (code & 0x3FF):04X}")
    out.append('"')
    return "".join(out)


def dumps(value: Any, *, pretty: bool = False) -> str:
    """``value`` as QEMU writes JSON (see the module docstring)."""
    parts: list[str] = []
    _write(value, parts, 0 if pretty else None)
    return "".join(parts)


def _write(value: Any, out: list[str], indent: int | None) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(format(value, ".17g"))
    elif isinstance(value, str):
        out.append(_escape(value))
    elif isinstance(value, dict):
        _write_items(value.items(), out, indent, "{", "}", keyed=True)
    elif isinstance(value, (list, tuple)):
        _write_items(((None, v) for v in value), out, indent, "[", "]", keyed=False)
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _write_items(items, out: list[str], indent: int | None, opening: str, closing: str,
                 *, keyed: bool) -> None:
    items = list(items)
    out.append(opening)
    if not items:
        # QEMU's pretty writer breaks the line even inside an empty
        # object or array: "{" and "}" on lines of their own.
        if indent is not None:
            out.append("\n" + "    " * indent)
        out.append(closing)
        return
    for index, (key, item) in enumerate(items):
        if index:
            out.append(",")
        if indent is not None:
            out.append("\n" + "    " * (indent + 1))
        elif index:
            out.append(" ")
        if keyed:
            out.append(_escape(key) + ": ")
        _write(item, out, None if indent is None else indent + 1)
    if indent is not None:
        out.append("\n" + "    " * indent)
    out.append(closing)
