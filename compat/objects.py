"""``-object``: QEMU's two spellings of a user-creatable object, and the
checks QEMU makes while it reads the command line.

``-object tls-creds-x509,id=tls0,dir=/etc/pki/vnc`` (a ``key=value`` list
whose implied first key is ``qom-type``) and
``-object '{"qom-type":"tls-creds-x509","id":"tls0","dir":"/etc/pki/vnc"}'``
(JSON; booleans may be JSON ``true``/``false`` or strings) both become a
:class:`compat.config.ObjectSpec`.

QEMU 7.2 checks the type, the id and every property's type while parsing
the command line, in command-line order, and creates (loads) the objects
only afterwards.  :func:`parse_object` makes the same parse-time checks
against the types an :class:`creds.objects.ObjectRegistry` knows, so the
first error reported is the one QEMU would report.  Creating the objects
is the caller's job (:meth:`ObjectRegistry.create`).

Secret property values (``secret,data=...``) are replaced by ``<hidden>``
in the option text used for messages, so they never reach a log.

This module knows nothing about sockets or VNC; it uses only the object
type metadata of :mod:`creds.objects`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from compat import optstr
from compat.config import ObjectSpec
from compat.errors import HelpRequest, OptionError
from creds.objects import ID_PATTERN, MAX_ID_LENGTH, ObjectError, ObjectRegistry

__all__ = [
    "parse_object", "format_object", "check_id", "objects_help", "type_help",
    "mask_secrets", "secret_keys", "object_source", "MAX_JSON_DEPTH", "ID_MESSAGE", "HIDDEN",
]

#: Deepest JSON nesting accepted in ``-object '{...}'``.  The deepest
#: legitimate value is an authz-list's ``rules`` (object > list > object,
#: depth 3); 16 is generous and keeps a hostile string from recursing.
MAX_JSON_DEPTH = 16

#: QEMU's complaint about a malformed id (QEMU prints the explanation on a
#: second line; vncd keeps every error on one line).
ID_MESSAGE = (
    "Parameter 'id' expects an identifier (identifiers consist of letters,"
    " digits, '-', '.', '_', starting with a letter)"
)

Warn = Callable[[str], None]


#: What a secret value is replaced with in messages and in the option text.
HIDDEN = "<hidden>"


def secret_keys(registry: ObjectRegistry) -> frozenset[str]:
    """Names of the properties that hold secret data, in any object type."""
    return frozenset(
        prop.name
        for name in registry.type_names()
        for prop in registry.type_for(name).props
        if prop.secret
    )


def _mask_json_text(arg: str, keys: frozenset[str]) -> str:
    try:
        data = json.loads(arg)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        masked = {k: HIDDEN if k in keys else v for k, v in data.items()}
        return json.dumps(masked, separators=(",", ":"), ensure_ascii=False)
    for key in keys:
        pattern = re.compile(r'("' + re.escape(key) + r'"\s*:\s*)"(?:[^"\\]|\\.)*"?')
        arg = pattern.sub(lambda m: m.group(1) + json.dumps(HIDDEN), arg)
    return arg


def mask_secrets(arg: str, keys: frozenset[str]) -> str:
    """``arg`` with the value of every secret property replaced by :data:`HIDDEN`.

    Messages name the option as typed, as QEMU's do, but a secret's
    value must never reach a terminal or a log.
    """
    if not keys or not any(key in arg for key in keys):
        return arg
    if arg.startswith("{"):
        return _mask_json_text(arg, keys)
    try:
        params = optstr.parse(arg, option="-object", implied_key="qom-type")
    except OptionError:
        return HIDDEN
    return ",".join(
        f"{p.key}={HIDDEN}" if p.key in keys and not p.flag else p.raw for p in params
    )


def object_source(option: str, arg: str, registry: ObjectRegistry) -> str:
    """The ``-object`` option as typed, for messages, with secret values hidden."""
    return f"{option} {mask_secrets(arg, secret_keys(registry))}"


def check_id(value: str, source: str) -> None:
    """Raise QEMU's error unless ``value`` is a well-formed identifier."""
    if len(value) > MAX_ID_LENGTH or not ID_PATTERN.match(value):
        raise OptionError(source, ID_MESSAGE)


def objects_help(registry: ObjectRegistry) -> str:
    """The answer to ``-object help``: every object type."""
    lines = ["List of user creatable objects:"]
    lines += [f"  {name}" for name in registry.type_names()]
    return "\n".join(lines) + "\n"


def type_help(registry: ObjectRegistry, qom_type: str, source: str) -> str:
    """The answer to ``-object TYPE,help``: the type's properties."""
    cls = _type_for(registry, qom_type, source)
    lines = [f"{qom_type} options:"]
    for prop in sorted(cls.props, key=lambda p: p.name):
        if prop.read_only:
            continue
        kind = "/".join(prop.choices) if prop.kind == "enum" else prop.kind
        text = f"  {prop.name}=<{kind}>"
        if prop.help:
            text += f" - {prop.help}"
        lines.append(text)
    return "\n".join(lines) + "\n"


def _type_for(registry: ObjectRegistry, qom_type: str, source: str):
    try:
        return registry.type_for(qom_type)
    except ObjectError as err:
        raise OptionError(source, err.message, hint=err.hint) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate key")
        result[key] = value
    return result


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
    return deepest


def _parse_json(arg: str, source: str) -> dict[str, Any]:
    try:
        value = json.loads(
            arg, object_pairs_hook=_unique_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":
            raise OptionError(source, "Expecting at most one JSON value") from None
        raise OptionError(
            source, f"JSON parse error, {err.msg.lower()} at character {err.pos}"
        ) from None
    except ValueError as err:
        raise OptionError(source, f"JSON parse error, {err}") from None
    except RecursionError:
        raise OptionError(
            source, f"JSON parse error, nesting deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    if not isinstance(value, dict):
        raise OptionError(source, "JSON parse error, expected an object")
    if _depth(value) > MAX_JSON_DEPTH:
        raise OptionError(
            source, f"JSON parse error, nesting deeper than {MAX_JSON_DEPTH} levels"
        )
    return value


def _check_props(
    registry: ObjectRegistry,
    qom_type: str,
    props: dict[str, Any],
    source: str,
    unknown_message: str,
) -> None:
    """QEMU's parse-time visit of ``props`` (which include ``id``), without loading.

    A key the type does not know is ``unknown_message`` (QEMU words it
    differently for the two syntaxes).
    """
    try:
        registry.check(qom_type, props, unknown_message=unknown_message)
    except ObjectError as err:
        hint = err.hint
        if unknown_message == KEY_VALUE_UNKNOWN:
            hint = _comma_hint(registry, qom_type, props) or hint
        raise OptionError(source, err.message, hint=hint) from None


#: QEMU's wording for a key the type does not know, in the key=value syntax.
KEY_VALUE_UNKNOWN = "Invalid parameter '{}'"

#: What a distinguished name's attribute type looks like (``CN``, ``O``,
#: ``OU``, ``DC``, ``emailAddress``, ``2.5.4.3``): the keys a DN written
#: with single commas leaves behind.
_DN_ATTRIBUTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]{0,31}|[0-9]+(?:\.[0-9]+)+)$")


def _comma_hint(registry: ObjectRegistry, qom_type: str, props: dict[str, Any]) -> str | None:
    """A distinguished name split at its commas: say commas in a value are written ``,,``.

    ``identity=C=GB,O=ACME,CN=x`` parses as ``identity=C=GB``, ``O=ACME``,
    ``CN=x``; the unknown keys right after a value holding ``=`` are put
    back into that value to show the intended spelling.
    """
    cls = registry.type_for(qom_type)
    items = list(props.items())
    for index, (name, value) in enumerate(items):
        if cls.prop_spec(name) is None or not isinstance(value, str) or "=" not in value:
            continue
        parts = [value]
        for key, more in items[index + 1:]:
            if cls.prop_spec(key) is not None or not _DN_ATTRIBUTE.match(key):
                break
            parts.append(f"{key}={more}")
        if len(parts) > 1:
            return (f"a comma inside a value is written ',,': "
                    f"{name}={',,'.join(parts)}")
    return None


def parse_object(
    arg: str,
    *,
    registry: ObjectRegistry,
    option: str = "-object",
    warn: Warn | None = None,
) -> ObjectSpec:
    """Parse one ``-object`` argument and make QEMU's parse-time checks.

    ``option`` is the option name as typed (``-object`` or ``--object``).
    Raises :class:`HelpRequest` for ``help`` and ``TYPE,help``, and
    :class:`OptionError` for everything wrong.
    """
    source = object_source(option, arg, registry)
    optstr.check_length(arg, source)
    if optstr.is_help(arg):
        raise HelpRequest(objects_help(registry))
    if arg.startswith("{"):
        data = _parse_json(arg, source)
        qom_type = data.pop("qom-type", None)
        if qom_type is None:
            raise OptionError(source, "Parameter 'qom-type' is missing")
        if not isinstance(qom_type, str):
            raise OptionError(source, "Invalid parameter type for 'qom-type', expected: string")
        _type_for(registry, qom_type, source)
        obj_id = data.pop("id", None)
        if obj_id is None:
            raise OptionError(source, "Parameter 'id' is missing")
        if not isinstance(obj_id, str):
            raise OptionError(source, "Invalid parameter type for 'id', expected: string")
        check_id(obj_id, source)
        _check_props(registry, qom_type, {"id": obj_id, **data}, source,
                     "Parameter '{}' is unexpected")
        return ObjectSpec(qom_type=qom_type, props={"id": obj_id, **data}, source=source)

    obj_id = optstr.find_id(arg, option=source)
    if obj_id is not None:
        check_id(obj_id, source)
    props: dict[str, str] = {}
    qom_type = None
    wants_help = False
    for param in optstr.iter_params(arg, option=source, implied_key="qom-type", warn=warn):
        if param.help:
            wants_help = True
        elif param.key == "qom-type":
            qom_type = param.value
        elif param.key != "id":
            props.pop(param.key, None)
            props[param.key] = param.value
    if qom_type is None:
        raise OptionError(source, "Parameter 'qom-type' is missing")
    if wants_help:
        raise HelpRequest(type_help(registry, qom_type, source))
    _type_for(registry, qom_type, source)
    if obj_id is None:
        raise OptionError(source, "Parameter 'id' is missing")
    _check_props(registry, qom_type, {"id": obj_id, **props}, source, KEY_VALUE_UNKNOWN)
    return ObjectSpec(qom_type=qom_type, props={"id": obj_id, **props}, source=source)


def format_object(spec: ObjectSpec, *, omit: frozenset[str] = frozenset()) -> str:
    """Write ``spec`` as a ``-object`` argument that parses back to it.

    The ``key=value`` form is used when every value is a string, the JSON
    form otherwise.  Properties named in ``omit`` are left out (secret
    values that must not be printed).
    """
    props = {k: v for k, v in spec.props.items() if k not in omit}
    obj_id = props.pop("id")
    if all(isinstance(v, str) for v in props.values()) and isinstance(obj_id, str):
        pairs = [("qom-type", spec.qom_type), ("id", obj_id), *props.items()]
        return optstr.format_params(pairs, implied_key="qom-type")
    return json.dumps(
        {"qom-type": spec.qom_type, "id": obj_id, **props},
        separators=(",", ":"),
        ensure_ascii=False,
    )
