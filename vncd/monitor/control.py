# -*- test-case-name: tests.vncd.monitor.test_control -*-
"""The monitor's commands and events: what QMP and HMP act on.

:class:`Monitor` is shared by every monitor connection of one vncd.  It
holds the object registry, the running displays (once they started),
the :class:`vncd.reload.Reloader` that loads credentials off the reactor
thread, and the connections that receive events.

Commands are one table, :data:`COMMANDS`: name, declared arguments
(:mod:`vncd.monitor.schema`) and handler.  :meth:`Monitor.execute` looks
a command up, checks its arguments with QEMU's words, runs it and
returns a Deferred of its return value; every failure is a
:class:`~vncd.monitor.schema.QMPError`.  Where QEMU 7.2 has the command,
the arguments, the reply's shape and the error classes are QEMU's; the
``vncd-`` commands are vncd's own.

Events: the monitor observes every display's server
(:attr:`vncd.server.DisplayServer.observers`) and sends QEMU's
``VNC_CONNECTED``, ``VNC_INITIALIZED`` and ``VNC_DISCONNECTED`` with
QEMU's payloads, and ``SHUTDOWN`` when vncd stops.

Deliberate differences from QEMU 7.2, all refusals where QEMU says
nothing or does something misleading: an empty VNC password is refused
(QEMU then admits anyone); setting a password, or its expiry, on a
display that does not check one is refused (QEMU accepts it when the
display has any security at all and then never asks for it); a
malformed ``expire_password`` time is refused (QEMU 7.2 reads it as
"expired since 1970"); credentials and secrets a display or monitor
holds cannot be deleted (QEMU deletes them and the display keeps using
the deleted object), and the message names the holder.

This module knows nothing about JSON framing, sockets or certificates.
"""

from __future__ import annotations

import datetime
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from creds.authz import AuthzList
from creds.objects import ObjectError, ObjectRegistry
from creds.summary import summarize
from creds.tlscreds import TLSCreds
from vncd.monitor import vncinfo
from vncd.monitor.schema import Arg, QMPError, check_arguments

__all__ = ["Monitor", "COMMANDS", "Command", "parse_expiry"]

log = Logger(namespace="vncd.monitor")

#: QEMU's answer to ``display-reload`` when there is no display.
NO_DISPLAY = "Can not find vnc display"


@dataclass(frozen=True)
class Command:
    """One QMP command: its arguments and the :class:`Monitor` method running it."""

    name: str
    args: tuple[Arg, ...]
    method: str
    #: Undeclared arguments are handed to the method as ``rest`` (object-add).
    rest: bool = False


_PROTOCOLS = ("vnc", "spice")

#: Every QMP command vncd has besides ``qmp_capabilities`` (answered by
#: the protocol core), in ``query-commands`` order.
COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("query-version", (), "query_version"),
    Command("query-commands", (), "query_commands"),
    Command("quit", (), "quit"),
    Command("object-add", (Arg("qom-type"), Arg("id")), "object_add", rest=True),
    Command("object-del", (Arg("id"),), "object_del"),
    Command("query-vnc", (), "query_vnc"),
    Command("query-vnc-servers", (), "query_vnc_servers"),
    Command("change-vnc-password", (Arg("password"),), "change_vnc_password"),
    Command("set_password", (
        Arg("protocol", "enum", choices=_PROTOCOLS), Arg("password"),
        Arg("connected", "enum", optional=True, choices=("keep", "disconnect", "fail")),
        Arg("display", optional=True)), "set_password"),
    Command("expire_password", (
        Arg("protocol", "enum", choices=_PROTOCOLS), Arg("time"),
        Arg("display", optional=True)), "expire_password"),
    Command("display-reload", (
        Arg("type", "enum", choices=("vnc",)), Arg("tls-certs", "bool", optional=True)),
        "display_reload"),
    Command("human-monitor-command", (
        Arg("command-line"), Arg("cpu-index", "int", optional=True)), "human_monitor_command"),
    Command("vncd-query-credentials", (), "query_credentials"),
    Command("vncd-query-clients", (), "query_clients"),
    Command("vncd-reload-credentials", (Arg("id", optional=True),), "reload_credentials"),
)}

#: Seconds ``quit`` waits for its reply to reach the client before vncd
#: stops anyway (a client that does not read must not keep vncd running).
QUIT_GRACE = 2.0

_EXPIRY = re.compile(r"(\+?)([0-9]{1,18})\Z")


def parse_expiry(text: str, now: float) -> float | None:
    """``expire_password``'s time: ``now``, ``never`` (None), ``+SECONDS`` or UNIX time."""
    if text == "now":
        return now
    if text == "never":
        return None
    match = _EXPIRY.match(text)
    if match is None:
        raise QMPError(f"Parameter 'time' doesn't take value '{text}'")
    seconds = int(match.group(2))
    return now + seconds if match.group(1) else float(seconds)


#: Members QEMU 7.2's QAPI schema makes mandatory in ``object-add`` where
#: the object itself would only complain later, in its own words.
QAPI_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "authz-listfile": ("filename",),
}

#: QAPI's name for the JSON type each kind of property must be given as.
_JSON_TYPES = {"bool": "boolean", "int": "integer"}


def _check_json_types(cls: Any, arguments: Mapping[str, Any]) -> None:
    """QMP carries typed JSON: refuse what QEMU's QAPI visitor refuses.

    The command line's ``key=value`` strings (``verify-peer=yes``) and the
    index form of ``rules`` are text conventions; over QMP a boolean must
    be ``true``/``false`` and ``rules`` an array, with QEMU's messages.
    """
    for name in QAPI_REQUIRED.get(cls.qom_type, ()):
        if name not in arguments:
            raise QMPError(f"Parameter '{name}' is missing")
    for name, value in arguments.items():
        spec = cls.prop_spec(name)
        if spec is None:
            continue
        expected = _JSON_TYPES.get(spec.kind)
        if expected == "boolean" and not isinstance(value, bool):
            raise QMPError(f"Invalid parameter type for '{name}', expected: {expected}")
        if expected == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            raise QMPError(f"Invalid parameter type for '{name}', expected: {expected}")
        if spec.kind == "json" and not isinstance(value, list):
            raise QMPError(f"Invalid parameter type for '{name}', expected: array")


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Monitor:
    """The state every monitor connection shares (see the module docstring).

    ``reloader`` loads credentials (``create``, ``reload``, ``reload_all``);
    ``version`` is vncd's version (``0.1.0``); ``stop()`` stops vncd
    (``quit``); ``now()`` is the wall clock (event timestamps, password
    expiry); ``hmp`` runs HMP command lines for ``human-monitor-command``
    (set by :mod:`vncd.monitor.hmp`).
    """

    def __init__(self, reactor: Any, registry: ObjectRegistry, reloader: Any, *,
                 version: str, stop: Callable[[], None],
                 now: Callable[[], float] = time.time) -> None:
        self.reactor = reactor
        self.registry = registry
        self.reloader = reloader
        self.version = version
        self._stop = stop
        self.now = now
        self.service: Any = None
        self.hmp: Callable[[str], defer.Deferred] | None = None
        #: Everything that receives events: objects with ``send_event(name, data, timestamp)``.
        self._event_sinks: list = []
        self._quitting = False
        self._quit_timer = None
        self._shutdown_announced = False

    # -- displays and events ----------------------------------------------------

    @property
    def displays(self) -> list:
        return list(self.service.displays) if self.service is not None else []

    def attach(self, service: Any) -> None:
        """Serve ``service``'s displays: queries see them, their clients make events."""
        self.service = service
        for display in service.displays:
            display.server.observers.append(self)

    def add_event_sink(self, sink: Any) -> None:
        self._event_sinks.append(sink)

    def remove_event_sink(self, sink: Any) -> None:
        if sink in self._event_sinks:
            self._event_sinks.remove(sink)

    def emit(self, name: str, data: Mapping[str, Any] | None) -> None:
        """Send an event to every connection that negotiated capabilities."""
        now = self.now()
        seconds = int(now)
        timestamp = (seconds, int(round((now - seconds) * 1_000_000)) % 1_000_000)
        for sink in list(self._event_sinks):
            sink.send_event(name, data, timestamp)

    def _display_of(self, server: Any) -> Any:
        for display in self.displays:
            if display.server is server:
                return display
        return None

    def _vnc_event(self, name: str, server: Any, client: dict[str, Any]) -> None:
        display = self._display_of(server)
        info = vncinfo.server_info(display) if display is not None else None
        if info is not None:
            self.emit(name, {"server": info, "client": client})

    # The client events are built only while a monitor connection listens:
    # every connection passes here three times, and without one (the usual
    # case) building QEMU's payloads was a good part of vncd's own work
    # per handshake.

    def client_connected(self, server: Any, info: Any) -> None:
        if self._event_sinks:
            self._vnc_event("VNC_CONNECTED", server, vncinfo.basic_client(info))

    def client_initialized(self, server: Any, info: Any) -> None:
        if self._event_sinks:
            self._vnc_event("VNC_INITIALIZED", server, vncinfo.client_info(info))

    def client_disconnected(self, server: Any, info: Any) -> None:
        if self._event_sinks:
            self._vnc_event("VNC_DISCONNECTED", server, vncinfo.client_info(info))

    def shutting_down(self, reason: str) -> None:
        """``SHUTDOWN`` with QEMU's reason (``host-qmp-quit``, ``host-signal`` ...), once."""
        if self._shutdown_announced:
            return
        self._shutdown_announced = True
        self.emit("SHUTDOWN", {"guest": False, "reason": reason})

    # -- dispatch -----------------------------------------------------------------

    def command_names(self) -> list[str]:
        return ["qmp_capabilities", *COMMANDS]

    def execute(self, name: str, arguments: Mapping[str, Any]) -> defer.Deferred:
        """Run QMP command ``name``; a Deferred of its return value or a QMPError failure."""
        command = COMMANDS.get(name)
        if command is None:
            return defer.fail(QMPError(f"The command {name} has not been found",
                                       "CommandNotFound"))
        try:
            kwargs = check_arguments(arguments, command.args, rest=command.rest)
        except QMPError as e:
            return defer.fail(e)
        if command.rest:
            kwargs["rest"] = kwargs.pop("_rest")
        d = defer.maybeDeferred(getattr(self, command.method), **kwargs)
        return d.addErrback(self._as_qmp_error, name)

    def _as_qmp_error(self, failure: Failure, name: str) -> Failure:
        if failure.check(QMPError):
            return failure
        if failure.check(ObjectError):
            return Failure(QMPError(str(failure.value)))
        log.failure("monitor command {name} failed", failure, name=name)
        return Failure(QMPError(f"internal error in {name}: {failure.getErrorMessage()}"))

    # -- commands -------------------------------------------------------------------

    def query_version(self) -> dict[str, Any]:
        numbers = [int(part) if part.isdigit() else 0
                   for part in (self.version.split(".") + ["0", "0", "0"])[:3]]
        return {"qemu": {"major": numbers[0], "minor": numbers[1], "micro": numbers[2]},
                "package": f"vncd {self.version}"}

    def query_commands(self) -> list[dict[str, str]]:
        return [{"name": name} for name in self.command_names()]

    def quit(self) -> dict[str, Any]:
        """Stop vncd once the reply is out.

        As in QEMU the reply comes first, then the ``SHUTDOWN`` event
        (:meth:`quit_replied`, called by the connection that wrote the
        reply), then the connection closes and vncd stops
        (:meth:`quit_reply_sent`) -- or after :data:`QUIT_GRACE` seconds
        if the client does not take its reply.
        """
        if not self._quitting:
            self._quitting = True
            self._quit_timer = self.reactor.callLater(QUIT_GRACE, self._stop_now)
        return {}

    @property
    def quitting(self) -> bool:
        return self._quitting

    def quit_replied(self) -> None:
        """The reply to ``quit`` was written: announce the shutdown."""
        if self._quitting and not self._shutdown_announced:
            self.shutting_down("host-qmp-quit")

    def quit_reply_sent(self) -> None:
        """The connection that asked to quit has delivered its reply: stop now."""
        if self._quitting:
            self._stop_now()

    def _stop_now(self) -> None:
        if self._quit_timer is not None and self._quit_timer.active():
            self._quit_timer.cancel()
        self._quit_timer = None
        if not self._shutdown_announced:
            self.shutting_down("host-qmp-quit")
        stop, self._stop = self._stop, lambda: None
        stop()

    def object_add(self, qom_type: str, id: str, rest: Mapping[str, Any]) -> defer.Deferred:
        registry = self.registry
        _check_json_types(registry.type_for(qom_type), rest)
        props = {"id": id, **rest}
        registry.check(qom_type, props, unknown_message="Parameter '{}' is unexpected")
        if id in registry:
            raise QMPError(f"attempt to add duplicate property '{id}' to object"
                           " (type 'container')")
        d = self.reloader.create(registry, qom_type, props)
        d.addCallback(self._object_added)
        return d

    def _object_added(self, obj: Any) -> dict[str, Any]:
        log.info("monitor: object '{id}' ({type}) created", id=obj.id, type=obj.qom_type)
        return {}

    def object_del(self, id: str) -> dict[str, Any]:
        self.registry.delete(id)
        log.info("monitor: object '{id}' deleted", id=id)
        return {}

    def query_vnc(self) -> dict[str, Any]:
        return vncinfo.query_vnc(self.displays)

    def query_vnc_servers(self) -> list[dict[str, Any]]:
        return vncinfo.query_vnc_servers(self.displays)

    def _password_display(self, display_id: str | None, action: str) -> Any:
        displays = self.displays
        if display_id is None:
            display = displays[0] if displays else None
        else:
            display = next((d for d in displays if d.config.id == display_id), None)
        if display is None:
            shown = "no VNC display" if display_id is None else \
                f"no VNC display with id '{display_id}'"
            raise QMPError(f"{action}: {shown}")
        security = display.server.security
        if not security.uses_password:
            raise QMPError(
                f"{action}: display '{display.config.id}' does not use VNC password"
                f" authentication (it offers {security.auth.label}); start it with"
                " password=on or password-secret=ID")
        return display

    def _set_password(self, password: str, display_id: str | None) -> dict[str, Any]:
        action = "Could not set password"
        display = self._password_display(display_id, action)
        try:
            display.server.security.set_password(password.encode("utf-8"))
        except ValueError as e:
            raise QMPError(f"{action}: {e}") from None
        log.info("monitor: the VNC password of display {id} was changed", id=display.config.id)
        return {}

    def change_vnc_password(self, password: str) -> dict[str, Any]:
        return self._set_password(password, None)

    def set_password(self, protocol: str, password: str, connected: str | None,
                     display: str | None) -> dict[str, Any]:
        if protocol == "spice":
            raise QMPError("SPICE is not in use", "DeviceNotActive")
        if connected not in (None, "keep"):
            raise QMPError("Invalid parameter 'connected'")
        return self._set_password(password, display)

    def expire_password(self, protocol: str, time: str, display: str | None) -> dict[str, Any]:
        if protocol == "spice":
            raise QMPError("SPICE is not in use", "DeviceNotActive")
        when = parse_expiry(time, self.now())
        target = self._password_display(display, "Could not set password expire time")
        target.server.security.expire_password(when)
        return {}

    def _creds_of_first_display(self) -> TLSCreds:
        displays = self.displays
        if not displays:
            raise QMPError(NO_DISPLAY)
        creds_id = displays[0].config.tls_creds
        creds = self.registry.get(creds_id) if creds_id is not None else None
        if not isinstance(creds, TLSCreds):
            raise QMPError("vnc tls is not enabled")
        if not creds.uses_certificates:
            # QEMU 7.2 reloads only x509 credentials here; vncd reloads
            # anonymous ones on SIGHUP and vncd-reload-credentials.
            raise QMPError(f"{creds.qom_type} doesn't support to reload TLS credential")
        return creds

    def display_reload(self, type: str, tls_certs: bool | None) -> Any:
        if not tls_certs:
            return {}
        creds = self._creds_of_first_display()
        d = self.reloader.reload(creds)
        d.addCallback(self._reloaded, creds)
        return d

    def _reloaded(self, generation: int, creds: TLSCreds) -> dict[str, Any]:
        log.info("monitor: credentials '{id}' reloaded (generation {generation})",
                 id=creds.id, generation=generation)
        return {}

    def human_monitor_command(self, command_line: str, cpu_index: int | None) -> defer.Deferred:
        if self.hmp is None:
            raise QMPError("The command human-monitor-command has not been found",
                           "CommandNotFound")
        return self.hmp(command_line)

    # -- vncd's own commands ----------------------------------------------------------

    def query_credentials(self) -> list[dict[str, Any]]:
        now = datetime.datetime.fromtimestamp(self.now(), datetime.timezone.utc)
        out = []
        for obj in self.registry:
            if not isinstance(obj, TLSCreds):
                continue
            summary = summarize(obj, now)
            entry: dict[str, Any] = {
                "id": summary.id, "qom-type": summary.qom_type, "endpoint": summary.endpoint,
                "verify-peer": summary.verify_peer, "generation": summary.generation,
                "users": obj.users,
                "certificates": [{
                    "role": c.role, "file": c.path, "subject": c.subject, "issuer": c.issuer,
                    "serial": c.serial, "fingerprint-sha256": c.fingerprint_sha256,
                    "subject-alt-names": list(c.subject_alt_names),
                    "not-before": _iso(c.not_before), "not-after": _iso(c.not_after),
                    "days-left": c.days_left} for c in summary.certificates],
                "crls": [{
                    "file": c.path, "issuer": c.issuer, "last-update": _iso(c.last_update),
                    **({"next-update": _iso(c.next_update)} if c.next_update else {}),
                    "revoked": c.revoked} for c in summary.crls],
            }
            if summary.directory is not None:
                entry["dir"] = summary.directory
            if summary.priority is not None:
                entry["priority"] = summary.priority
            if summary.dh_params is not None:
                entry["dh-params"] = summary.dh_params
            out.append(entry)
        return out

    def query_clients(self) -> list[dict[str, Any]]:
        out = []
        for display in self.displays:
            for info in display.server.clients_info():
                entry: dict[str, Any] = {
                    "display": display.config.id, **vncinfo.basic_client(info),
                    "state": info.state,
                    "connected-at": info.connected_at,
                }
                optional = {
                    "rfb-version": info.rfb_version, "security": info.security,
                    "vencrypt": info.subtype, "tls-version": info.tls_version,
                    "tls-cipher": info.tls_cipher, "tls-group": info.tls_group,
                    "x509_dname": info.peer_dn,
                    "shared": info.shared,
                }
                entry.update({k: v for k, v in optional.items() if v is not None})
                out.append(entry)
        return out

    def reload_credentials(self, id: str | None) -> Any:
        if id is None:
            d = self.reloader.reload_all(self.registry)
            return d.addCallback(lambda results: [
                {"id": r.obj.id, "generation": r.generation,
                 **({"error": str(r.error)} if r.error is not None else {})}
                for r in results])
        obj = self.registry.get(id)
        if obj is None:
            raise QMPError(f"object '{id}' not found")
        if not isinstance(obj, TLSCreds):
            raise QMPError(f"object '{id}' is not TLS credentials")
        if not obj.supports_reload:
            raise QMPError(f"{obj.qom_type} doesn't support to reload TLS credential")
        d = self.reloader.reload(obj)
        return d.addCallback(lambda generation: [{"id": id, "generation": generation}])

    # -- legacy ACL lists (HMP acl_* commands) -------------------------------------------

    def acl(self, name: str) -> AuthzList | None:
        """The authz-list object the legacy ``acl_*`` commands edit, or None."""
        obj = self.registry.get(name)
        return obj if isinstance(obj, AuthzList) else None
