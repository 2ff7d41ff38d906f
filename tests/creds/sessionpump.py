"""Test helpers for the TLS engine and session: fake credentials, in-memory pumps.

Nothing here is used outside tests.  The pumps move bytes between two
endpoints until neither has anything left to say, with a bounded number of
rounds so a broken peer can never make a test spin.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any, Sequence

from OpenSSL import SSL

from creds.material import X509Material
from creds import new_registry
from creds.objects import ObjectRegistry
from creds.tlscreds import Endpoint, LoadedCreds
from tests import certgen

__all__ = ["FakeCreds", "handshake_raw", "x509_material", "pump",
           "registry", "glob_list", "SocketLink", "drive", "tcp_pair", "accept_one", "MAX_PUMP_ROUNDS",
           "SOCKET_TIMEOUT"]

#: A TLS 1.2 handshake needs 4 flights, TLS 1.3 with client certificates 3;
#: anything still talking after this many rounds is stuck.
MAX_PUMP_ROUNDS = 20

_BIO_CHUNK = 65536


class FakeCreds:
    """The attributes of a credentials object the engine and the session read."""

    def __init__(self, kind: str, endpoint: Endpoint, *, priority: str | None = None,
                 verify_peer: bool = True, registry: Any = None) -> None:
        self.kind = kind
        self.endpoint = endpoint
        self.priority = priority
        self.verify_peer = verify_peer
        self.registry = registry
        self.id = f"fake-{kind}-{endpoint.value}"
        self._loaded: LoadedCreds | None = None

    def load(self, material: Any) -> "FakeCreds":
        from creds import engine

        context = engine.build_context(self, material)
        generation = 1 if self._loaded is None else self._loaded.generation + 1
        self._loaded = LoadedCreds(material=material, context=context, generation=generation)
        return self

    def check_endpoint(self, endpoint: Endpoint) -> None:
        from creds.objects import ObjectError

        if self.endpoint is not endpoint:
            raise ObjectError(f"Expected TLS credentials for a {endpoint.value} endpoint")

    @property
    def loaded(self) -> LoadedCreds:
        assert self._loaded is not None
        return self._loaded


def registry(clock: Any = None) -> ObjectRegistry:
    """A registry with every creds object type and an optional fixed clock."""
    return new_registry(clock=clock)


def glob_list(reg: ObjectRegistry, obj_id: str, patterns: Sequence[str]) -> Any:
    """An ``authz-list`` allowing ``patterns`` (glob), else deny: QEMU's test ACL."""
    return reg.create("authz-list", {
        "id": obj_id, "policy": "deny",
        "rules": [{"match": p, "policy": "allow", "format": "glob"} for p in patterns],
    })


def x509_material(
    cas: certgen.Issued | Sequence[certgen.Issued],
    identity: certgen.Issued | Sequence[certgen.Issued] | None,
    *,
    key: Any = None,
    crls: Sequence[Any] = (),
    directory: str = "/creds",
    role: str = "server",
) -> X509Material:
    """Material as the x509 loader would hand it over (no files involved)."""
    ca_list = [cas] if isinstance(cas, certgen.Issued) else list(cas)
    if identity is None:
        chain: list[certgen.Issued] = []
    elif isinstance(identity, certgen.Issued):
        chain = [identity]
    else:
        chain = list(identity)
    return X509Material(
        ca_certs=tuple(c.cert for c in ca_list),
        crls=tuple(crls),
        chain=tuple(c.cert for c in chain),
        key=(key if key is not None else chain[0].key) if chain else None,
        dh_params_pem=None,
        paths={
            "ca": f"{directory}/ca-cert.pem",
            "crl": f"{directory}/ca-crl.pem",
            "cert": f"{directory}/{role}-cert.pem",
            "key": f"{directory}/{role}-key.pem",
        },
    )


def _drain(conn: SSL.Connection) -> bytes:
    out = []
    while True:
        try:
            chunk = conn.bio_read(_BIO_CHUNK)
        except SSL.WantReadError:
            break
        if not chunk:
            break
        out.append(chunk)
    return b"".join(out)


def handshake_raw(
    server_ctx: SSL.Context,
    client_ctx: SSL.Context,
    *,
    pair: tuple[SSL.Connection, SSL.Connection] | None = None,
    tolerate_errors: bool = False,
) -> tuple[SSL.Connection, SSL.Connection]:
    """Handshake two bare pyOpenSSL connections on memory BIOs; return (server, client)."""
    if pair is None:
        server = SSL.Connection(server_ctx, None)
        server.set_accept_state()
        client = SSL.Connection(client_ctx, None)
        client.set_connect_state()
    else:
        server, client = pair
    for _ in range(MAX_PUMP_ROUNDS):
        moved = False
        for a, b in ((client, server), (server, client)):
            try:
                a.do_handshake()
                # Process post-handshake messages (tickets, alerts) too.
                a.recv(_BIO_CHUNK)
            except (SSL.WantReadError, SSL.ZeroReturnError):
                pass
            except SSL.Error:
                if not tolerate_errors:
                    raise
            data = _drain(a)
            if data:
                b.bio_write(data)
                moved = True
        if not moved:
            return server, client
    raise AssertionError("handshake did not settle")


def pump(server: Any, client: Any, *, rounds: int = MAX_PUMP_ROUNDS) -> int:
    """Move bytes between two :class:`~creds.session.TLSSession` objects until quiet.

    Returns the number of rounds that moved data.
    """
    for n in range(rounds):
        moved = False
        for a, b in ((client, server), (server, client)):
            data = a.data_to_send()
            if data:
                b.receive_data(data)
                moved = True
        if not moved:
            return n
    raise AssertionError("sessions did not settle")


#: Seconds a socket-driven exchange may take before the test fails; the
#: exchanges are a handshake and a few lines, done in milliseconds.
SOCKET_TIMEOUT = 15.0

#: Longest single wait for socket readiness, so deadlines are checked often.
_POLL_INTERVAL = 0.05


class SocketLink:
    """A :class:`~creds.session.TLSSession` bound to a connected socket."""

    def __init__(self, sock: socket.socket, session: Any) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.session = session
        self.outgoing = b""
        self.eof = False
        self.received = bytearray()

    def flush(self) -> None:
        self.outgoing += self.session.data_to_send()
        while self.outgoing:
            try:
                sent = self.sock.send(self.outgoing)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # The peer went away; whatever it missed is gone.
                self.outgoing = b""
                return
            self.outgoing = self.outgoing[sent:]

    def pull(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.eof = True
        self.session.receive_data(data)
        self.received += self.session.read()


#: Bytes read from a socket per call.
READ_SIZE = 65536


def drive(links: Sequence[SocketLink], until: Any, *,
          timeout: float = SOCKET_TIMEOUT) -> None:
    """Move bytes between sockets and sessions until ``until()`` is true.

    Raises AssertionError after ``timeout`` seconds, so a silent peer can
    never hang a test.
    """
    deadline = time.monotonic() + timeout
    while True:
        for link in links:
            link.flush()
        if until():
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            states = [(l.session.state, l.session.failure) for l in links]
            raise AssertionError(f"socket exchange did not finish: {states}")
        readable = [l.sock for l in links if not l.eof]
        if not readable:
            for link in links:
                link.flush()
            if until():
                return
            raise AssertionError("every socket reached EOF before the exchange finished")
        ready, _, _ = select.select(readable, [], [], min(_POLL_INTERVAL, remaining))
        for link in links:
            if link.sock in ready:
                link.pull()


def tcp_pair(host: str = "127.0.0.1") -> tuple[socket.socket, socket.socket]:
    """A connected (server side, client side) TCP pair on loopback ``host``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname()[:2], timeout=SOCKET_TIMEOUT)
        listener.settimeout(SOCKET_TIMEOUT)
        server, _ = listener.accept()
    return server, client


def accept_one(listener: socket.socket, timeout: float = SOCKET_TIMEOUT) -> socket.socket:
    """Accept one connection (a tool connecting to us), bounded in time."""
    listener.settimeout(timeout)
    conn, _ = listener.accept()
    return conn
