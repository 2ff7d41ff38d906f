"""Stand-ins for running displays, for unit tests of the monitor's layers."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet import defer

from compat.config import DisplayConfig
from vncd.info import ConnectionInfo
from vncd.listen import Listener
from vncd.rfb.security import SecurityConfig, auth_for


@dataclass
class FakeServer:
    security: SecurityConfig
    clients: list[ConnectionInfo] = field(default_factory=list)
    observers: list = field(default_factory=list)

    def clients_info(self) -> list[ConnectionInfo]:
        return list(self.clients)


@dataclass
class FakeDisplay:
    config: DisplayConfig
    server: FakeServer
    listeners: list[Listener] = field(default_factory=list)


@dataclass
class FakeService:
    displays: list[FakeDisplay] = field(default_factory=list)


def display(display_id: str = "default", *, creds_kind: str | None = None,
            password: bool = False, listeners=None, tls_creds: str | None = None,
            clock=None) -> FakeDisplay:
    kwargs = {"clock": clock} if clock is not None else {}
    security = SecurityConfig(auth_for(creds_kind, password), **kwargs)
    if listeners is None:
        listeners = [Listener("127.0.0.1:5901", "127.0.0.1", "5901", "ipv4")]
    config = DisplayConfig(id=display_id, source=f"-vnc {display_id}", tls_creds=tls_creds,
                           password=password)
    return FakeDisplay(config, FakeServer(security), list(listeners))


def client(host: str = "127.0.0.1", service: str = "40000", *, dn: str | None = None,
           websocket: bool = False) -> ConnectionInfo:
    return ConnectionInfo(peer=f"{host}:{service}", host=host, service=service,
                          family="ipv4", websocket=websocket, peer_dn=dn)


class SyncReloader:
    """Loads at once, on the calling thread (what vncd.reload.Reloader does, minus threads)."""

    def __init__(self) -> None:
        self.reloads = []

    def create(self, registry, qom_type, props):
        return defer.maybeDeferred(registry.create, qom_type, props)

    def reload(self, obj):
        self.reloads.append(obj.id)

        def run():
            obj.reload()
            return obj.loaded.generation

        return defer.maybeDeferred(run)

    def reload_all(self, registry):
        return defer.succeed([])
