"""``-vnc``: QEMU's display option, its vocabulary, defaults and checks.

:func:`parse_vnc` turns one ``-vnc`` argument into a
:class:`compat.config.DisplayConfig` (plus the objects legacy keys ask
for), making the checks QEMU 7.2 makes while reading the command line
(unknown keys, value types, display ids) and those of
``vnc_display_open`` that need no objects (listen addresses, the
``password``/``password-secret`` conflict).  :func:`check_display` makes
the remaining checks of ``vnc_display_open``, in QEMU's order, once the
objects exist: the secret, the TLS credentials and their endpoint,
``tls-authz``/``sasl-authz`` without TLS/SASL, ``share=``, and the
reverse-mode restrictions.  Error texts are QEMU's.

Where vncd differs from QEMU 7.2, it is stricter and says why:

* ``sasl=on`` is refused at start-up: vncd has no SASL.
* ``connections``, ``key-delay-ms`` and ``to`` must be in range (QEMU
  silently wraps negative numbers); a websocket port must be a number.
* keys that only make sense inside QEMU (``audiodev``, ``display``,
  ``head``, ``lock-key-sync``, ``power-control``) are accepted and type
  checked, with a warning that they have no effect.
* the legacy keys (``tls``, ``x509``, ``x509verify``, ``acl``) are
  accepted and translated (:mod:`compat.legacy`); QEMU 7.2 refuses them.
* listen addresses are checked while parsing, so an address error is
  reported before an object error that comes earlier on the command line
  (QEMU creates the objects first).

This module knows nothing about sockets: it reads the object registry
but opens nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Collection

from compat import legacy, optstr
from compat.config import DisplayConfig, ListenAddress, ObjectSpec
from compat.errors import HelpRequest, OptionError
from compat.objects import check_id
from compat.optstr import Param
from creds.authz import AuthzList, QAuthZ
from creds.objects import ObjectError, ObjectRegistry, spelling_hint
from creds.secret import lookup_secret
from creds.tlscreds import Endpoint, TLSCreds

__all__ = [
    "VncKey", "VNC_KEYS", "parse_vnc", "check_display", "vnc_help",
    "auto_id", "SHARE_POLICIES", "VNC_PORT_BASE", "WEBSOCKET_PORT_BASE",
    "MAX_CONNECTIONS", "MAX_KEY_DELAY_MS", "MAX_DISPLAY_NUMBER", "SASL_MESSAGE",
    "modern_params",
]

#: TCP port of display 0; display N listens on 5900 + N (RFC 6143 §1).
VNC_PORT_BASE = 5900

#: Default websocket port of display 0 (QEMU: 5700 + N).
WEBSOCKET_PORT_BASE = 5700

#: Highest TCP port number.
MAX_PORT = 65535

#: Highest display number whose port exists (5900 + N <= 65535).
MAX_DISPLAY_NUMBER = MAX_PORT - VNC_PORT_BASE

#: Most clients one display accepts.  QEMU's default is 32 and it puts no
#: upper bound on the number; every client costs a socket and per-client
#: buffers, and the usual soft limit on open files is 1024.
MAX_CONNECTIONS = 1024

#: Longest key-event delay accepted.  QEMU's default is 10 ms; ten seconds
#: between key events already makes a keyboard useless, and events queue
#: up (in bounded buffers) while they wait.
MAX_KEY_DELAY_MS = 10_000

#: QEMU's share policies; ``allow-exclusive`` is the default.
SHARE_POLICIES = ("allow-exclusive", "force-shared", "ignore")

#: vncd's refusal of SASL (QEMU builds without SASL say "VNC SASL auth
#: requires cyrus-sasl support").
SASL_MESSAGE = (
    "VNC SASL auth is not supported by vncd; use tls-creds with x509"
    " credentials and verify-peer=on (optionally tls-authz) to authenticate"
    " clients, or password-secret"
)

#: What C's isspace() skips before a number.
_SPACE = " \t\n\v\f\r"
_PORT = re.compile(rf"[{_SPACE}]*\+?([0-9]+)\Z")
_U64_MAX = 2**64 - 1

Warn = Callable[[str], None]


@dataclass(frozen=True)
class VncKey:
    """One key ``-vnc`` accepts."""

    name: str
    #: ``str``, ``bool`` or ``number`` (QEMU's QemuOpts types).
    kind: str
    #: ``vncd`` (it means something here), ``qemu`` (accepted, no effect)
    #: or ``legacy`` (translated by :mod:`compat.legacy`).
    role: str
    help: str
    #: May be given more than once, every value counts (``vnc``, ``websocket``).
    repeat: bool = False


VNC_KEYS: dict[str, VncKey] = {
    k.name: k
    for k in (
        VncKey("vnc", "str", "vncd",
               "listen address: [HOST]:N, [IPV6]:N, unix:PATH or none (the implied key;"
               " required)",
               repeat=True),
        VncKey("websocket", "str", "vncd",
               "extra WebSocket listener: on (port 5700+N), PORT or HOST:PORT", repeat=True),
        VncKey("to", "number", "vncd", "if port 5900+N is busy, try displays up to this one"),
        VncKey("ipv4", "bool", "vncd", "listen on IPv4 only"),
        VncKey("ipv6", "bool", "vncd", "listen on IPv6 only"),
        VncKey("tls-creds", "str", "vncd",
               "id of the tls-creds-x509/-anon object (VeNCrypt; wss for websocket)"),
        VncKey("tls-authz", "str", "vncd",
               "id of the authz object checked against the client certificate's DN"),
        VncKey("password", "bool", "vncd",
               "require VNC password authentication (password set by the monitor)"),
        VncKey("password-secret", "str", "vncd",
               "id of the secret object holding the VNC password"),
        VncKey("share", "str", "vncd", "allow-exclusive (default), force-shared or ignore"),
        VncKey("connections", "number", "vncd", "most clients at once (default 32)"),
        VncKey("reverse", "bool", "vncd", "connect out to a listening viewer at HOST:PORT"),
        VncKey("lossy", "bool", "vncd", "allow lossy encodings"),
        VncKey("non-adaptive", "bool", "vncd", "disable adaptive encodings"),
        VncKey("key-delay-ms", "number", "vncd", "delay between key events (default 10)"),
        VncKey("sasl", "bool", "vncd", "SASL authentication: not supported by vncd"),
        VncKey("sasl-authz", "str", "vncd", "authz object for SASL names: not supported"),
        VncKey("audiodev", "str", "qemu", "QEMU only: accepted, no effect"),
        VncKey("display", "str", "qemu", "QEMU only: accepted, no effect"),
        VncKey("head", "number", "qemu", "QEMU only: accepted, no effect"),
        VncKey("lock-key-sync", "bool", "qemu", "QEMU only: accepted, no effect"),
        VncKey("power-control", "bool", "qemu", "QEMU only: accepted, no effect"),
        VncKey("tls", "bool", "legacy",
               "deprecated: anonymous TLS; use -object tls-creds-anon and tls-creds="),
        VncKey("x509", "str", "legacy",
               "deprecated: x509 TLS from DIR; use -object tls-creds-x509 and tls-creds="),
        VncKey("x509verify", "str", "legacy",
               "deprecated: x509 TLS from DIR, client certificates required;"
               " use -object tls-creds-x509,verify-peer=on"),
        VncKey("acl", "bool", "legacy",
               "deprecated: deny-by-default client DN list;"
               " use -object authz-list and tls-authz="),
    )
}


def vnc_help() -> str:
    """The answer to ``-vnc help``: every key, with its type."""
    lines = ["vnc options:"]
    for key in sorted(VNC_KEYS.values(), key=lambda k: k.name):
        kind = "bool (on/off)" if key.kind == "bool" else key.kind
        lines.append(f"  {key.name}=<{kind}> - {key.help}")
    lines.append("  id=<str> - display id (default, vnc2, vnc3 ... when omitted)")
    return "\n".join(lines) + "\n"


def auto_id(used: Collection[str]) -> str:
    """QEMU's ``vnc_auto_assign_id``: ``default``, then ``vnc2``, ``vnc3`` ..."""
    if "default" not in used:
        return "default"
    n = 2
    while f"vnc{n}" in used:
        n += 1
    return f"vnc{n}"


def _check_param(param: Param, source: str) -> None:
    key = VNC_KEYS.get(param.key)
    if key is None:
        hint = None
        if param.flag and param.value == "off" and f"no{param.key}" in VNC_KEYS:
            hint = f"'{param.raw}' reads as {param.key}=off; write {param.raw}=on"
        else:
            hint = spelling_hint(param.key, [k for k in VNC_KEYS if k != "vnc"])
        raise OptionError(source, f"Invalid parameter '{param.key}'", hint=hint)
    if key.kind == "bool":
        optstr.parse_bool(param, source)
    elif key.kind == "number":
        optstr.parse_number(param, source)


def _display_port(text: str) -> int | None:
    """QEMU's ``parse_uint_full(..., 10)``: a non-negative decimal, or None."""
    match = _PORT.match(text)
    if match is None:
        return None
    number = int(match.group(1))
    return number if number <= _U64_MAX else None


def _address(
    text: str, *, websocket: bool, reverse: bool, displaynum: int, to: int, source: str
) -> tuple[ListenAddress, int]:
    """One ``vnc=`` or ``websocket=`` value, as ``vnc_display_get_address`` reads it.

    Returns the address and the display number (QEMU uses the first
    one to derive the default websocket port).
    """
    if text.startswith("unix:"):
        if websocket:
            raise OptionError(source, "UNIX sockets not supported with websock")
        if to:
            raise OptionError(source, "Port range not support with UNIX socket")
        return ListenAddress("unix", text[5:]), 0
    colon = text.rfind(":")
    if colon == -1:
        if not websocket:
            raise OptionError(source, "no vnc port specified")
        host, port = "", text
    else:
        host, port = text[:colon], text[colon + 1:]
        if port == "":
            raise OptionError(source, "vnc port cannot be empty")
    if len(host) >= 2 and host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if websocket:
        if text in ("", "on"):
            if displaynum == -1:
                raise OptionError(source, "explicit websocket port is required")
            return ListenAddress("tcp", host, WEBSOCKET_PORT_BASE + displaynum), displaynum
        number = _display_port(port)
        if number is None:
            raise OptionError(source, f"can't convert to a number: {port}")
        if number > MAX_PORT:
            raise OptionError(source, f"port {port} out of range")
        return ListenAddress("tcp", host, number), number
    offset = 0 if reverse else VNC_PORT_BASE
    number = _display_port(port)
    if number is None:
        raise OptionError(source, f"can't convert to a number: {port}")
    if number + offset > MAX_PORT:
        raise OptionError(source, f"port {port} out of range")
    return ListenAddress("tcp", host, number + offset), number


def _addresses(
    by_key: dict[str, list[Param]], *, reverse: bool, to: int, source: str
) -> tuple[tuple[ListenAddress, ...], tuple[ListenAddress, ...]]:
    """QEMU's ``vnc_display_get_addresses``: listeners and websocket listeners."""
    vnc = by_key.get("vnc", [])
    if not vnc or vnc[-1].value == "none":
        return (), ()
    listen = []
    displaynum = -1
    for param in vnc:
        addr, number = _address(
            param.value, websocket=False, reverse=reverse, displaynum=-1, to=to,
            source=source,
        )
        if displaynum == -1:
            displaynum = number
        listen.append(addr)
    single = listen[0] if len(listen) == 1 else None
    if single is None:
        displaynum = -1
    websockets = []
    for param in by_key.get("websocket", []):
        addr, _ = _address(
            param.value, websocket=True, reverse=reverse, displaynum=displaynum, to=to,
            source=source,
        )
        if single is not None and single.kind == "tcp" and addr.kind == "tcp" and not addr.host:
            addr = ListenAddress("tcp", single.host, addr.port)
        websockets.append(addr)
    return tuple(listen), tuple(websockets)


def _in_range(by_key, name: str, low: int, high: int, default, source: str):
    if name not in by_key:
        return default
    value = optstr.parse_number(by_key[name][-1], source)
    if not low <= value <= high:
        raise OptionError(
            source, f"Parameter '{name}' expects a number from {low} to {high}"
        )
    return value


def parse_vnc(
    arg: str,
    *,
    used_ids: Collection[str],
    option: str = "-vnc",
    warn: Warn | None = None,
) -> tuple[DisplayConfig, list[ObjectSpec]]:
    """Parse one ``-vnc`` argument.

    ``used_ids`` holds the ids of the displays parsed before this one.
    Returns the display and the objects its legacy keys ask for (to be
    created after every ``-object``).  ``warn`` receives warnings without
    location.  Raises :class:`OptionError` or, for ``help``,
    :class:`HelpRequest`.
    """
    source = f"{option} {arg}"
    optstr.check_length(arg, source)
    if optstr.is_help(arg):
        raise HelpRequest(vnc_help())
    display_id = optstr.find_id(arg, option=source)
    if display_id is not None:
        check_id(display_id, source)
        if display_id in used_ids:
            raise OptionError(source, f"Duplicate ID '{display_id}' for vnc")
    params: list[Param] = []
    for param in optstr.iter_params(arg, option=source, implied_key="vnc", warn=warn,
                                    quiet_short_form=legacy.LEGACY_KEYS):
        if param.help:
            raise HelpRequest(vnc_help())
        if param.key == "id":
            continue
        _check_param(param, source)
        params.append(param)
    if display_id is None:
        display_id = auto_id(used_ids)
    by_key: dict[str, list[Param]] = {}
    for param in params:
        by_key.setdefault(param.key, []).append(param)

    def last(name: str, default=None):
        return by_key[name][-1].value if name in by_key else default

    def flag(name: str) -> bool | None:
        return optstr.parse_bool(by_key[name][-1], source) if name in by_key else None

    if "vnc" not in by_key:
        # QEMU 7.2 starts such a display (-vnc "", -vnc password=on) and
        # listens nowhere without a word; "none" says that on purpose.
        raise OptionError(
            source, "no listen address: give [HOST]:N, [IPV6]:N, unix:PATH, or none",
            hint="QEMU 7.2 would run without listening; write 'none' for a display"
                 " that listens nowhere")
    reverse = bool(flag("reverse"))
    to = _in_range(by_key, "to", 0, MAX_DISPLAY_NUMBER, 0, source)
    listen, websocket = _addresses(by_key, reverse=reverse, to=to, source=source)
    if "password-secret" in by_key and "password" in by_key:
        raise OptionError(source, "'password' flag is redundant with 'password-secret'")
    translation = legacy.translate(
        display_id=display_id, source=source, params=params, listening=bool(listen)
    )
    connections = _in_range(by_key, "connections", 1, MAX_CONNECTIONS, 32, source)
    key_delay_ms = _in_range(by_key, "key-delay-ms", 0, MAX_KEY_DELAY_MS, 10, source)

    notes = list(translation.warnings)
    ignored = tuple(dict.fromkeys(p.key for p in params if VNC_KEYS[p.key].role == "qemu"))
    for name in ignored:
        notes.append(f"'{name}' has no effect in vncd (it only applies to QEMU); ignored")
    if warn is not None:
        for note in notes:
            warn(note)

    display = DisplayConfig(
        id=display_id,
        source=source,
        listen=listen,
        websocket=websocket,
        to=to or None,
        ipv4=flag("ipv4"),
        ipv6=flag("ipv6"),
        tls_creds=translation.tls_creds or last("tls-creds"),
        tls_authz=translation.tls_authz or last("tls-authz"),
        password=bool(flag("password")),
        password_secret=last("password-secret"),
        share=last("share", "allow-exclusive"),
        connections=connections,
        reverse=reverse,
        lossy=bool(flag("lossy")),
        non_adaptive=bool(flag("non-adaptive")),
        key_delay_ms=key_delay_ms,
        sasl=bool(flag("sasl")),
        sasl_authz=translation.sasl_authz or last("sasl-authz"),
        ignored=ignored,
    )
    return display, translation.objects


def modern_params(display: DisplayConfig) -> list[tuple[str, str]]:
    """The display's ``-vnc`` option in the modern vocabulary, as pairs.

    The option as typed (``display.source``) is read again; legacy keys
    are replaced by the ``tls-creds=``/``tls-authz=`` they stand for and
    short-form booleans are written out.  Everything else stays as typed.
    """
    arg = display.source.split(" ", 1)[1]
    params = optstr.parse(arg, option=display.source, implied_key="vnc")
    keys = {p.key for p in params}
    pairs = [(p.key, p.value) for p in params if p.key not in legacy.LEGACY_KEYS]
    if display.tls_creds is not None and "tls-creds" not in keys:
        pairs.append(("tls-creds", display.tls_creds))
    if display.tls_authz is not None and "tls-authz" not in keys:
        pairs.append(("tls-authz", display.tls_authz))
    if display.sasl_authz is not None and "sasl-authz" not in keys:
        pairs.append(("sasl-authz", display.sasl_authz))
    return pairs


def _check_secret(registry: ObjectRegistry, secret_id: str, source: str) -> None:
    """QEMU's ``qcrypto_secret_lookup_as_utf8``: the secret exists and is text."""
    try:
        lookup_secret(registry, secret_id).get_text()
    except ObjectError as err:
        raise OptionError(source, err.message, hint=err.hint) from None


def _authz_warning(display: DisplayConfig, registry: ObjectRegistry) -> str | None:
    """Why a ``tls-authz`` QEMU accepts would refuse every client, if it would."""
    authz = registry.get(display.tls_authz)
    if authz is None:
        return (
            f"no object with id '{display.tls_authz}' exists (tls-authz); every"
            " client is refused until it is created"
        )
    if not isinstance(authz, QAuthZ):
        return (
            f"Object '{display.tls_authz}' is not a QAuthZ subclass (tls-authz);"
            " every client is refused"
        )
    if isinstance(authz, AuthzList) and not authz.rules() and authz.policy == "deny":
        return (
            f"the list '{authz.id}' (tls-authz) is empty with policy deny: every client"
            " is refused until the monitor changes it (HMP: acl_add"
            f" {authz.id} 'CN=name,O=org' allow, or acl_policy {authz.id} allow)"
        )
    return None


def _password_warning(display: DisplayConfig) -> str | None:
    """Why ``password=on`` without ``password-secret`` would refuse every client."""
    if not display.password or display.password_secret is not None:
        return None
    if not (display.listen or display.websocket):
        return None
    return (
        "no password is set (password=on without password-secret): every client is"
        " refused until the monitor sets one (HMP: set_password vnc PASSWORD or change"
        " vnc password; QMP: change-vnc-password); or give password-secret=ID"
    )


def static_refusal(display: DisplayConfig) -> str | None:
    """The first fault :func:`check_display` would find without looking at any object.

    For ``-print-translation``, which creates no object: a display vncd
    would refuse has no equivalent command line to print.
    """
    if display.sasl:
        return SASL_MESSAGE
    if display.tls_authz is not None and display.tls_creds is None:
        return "'tls-authz' provided but TLS is not enabled"
    if display.sasl_authz is not None:
        return "'sasl-authz' provided but SASL auth is not enabled"
    if display.share not in SHARE_POLICIES:
        return "unknown vnc share= option"
    if display.reverse and display.listen:
        if display.websocket:
            return "Cannot use websockets in reverse mode"
        if len(display.listen) != 1:
            return "Expected a single address in reverse mode"
    return None


def check_display(
    display: DisplayConfig, registry: ObjectRegistry, *, warn: Warn | None = None
) -> None:
    """The checks of QEMU's ``vnc_display_open`` that need the objects, in its order.

    Raises :class:`OptionError` (located at the ``-vnc`` option) for the
    first fault.  ``warn`` receives vncd's warning about a ``tls-authz``
    that would refuse every client, as ``<option as typed>: warning: <text>``.
    """
    source = display.source
    if display.password_secret is not None:
        _check_secret(registry, display.password_secret, source)
    if display.sasl:
        raise OptionError(source, SASL_MESSAGE)
    creds = None
    if display.tls_creds is not None:
        obj = registry.get(display.tls_creds)
        if obj is None:
            raise OptionError(source, f"No TLS credentials with id '{display.tls_creds}'")
        if not isinstance(obj, TLSCreds):
            raise OptionError(
                source, f"Object with id '{display.tls_creds}' is not TLS credentials"
            )
        if obj.endpoint is not Endpoint.SERVER:
            raise OptionError(source, "Expected TLS credentials for a server endpoint")
        creds = obj
    if display.tls_authz is not None and creds is None:
        raise OptionError(source, "'tls-authz' provided but TLS is not enabled")
    if display.sasl_authz is not None and not display.sasl:
        raise OptionError(source, "'sasl-authz' provided but SASL auth is not enabled")
    if display.share not in SHARE_POLICIES:
        raise OptionError(source, "unknown vnc share= option")
    if creds is not None and creds.kind not in ("x509", "anon"):
        raise OptionError(source, f"Unsupported TLS cred type {creds.qom_type}")
    if display.reverse and display.listen:
        if display.websocket:
            raise OptionError(source, "Cannot use websockets in reverse mode")
        if len(display.listen) != 1:
            raise OptionError(source, "Expected a single address in reverse mode")
    checks_clients = creds is not None and creds.checks_peer_certificates
    if warn is not None and checks_clients and display.tls_authz is not None:
        note = _authz_warning(display, registry)
        if note is not None:
            warn(f"{source}: warning: {note}")
    if warn is not None and (note := _password_warning(display)) is not None:
        warn(f"{source}: warning: {note}")
