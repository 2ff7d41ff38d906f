"""The monitor options: ``-chardev``, ``-mon``, ``-qmp``, ``-qmp-pretty``, ``-monitor``.

QEMU 7.2 (``softmmu/vl.c``, ``chardev/char.c``, ``chardev/char-socket.c``,
``monitor/monitor.c``) reads them like this, and so does vncd::

    -chardev BACKEND,id=ID[,key=value...]   a character device
    -mon [chardev=]ID[,mode=readline|control][,pretty=on][,id=NAME]
                                 a monitor on it (default mode readline: HMP)
    -qmp ADDR                    chardev compat_monitorN from ADDR, and
                                 -mon chardev=compat_monitorN,mode=control
    -qmp-pretty ADDR             the same with pretty=on
    -monitor ADDR                the same with mode=readline; none: nothing
    -qmp chardev:ID              a monitor on an existing chardev (ID cut
                                 to 31 characters, QEMU's buffer)

N counts every ``-qmp``/``-qmp-pretty``/``-monitor`` option from 0, in
command-line order.  The ADDR forms vncd takes, and what they stand for::

    unix:PATH[,key=value...]        -chardev socket,path=PATH[,key=value...]
    tcp:[HOST]:PORT[,key=value...]  -chardev socket,host=HOST,port=PORT[,...]
    stdio                           -chardev stdio

QEMU checks keys and value types while parsing, the rest when it opens
the chardev (after every ``-object``) and the monitor (after every
chardev).  :func:`parse_chardev`, :func:`parse_mon` and
:func:`parse_monitor_address` make every check that needs no object, in
QEMU's order; :func:`check_monitors` (or :func:`check_chardev` and
:func:`check_monitor` one by one) makes the rest once the objects exist.
Error texts are QEMU's where QEMU has one.

Where vncd differs from QEMU 7.2, it is stricter and says why:

* Only the ``socket`` backend listening (``server=on``) and ``stdio``
  are served.  Every other backend, ADDR form and key QEMU knows is
  refused with a message naming it; ``server=off`` (QEMU's default:
  connect out to a waiting client) is refused.
* A socket needs ``path=`` or ``host=``/``port=``; the path may not be
  empty (QEMU invents a temporary one); the port is a number from 0 to
  65535 (QEMU also looks up service names and wraps larger numbers);
  ``to=`` lies between the port and 65535.  ``to``, ``ipv4``, ``ipv6``
  and ``port`` on a UNIX socket are ignored with a warning (QEMU ignores
  them silently).
* ``-monitor none`` must be exactly that (QEMU takes any argument that
  starts with ``none``).
* Errors that need no object are reported while parsing, so they come
  before an object error from earlier on the command line.
* A chardev that no monitor uses is not opened, with a warning (QEMU
  opens it).
* ``tls-authz`` that cannot take effect (anonymous credentials, or
  ``verify-peer=off``) is refused, as it is for ``-vnc``.
* Where QEMU follows an error in ADDR with a second line ``parse error:
  ADDR``, vncd prints only the first; every error is one line.

This module knows nothing about sockets: it reads the object registry
but opens nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from compat import optstr
from compat.config import ChardevConfig, Invocation, ListenAddress, MonitorConfig
from compat.errors import HelpRequest, OptionError
from compat.objects import check_id
from compat.optstr import Param
from creds.authz import QAuthZ
from creds.objects import ObjectError, ObjectRegistry
from creds.tlscreds import Endpoint, TLSCreds

__all__ = [
    "ChardevKey", "CHARDEV_KEYS", "MON_KEYS", "QEMU_BACKENDS", "SUPPORTED_BACKENDS",
    "MONITOR_MODES", "MONITOR_OPTIONS", "parse_chardev", "parse_mon",
    "parse_monitor_address", "check_chardev", "check_monitor", "check_monitors",
    "format_monitor_options", "chardev_help", "backends_help", "mon_help",
    "MAX_CHARDEVS", "MAX_MONITORS", "QEMU_LABEL_LENGTH", "MAX_PORT",
]

#: Most chardevs (``-chardev`` and those ``-qmp``/``-monitor`` make).  QEMU
#: has no limit; each one is a listening socket with its clients, and 64
#: is far beyond any real setup while keeping a runaway script from
#: exhausting descriptors (the same bound as for ``-vnc`` displays).
MAX_CHARDEVS = 64

#: Most monitors (``-mon``, ``-qmp``, ``-qmp-pretty``, ``-monitor``), for
#: the same reason; each chardev serves at most one monitor anyway.
MAX_MONITORS = 64

#: ``-qmp chardev:ID`` copies ID into a 32-byte buffer, so QEMU looks up
#: (and names the monitor after) its first 31 characters.
QEMU_LABEL_LENGTH = 31

#: The widths QEMU's ``tcp:HOST:PORT`` parser reads (``%64[^:]:%32[^,]``):
#: a longer host is a parse error, a longer port is cut.
COMPAT_HOST_LENGTH = 64
COMPAT_PORT_LENGTH = 32

#: Highest TCP port number.
MAX_PORT = 65535

#: The backends vncd serves a monitor over.
SUPPORTED_BACKENDS = ("socket", "stdio")

#: Every chardev backend QEMU 7.2 has (some only in builds with SPICE,
#: D-Bus or brlapi, ``console`` only on Windows): named in refusals.
QEMU_BACKENDS = frozenset({
    "braille", "console", "dbus", "file", "memory", "msmouse", "mux", "null",
    "parallel", "pipe", "pty", "qemu-vdagent", "ringbuf", "serial", "socket",
    "spiceport", "spicevmc", "stdio", "testdev", "udp", "vc", "wctablet",
})

#: ``-mon mode=``: ``readline`` is HMP (the default), ``control`` is QMP.
MONITOR_MODES = ("readline", "control")

#: The options that make a chardev and a monitor from ADDR: (mode, pretty).
MONITOR_OPTIONS = {
    "qmp": ("control", False),
    "qmp-pretty": ("control", True),
    "monitor": ("readline", False),
}

#: What the ADDR forms look like, for refusals.
ADDR_FORMS = ("vncd's monitors take unix:PATH,server=on, tcp:[HOST]:PORT,server=on,"
              " stdio or chardev:ID")

Warn = Callable[[str], None]


@dataclass(frozen=True)
class ChardevKey:
    """One key ``-chardev`` knows (QEMU 7.2's ``qemu_chardev_opts``)."""

    name: str
    #: ``str``, ``bool``, ``number`` or ``size`` (QEMU's QemuOpts types).
    kind: str
    help: str
    #: vncd takes it (with the socket backend; ``backend`` with both).
    supported: bool = False


CHARDEV_KEYS: dict[str, ChardevKey] = {
    k.name: k
    for k in (
        ChardevKey("backend", "str", "socket or stdio (the implied key)", supported=True),
        ChardevKey("path", "str", "UNIX socket path", supported=True),
        ChardevKey("host", "str", "TCP address to listen on (empty: every interface)",
                   supported=True),
        ChardevKey("port", "str", "TCP port, 0 to 65535 (0: any free port)", supported=True),
        ChardevKey("to", "number", "TCP: if the port is busy, try ports up to this one",
                   supported=True),
        ChardevKey("ipv4", "bool", "TCP: listen on IPv4 only (off: not on IPv4)",
                   supported=True),
        ChardevKey("ipv6", "bool", "TCP: listen on IPv6 only (off: not on IPv6)",
                   supported=True),
        ChardevKey("nodelay", "bool", "disable Nagle's algorithm for clients", supported=True),
        ChardevKey("delay", "bool", "delay=off is nodelay=on (so is the bare word nodelay)",
                   supported=True),
        ChardevKey("server", "bool", "listen; vncd requires server=on (default off)",
                   supported=True),
        ChardevKey("wait", "bool", "with server=on, wait for a client before starting"
                   " (default on)", supported=True),
        ChardevKey("tls-creds", "str", "TCP: id of the tls-creds-x509/-anon object"
                   " (endpoint=server)", supported=True),
        ChardevKey("tls-authz", "str", "id of the authz object checked against the client"
                   " certificate's DN", supported=True),
        ChardevKey("abstract", "bool", "QEMU: abstract UNIX socket; not supported by vncd"),
        ChardevKey("append", "bool", "QEMU: append to a file backend; not supported by vncd"),
        ChardevKey("chardev", "str", "QEMU: mux backend's device; not supported by vncd"),
        ChardevKey("clipboard", "bool", "QEMU: qemu-vdagent clipboard; not supported by vncd"),
        ChardevKey("cols", "number", "QEMU: vc columns; not supported by vncd"),
        ChardevKey("debug", "number", "QEMU: spicevmc debug level; not supported by vncd"),
        ChardevKey("fd", "str", "QEMU: inherited socket descriptor; not supported by vncd"),
        ChardevKey("height", "number", "QEMU: vc height; not supported by vncd"),
        ChardevKey("localaddr", "str", "QEMU: udp local address; not supported by vncd"),
        ChardevKey("localport", "str", "QEMU: udp local port; not supported by vncd"),
        ChardevKey("logappend", "bool", "QEMU: append to the log file; not supported by vncd"),
        ChardevKey("logfile", "str", "QEMU: copy output to a file; not supported by vncd"),
        ChardevKey("mouse", "bool", "QEMU: qemu-vdagent mouse; not supported by vncd"),
        ChardevKey("mux", "bool", "QEMU: share with other devices; not supported by vncd"),
        ChardevKey("name", "str", "QEMU: spice channel name; not supported by vncd"),
        ChardevKey("reconnect", "number", "QEMU: client reconnect delay; not supported by vncd"),
        ChardevKey("rows", "number", "QEMU: vc rows; not supported by vncd"),
        ChardevKey("signal", "bool", "QEMU: stdio Ctrl-C handling; not supported by vncd"),
        ChardevKey("size", "size", "QEMU: ringbuf size; not supported by vncd"),
        ChardevKey("telnet", "bool", "QEMU: telnet protocol; not supported by vncd"),
        ChardevKey("tight", "bool", "QEMU: abstract socket name length; not supported by vncd"),
        ChardevKey("tn3270", "bool", "QEMU: tn3270 protocol; not supported by vncd"),
        ChardevKey("websocket", "bool", "QEMU: WebSocket protocol; not supported by vncd"),
        ChardevKey("width", "number", "QEMU: vc width; not supported by vncd"),
    )
}

#: ``-mon`` keys besides ``id``: (name, type, help).
MON_KEYS = (
    ("chardev", "str", "id of the chardev the monitor talks over (the implied key)"),
    ("mode", "str", "readline (HMP, the default) or control (QMP)"),
    ("pretty", "bool", "QMP: pretty-print JSON (not with mode=readline)"),
)

_KIND_WORDS = {"bool": "bool (on/off)", "number": "num"}


def backends_help() -> str:
    """The answer to ``-chardev help``: the backends vncd serves."""
    return "Available chardev backend types:\n" + "".join(
        f"  {name}\n" for name in SUPPORTED_BACKENDS)


def chardev_help() -> str:
    """The answer to ``-chardev socket,help``: every key QEMU knows, and vncd's use of it."""
    lines = ["chardev options:"]
    for key in sorted(CHARDEV_KEYS.values(), key=lambda k: k.name):
        lines.append(f"  {key.name}=<{_KIND_WORDS.get(key.kind, key.kind)}> - {key.help}")
    lines.append("  id=<str> - the chardev's id (required)")
    return "\n".join(lines) + "\n"


def mon_help() -> str:
    """The answer to ``-mon ...,help``."""
    lines = ["mon options:"]
    for name, kind, text in MON_KEYS:
        lines.append(f"  {name}=<{_KIND_WORDS.get(kind, kind)}> - {text}")
    lines.append("  id=<str> - the monitor's id")
    return "\n".join(lines) + "\n"


def _check_key(param: Param, source: str) -> None:
    """QEMU's parse-time check of one ``-chardev`` element: known key, right type."""
    key = CHARDEV_KEYS.get(param.key)
    if key is None:
        raise OptionError(source, f"Invalid parameter '{param.key}'")
    if key.kind == "bool":
        optstr.parse_bool(param, source)
    elif key.kind == "number":
        optstr.parse_number(param, source)


def _refuse_backend(name: str, source: str) -> OptionError:
    return OptionError(source, f"the '{name}' chardev backend is not supported by vncd",
                       hint=ADDR_FORMS)


def _refuse_key(param: Param, backend: str, source: str) -> OptionError:
    if backend == "stdio":
        hint = "a stdio chardev takes only id="
    else:
        names = [k.name for k in CHARDEV_KEYS.values() if k.supported and k.name != "backend"]
        hint = "a socket chardev takes " + ", ".join(names)
    return OptionError(source, f"Parameter '{param.key}' is not supported by vncd", hint=hint)


def _port(param: Param, source: str) -> int:
    if not re.fullmatch(r"[0-9]+", param.value) or int(param.value) > MAX_PORT:
        raise OptionError(source, f"port '{param.value}' is not a number from 0 to {MAX_PORT}",
                          hint="vncd does not look up service names")
    return int(param.value)


def _open(
    params: Sequence[Param],
    chardev_id: str,
    source: str,
    chardevs: Sequence[ChardevConfig],
    *,
    generated: bool,
    warn: Warn | None,
) -> ChardevConfig:
    """QEMU's checks when it opens a chardev that need no object, in its order."""
    values = {p.key: p for p in params}
    backend = values.get("backend")
    if backend is None:
        raise OptionError(source, f'chardev: "{chardev_id}" missing backend')
    if backend.value not in QEMU_BACKENDS:
        raise OptionError(source, f"'{backend.value}' is not a valid char driver name")
    if backend.value not in SUPPORTED_BACKENDS:
        raise _refuse_backend(backend.value, source)
    for param in params:
        supported = CHARDEV_KEYS[param.key].supported
        if param.key != "backend" and (backend.value == "stdio" or not supported):
            raise _refuse_key(param, backend.value, source)
    if backend.value == "stdio":
        if any(c.backend == "stdio" for c in chardevs):
            raise OptionError(source, "cannot use stdio by multiple character devices")
        return ChardevConfig(chardev_id, "stdio", source, generated=generated)

    def flag(name: str) -> bool | None:
        return optstr.parse_bool(values[name], source) if name in values else None

    path, host, port = values.get("path"), values.get("host"), values.get("port")
    if path is not None and host is not None:
        raise OptionError(source, "None or one of 'path', 'fd' or 'host' option required.")
    if host is not None and port is None:
        raise OptionError(source, "chardev: socket: no port given")
    if "delay" in values and "nodelay" in values:
        raise OptionError(source, "'delay' and 'nodelay' are mutually exclusive")
    if path is None and host is None:
        raise OptionError(source, "the socket has no address",
                          hint="give path=PATH (UNIX) or host=HOST,port=PORT (TCP)")
    tls_creds, tls_authz = values.get("tls-creds"), values.get("tls-authz")
    if path is not None and tls_creds is not None:
        raise OptionError(source, "'tls_creds' option is incompatible with 'unix' address type")
    if tls_authz is not None and tls_creds is None:
        raise OptionError(source, "'tls_authz' option requires 'tls_creds' option")
    if not flag("server"):
        if "wait" in values:
            raise OptionError(
                source, "'wait' option is incompatible with socket in client connect mode",
                hint="vncd's monitor sockets listen: add server=on")
        raise OptionError(
            source, "vncd's monitor sockets only listen; connecting out (server=off,"
            " QEMU's default) is not supported", hint="add server=on")
    wait = flag("wait")
    common = dict(
        server=True, wait=True if wait is None else wait,
        nodelay=bool(flag("nodelay")) or flag("delay") is False,
        tls_creds=None if tls_creds is None else tls_creds.value,
        tls_authz=None if tls_authz is None else tls_authz.value, generated=generated,
    )
    if path is not None:
        if not path.value:
            raise OptionError(source, "the UNIX socket path is empty")
        if warn is not None:
            for name in ("port", "to", "ipv4", "ipv6"):
                if name in values:
                    warn(f"'{name}' has no effect on a UNIX socket (path=); ignored")
        return ChardevConfig(chardev_id, "socket", source,
                             address=ListenAddress("unix", path.value), **common)
    number = _port(port, source)
    to = None
    if "to" in values:
        to = optstr.parse_number(values["to"], source)
        if not number <= to <= MAX_PORT:
            raise OptionError(
                source, f"Parameter 'to' expects a number from {number} to {MAX_PORT}")
    return ChardevConfig(chardev_id, "socket", source,
                         address=ListenAddress("tcp", host.value, number), to=to,
                         ipv4=flag("ipv4"), ipv6=flag("ipv6"), **common)


def _check_limit(items: Sequence, limit: int, what: str, source: str) -> None:
    if len(items) >= limit:
        raise OptionError(source, f"too many {what} (at most {limit})")


def parse_chardev(
    arg: str,
    *,
    chardevs: Sequence[ChardevConfig],
    option: str = "-chardev",
    warn: Warn | None = None,
) -> ChardevConfig:
    """Parse one ``-chardev`` argument.

    ``chardevs`` holds the chardevs made before this one.  ``warn``
    receives warnings without location.  Raises :class:`OptionError` or,
    for ``help``, :class:`HelpRequest`.
    """
    source = f"{option} {arg}"
    optstr.check_length(arg, source)
    _check_limit(chardevs, MAX_CHARDEVS, "chardevs", source)
    if optstr.is_help(arg):
        raise HelpRequest(backends_help())
    chardev_id = optstr.find_id(arg, option=source)
    if chardev_id is not None:
        check_id(chardev_id, source)
        if any(c.id == chardev_id for c in chardevs):
            raise OptionError(source, f"Duplicate ID '{chardev_id}' for chardev")
    params = []
    for param in optstr.iter_params(arg, option=source, implied_key="backend", warn=warn):
        if param.help:
            raise HelpRequest(chardev_help())
        if param.key == "id":
            continue
        _check_key(param, source)
        params.append(param)
    backend = [p.value for p in params if p.key == "backend"]
    if backend and optstr.is_help(backend[-1]):
        raise HelpRequest(backends_help())
    if chardev_id is None:
        raise OptionError(source, "chardev: no id specified")
    return _open(params, chardev_id, source, chardevs, generated=False, warn=warn)


def parse_mon(
    arg: str,
    *,
    monitors: Sequence[MonitorConfig],
    option: str = "-mon",
    warn: Warn | None = None,
) -> MonitorConfig:
    """Parse one ``-mon`` argument (``monitors``: those made before it)."""
    source = f"{option} {arg}"
    optstr.check_length(arg, source)
    _check_limit(monitors, MAX_MONITORS, "monitors", source)
    mon_id = optstr.find_id(arg, option=source)
    if mon_id is not None:
        check_id(mon_id, source)
        if any(m.id == mon_id for m in monitors):
            raise OptionError(source, f"Duplicate ID '{mon_id}' for mon")
    values: dict[str, Param] = {}
    for param in optstr.iter_params(arg, option=source, implied_key="chardev", warn=warn):
        if param.help:
            raise HelpRequest(mon_help())
        if param.key == "id":
            continue
        if param.key not in (name for name, _, _ in MON_KEYS):
            raise OptionError(source, f"Invalid parameter '{param.key}'")
        if param.key == "pretty":
            optstr.parse_bool(param, source)
        values[param.key] = param
    mode = values["mode"].value if "mode" in values else "readline"
    if mode not in MONITOR_MODES:
        raise OptionError(source, f"Parameter 'mode' does not accept value '{mode}'")
    if "chardev" not in values:
        raise OptionError(source, "Parameter 'chardev' is missing")
    pretty = "pretty" in values and optstr.parse_bool(values["pretty"], source)
    return MonitorConfig(values["chardev"].value, mode, pretty, source, id=mon_id)


def _split_host_port(text: str) -> tuple[str, str, str] | None:
    """QEMU's ``sscanf(p, "%64[^:]:%32[^,]%n")`` with its ``":%32[^,]"`` fallback.

    Returns host, port and the rest after the port (the options if it
    starts with a comma; anything else is ignored, as QEMU ignores it),
    or None where QEMU fails.
    """
    match = re.match(rf"([^:]{{1,{COMPAT_HOST_LENGTH}}}):([^,]{{1,{COMPAT_PORT_LENGTH}}})",
                     text)
    if match is None:
        match = re.match(rf"()(?::)([^,]{{1,{COMPAT_PORT_LENGTH}}})", text)
    if match is None:
        return None
    return match.group(1), match.group(2), text[match.end():]


#: ADDR forms QEMU 7.2 knows and vncd refuses: (test, name in the refusal).
_REFUSED_FORMS: tuple[tuple[Callable[[str], bool], Callable[[str], str]], ...] = (
    (lambda a: a.startswith("mon:"), lambda a: "mon:"),
    (lambda a: a in ("null", "pty", "msmouse", "wctablet", "braille", "testdev"),
     lambda a: a),
    (lambda a: a.startswith("vc"), lambda a: "vc"),
    (lambda a: a == "con:", lambda a: "con:"),
    (lambda a: a.startswith("COM"), lambda a: "COM"),
    (lambda a: a.startswith(("file:", "pipe:", "telnet:", "tn3270:", "websocket:", "udp:")),
     lambda a: a.split(":", 1)[0] + ":"),
    (lambda a: a.startswith("/dev/"), lambda a: "/dev/"),
)


def _address_params(addr: str, source: str) -> list[Param]:
    """QEMU's ``qemu_chr_parse_compat`` for the forms vncd takes, as -chardev elements."""
    for test, name in _REFUSED_FORMS:
        if test(addr):
            raise OptionError(source, f"'{name(addr)}' is not supported by vncd",
                              hint=ADDR_FORMS)
    if addr == "stdio":
        return [Param("backend", "stdio", addr)]
    if addr.startswith("unix:"):
        rest = addr[len("unix:"):]
        params = [Param("backend", "socket", "unix:")]
        params += optstr.iter_params(rest, option=source, implied_key="path")
    elif addr.startswith("tcp:"):
        split = _split_host_port(addr[len("tcp:"):])
        if split is None:
            raise OptionError(source, f"parse error: {addr}", hint="write tcp:[HOST]:PORT")
        host, port, rest = split
        params = [Param("backend", "socket", "tcp:"), Param("host", host, host),
                  Param("port", port, port)]
        if rest.startswith(","):
            params += optstr.iter_params(rest[1:], option=source)
    else:
        raise OptionError(source, f"'{addr}' is not a valid char driver", hint=ADDR_FORMS)
    kept = []
    for param in params:
        if param.key != "id":          # QEMU ignores id= here: the id is compat_monitorN
            _check_key(param, source)
            kept.append(param)
    return kept


def parse_monitor_address(
    arg: str,
    *,
    kind: str,
    chardevs: Sequence[ChardevConfig],
    monitors: Sequence[MonitorConfig],
    option: str | None = None,
    warn: Warn | None = None,
) -> tuple[MonitorConfig, ChardevConfig | None] | None:
    """Parse ``-qmp``, ``-qmp-pretty`` or ``-monitor`` (``kind``) ADDR.

    Returns the monitor and the chardev ADDR makes (None for
    ``chardev:ID``), or None for ``-monitor none``.  ``option`` is the
    option as typed (default ``-`` + ``kind``).
    """
    option = option or f"-{kind}"
    source = f"{option} {arg}"
    optstr.check_length(arg, source)
    mode, pretty = MONITOR_OPTIONS[kind]
    if kind == "monitor" and arg == "none":
        return None
    _check_limit(monitors, MAX_MONITORS, "monitors", source)
    index = sum(1 for m in monitors if m.option != "mon")
    chardev = None
    if arg.startswith("chardev:"):
        label = arg[len("chardev:"):][:QEMU_LABEL_LENGTH]
    else:
        label = f"compat_monitor{index}"
        _check_limit(chardevs, MAX_CHARDEVS, "chardevs", source)
        if any(c.id == label for c in chardevs):
            raise OptionError(source, f"Duplicate ID '{label}' for chardev")
        params = _address_params(arg, source)
        chardev = _open(params, label, source, chardevs, generated=True, warn=warn)
    check_id(label, source)
    if any(m.id == label for m in monitors):
        raise OptionError(source, f"Duplicate ID '{label}' for mon")
    monitor = MonitorConfig(label, mode, pretty, source, id=label, option=kind)
    return monitor, chardev


# -- checks with the objects ------------------------------------------------


def check_chardev(
    chardev: ChardevConfig, registry: ObjectRegistry, *, warn: Warn | None = None
) -> None:
    """QEMU's checks of a chardev's objects when it opens it, then vncd's.

    Raises :class:`OptionError` located at the chardev's option.  ``warn``
    receives vncd's warning about a ``tls-authz`` that would refuse every
    client, as ``<option as typed>: warning: <text>``.
    """
    source = chardev.source
    if chardev.tls_creds is None:
        return
    creds = registry.get(chardev.tls_creds)
    if creds is None:
        raise OptionError(source, f"No TLS credentials with id '{chardev.tls_creds}'")
    if not isinstance(creds, TLSCreds):
        raise OptionError(source, f"Object with id '{chardev.tls_creds}' is not TLS credentials")
    try:
        creds.check_endpoint(Endpoint.SERVER)
    except ObjectError as err:
        raise OptionError(source, err.message, hint=err.hint) from None
    if chardev.tls_authz is None:
        return
    refusal = creds.authz_refusal()
    if refusal is not None:
        raise OptionError(source, refusal.message, hint=refusal.hint)
    authz = registry.get(chardev.tls_authz)
    note = None
    if authz is None:
        note = (f"no object with id '{chardev.tls_authz}' exists (tls-authz); every client"
                " is refused until it is created")
    elif not isinstance(authz, QAuthZ):
        note = (f"Object '{chardev.tls_authz}' is not a QAuthZ subclass (tls-authz); every"
                " client is refused")
    if note is not None and warn is not None:
        warn(f"{source}: warning: {note}")


def _monitor_chardev(monitor: MonitorConfig, invocation: Invocation) -> ChardevConfig:
    """QEMU's ``monitor_init`` checks: the chardev exists and is free; pretty is QMP's."""
    chardev = next((c for c in invocation.chardevs if c.id == monitor.chardev), None)
    if chardev is None:
        hint = None
        if monitor.option != "mon" and len(monitor.chardev) == QEMU_LABEL_LENGTH:
            hint = (f"chardev: takes the first {QEMU_LABEL_LENGTH} characters of an id;"
                    " use -mon for longer ids")
        raise OptionError(monitor.source, f'chardev "{monitor.chardev}" not found', hint=hint)
    for other in invocation.monitors:
        if other is monitor:
            break
        if other.chardev == monitor.chardev:
            raise OptionError(monitor.source, f"Device '{monitor.chardev}' is in use")
    if monitor.pretty and monitor.mode == "readline":
        raise OptionError(monitor.source, "'pretty' is not compatible with HMP monitors")
    return chardev


def check_monitor(
    monitor: MonitorConfig,
    invocation: Invocation,
    registry: ObjectRegistry,
    *,
    warn: Warn | None = None,
) -> None:
    """Every check of one monitor and its chardev, once the objects exist.

    The chardev must be in ``invocation`` and not taken by an earlier
    monitor; then :func:`check_chardev`.  Raises :class:`OptionError`.
    """
    check_chardev(_monitor_chardev(monitor, invocation), registry, warn=warn)


def check_monitors(
    invocation: Invocation, registry: ObjectRegistry, *, warn: Warn | None = None
) -> None:
    """Check every chardev, then every monitor, in QEMU's order.

    ``warn`` also receives, for each chardev no monitor uses, the warning
    that vncd does not open it.
    """
    for chardev in invocation.chardevs:
        check_chardev(chardev, registry, warn=warn)
    used = {m.chardev for m in invocation.monitors}
    for chardev in invocation.chardevs:
        if chardev.id not in used and warn is not None:
            warn(f"{chardev.source}: warning: chardev '{chardev.id}' is not used by any"
                 " monitor; vncd does not open it")
    for monitor in invocation.monitors:
        _monitor_chardev(monitor, invocation)


# -- writing them back ------------------------------------------------------


def _socket_pairs(chardev: ChardevConfig) -> list[tuple[str, str]]:
    """Every socket key after the address, values written out."""
    pairs = [("server", "on" if chardev.server else "off"),
             ("wait", "on" if chardev.wait else "off")]
    if chardev.to is not None:
        pairs.append(("to", str(chardev.to)))
    for name, value in (("ipv4", chardev.ipv4), ("ipv6", chardev.ipv6)):
        if value is not None:
            pairs.append((name, "on" if value else "off"))
    if chardev.nodelay:
        pairs.append(("nodelay", "on"))
    for name, value in (("tls-creds", chardev.tls_creds), ("tls-authz", chardev.tls_authz)):
        if value is not None:
            pairs.append((name, value))
    return pairs


def _chardev_text(chardev: ChardevConfig) -> str:
    """The ``-chardev`` argument that makes ``chardev``."""
    pairs = [("backend", chardev.backend), ("id", chardev.id)]
    address = chardev.address
    if address is not None and address.kind == "unix":
        pairs.append(("path", address.host))
    elif address is not None:
        pairs += [("host", address.host), ("port", str(address.port))]
    if chardev.backend == "socket":
        pairs += _socket_pairs(chardev)
    return optstr.format_params(pairs, implied_key="backend")


def _address_text(chardev: ChardevConfig) -> str:
    """The ADDR of ``-qmp``/``-monitor`` that makes ``chardev``."""
    address = chardev.address
    if address is None:
        return "stdio"
    if address.kind == "unix":
        pairs = [("path", address.host), *_socket_pairs(chardev)]
        return "unix:" + optstr.format_params(pairs, implied_key="path")
    host, pairs = address.host, _socket_pairs(chardev)
    if ":" in host or len(host) > COMPAT_HOST_LENGTH:
        host, pairs = "", [("host", address.host), *pairs]
    return f"tcp:{host}:{address.port}," + optstr.format_params(pairs)


def _mon_text(monitor: MonitorConfig) -> str:
    pairs = [("chardev", monitor.chardev), ("mode", monitor.mode)]
    if monitor.pretty:
        pairs.append(("pretty", "on"))
    if monitor.id is not None:
        pairs.append(("id", monitor.id))
    return optstr.format_params(pairs, implied_key="chardev")


def format_monitor_options(invocation: Invocation) -> list[str]:
    """The chardev and monitor options of ``invocation`` as command-line words.

    Each is written in the form it was given (``-chardev``, ``-mon``,
    ``-qmp ADDR``, ``-qmp chardev:ID`` ...) with every value written
    out, in an order that parses back to the same lists and the same
    generated ids.
    """
    words: list[str] = []
    generated = {c.id: c for c in invocation.chardevs if c.generated}
    written: set[str] = set()
    chardevs, monitors = invocation.chardevs, invocation.monitors
    i = j = index = 0
    while i < len(chardevs) or j < len(monitors):
        if i < len(chardevs) and chardevs[i].id in written:
            i += 1
        elif i < len(chardevs) and not chardevs[i].generated or j == len(monitors):
            words += ["-chardev", _chardev_text(chardevs[i])]
            i += 1
        else:
            monitor = monitors[j]
            j += 1
            if monitor.option == "mon":
                words += ["-mon", _mon_text(monitor)]
                continue
            label = f"compat_monitor{index}"
            index += 1
            made = generated.get(label) if monitor.chardev == label else None
            if made is None:
                words += [f"-{monitor.option}", f"chardev:{monitor.chardev}"]
            else:
                words += [f"-{monitor.option}", _address_text(made)]
                written.add(label)
    return words
