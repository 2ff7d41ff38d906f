"""Test helpers for the TLS engine and session: fake credentials, in-memory pumps.

Also socket drivers, a VeNCrypt X509None client made of the session API,
and (run as ``python -m tests.creds.sessionpump [N]``) the handshake-cost
measurements quoted in reports.  Nothing here is used outside tests.

The pumps move bytes between two endpoints until neither has anything
left to say, with a bounded number of rounds so a broken peer can never
make a test spin; socket exchanges are bounded by SOCKET_TIMEOUT.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from typing import Any, Sequence

from OpenSSL import SSL

from creds import new_registry
from creds.material import X509Material
from creds.objects import ObjectRegistry
from creds.tlscreds import Endpoint, LoadedCreds
from tests import certgen

__all__ = [
    "FakeCreds", "handshake_raw", "x509_material", "pump", "registry", "glob_list",
    "SocketLink", "drive", "tcp_pair", "accept_one", "vencrypt_x509none", "qemu_opt",
    "measure_sessions", "measure_qemu", "MAX_PUMP_ROUNDS", "SOCKET_TIMEOUT", "VNC_BASE_PORT",
]

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


# -- a VeNCrypt X509None client made of the session API ----------------------

#: Seconds for one RFB exchange step with a server (QEMU answers in milliseconds).
STEP_TIMEOUT = 10

#: VNC port numbers are 5900 + the display number.
VNC_BASE_PORT = 5900

#: RFB security type VeNCrypt and VeNCrypt subtype X509None.
VENCRYPT = 19
X509NONE = 260


def qemu_opt(value: str) -> bytes:
    """A value for a QEMU ``key=value`` option list: commas doubled, bytes as typed."""
    return os.fsencode(value.replace(",", ",,"))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"server closed after {data!r}")
        data += chunk
    return data


def vencrypt_x509none(port: int, creds: Any) -> bool:
    """Connect to 127.0.0.1:``port`` as a VeNCrypt X509None client (RFB 3.8, VeNCrypt 0.2).

    True if the server sends SecurityResult 0 after the TLS handshake,
    False if it closes instead (QEMU's answer to a failed credentials check).
    """
    from creds.session import HandshakeStatus, TLSSession

    sock = socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT)
    try:
        if _recv_exact(sock, 12) != b"RFB 003.008\n":
            raise AssertionError("not an RFB 3.8 server")
        sock.sendall(b"RFB 003.008\n")
        count = _recv_exact(sock, 1)[0]
        if VENCRYPT not in _recv_exact(sock, count):
            raise AssertionError("VeNCrypt not offered")
        sock.sendall(bytes([VENCRYPT]))
        if _recv_exact(sock, 2) != b"\x00\x02":
            raise AssertionError("not VeNCrypt 0.2")
        sock.sendall(b"\x00\x02")
        if _recv_exact(sock, 1) != b"\x00":
            raise AssertionError("VeNCrypt version refused")
        n = _recv_exact(sock, 1)[0]
        subtypes = struct.unpack(f">{n}I", _recv_exact(sock, 4 * n))
        if X509NONE not in subtypes:
            raise AssertionError(f"X509None not offered: {subtypes}")
        sock.sendall(struct.pack(">I", X509NONE))
        if _recv_exact(sock, 1) != b"\x01":
            raise AssertionError("X509None refused")
        link = SocketLink(sock, TLSSession(creds, Endpoint.CLIENT, hostname="127.0.0.1"))
        drive([link], lambda: link.session.handshake_status is not HandshakeStatus.IN_PROGRESS,
              timeout=STEP_TIMEOUT)
        if link.session.handshake_status is HandshakeStatus.FAILED:
            raise AssertionError(link.session.failure)
        link.session.check_credentials()
        drive([link], lambda: len(link.received) >= 4 or link.eof or link.session.broken
              or link.session.peer_closed, timeout=STEP_TIMEOUT)
        return bytes(link.received[:4]) == b"\x00\x00\x00\x00"
    finally:
        sock.close()


# -- measurements (not tests: ``python -m tests.creds.sessionpump [N]``) -------


def measure_sessions(n: int) -> list[str]:
    """Server-side CPU per handshake (+ check) for in-memory session pairs."""
    from creds.material import AnonMaterial
    from creds.session import TLSSession

    reg = registry()
    ca = certgen.ca()
    srv = certgen.server(ca, dns=["qemu.org"])
    cli = certgen.client(ca)
    reg.create("authz-simple", {"id": "a", "identity": "C=UK,CN=qemu"})
    client_x509 = FakeCreds("x509", Endpoint.CLIENT, registry=reg).load(
        x509_material(ca, cli, role="client"))
    kinds = [
        ("x509 TLS 1.3, client certificate, authz",
         FakeCreds("x509", Endpoint.SERVER, registry=reg).load(x509_material(ca, srv)),
         client_x509, "a"),
        ("x509 TLS 1.2, client certificate, authz",
         FakeCreds("x509", Endpoint.SERVER, registry=reg, priority="NORMAL:-VERS-TLS1.3").load(
             x509_material(ca, srv)), client_x509, "a"),
        ("anon TLS 1.2 ADH",
         FakeCreds("anon", Endpoint.SERVER, registry=reg).load(AnonMaterial(None)),
         FakeCreds("anon", Endpoint.CLIENT, registry=reg).load(AnonMaterial(None)), None),
    ]
    lines = []
    for name, s_creds, c_creds, authz in kinds:
        server_time = 0.0
        started = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            server = TLSSession(s_creds, "server", authz_id=authz)
            server_time += time.perf_counter() - t
            client = TLSSession(c_creds, "client", hostname="qemu.org")
            for _ in range(MAX_PUMP_ROUNDS):
                up = client.data_to_send()
                t = time.perf_counter()
                if up:
                    server.receive_data(up)
                down = server.data_to_send()
                server_time += time.perf_counter() - t
                if down:
                    client.receive_data(down)
                if not up and not down:
                    break
            t = time.perf_counter()
            server.check_credentials()
            server_time += time.perf_counter() - t
            client.check_credentials()
        total = time.perf_counter() - started
        lines.append(f"{name}: server side {1000 * server_time / n:.2f} ms per handshake "
                     f"= {n / server_time:.0f}/s per core "
                     f"({n / total:.0f} pairs/s in one process)")
    return lines


def measure_qemu(n: int) -> str:
    """QEMU 7.2's CPU per VeNCrypt X509None connection with authz, for comparison."""
    import tempfile

    from tests.tools import free_port, qemu_vnc

    with tempfile.TemporaryDirectory() as directory:
        ca = certgen.ca()
        certgen.write_dir(directory, ca=[ca],
                          server=certgen.server(ca, "127.0.0.1", ips=["127.0.0.1"]))
        creds = FakeCreds("x509", Endpoint.CLIENT, registry=registry()).load(
            x509_material(ca, certgen.client(ca), role="client"))
        port = free_port()
        proc, started = qemu_vnc([
            "-object", f"tls-creds-x509,id=t0,dir={directory},endpoint=server,verify-peer=on",
            "-object", "authz-simple,id=a0,identity=C=UK,,CN=qemu",
            "-vnc", f"127.0.0.1:{port - VNC_BASE_PORT},tls-creds=t0,tls-authz=a0"])
        try:
            if not started:
                raise RuntimeError(proc.stderr.read().decode(errors="replace"))
            tick = os.sysconf("SC_CLK_TCK")

            def cpu() -> float:
                fields = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / tick

            vencrypt_x509none(port, creds)
            cpu0, wall0 = cpu(), time.perf_counter()
            for _ in range(n):
                if not vencrypt_x509none(port, creds):
                    raise RuntimeError("QEMU refused the client")
            spent, wall = cpu() - cpu0, time.perf_counter() - wall0
        finally:
            proc.kill()
            proc.communicate()
    return (f"QEMU 7.2 VeNCrypt X509None, TLS 1.3, client certificate, authz: "
            f"{1000 * spent / n:.2f} ms QEMU CPU per connection = {n / spent:.0f}/s per core "
            f"({n / wall:.0f}/s with one sequential client)")


if __name__ == "__main__":
    import sys

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    for line in measure_sessions(count):
        print(line)
    print(measure_qemu(count))
