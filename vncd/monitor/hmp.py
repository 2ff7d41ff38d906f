# -*- test-case-name: tests.vncd.monitor.test_hmp -*-
"""HMP, QEMU's human monitor: command lines in, text out.

:class:`HMPInterpreter` runs one command line and returns its output,
for ``-monitor``/``-mon mode=readline`` connections and for QMP's
``human-monitor-command``.  The commands are one table
(:data:`HMP_COMMANDS`) with QEMU's names, argument syntax (words, or
double-quoted strings with ``\\n``-style escapes), messages (``unknown
command: 'x'``, ``set_password: string expected``, ``Error: ...``) and
output formats (``info vnc``); they run through the QMP commands of
:class:`vncd.monitor.control.Monitor`, so both monitors behave alike.

The legacy ACL commands (``acl_show``, ``acl_policy``, ``acl_add``,
``acl_remove``, ``acl_reset``), removed from QEMU in 6.0, edit the
authz-list objects the legacy ``acl`` key creates (``vnc.x509dname``),
with the semantics and messages QEMU 4.0-5.2 gave them on those
objects: a match containing ``*`` is a glob, positions count from 1.

:class:`HMPConnection` is the line discipline of one connection,
sans-I/O: a banner and the ``(qemu) `` prompt (kept so that scripts
written against QEMU's HMP keep working), one command at a time, lines
of at most :attr:`MonitorLimits.max_hmp_line` characters, output with
``\\r\\n`` line ends, and a ``Password:`` prompt whose answer is taken
as a password, not a command.  Unlike QEMU it does not echo or edit what
is typed (the client's terminal does: ``socat READLINE``).

This module knows nothing about sockets, Twisted or certificates.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import defer
from twisted.python.failure import Failure

from compat.errors import OptionError
from compat.objects import parse_object
from creds.objects import ObjectError
from vncd.monitor import vncinfo
from vncd.monitor.limits import MonitorLimits
from vncd.monitor.schema import QMPError

__all__ = ["HMPInterpreter", "HMPConnection", "HMP_COMMANDS", "INFO_COMMANDS", "PROMPT",
           "PasswordPrompt", "HMPError"]

#: What QEMU prints before each command; scripts wait for it.
PROMPT = "(qemu) "


class HMPError(Exception):
    """A command line HMP cannot parse; the message is printed as is."""


class PasswordPrompt(Exception):
    """The command needs a password read from the terminal (``change vnc password``).

    ``then`` runs with the password and returns the command's output.
    """

    def __init__(self, then: Callable[[str], defer.Deferred]) -> None:
        super().__init__("password prompt")
        self.then = then


@dataclass(frozen=True)
class Param:
    """One HMP argument: ``s`` a word, ``S`` the rest of the line, ``i`` an integer.

    ``flag`` makes it an option written ``-d VALUE`` (always optional).
    """

    name: str
    kind: str = "s"
    optional: bool = False
    flag: str | None = None


@dataclass(frozen=True)
class HMPCommand:
    name: str
    params: tuple[Param, ...]
    #: The argument synopsis and the description ``help`` prints.
    synopsis: str
    help: str
    method: str
    aliases: tuple[str, ...] = ()


def _cmd(name, params, synopsis, help_text, method, aliases=()) -> HMPCommand:
    return HMPCommand(name, params, synopsis, help_text, method, aliases)


_S = Param

#: Every HMP command, as ``help`` lists them.
HMP_COMMANDS: dict[str, HMPCommand] = {c.name: c for c in (
    _cmd("acl_add", (_S("aclname"), _S("match"), _S("policy"), _S("index", "i", True)),
         "aclname match allow|deny [index]",
         "add a match rule to the access control list (legacy; see vncd(8))", "acl_add"),
    _cmd("acl_policy", (_S("aclname"), _S("policy")), "aclname allow|deny",
         "set default access control list policy", "acl_policy"),
    _cmd("acl_remove", (_S("aclname"), _S("match")), "aclname match",
         "remove a match rule from the access control list", "acl_remove"),
    _cmd("acl_reset", (_S("aclname"),), "aclname",
         "reset the access control list to deny everyone", "acl_reset"),
    _cmd("acl_show", (_S("aclname"),), "aclname",
         "list rules in the access control list", "acl_show"),
    _cmd("change", (_S("device"), _S("target"), _S("arg", optional=True)),
         "vnc password [password]", "change the VNC password", "change"),
    _cmd("expire_password", (_S("protocol"), _S("time"), _S("display", flag="-d")),
         "protocol time [-d display]", "set vnc password expire-time", "expire_password"),
    _cmd("help", (_S("name", optional=True),), "[cmd]", "show the help", "help",
         aliases=("?",)),
    _cmd("info", (_S("item", optional=True),), "[subcommand]",
         "show various information about vncd", "info"),
    _cmd("object_add", (_S("object", "S"),), "[qom-type=]type,id=str[,prop=value][,...]",
         "create QOM object", "object_add"),
    _cmd("object_del", (_S("id"),), "id", "destroy QOM object", "object_del"),
    _cmd("quit", (), "", "quit vncd", "quit", aliases=("q",)),
    _cmd("set_password", (_S("protocol"), _S("password"), _S("display", flag="-d"),
                          _S("connected", optional=True)),
         "protocol password [-d display] [action-if-connected]", "set vnc password",
         "set_password"),
)}

#: ``info`` subcommands: name -> (description, method).
INFO_COMMANDS: dict[str, tuple[str, str]] = {
    "clients": ("show every VNC client with its security (vncd)", "info_clients"),
    "credentials": ("show TLS credentials: files, subjects, expiry (vncd)", "info_credentials"),
    "version": ("show the version of vncd", "info_version"),
    "vnc": ("show the vnc server status", "info_vnc"),
}

_ESCAPES = {"n": "\n", "r": "\r", "\\": "\\", "'": "'", '"': '"'}


def _words(text: str) -> list[str]:
    """Split arguments as QEMU's ``get_str``: words, or double-quoted strings."""
    words, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return words
        if text[pos] == '"':
            pos += 1
            out = []
            while pos < len(text) and text[pos] != '"':
                ch = text[pos]
                if ch == "\\":
                    pos += 1
                    if pos >= len(text) or text[pos] not in _ESCAPES:
                        raise HMPError(f"unsupported escape code: '\\{text[pos:pos + 1]}'")
                    ch = _ESCAPES[text[pos]]
                out.append(ch)
                pos += 1
            if pos >= len(text):
                raise HMPError("unterminated string")
            pos += 1
            words.append("".join(out))
        else:
            start = pos
            while pos < len(text) and not text[pos].isspace():
                pos += 1
            words.append(text[start:pos])


class HMPInterpreter:
    """Runs HMP command lines against a :class:`~vncd.monitor.control.Monitor`."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self._names = {alias: c for c in HMP_COMMANDS.values() for alias in (c.name, *c.aliases)}

    def run(self, line: str) -> defer.Deferred:
        """The output of ``line`` (a Deferred of text with ``\\n`` line ends).

        Fails with :class:`PasswordPrompt` when the command wants a
        password typed at a prompt (the connection asks for it).
        """
        line = line.strip()
        if not line:
            return defer.succeed("")
        name, _, rest = line.partition(" ")
        command = self._names.get(name)
        if command is None:
            return defer.succeed(f"unknown command: '{name}'\n")
        try:
            args = self._parse(command, rest)
        except HMPError as e:
            return defer.succeed(f"{command.name}: {e}\n"
                                 f'Try "help {command.name}" for more information\n')
        d = defer.maybeDeferred(getattr(self, "cmd_" + command.method), **args)
        return d.addErrback(self._error_text)

    @staticmethod
    def _error_text(failure: Failure) -> Any:
        if failure.check(_Printed):
            return str(failure.value)
        if failure.check(QMPError):
            return f"Error: {failure.value.desc}\n"
        if failure.check(ObjectError, OptionError):
            return f"Error: {failure.value}\n"
        return failure

    @staticmethod
    def _parse(command: HMPCommand, rest: str) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for param in command.params:
            if param.kind == "S":
                if not rest.strip() and not param.optional:
                    raise HMPError("string expected")
                args[param.name] = rest.strip() or None
                rest = ""
                continue
            words = _words(rest)
            if param.flag is not None:
                if words and words[0] == param.flag:
                    if len(words) < 2:
                        raise HMPError("string expected")
                    args[param.name] = words[1]
                    rest = _after(rest, 2)
                else:
                    args[param.name] = None
                continue
            if not words:
                if param.optional:
                    args[param.name] = None
                    continue
                raise HMPError("integer expected" if param.kind == "i" else "string expected")
            word = words[0]
            if param.kind == "i":
                try:
                    word = int(word, 0)
                except ValueError:
                    raise HMPError(f"invalid char '{word[:1]}' in expression") from None
            args[param.name] = word
            rest = _after(rest, 1)
        if _words(rest):
            raise HMPError("extraneous characters at the end of line")
        return args

    # -- general --------------------------------------------------------------------

    def cmd_help(self, name: str | None) -> str:
        if name == "info":
            return self.cmd_info(None)
        commands = sorted(HMP_COMMANDS.values(), key=lambda c: c.name)
        if name is not None:
            command = self._names.get(name)
            if command is None:
                return f"unknown command: '{name}'\n"
            commands = [command]
        return "".join(f"{' | '.join((c.name, *c.aliases))} {c.synopsis} -- {c.help}\n"
                       for c in commands)

    def cmd_info(self, item: str | None) -> Any:
        if item is None:
            return "".join(f"info {name}  -- {text}\n"
                           for name, (text, _) in sorted(INFO_COMMANDS.items()))
        entry = INFO_COMMANDS.get(item)
        if entry is None:
            return f"unknown command: 'info {item}'\n"
        return getattr(self, entry[1])()

    def cmd_quit(self) -> defer.Deferred:
        return self.monitor.execute("quit", {}).addCallback(lambda _: "")

    def _qmp(self, name: str, arguments: dict[str, Any]) -> defer.Deferred:
        """Run a QMP command; HMP prints nothing on success."""
        return self.monitor.execute(name, arguments).addCallback(lambda _: "")

    # -- objects --------------------------------------------------------------------

    def cmd_object_add(self, object: str) -> defer.Deferred:
        spec = parse_object(object, registry=self.monitor.registry, option="object_add")
        props = dict(spec.props)
        return self._qmp("object-add", {"qom-type": spec.qom_type, **props})

    def cmd_object_del(self, id: str) -> defer.Deferred:
        return self._qmp("object-del", {"id": id})

    # -- passwords ------------------------------------------------------------------

    def cmd_change(self, device: str, target: str, arg: str | None) -> Any:
        if device != "vnc":
            return f"Error: Device '{device}' not found\n"
        if target not in ("password", "passwd"):
            return "Expected 'password' after 'vnc'\n"
        if arg is None:
            raise PasswordPrompt(
                lambda password: self._qmp("change-vnc-password", {"password": password})
                .addErrback(self._error_text))
        return self._qmp("change-vnc-password", {"password": arg})

    def cmd_set_password(self, protocol: str, password: str, display: str | None,
                         connected: str | None) -> defer.Deferred:
        arguments: dict[str, Any] = {"protocol": protocol, "password": password}
        if display is not None:
            arguments["display"] = display
        if connected is not None:
            arguments["connected"] = connected
        return self._qmp("set_password", arguments)

    def cmd_expire_password(self, protocol: str, time: str, display: str | None) -> defer.Deferred:
        arguments: dict[str, Any] = {"protocol": protocol, "time": time}
        if display is not None:
            arguments["display"] = display
        return self._qmp("expire_password", arguments)

    # -- legacy ACLs ------------------------------------------------------------------

    def _acl(self, name: str):
        acl = self.monitor.acl(name)
        if acl is None:
            raise _Printed(f"acl: unknown list '{name}'\n")
        return acl

    def cmd_acl_show(self, aclname: str) -> str:
        acl = self._acl(aclname)
        lines = [f"policy: {acl.policy}"]
        lines += [f"{index}: {rule.policy} {rule.match}"
                  for index, rule in enumerate(acl.rules(), 1)]
        return "\n".join(lines) + "\n"

    def cmd_acl_reset(self, aclname: str) -> str:
        acl = self._acl(aclname)
        acl.set_policy("deny")
        for rule in acl.rules():
            acl.remove(rule.match)
        return "acl: removed all rules\n"

    def cmd_acl_policy(self, aclname: str, policy: str) -> str:
        acl = self._acl(aclname)
        if policy not in ("allow", "deny"):
            return f"acl: unknown policy '{policy}', expected 'deny' or 'allow'\n"
        acl.set_policy(policy)
        return f"acl: policy set to '{policy}'\n"

    def cmd_acl_add(self, aclname: str, match: str, policy: str, index: int | None) -> str:
        acl = self._acl(aclname)
        if policy not in ("allow", "deny"):
            return f"acl: unknown policy '{policy}', expected 'deny' or 'allow'\n"
        format = "glob" if "*" in match else "exact"
        try:
            if index is None:
                position = acl.append(match, policy, format) + 1
            elif index < 1:
                return "acl: unable to add acl entry\n"
            else:
                position = acl.insert(index - 1, match, policy, format) + 1
        except ObjectError:
            return "acl: unable to add acl entry\n"
        return f"acl: added rule at position {position}\n"

    def cmd_acl_remove(self, aclname: str, match: str) -> str:
        acl = self._acl(aclname)
        index = acl.remove(match)
        if index is None:
            return "acl: no matching acl entry\n"
        return f"acl: removed rule at position {index + 1}\n"

    # -- info -------------------------------------------------------------------------

    def info_version(self) -> str:
        return f"{self.monitor.version} (vncd)\n"

    def info_vnc(self) -> str:
        return vncinfo.info_vnc(self.monitor.displays)

    def info_credentials(self) -> defer.Deferred:
        return self.monitor.execute("vncd-query-credentials", {}).addCallback(_credentials_text)

    def info_clients(self) -> defer.Deferred:
        return self.monitor.execute("vncd-query-clients", {}).addCallback(_clients_text)


class _Printed(HMPError):
    """A command's complete output, raised from deep inside it (``acl: unknown list``)."""


def _after(text: str, count: int) -> str:
    """``text`` without its first ``count`` words (quoted strings count as one)."""
    pos = 0
    for _ in range(count):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos < len(text) and text[pos] == '"':
            pos += 1
            while pos < len(text) and text[pos] != '"':
                pos += 2 if text[pos] == "\\" else 1
            pos += 1
        else:
            while pos < len(text) and not text[pos].isspace():
                pos += 1
    return text[pos:]


def _credentials_text(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "No TLS credentials\n"
    lines = []
    for entry in entries:
        where = f" dir={entry['dir']}" if "dir" in entry else ""
        lines.append(f"{entry['id']}: {entry['qom-type']} endpoint={entry['endpoint']}"
                     f" verify-peer={'on' if entry['verify-peer'] else 'off'}{where}"
                     f" generation={entry['generation']}")
        if entry["users"]:
            lines.append(f"  used by: {', '.join(entry['users'])}")
        for cert in entry["certificates"]:
            lines.append(f"  {cert['role']}: {cert['subject']}")
            lines.append(f"    issuer: {cert['issuer']}")
            lines.append(f"    valid until {cert['not-after']} ({cert['days-left']} days left)")
            if cert["subject-alt-names"]:
                lines.append(f"    subjectAltName: {', '.join(cert['subject-alt-names'])}")
            lines.append(f"    file: {cert['file']}")
        for crl in entry["crls"]:
            lines.append(f"  crl: {crl['issuer']}, {crl['revoked']} revoked,"
                         f" next update {crl.get('next-update', 'never')}")
    return "\n".join(lines) + "\n"


def _clients_text(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "No VNC clients\n"
    lines = []
    for entry in entries:
        security = " ".join(entry[k] for k in ("security", "vencrypt") if k in entry)
        tls = " ".join(entry[k] for k in ("tls-version", "tls-cipher", "tls-group") if k in entry)
        lines.append(f"{entry['display']}: {entry['host']}:{entry['service']} ({entry['family']}"
                     f"{' (Websocket)' if entry['websocket'] else ''}) {entry['state']}")
        lines.append(f"  security: {security or 'not chosen yet'}"
                     + (f", TLS: {tls}" if tls else ""))
        lines.append(f"  x509_dname: {entry.get('x509_dname', 'none')}")
    return "\n".join(lines) + "\n"


class HMPConnection:
    """The line discipline of one HMP connection (see the module docstring)."""

    def __init__(self, banner: str, *, limits: MonitorLimits | None = None) -> None:
        self.limits = limits or MonitorLimits()
        self._buffer = bytearray()
        self._lines: deque[str] = deque()
        self._out = bytearray()
        self._busy = False
        self._password_for: Callable[[str], defer.Deferred] | None = None
        self._discarding = False
        self.closed = False
        self.write(banner + "\n")
        self.write(PROMPT)

    def receive_data(self, data: bytes) -> None:
        if self.closed:
            return
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            raw = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[:end + 1]
            if self._discarding:
                self._discarding = False
                self._lines.append(_TOO_LONG)
            else:
                self._add_line(raw)
        if len(self._buffer) > self.limits.max_hmp_line:
            # Drop the over-long line up to its end, keeping nothing of it.
            self._buffer.clear()
            self._discarding = True

    def _add_line(self, raw: bytes) -> None:
        if len(raw) > self.limits.max_hmp_line:
            self._lines.append(_TOO_LONG)
        else:
            self._lines.append(raw.decode("utf-8", "replace"))

    @property
    def pending(self) -> int:
        """Lines read and not yet run (the caller stops reading at the limit)."""
        return len(self._lines) + self._busy

    def next_line(self) -> tuple[str, Callable[[str], defer.Deferred] | None] | None:
        """The next line to run, with the password callback if it answers a prompt.

        A line over the length limit is answered here and skipped.
        """
        while not self._busy and self._lines and not self.closed:
            line = self._lines.popleft()
            password_for, self._password_for = self._password_for, None
            if line is _TOO_LONG:
                self.write(f"the line is longer than {self.limits.max_hmp_line} characters;"
                           " ignored\n")
                self.write(PROMPT)
                continue
            self._busy = True
            return line, password_for
        return None

    def finished(self, output: str) -> None:
        """The current line's command printed ``output``; prompt for the next one."""
        self._busy = False
        self.write(output)
        self.write(PROMPT)

    def prompt_password(self, then: Callable[[str], defer.Deferred]) -> None:
        """The current command asks for a password: the next line is its answer."""
        self._busy = False
        self._password_for = then
        self.write("Password: ")

    def write(self, text: str) -> None:
        if not self.closed:
            self._out += text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def output_size(self) -> int:
        return len(self._out)

    def close(self) -> None:
        self.closed = True
        self._lines.clear()


#: Stands for a line over the length limit (it is reported, not run).
_TOO_LONG = "\0too-long"
