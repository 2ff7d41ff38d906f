# -*- test-case-name: tests.vncd.monitor.test_vncinfo -*-
"""What ``query-vnc``, ``query-vnc-servers``, ``info vnc`` and the VNC events say.

QEMU 7.2's shapes, member for member, built from the running displays
(:class:`vncd.service.RunningDisplay`) and their clients
(:class:`vncd.info.ConnectionInfo`):

* ``VncBasicInfo``: ``host``, ``service``, ``family``, ``websocket``;
* ``VncClientInfo``: that, plus ``x509_dname`` when a client certificate
  was checked (never ``sasl_username``: vncd has no SASL);
* ``VncServerInfo`` (in events): the display's first listening socket
  and its ``auth`` string (``vencrypt+x509+none`` ...);
* ``VncInfo`` (``query-vnc``): the first display only, its first socket;
* ``VncInfo2`` (``query-vnc-servers``): every display with every socket,
  ``auth`` as the primary type and ``vencrypt`` as the subtype.

QEMU builds its lists by prepending, so displays, sockets and clients
come out newest first; vncd keeps that order, which scripts written
against QEMU may rely on.

This module knows nothing about QMP framing, sockets or certificates.
"""

from __future__ import annotations

from typing import Any, Iterable

from vncd.info import ConnectionInfo
from vncd.rfb.security import Auth, SecurityType, VeNCryptSubtype

__all__ = ["basic_client", "client_info", "server_info", "query_vnc", "query_vnc_servers",
           "primary_auth", "vencrypt_subauth", "info_vnc"]

_PRIMARY = {
    SecurityType.NONE: "none",
    SecurityType.VNC: "vnc",
    SecurityType.VENCRYPT: "vencrypt",
    SecurityType.SASL: "sasl",
}

_SUBAUTH = {
    VeNCryptSubtype.PLAIN: "plain",
    VeNCryptSubtype.TLSNONE: "tls-none",
    VeNCryptSubtype.TLSVNC: "tls-vnc",
    VeNCryptSubtype.TLSPLAIN: "tls-plain",
    VeNCryptSubtype.X509NONE: "x509-none",
    VeNCryptSubtype.X509VNC: "x509-vnc",
    VeNCryptSubtype.X509PLAIN: "x509-plain",
    VeNCryptSubtype.TLSSASL: "tls-sasl",
    VeNCryptSubtype.X509SASL: "x509-sasl",
}


def primary_auth(auth: Auth) -> str:
    """QEMU's ``VncPrimaryAuth`` word for ``auth``."""
    return _PRIMARY[auth.security_type]


def vencrypt_subauth(auth: Auth) -> str | None:
    """QEMU's ``VncVencryptSubAuth`` word, or None without VeNCrypt."""
    return _SUBAUTH[auth.subtype] if auth.subtype is not None else None


def basic_client(info: ConnectionInfo) -> dict[str, Any]:
    """``VncBasicInfo`` of a client (``VNC_CONNECTED``'s ``client``)."""
    return {"host": info.host, "service": info.service, "family": info.family,
            "websocket": info.websocket}


def client_info(info: ConnectionInfo) -> dict[str, Any]:
    """``VncClientInfo``: the basic info and the certificate's name, if checked."""
    out = basic_client(info)
    if info.peer_dn is not None:
        out["x509_dname"] = info.peer_dn
    return out


def _plain_listeners(display) -> list:
    return [listener for listener in display.listeners if not listener.websocket]


def server_info(display) -> dict[str, Any] | None:
    """``VncServerInfo`` for events: the first plain socket and the display's auth.

    None for a display without one (``reverse=on``, or WebSocket only):
    QEMU sends no VNC event for such a display.
    """
    plain = _plain_listeners(display)
    if not plain:
        return None
    first = plain[0]
    return {"host": first.host, "service": first.service, "family": first.family,
            "websocket": False, "auth": display.server.security.auth.name}


def _clients(display) -> list[dict[str, Any]]:
    return [client_info(info) for info in reversed(display.server.clients_info())]


def query_vnc(displays: list) -> dict[str, Any]:
    """``query-vnc``: the first display, as QEMU reports it."""
    if not displays:
        return {"enabled": False}
    display = displays[0]
    plain = _plain_listeners(display)
    if not plain:
        return {"enabled": False}
    first = plain[0]
    return {"enabled": True, "host": first.host, "service": first.service,
            "family": first.family, "auth": display.server.security.auth.name,
            "clients": _clients(display)}


def _auth_members(auth: Auth) -> dict[str, Any]:
    out: dict[str, Any] = {"auth": primary_auth(auth)}
    subauth = vencrypt_subauth(auth)
    if subauth is not None:
        out["vencrypt"] = subauth
    return out


def query_vnc_servers(displays: Iterable) -> list[dict[str, Any]]:
    """``query-vnc-servers``: every display, newest first."""
    out = []
    for display in reversed(list(displays)):
        security = display.server.security
        servers = []
        for listener in reversed(display.listeners):
            auth = security.for_websocket().auth if listener.websocket else security.auth
            servers.append({"host": listener.host, "service": listener.service,
                            "family": listener.family, "websocket": listener.websocket,
                            **_auth_members(auth)})
        out.append({"id": display.config.id, "server": servers, "clients": _clients(display),
                    **_auth_members(security.auth)})
    return out


def _basic_line(name: str, info: dict[str, Any]) -> str:
    websocket = " (Websocket)" if info["websocket"] else ""
    return f"  {name}: {info['host']}:{info['service']} ({info['family']}{websocket})"


def _auth_line(indent: str, info: dict[str, Any]) -> str:
    return f"{indent}Auth: {info['auth']} (Sub: {info.get('vencrypt', 'none')})"


def info_vnc(displays: Iterable) -> str:
    """HMP ``info vnc``: QEMU 7.2's text, one display after another."""
    servers = query_vnc_servers(displays)
    if not servers:
        return "None\n"
    lines = []
    for display in servers:
        lines.append(f"{display['id']}:")
        for server in display["server"]:
            lines.append(_basic_line("Server", server))
            lines.append(_auth_line("    ", server))
        for client in display["clients"]:
            lines.append(_basic_line("Client", client))
            lines.append(f"    x509_dname: {client.get('x509_dname', 'none')}")
            lines.append("    sasl_username: none")
        if not display["server"]:
            lines.append(_auth_line("  ", display))
    return "\n".join(lines) + "\n"
