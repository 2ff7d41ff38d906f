# -*- test-case-name: tests.vncd.test_service -*-
"""Start the displays a command line asks for: resolve, check, listen, serve.

:func:`start` takes the reactor, the object registry (every ``-object``
already created) and the parsed :class:`~compat.config.Invocation`.  For
each ``-vnc`` display it

1. makes QEMU 7.2's start-up checks in QEMU's order and wording
   (:func:`compat.vnc.check_display`), then vncd's own: an option that
   could not take effect in this configuration stops the start with a
   reason, where QEMU would quietly ignore it (``tls-authz`` with
   anonymous credentials or with ``verify-peer=off``);
2. derives the offered security from the credentials kind and the
   password (:func:`vncd.rfb.security.auth_for`), taking the password from
   ``password-secret`` (refusing an empty one, which QEMU accepts) or
   leaving it unset for ``password=on``;
3. listens on every address -- ``host:port`` on each address the host
   resolves to (every interface for an empty host, IPv6 sockets
   v6-only), ``[v6]:port``, ``unix:PATH``, nothing for ``none`` -- trying
   the following ports up to ``to=`` when one is taken, honouring
   ``ipv4=``/``ipv6=``, plus the WebSocket listeners; or, with
   ``reverse=on``, connects out to the listening viewer.

Each display serves the screen through its own
:class:`~vncd.updates.Display`, which gets ``lossy``, ``non-adaptive``
and ``key-delay-ms``.

Failures raise :class:`StartupError` naming the ``-vnc`` option as typed,
with QEMU's messages ("Failed to find an available port: Address already
in use", "Failed to connect to 'HOST:PORT': Connection refused" ...);
whatever was opened before the failure is closed again.

Sockets are created, bound and connected here and handed to the reactor
(``adoptStreamPort`` / ``adoptStreamConnection``), so the reactor can be
any ``IReactorSocket``.  This module never looks inside a certificate:
it reads the credentials' kind, endpoint and ``verify-peer`` and hands
the object to :class:`creds.session.TLSSession`.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.internet.protocol import ClientFactory
from twisted.logger import Logger

from compat.config import DisplayConfig, Invocation, ListenAddress
from compat.errors import OptionError
from compat.vnc import VNC_PORT_BASE, WEBSOCKET_PORT_BASE, check_display
from creds.objects import ObjectError, ObjectRegistry
from creds.secret import lookup_secret
from creds.session import TLSSession
from creds.tlscreds import Endpoint, TLSCreds
from vncd.activation import InheritedSocket, InheritedSockets
from vncd.listen import Listener, StartupError, adopt, families, listen, unlink_socket
from vncd.rfb.limits import Limits
from vncd.rfb.security import Auth, SecurityConfig, SecurityType, auth_for
from vncd.screens import from_spec
from vncd.screens.base import ScreenError, ServedAddress
from vncd.server import AuthThrottle, ConnectionLog, DisplayServer, RFBServerFactory
from vncd.updates import Display

__all__ = ["StartupError", "Service", "start", "security_words",
           "REVERSE_CONNECT_TIMEOUT"]

log = Logger(namespace="vncd.service")

#: Seconds ``reverse=on`` waits for the viewer to accept the connection
#: (QEMU connects synchronously with the system's timeout, minutes).
REVERSE_CONNECT_TIMEOUT = 10.0


#: How a listener without TLS is described to people.  RFB calls these
#: security types "None" and "VNC"; on a screen, "(None)" would read as
#: "nothing known", so the words say what a client has to do.
_PLAIN_SECURITY_WORDS = {
    SecurityType.NONE: "no authentication",
    SecurityType.VNC: "VNC password",
}


def security_words(auth: Auth) -> str:
    """What a client meets on a listener offering ``auth``, for people:
    ``no authentication``, ``VNC password``, ``VeNCrypt X509None`` ..."""
    return _PLAIN_SECURITY_WORDS.get(auth.security_type) or auth.label


@dataclass
class RunningDisplay:
    """One started ``-vnc`` display."""

    config: DisplayConfig
    server: DisplayServer
    #: Every listening socket: the plain ones first, then the WebSocket ones.
    listeners: list[Listener] = field(default_factory=list)
    #: ``reverse HOST:PORT`` for each viewer a ``reverse=on`` display connected to.
    reverse: list[str] = field(default_factory=list)
    #: Whether clients must present a certificate (x509 with verify-peer=on).
    client_certificates: bool = False

    @property
    def addresses(self) -> list[tuple[str, bool]]:
        """``(address text, websocket)`` of every socket, reverse connections included."""
        return ([(listener.text, listener.websocket) for listener in self.listeners]
                + [(text, False) for text in self.reverse])

    def served(self) -> list[ServedAddress]:
        """Every address with the security a client meets there (the testcard shows them)."""
        security = self.server.security
        required = ", client certificate required" if self.client_certificates else ""
        websocket_security = "WebSocket{}, {}".format(
            f" over TLS{required}" if self.server.tls_session is not None else "",
            security_words(security.for_websocket().auth))
        return [ServedAddress(text, websocket_security if websocket
                              else security_words(security.auth) + required)
                for text, websocket in self.addresses]


class Service:
    """Everything :func:`start` started; :meth:`stop` undoes it."""

    def __init__(self, reactor, screen, registry: ObjectRegistry | None = None,
                 limits: Limits | None = None) -> None:
        self.reactor = reactor
        self.screen = screen
        self.registry = registry
        #: The connection log every display writes to (repeats summarised per source).
        self.connection_log = ConnectionLog(reactor, limits)
        self.displays: list[RunningDisplay] = []
        #: ``(object id, user)`` of every object the displays hold in the
        #: registry: they cannot be deleted while served.
        self._held: list[tuple[str, str]] = []
        #: Lines QEMU prints on standard error at start-up ("VNC server
        #: running on ..." for displays with ``to=``); the command prints them.
        self.notices: list[str] = []
        self._listeners: list[Listener] = []
        self._stopped = False

    def display(self, display_id: str) -> RunningDisplay:
        for running in self.displays:
            if running.config.id == display_id:
                return running
        raise KeyError(display_id)

    def track(self, listeners: list[Listener]) -> list[Listener]:
        """Remember ``listeners`` so that :meth:`stop` closes them; returns them."""
        self._listeners += listeners
        return listeners

    def stop(self) -> defer.Deferred:
        """Stop listening, drop every client, release the screen."""
        if self._stopped:
            return defer.succeed(None)
        self._stopped = True
        for obj_id, user in self._held:
            self.registry.release(obj_id, user)
        self._held = []
        listeners, self._listeners = self._listeners, []
        stopping = [defer.maybeDeferred(listener.port.stopListening) for listener in listeners]
        for running in self.displays:
            running.server.close_all()
            running.server.display.close()
        self.connection_log.close()
        self.screen.stop()

        def cleanup(_):
            for listener in listeners:
                if listener.family == "unix" and not listener.inherited:
                    unlink_socket(listener.service)
            return None

        return defer.gatherResults(stopping).addCallback(cleanup)


#: The ``LISTEN_FDNAMES`` suffix of a display's inherited WebSocket sockets
#: (``default.websocket``); its plain VNC sockets are named by the id alone.
WEBSOCKET_FDNAME_SUFFIX = ".websocket"


def start(reactor, registry: ObjectRegistry, invocation: Invocation, *, screen=None,
          limits: Limits | None = None,
          inherited: list[InheritedSocket] | tuple = ()) -> Service:
    """Start every display of ``invocation`` (see the module docstring).

    ``screen`` overrides the ``-screen`` of the invocation (embedding).
    ``inherited`` are sockets a service manager passed
    (:func:`vncd.activation.inherited_sockets`): a display serves on those
    named by its id (``ID.websocket`` for WebSocket) instead of its own
    addresses; with one socket and one display, that display takes it.
    Raises :class:`StartupError`.
    """
    if screen is None:
        screen = _make_screen(reactor, invocation, registry)
    limits = limits or Limits()
    service = Service(reactor, screen, registry, limits)
    throttle = AuthThrottle(reactor.seconds, limits)
    pool = InheritedSockets(inherited, [d.id for d in invocation.displays if not d.reverse])
    try:
        for config in invocation.displays:
            service.displays.append(_start_display(service, registry, config, limits, throttle,
                                                   pool))
    except BaseException:
        service.stop()
        for sock in pool.unclaimed():
            _close_fd(sock.fd)
        raise
    for sock in pool.unclaimed():
        log.warn("{what} matches no display id ({ids}); closed",
                 what=sock.describe(), ids=", ".join(d.id for d in invocation.displays)
                 or "no displays")
        _close_fd(sock.fd)
    screen.set_served_addresses([a for d in service.displays for a in d.served()])
    screen.start()
    return service


def _make_screen(reactor, invocation: Invocation, registry: ObjectRegistry):
    try:
        return from_spec(invocation.screen, reactor, registry)
    except ScreenError as e:
        raise StartupError(e.source or invocation.screen.source, e.message) from None


# -- one display ----------------------------------------------------------------

def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _start_display(service: Service, registry: ObjectRegistry, config: DisplayConfig,
                   limits: Limits, throttle: AuthThrottle,
                   pool: InheritedSockets | None = None) -> RunningDisplay:
    source = config.source
    try:
        check_display(config, registry)
    except OptionError as e:
        raise StartupError(e.option, e.message, hint=e.hint) from None
    creds = registry.get(config.tls_creds) if config.tls_creds else None
    if creds is not None and not isinstance(creds, TLSCreds):
        raise StartupError(source, f"Object with id '{config.tls_creds}' is not TLS credentials")
    _check_effective(config, creds)
    security = _security(registry, config, creds)
    tls_session = None
    if creds is not None:
        tls_session = functools.partial(TLSSession, creds, Endpoint.SERVER,
                                        authz_id=config.tls_authz)

    allowed = families(config.ipv4, config.ipv6, config.source)
    display = Display(service.screen, reactor=service.reactor, lossy=config.lossy,
                      non_adaptive=config.non_adaptive, key_delay_ms=config.key_delay_ms)
    server = DisplayServer(display, security, reactor=service.reactor, tls_session=tls_session,
                           limits=limits, share=config.share, connections=config.connections,
                           throttle=throttle, connection_log=service.connection_log)
    running = RunningDisplay(config, server, client_certificates=(
        creds is not None and creds.checks_peer_certificates))
    try:
        _open(service, running, allowed, pool)
    except BaseException:
        display.close()
        raise
    # Credentials and the password secret are taken at start-up, as QEMU
    # takes them, so they cannot be deleted while served; authz objects are
    # looked up at every connection and may be replaced at run time.
    for obj_id in (config.tls_creds, config.password_secret):
        if obj_id is not None:
            user = f"VNC display '{config.id}'"
            registry.hold(obj_id, user)
            service._held.append((obj_id, user))
    for served in running.served():
        log.info("display {id}: serving on {served}", id=config.id, served=str(served))
    if config.to is not None and running.addresses:
        service.notices.append(f"VNC server running on {running.addresses[0][0]}")
    return running


def _open(service: Service, running: RunningDisplay, allowed,
          pool: InheritedSockets | None = None) -> None:
    """Listen on (or, reversed, connect to) every address of one display,
    or serve on the sockets a service manager passed for it."""
    config, server, source = running.config, running.server, running.config.source
    if config.reverse:
        for address in config.listen:
            _connect_reverse(service, server.factory(), address, source)
            running.reverse.append(f"reverse {address}")
        return
    plain = pool.take(config.id) if pool is not None else []
    websockets = pool.take(config.id + WEBSOCKET_FDNAME_SUFFIX) if pool is not None else []
    for sock in plain:
        running.listeners += service.track([adopt(
            service.reactor, server.factory(), sock.fd, source=source, what=sock.describe())])
    for sock in websockets:
        running.listeners += service.track([adopt(
            service.reactor, server.factory(websocket=True), sock.fd, source=source,
            what=sock.describe(), websocket=True)])
    for address in config.listen if not plain else ():
        last = VNC_PORT_BASE + config.to if config.to is not None else None
        running.listeners += service.track(listen(
            service.reactor, server.factory(), address, source=source, last_port=last,
            allowed=allowed))
    for address in config.websocket if not websockets else ():
        running.listeners += service.track(listen(
            service.reactor, server.factory(websocket=True), address, source=source,
            last_port=_websocket_last_port(config, address), allowed=allowed, websocket=True))


def _check_effective(config: DisplayConfig, creds) -> None:
    """Refuse options QEMU accepts but never applies in this configuration."""
    if config.tls_authz is None or creds is None:
        return
    refusal = creds.authz_refusal()
    if refusal is not None:
        raise StartupError(config.source, refusal.message, hint=refusal.hint)


def _security(registry: ObjectRegistry, config: DisplayConfig, creds) -> SecurityConfig:
    """The display's security; an empty password from ``password-secret`` stops the start
    (QEMU 7.2 starts and then admits an empty login)."""
    password = None
    if config.password_secret is not None:
        try:
            # QEMU reads the password as UTF-8 text (qcrypto_secret_lookup_as_utf8).
            password = lookup_secret(registry, config.password_secret).get_text().encode()
        except ObjectError as e:
            raise StartupError(config.source, e.message, hint=e.hint) from None
    wants_password = config.password or config.password_secret is not None
    kind = creds.kind if creds is not None else None
    try:
        return SecurityConfig(auth_for(kind, wants_password), password)
    except ValueError as e:
        raise StartupError(
            config.source, f"secret '{config.password_secret}' (password-secret): {e}",
            hint="put the password in the secret, e.g. -object secret,id=ID,file=FILE with"
                 " the password in FILE") from None


def _websocket_last_port(config: DisplayConfig, address: ListenAddress) -> int | None:
    """QEMU searches up to 5700 + ``to`` only for the default websocket port
    (``websocket=on``, 5700 + display); an explicit port is used alone."""
    if config.to is None or len(config.listen) != 1 or config.listen[0].kind != "tcp":
        return None
    display_number = config.listen[0].port - VNC_PORT_BASE
    if address.port != WEBSOCKET_PORT_BASE + display_number:
        return None
    return WEBSOCKET_PORT_BASE + config.to


# -- reverse connections ----------------------------------------------------------

class _ReverseFactory(ClientFactory):
    """Builds the server protocol for a connection we made to a listening viewer."""

    noisy = False

    def __init__(self, server_factory: RFBServerFactory) -> None:
        self.server_factory = server_factory

    def buildProtocol(self, addr):
        return self.server_factory.buildProtocol(addr)


def _connect_reverse(service: Service, factory: RFBServerFactory, address: ListenAddress,
                     source: str) -> None:
    """``reverse=on``: connect to the viewer now, as QEMU does, and serve on that socket."""
    if address.kind == "unix":
        family, target, shown = socket.AF_UNIX, address.host, address.host
    else:
        try:
            family, _, _, _, target = socket.getaddrinfo(
                address.host or None, address.port, socket.AF_UNSPEC, socket.SOCK_STREAM)[0]
        except socket.gaierror as e:
            raise StartupError(source, f"address resolution failed for {address.host}:"
                                       f"{address.port}: {e.strerror}") from None
        shown = f"{address.host}:{address.port}"
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(REVERSE_CONNECT_TIMEOUT)
        sock.connect(target)
        sock.setblocking(False)
        service.reactor.adoptStreamConnection(sock.fileno(), family, _ReverseFactory(factory))
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else "Connection timed out"
        raise StartupError(source, f"Failed to connect to '{shown}': {reason}") from None
    finally:
        sock.close()
