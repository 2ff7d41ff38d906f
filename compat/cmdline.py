"""The ``vncd`` command line: argv in, :class:`compat.config.Invocation` out.

Options are QEMU-style single-dash words (``-vnc``, ``-object``);
``--vnc`` is accepted as a synonym.  Names are matched exactly: a hand
written scanner is used instead of argparse, whose prefix matching would
turn ``-vn`` into ``-vnc`` (CPython 3.11 ignores ``allow_abbrev=False``
for single-dash long options).  Errors and warnings follow QEMU's form,
``<option as typed>: <message>``, and are raised or reported in
command-line order, as QEMU does.

:func:`format_translation` writes an :class:`Invocation` back as one
shell-quoted, fully modern command line (``-print-translation``).

This module knows nothing about sockets; it reads the object types of a
:class:`creds.objects.ObjectRegistry` but creates no object.
"""

from __future__ import annotations

import shlex
import textwrap
from dataclasses import dataclass
from typing import Callable, Sequence

from compat import optstr
from compat.config import Invocation, ObjectSpec, ScreenSpec
from compat.errors import HelpRequest, OptionError
from compat.monitor import (
    CHARDEV_KEYS, MONITOR_OPTIONS, format_monitor_options, parse_chardev, parse_mon,
    parse_monitor_address,
)
from compat.objects import format_object, object_source, parse_object
from compat.vnc import VNC_KEYS, modern_params, parse_vnc, static_refusal
from creds.objects import ObjectRegistry

__all__ = [
    "parse_command_line", "format_translation", "help_text", "parse_screen",
    "OPTIONS", "SCREEN_KINDS", "MAX_DISPLAYS", "MAX_OBJECTS",
]

#: Most ``-vnc`` displays in one process.  QEMU has no limit; each display
#: holds listening sockets and its clients, and 64 is far beyond any real
#: setup while keeping a runaway script from exhausting descriptors.
MAX_DISPLAYS = 64

#: Most ``-object`` options.  Each may load certificate files at start-up;
#: 1024 is far beyond real use and bounds start-up work and memory.
MAX_OBJECTS = 1024

#: The screens vncd has (the screens module validates their properties).
SCREEN_KINDS = ("testcard", "image", "pipe", "file", "vnc")

Warn = Callable[[str], None]

#: Why ``-print-translation`` prints nothing for a display vncd refuses
#: (``sasl=on``, ``tls-authz`` without TLS ...): a printed line must be one
#: vncd accepts.  The reason follows.
NO_TRANSLATION = ("-print-translation: no equivalent vncd command line, since vncd refuses"
                  " this display")


@dataclass(frozen=True)
class Option:
    """One command-line option: its name without dashes, argument and help."""

    name: str
    metavar: str | None
    help: str


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option("object", "SPEC", "create an object: TYPE,id=ID[,prop=value...] or JSON"),
        Option("vnc", "SPEC", "serve a VNC display: DISPLAY[,key=value...] (repeatable)"),
        Option("screen", "SPEC", "what the displays show: KIND[,key=value...]"),
        Option("qmp", "ADDR", "a QMP monitor on ADDR (repeatable; see below)"),
        Option("qmp-pretty", "ADDR", "the same, replies pretty-printed"),
        Option("monitor", "ADDR", "an HMP (human) monitor on ADDR, or none"),
        Option("chardev", "SPEC", "a monitor's socket: socket,id=ID,... or stdio,id=ID"),
        Option("mon", "SPEC", "a monitor on a chardev: [chardev=]ID[,mode=...][,pretty=on]"),
        Option("pidfile", "FILE", "write the process id to FILE (locked; removed on exit)"),
        Option("daemonize", None, "detach once listening (start-up errors still shown)"),
        Option("print-translation", None, "print the modern equivalent command line and exit"),
        Option("h", None, "print this help and exit (also -help)"),
        Option("help", None, "print this help and exit"),
        Option("version", None, "print the version and exit"),
    )
}


def help_text(registry: ObjectRegistry) -> str:
    """The answer to ``-h``: every option, object type and ``-vnc`` key."""
    lines = [
        "usage: vncd [-object SPEC]... [-vnc SPEC]... [-screen SPEC] [-pidfile FILE]",
        "            [-daemonize] [-qmp ADDR]... [-qmp-pretty ADDR]...",
        "            [-monitor ADDR]... [-chardev SPEC]... [-mon SPEC]...",
        "            [-print-translation] [-h] [-version]",
        "",
        "A VNC server with QEMU's model of TLS credentials.  Options are QEMU's",
        "single-dash words; --opt is the same as -opt; names are never abbreviated.",
        "",
    ]
    for opt in OPTIONS.values():
        if opt.name == "help":
            continue
        name = f"-{opt.name}" + (f" {opt.metavar}" if opt.metavar else "")
        lines.append(f"  {name:<22} {opt.help}")
    lines += [
        "",
        *textwrap.wrap("-object types: " + ", ".join(registry.type_names()), 79,
                       subsequent_indent="  "),
        "  (-object help lists them; -object TYPE,help lists a type's properties)",
        "",
        "-vnc DISPLAY: :N (port 5900+N, every interface), HOST:N, [IPV6]:N,",
        "  unix:PATH or none; then key=value pairs (-vnc help lists their types):",
    ]
    for role, title in (
        ("vncd", None),
        ("qemu", "  accepted for QEMU compatibility, no effect in vncd:"),
        ("legacy", "  legacy (pre-QEMU 2.5) keys, translated into objects with a warning:"),
    ):
        if title:
            lines.append(title)
        for key in VNC_KEYS.values():
            if key.role == role and key.name != "vnc":
                lines.append(f"    {key.name:<16} {key.help}")
    lines += [
        "",
        "-qmp/-qmp-pretty/-monitor ADDR: unix:PATH,server=on[,key=value...],",
        "  tcp:[HOST]:PORT,server=on[,key=value...], stdio, or chardev:ID (a -chardev);",
        "  -monitor none is accepted and does nothing",
        "-chardev socket,id=ID,path=PATH|host=HOST,port=PORT,server=on[,key=value...]",
        "  or stdio,id=ID (-chardev socket,help lists every key); socket keys:",
    ]
    for key in CHARDEV_KEYS.values():
        if key.supported and key.name not in ("backend", "path", "host", "port"):
            lines.append(f"    {key.name:<16} {key.help}")
    lines += [
        "-mon [chardev=]ID[,mode=readline|control][,pretty=on][,id=NAME]: mode=readline",
        "  (the default) is HMP, mode=control is QMP",
        "",
        "-screen KIND: " + ", ".join(SCREEN_KINDS) + " (default testcard)",
        "  testcard; image,file=PNG; pipe,path=FILE|-,size=WxH,format=rgbx|bgrx|rgb24"
        "[,events=PATH]",
        "  vnc,server=unix:PATH|HOST:PORT[,password-secret=ID][,tls-creds=ID]",
        "      [,tls-hostname=NAME][,shared=on|off]: mirror an existing VNC server",
        "      (vncd is its client; tls-creds must have endpoint=client)",
        "",
        "Signals: SIGTERM and SIGINT stop vncd (exit status 0); SIGHUP re-reads the",
        "files of every TLS credentials object (an object whose new files fail keeps",
        "its previous credentials).  See vncd(8).",
        "",
        "Environment: LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES (socket activation: a",
        "display serves on the inherited sockets named by its id, ID.websocket for",
        "WebSocket, or on the only one when there is one socket and one display);",
        "NOTIFY_SOCKET (sd_notify: READY=1 once listening, RELOADING=1 around SIGHUP,",
        "STOPPING=1); JOURNAL_STREAM (log lines carry no timestamp when standard",
        "error is the journal; otherwise each starts with an ISO 8601 UTC time).",
    ]
    return "\n".join(lines) + "\n"


def parse_screen(arg: str, *, option: str = "-screen", warn: Warn | None = None) -> ScreenSpec:
    """``-screen KIND[,key=value...]``: the kind is checked, the properties kept."""
    source = f"{option} {arg}"
    optstr.check_length(arg, source)
    if optstr.is_help(arg):
        raise HelpRequest("screen kinds:\n" + "".join(f"  {k}\n" for k in SCREEN_KINDS))
    kind = None
    props: dict[str, str] = {}
    for param in optstr.iter_params(arg, option=source, implied_key="kind", warn=warn):
        if param.key == "kind":
            kind = param.value
        else:
            props.pop(param.key, None)
            props[param.key] = param.value
    if kind is None:
        raise OptionError(source, "Parameter 'kind' is missing")
    if kind not in SCREEN_KINDS:
        raise OptionError(source, f"Parameter 'kind' does not accept value '{kind}'")
    return ScreenSpec(kind=kind, props=props, source=source)


def _scan(argv: Sequence[str]):
    """Yield ``(option as typed, Option, argument or None)`` in order."""
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        if not word.startswith("-") or word == "-":
            raise OptionError(word, "unexpected argument (options start with '-')")
        name = word[2:] if word.startswith("--") else word[1:]
        opt = OPTIONS.get(name)
        if opt is None:
            raise OptionError(word, "invalid option")
        value = None
        if opt.metavar is not None:
            if index >= len(argv):
                raise OptionError(word, "requires an argument")
            value = argv[index]
            index += 1
        yield word, opt, value


def parse_command_line(
    argv: Sequence[str],
    *,
    registry: ObjectRegistry,
    warn: Warn | None = None,
    version: str = "",
) -> Invocation:
    """Parse ``argv`` (without the program name).

    ``registry`` supplies the object types (nothing is created in it).
    ``warn`` receives each warning as ``<option as typed>: warning: <text>``
    as soon as it is found, so warnings printed before an error come out
    first, as in QEMU; they are also collected in ``Invocation.warnings``.
    Raises :class:`OptionError`, or :class:`HelpRequest` for ``-h``,
    ``-version`` and ``help`` arguments.
    """
    invocation = Invocation()
    generated: list[ObjectSpec] = []
    typed_ids: set[str] = set()
    screen_given = False

    def warner(source: str) -> Warn:
        def emit(text: str) -> None:
            line = f"{source}: warning: {text}"
            invocation.warnings.append(line)
            if warn is not None:
                warn(line)
        return emit

    for word, opt, value in _scan(argv):
        if opt.name == "object":
            source = object_source(word, value, registry)
        else:
            source = word if value is None else f"{word} {value}"
        if opt.name in ("h", "help"):
            raise HelpRequest(help_text(registry))
        if opt.name == "version":
            raise HelpRequest(f"vncd version {version}\n")
        if opt.name == "print-translation":
            invocation.print_translation = True
        elif opt.name == "pidfile":
            invocation.pidfile = value
        elif opt.name == "daemonize":
            invocation.daemonize = True
        elif opt.name == "screen":
            if screen_given:
                raise OptionError(source, "-screen may be given only once")
            invocation.screen = parse_screen(value, option=word, warn=warner(source))
            screen_given = True
        elif opt.name == "object":
            if len(invocation.objects) >= MAX_OBJECTS:
                raise OptionError(source, f"too many objects (at most {MAX_OBJECTS})")
            spec = parse_object(value, registry=registry, option=word, warn=warner(source))
            if spec.props["id"] in typed_ids:
                raise OptionError(source, f"Duplicate ID '{spec.props['id']}' for object")
            typed_ids.add(spec.props["id"])
            invocation.objects.append(spec)
        elif opt.name == "vnc":
            if len(invocation.displays) >= MAX_DISPLAYS:
                raise OptionError(source, f"too many displays (at most {MAX_DISPLAYS})")
            display, objects = parse_vnc(
                value,
                used_ids=[d.id for d in invocation.displays],
                option=word,
                warn=warner(source),
            )
            invocation.displays.append(display)
            generated.extend(objects)
        elif opt.name == "chardev":
            invocation.chardevs.append(parse_chardev(
                value, chardevs=invocation.chardevs, option=word, warn=warner(source)))
        elif opt.name == "mon":
            invocation.monitors.append(parse_mon(
                value, monitors=invocation.monitors, option=word, warn=warner(source)))
        elif opt.name in MONITOR_OPTIONS:
            made = parse_monitor_address(
                value, kind=opt.name, chardevs=invocation.chardevs,
                monitors=invocation.monitors, option=word, warn=warner(source))
            if made is not None:
                monitor, chardev = made
                if chardev is not None:
                    invocation.chardevs.append(chardev)
                invocation.monitors.append(monitor)
    invocation.objects.extend(generated)
    return invocation


def _secret_props(registry: ObjectRegistry, spec: ObjectSpec) -> frozenset[str]:
    cls = registry.type_for(spec.qom_type)
    return frozenset(
        name for name in spec.props
        if (prop := cls.prop_spec(name)) is not None and prop.secret
    )


def format_translation(
    invocation: Invocation, *, registry: ObjectRegistry, warn: Warn | None = None
) -> str:
    """The fully modern command line for ``invocation``: one shell-quoted line.

    Objects come first (typed ones, then those generated from legacy
    keys), then the chardevs and monitors (in the forms they were given,
    every value written out), then the displays with legacy keys
    replaced, then ``-screen``, ``-pidfile`` and ``-daemonize`` if given.  Secret
    property values are never printed: they are left out, and ``warn``
    says so.  A display vncd refuses whatever the objects
    (:func:`compat.vnc.static_refusal`: ``sasl=on``, ``tls-authz`` without
    TLS ...) raises :class:`OptionError`: any line printed would be refused.
    """
    words = ["vncd"]
    for spec in invocation.objects:
        omit = _secret_props(registry, spec)
        for name in sorted(omit):
            if warn is not None:
                warn(
                    f"{spec.source}: warning: the secret value of '{name}' is not"
                    " printed; add it back, or better, keep it in a file (file=)"
                )
        words += ["-object", format_object(spec, omit=omit)]
    words += format_monitor_options(invocation)
    for display in invocation.displays:
        refusal = static_refusal(display)
        if refusal is not None:
            if display.sasl and display.sasl_authz:
                refusal += (f"; QEMU 2.5 would also have checked SASL user names against"
                            f" the deny-by-default list '{display.sasl_authz}' (sasl-authz)")
            raise OptionError(display.source, f"{NO_TRANSLATION}: {refusal}")
        words += ["-vnc", optstr.format_params(modern_params(display), implied_key="vnc")]
    if invocation.screen.kind != ScreenSpec().kind or invocation.screen.props:
        pairs = [("kind", invocation.screen.kind), *invocation.screen.props.items()]
        words += ["-screen", optstr.format_params(pairs, implied_key="kind")]
    if invocation.pidfile is not None:
        words += ["-pidfile", invocation.pidfile]
    if invocation.daemonize:
        words.append("-daemonize")
    return shlex.join(words)
