"""QEMU option strings: ``key=value`` lists with ``,,`` escaping.

This is the syntax of ``-vnc :1,tls-creds=tls0,share=ignore`` and of
``-object tls-creds-x509,id=tls0,dir=/etc/pki``, with QEMU's rules
(``util/qemu-option.c``, QEMU 7.2):

* elements are separated by ``,``; a literal comma inside a value is
  written ``,,``.  Names cannot contain ``,`` or ``=``.
* the first element may omit its key (the *implied* key: the display for
  ``-vnc``, the type for ``-object``) when it contains no ``=`` before
  its first comma.
* an element without ``=`` is a short-form boolean: ``tls`` means
  ``tls=on``, ``noreverse`` means ``reverse=off``.  Each prints QEMU's
  deprecation warning.
* ``id=`` is looked up in a separate first pass, and the first one wins;
  for every other key the caller decides (QEMU: the last one wins).

Parsing is incremental (:func:`iter_params` yields one element at a time)
so a caller can validate each element before the next one warns, as
QEMU does.  :func:`format_params` is the inverse of :func:`parse`.
:func:`parse_bool` and :func:`parse_number` read values of QEMU's
``bool`` and ``number`` option types.

Every input is bounded by the limits below; anything malformed raises
:class:`compat.errors.OptionError` and nothing else.  This module knows
nothing about VNC, objects or sockets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Iterator

from compat.errors import OptionError

__all__ = [
    "Param", "iter_params", "parse", "find_id", "escape", "format_params",
    "check_length", "is_help", "parse_bool", "parse_number", "MAX_OPTION_LENGTH",
    "MAX_PARAMS", "MAX_KEY_LENGTH",
]

#: Longest option argument accepted, in characters.  Linux refuses a single
#: argv string over 128 KiB (MAX_ARG_STRLEN); 64 KiB still holds a JSON
#: ``-object`` with hundreds of authz rules while bounding parse work.
MAX_OPTION_LENGTH = 65536

#: Most elements in one option string.  QEMU's ``-vnc`` has 26 keys and the
#: largest object type fewer than ten; 256 leaves room for repeated keys
#: (``vnc=``, ``websocket=``) without letting a typo loop build huge lists.
MAX_PARAMS = 256

#: Longest key accepted.  The longest key any option knows is 15 characters
#: (``password-secret``); a longer one can only be a mistake, so it is
#: refused before it is echoed back in an error message.
MAX_KEY_LENGTH = 64

#: Spellings QEMU treats as a request for help (``is_help_option``).
HELP_WORDS = frozenset({"help", "?"})

#: QEMU's spellings of a boolean (``qapi_bool_parse``).
TRUE_WORDS = frozenset({"on", "yes", "true", "y"})
FALSE_WORDS = frozenset({"off", "no", "false", "n"})

#: What C's isspace() skips before a number.
_SPACE = " \t\n\v\f\r"
_U64 = re.compile(rf"[{_SPACE}]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")
_U64_MAX = 2**64 - 1

Warn = Callable[[str], None]


@dataclass(frozen=True)
class Param:
    """One element of an option string."""

    key: str
    value: str
    #: The element exactly as typed (still escaped), for messages.
    raw: str
    #: Given in short form, without ``=`` (``tls``, ``noreverse``).
    flag: bool = False

    @property
    def help(self) -> bool:
        """True for a bare ``help`` or ``?`` element (QEMU prints help)."""
        return self.flag and self.value == "on" and self.key in HELP_WORDS


def parse_bool(param: Param, source: str) -> bool:
    """A ``bool`` option value, with QEMU's error (``source`` is the option as typed)."""
    if param.value in TRUE_WORDS:
        return True
    if param.value in FALSE_WORDS:
        return False
    raise OptionError(source, f"Parameter '{param.key}' expects 'on' or 'off'")


def parse_number(param: Param, source: str) -> int:
    """A ``number`` option value: QEMU's ``qemu_strtou64(..., 0)``, read back as signed.

    Decimal, ``0x`` hex and ``0`` octal, with an optional sign; QEMU
    stores the result in a signed 64-bit integer, so ``-1`` is -1 (after
    wrapping).
    """
    match = _U64.match(param.value)
    if match is None:
        raise OptionError(source, f"Parameter '{param.key}' expects a number")
    digits = match.group(2)
    if digits[:2] in ("0x", "0X"):
        number = int(digits, 16)
    elif digits.startswith("0"):
        number = int(digits, 8)
    else:
        number = int(digits)
    if number > _U64_MAX:
        raise OptionError(
            source, f"Value '{param.value}' is too large for parameter '{param.key}'"
        )
    if match.group(1) == "-":
        number = -number
    return number - 2**64 if number >= 2**63 else number


def check_length(text: str, option: str) -> None:
    """Refuse option text longer than :data:`MAX_OPTION_LENGTH`."""
    if len(text) > MAX_OPTION_LENGTH:
        raise OptionError(
            option,
            f"option is too long ({len(text)} characters, at most {MAX_OPTION_LENGTH})",
        )


def is_help(text: str) -> bool:
    """True when a whole option argument asks for help (``-vnc help``)."""
    return text in HELP_WORDS


def _read_value(text: str, pos: int) -> tuple[str, int]:
    """Read a value from ``pos`` up to a single comma, undoing ``,,``.

    Returns the value and the index of the terminating comma (or the end).
    """
    parts = []
    while True:
        comma = text.find(",", pos)
        if comma == -1:
            parts.append(text[pos:])
            return "".join(parts), len(text)
        if text.startswith(",,", comma):
            parts.append(text[pos:comma + 1])
            pos = comma + 2
            continue
        parts.append(text[pos:comma])
        return "".join(parts), comma


def _name_end(text: str, pos: int) -> int:
    """Index of the first ``=`` or ``,`` at or after ``pos`` (or the end)."""
    ends = [i for i in (text.find("=", pos), text.find(",", pos)) if i != -1]
    return min(ends) if ends else len(text)


def _check_key(key: str, option: str) -> None:
    if not key:
        # ``:1,=x`` or ``a,,,b``; QEMU 7.2 says the same for every option.
        raise OptionError(option, "Invalid parameter ''")
    if len(key) > MAX_KEY_LENGTH:
        raise OptionError(
            option,
            f"Invalid parameter '{key[:MAX_KEY_LENGTH]}...'",
            hint=f"parameter names are at most {MAX_KEY_LENGTH} characters",
        )


def iter_params(
    text: str,
    *,
    option: str,
    implied_key: str | None = None,
    warn: Warn | None = None,
    check_keys: bool = True,
    quiet_short_form: Collection[str] = (),
) -> Iterator[Param]:
    """Yield the elements of ``text`` in order.

    ``option`` is the option as typed, for error messages.  With
    ``implied_key``, a first element without ``=`` is that key's value.
    ``warn`` receives QEMU's short-form boolean warning (two lines).
    ``id`` elements are yielded like any other; callers skip them.
    ``check_keys=False`` skips the key length limit (for the id pass,
    which reads a long first value as a key).  Keys in
    ``quiet_short_form`` get no short-form warning (legacy keys, whose
    ``key=on`` spelling QEMU 7.2 would refuse: the caller says more).
    """
    check_length(text, option)
    pos = 0
    count = 0
    first = True
    while pos < len(text):
        count += 1
        if count > MAX_PARAMS:
            raise OptionError(option, f"too many parameters (at most {MAX_PARAMS})")
        start = pos
        end = _name_end(text, pos)
        if end < len(text) and text[end] == "=":
            key = text[pos:end]
            if check_keys:
                _check_key(key, option)
            value, pos = _read_value(text, end + 1)
            param = Param(key, value, text[start:pos])
        elif first and implied_key is not None:
            value, pos = _read_value(text, pos)
            param = Param(implied_key, value, text[start:pos])
        else:
            name = text[pos:end]
            pos = end
            if check_keys:
                _check_key(name, option)
            if name.startswith("no"):
                param = Param(name[2:], "off", name, flag=True)
            else:
                param = Param(name, "on", name, flag=True)
            if warn is not None and not param.help and param.key not in quiet_short_form:
                warn(
                    f"short-form boolean option '{name}' deprecated\n"
                    f"Please use {param.key}={param.value} instead"
                )
            if check_keys and not param.key:
                _check_key(param.key, option)  # ``no``: QEMU warns, then refuses ''
        if pos < len(text):
            pos += 1  # the separating comma
        first = False
        yield param


def parse(
    text: str,
    *,
    option: str,
    implied_key: str | None = None,
    warn: Warn | None = None,
) -> list[Param]:
    """Every element of ``text`` (see :func:`iter_params`)."""
    return list(iter_params(text, option=option, implied_key=implied_key, warn=warn))


def find_id(text: str, *, option: str) -> str | None:
    """The first ``id=`` value, found the way QEMU does it.

    QEMU looks for the id in a pass of its own, before the real parse,
    without the implied key and without warnings; the first one wins.
    """
    for param in iter_params(text, option=option, check_keys=False):
        if param.key == "id":
            return param.value
    return None


def escape(value: str) -> str:
    """``value`` with every comma doubled."""
    return value.replace(",", ",,")


def _implied_ok(value: str) -> bool:
    """Whether ``value`` can be written as the first element without its key."""
    if not value or is_help(value):
        return False
    escaped = escape(value)
    end = _name_end(escaped, 0)
    return end == len(escaped) or escaped[end] == ","


def format_params(
    pairs: Iterable[tuple[str, str]], *, implied_key: str | None = None
) -> str:
    """Write ``(key, value)`` pairs as an option string that parses back to them.

    The first pair is written without its key when it is ``implied_key``
    and its value allows it.  Keys must be non-empty and free of ``,``
    and ``=`` (no option has any other kind).
    """
    out = []
    for index, (key, value) in enumerate(pairs):
        if not key or "," in key or "=" in key:
            raise ValueError(f"cannot write option key {key!r}")
        if index == 0 and key == implied_key and _implied_ok(value):
            out.append(escape(value))
        else:
            out.append(f"{key}={escape(value)}")
    return ",".join(out)
