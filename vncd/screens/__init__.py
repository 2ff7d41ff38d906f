"""Screens: where the pixels come from (see :mod:`vncd.screens.base`).

* :mod:`~vncd.screens.testcard` -- ``-screen testcard`` (the default);
* :mod:`~vncd.screens.image` -- ``-screen image,file=PNG``;
* :mod:`~vncd.screens.pipe` -- ``-screen pipe,path=...,size=WxH,format=...``;
* :mod:`~vncd.screens.file` -- ``-screen file,path=...,format=...``: a
  memory-mapped framebuffer file another program writes in place;
* :mod:`~vncd.screens.vnc` -- ``-screen vnc,server=...``: another VNC
  server's screen, through vncd's RFB client;
* :mod:`~vncd.screens.array` -- the embedding API's screen.

:func:`from_spec` builds a screen from a parsed ``-screen`` option; its
errors are :class:`~vncd.screens.base.ScreenError` naming the option.
Apart from the vnc screen, which is an RFB client, this package knows
nothing about RFB or sockets; none of it knows TLS beyond handing a
credentials object to that client.
"""

from __future__ import annotations

import re

from compat.config import ScreenSpec
from creds.objects import ObjectError, ObjectRegistry
from creds.secret import lookup_secret
from creds.tlscreds import Endpoint, TLSCreds
from vncd.screens.base import MAX_SIDE, Screen, ScreenError

__all__ = ["from_spec", "create_screen", "KINDS"]

#: The keys each ``-screen`` kind accepts, required ones first.
KINDS = {
    "testcard": ((), ("size", "name")),
    "image": (("file",), ("name",)),
    "pipe": (("path", "size", "format"), ("events", "name")),
    "file": (("path", "format"), ("size", "offset", "rate", "name")),
    "vnc": (("server",), ("password-secret", "tls-creds", "tls-hostname", "shared", "name")),
}

_TRUE = frozenset({"on", "yes", "true", "y"})
_FALSE = frozenset({"off", "no", "false", "n"})

_SIZE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})\Z")


def _size(value: str, source: str) -> tuple[int, int]:
    match = _SIZE.match(value)
    if not match:
        raise ScreenError(f"Parameter 'size' expects WIDTHxHEIGHT, not '{value}'", source=source)
    width, height = int(match.group(1)), int(match.group(2))
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ScreenError(f"Parameter 'size' {value} is outside 1x1 .. {MAX_SIDE}x{MAX_SIDE}",
                          source=source)
    return width, height


def _bool(props, key: str, default: bool, source: str) -> bool:
    value = props.get(key)
    if value is None:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ScreenError(f"Parameter '{key}' expects 'on' or 'off'", source=source)


def _upstream_creds(registry: ObjectRegistry, creds_id: str, source: str) -> TLSCreds:
    """The ``tls-creds`` of ``-screen vnc``: client-endpoint x509 or anon credentials."""
    obj = registry.get(creds_id)
    if obj is None:
        raise ScreenError(f"No TLS credentials with id '{creds_id}'", source=source)
    if not isinstance(obj, TLSCreds):
        raise ScreenError(f"Object with id '{creds_id}' is not TLS credentials", source=source)
    if obj.endpoint is not Endpoint.CLIENT:
        raise ScreenError("Expected TLS credentials for a client endpoint (vncd is the"
                          f" upstream server's client; '{creds_id}' has endpoint=server)",
                          source=source)
    if obj.kind not in ("x509", "anon"):
        raise ScreenError(f"Unsupported TLS cred type {obj.qom_type}", source=source)
    return obj


def _vnc_screen(spec: ScreenSpec, reactor, registry: ObjectRegistry | None) -> Screen:
    """``-screen vnc``: every check that can be made before connecting."""
    from vncd.client import ClientOptions
    from vncd.screens.vnc import VncScreen, parse_server

    props, source = spec.props, spec.source
    registry = registry if registry is not None else ObjectRegistry()
    address = parse_server(props["server"], source)
    shared = _bool(props, "shared", True, source)
    password = None
    if "password-secret" in props:
        try:
            password = lookup_secret(registry, props["password-secret"]).get_bytes()
        except ObjectError as e:
            raise ScreenError(e.message, source=source) from None
    creds = hostname = None
    if "tls-creds" in props:
        creds = _upstream_creds(registry, props["tls-creds"], source)
        hostname = props.get("tls-hostname") or None
        if hostname is None:
            if address.kind == "unix" and creds.checks_peer_certificates:
                raise ScreenError(
                    "a unix: server with x509 credentials needs tls-hostname=NAME, the name"
                    " its certificate must carry", source=source)
            hostname = address.host if address.kind == "tcp" else None
    elif "tls-hostname" in props:
        raise ScreenError("'tls-hostname' cannot take effect without 'tls-creds'",
                          source=source)
    user = f"-screen vnc to {address}"
    held = [obj_id for obj_id in (props.get("password-secret"), props.get("tls-creds"))
            if obj_id is not None]
    for obj_id in held:
        registry.hold(obj_id, user)
    releases = tuple(lambda obj_id=obj_id: registry.release(obj_id, user) for obj_id in held)
    options = ClientOptions(password=password, tls_creds=creds, hostname=hostname,
                            shared=shared)
    return VncScreen(address, options, reactor=reactor, name=props.get("name"),
                     on_stop=releases)


_NUMBER = re.compile(r"[0-9]{1,12}\Z")
_RATE = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3})?\Z")


def _file_screen(spec: ScreenSpec, reactor) -> Screen:
    """``-screen file``: the file is opened, checked and mapped now."""
    from vncd.screens.file import DEFAULT_RATE, FORMATS, MAX_RATE, FileScreen

    props, source = spec.props, spec.source
    fmt = props["format"]
    if fmt not in FORMATS:
        raise ScreenError(f"Parameter 'format' expects {', '.join(FORMATS)}, not '{fmt}'",
                          source=source)
    size = _size(props["size"], source) if "size" in props else None
    if fmt == "xwd" and size is not None:
        raise ScreenError("format=xwd takes the size from the file's header; leave out"
                          " 'size'", source=source)
    if fmt != "xwd" and size is None:
        raise ScreenError(f"Parameter 'size' is missing (format={fmt} has no header)",
                          source=source)
    offset = 0
    if "offset" in props:
        if fmt == "xwd":
            raise ScreenError("format=xwd takes the offset from the file's header; leave"
                              " out 'offset'", source=source)
        if not _NUMBER.match(props["offset"]):
            raise ScreenError(f"Parameter 'offset' expects a number of bytes, not "
                              f"'{props['offset']}'", source=source)
        offset = int(props["offset"])
    rate = DEFAULT_RATE
    if "rate" in props:
        if not _RATE.match(props["rate"]) or not 0 < float(props["rate"]) <= MAX_RATE:
            raise ScreenError(f"Parameter 'rate' expects looks per second above 0 and at"
                              f" most {MAX_RATE:g}, not '{props['rate']}'", source=source)
        rate = float(props["rate"])
    return FileScreen(props["path"], fmt, size=size, offset=offset, rate=rate,
                      name=props.get("name"), reactor=reactor)


def from_spec(spec: ScreenSpec, reactor, registry: ObjectRegistry | None = None) -> Screen:
    """The screen a ``-screen`` option asks for (raises :class:`ScreenError`).

    ``registry`` holds the objects ``-screen vnc`` names (``password-secret``,
    ``tls-creds``); the screen holds them, so they cannot be deleted while
    it runs.
    """
    kinds = KINDS.get(spec.kind)
    if kinds is None:
        raise ScreenError(f"unknown screen kind '{spec.kind}' (expected "
                          f"{', '.join(KINDS)})", source=spec.source)
    required, optional = kinds
    for key in spec.props:
        if key not in required and key not in optional:
            raise ScreenError(f"Invalid parameter '{key}'", source=spec.source)
    for key in required:
        if not spec.props.get(key):
            raise ScreenError(f"Parameter '{key}' is missing", source=spec.source)
    props = spec.props
    name = props.get("name")
    try:
        if spec.kind == "testcard":
            from vncd.screens.testcard import DEFAULT_HEIGHT, DEFAULT_WIDTH, TestcardScreen

            width, height = (_size(props["size"], spec.source) if "size" in props
                             else (DEFAULT_WIDTH, DEFAULT_HEIGHT))
            extra = {} if name is None else {"name": name}
            return TestcardScreen(width, height, reactor=reactor, **extra)
        if spec.kind == "vnc":
            return _vnc_screen(spec, reactor, registry)
        if spec.kind == "image":
            from vncd.screens.image import ImageScreen

            return ImageScreen(props["file"], name=name, reactor=reactor)
        if spec.kind == "file":
            return _file_screen(spec, reactor)
        from vncd.screens.pipe import FORMATS, PipeScreen

        width, height = _size(props["size"], spec.source)
        if props["format"] not in FORMATS:
            raise ScreenError(f"Parameter 'format' expects {', '.join(FORMATS)}, not "
                              f"'{props['format']}'", source=spec.source)
        return PipeScreen(props["path"], width, height, props["format"],
                          events=props.get("events"), name=name, reactor=reactor)
    except ScreenError as exc:
        if exc.source is None:
            exc.source = spec.source
        raise


#: The name :mod:`vncd.service` uses for :func:`from_spec`.
create_screen = from_spec
