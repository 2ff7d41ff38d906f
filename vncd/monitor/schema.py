# -*- test-case-name: tests.vncd.monitor.test_schema -*-
"""QMP command arguments: declared types, checked with QEMU's words.

A command declares its arguments as a tuple of :class:`Arg`;
:func:`check_arguments` visits them the way QEMU's QAPI input visitor
does -- declared members in declaration order (a missing mandatory one
fails at its place, a wrong type names the expected JSON type), then
anything left over is ``unexpected`` -- and returns a plain dict with
Python names (``tls-certs`` -> ``tls_certs``).

:class:`QMPError` is what a command raises: QEMU's error class
(``GenericError``, ``CommandNotFound``, ``DeviceNotActive`` ...) and
description.

This module knows nothing about the commands, sockets or Twisted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["QMPError", "Arg", "check_arguments", "JSON_TYPES"]


class QMPError(Exception):
    """A QMP error reply: ``{"class": error_class, "desc": desc}``."""

    def __init__(self, desc: str, error_class: str = "GenericError") -> None:
        super().__init__(desc)
        self.desc = desc
        self.error_class = error_class


#: The word QEMU's messages use for each argument type.
JSON_TYPES = {
    "str": "string",
    "bool": "boolean",
    "int": "integer",
    "number": "number",
    "object": "object",
    "array": "array",
}


@dataclass(frozen=True)
class Arg:
    """One declared argument.

    ``type`` is a key of :data:`JSON_TYPES`, ``"enum"`` (with ``choices``)
    or ``"any"``.
    """

    name: str
    type: str = "str"
    optional: bool = False
    choices: tuple[str, ...] = ()

    @property
    def python_name(self) -> str:
        return self.name.replace("-", "_")

    def check(self, value: Any) -> Any:
        kind = self.type
        if kind == "any":
            return value
        if kind == "enum":
            if not isinstance(value, str):
                raise QMPError(f"Invalid parameter type for '{self.name}', expected: string")
            if value not in self.choices:
                raise QMPError(f"Parameter '{self.name}' does not accept value '{value}'")
            return value
        ok = {
            "str": isinstance(value, str),
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "object": isinstance(value, dict),
            "array": isinstance(value, list),
        }[kind]
        if not ok:
            raise QMPError(
                f"Invalid parameter type for '{self.name}', expected: {JSON_TYPES[kind]}")
        return value


def check_arguments(arguments: Mapping[str, Any], declared: tuple[Arg, ...], *,
                    rest: bool = False) -> dict[str, Any]:
    """Check ``arguments`` against ``declared``; return them under Python names.

    With ``rest``, undeclared members are not errors: they are returned
    under their own names in ``"_rest"`` (``object-add``'s type-specific
    properties, which the object registry checks).
    """
    out: dict[str, Any] = {}
    for arg in declared:
        if arg.name not in arguments:
            if not arg.optional:
                raise QMPError(f"Parameter '{arg.name}' is missing")
            out[arg.python_name] = None
            continue
        out[arg.python_name] = arg.check(arguments[arg.name])
    names = {arg.name for arg in declared}
    extra = {name: value for name, value in arguments.items() if name not in names}
    if rest:
        out["_rest"] = extra
    elif extra:
        raise QMPError(f"Parameter '{next(iter(extra))}' is unexpected")
    return out
