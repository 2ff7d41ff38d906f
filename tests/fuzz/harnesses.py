"""The fuzz harnesses: one per attack surface, each a function of one input.

A :class:`Harness` names its surface, the modules it exercises (atheris
instruments them for coverage), and the exception types that are the
project's own answer to bad input (:attr:`Harness.expected`): an
:class:`~compat.errors.OptionError` from the option parser, a
:class:`~vncd.rfb.errors.RemoteProtocolError` from a protocol core ...
:meth:`Harness.run` calls the harness on one input and lets anything
else escape: that is a crash.  Harnesses also assert invariants of
their own (the server's output is readable by the project's client, a
translated command line parses again ...); an :class:`AssertionError`
is a crash too.

The first byte of an input usually picks a *mode* (which configuration
or which entry point), so one corpus covers the variants of a surface;
the rest is what an attacker controls.  :func:`chunks` cuts input into
pieces of varying size, so parsers also see messages split anywhere.

``setup()`` builds what a harness needs once per process (certificates,
a credentials directory, a registry); inputs must not depend on state
left by earlier inputs, so everything an input touches is made fresh.
"""

from __future__ import annotations

import os
import shlex
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Harness", "HARNESSES", "chunks"]

#: Chunk sizes :func:`chunks` cycles through (1 finds split-message bugs,
#: large ones exercise the fast paths).
_CHUNK_SIZES = (1, 7, 64, 4096, 2, 300)


def chunks(data: bytes, selector: int) -> list[bytes]:
    """``data`` cut into pieces whose sizes cycle through a list picked by ``selector``."""
    sizes = _CHUNK_SIZES[selector % len(_CHUNK_SIZES):] + _CHUNK_SIZES[:selector % len(_CHUNK_SIZES)]
    out, pos, n = [], 0, 0
    while pos < len(data):
        size = sizes[n % len(sizes)]
        out.append(data[pos:pos + size])
        pos += size
        n += 1
    return out


@dataclass
class Harness:
    """One fuzz target (see the module docstring)."""

    name: str
    #: Returns the function of one input (called once per process).
    setup: Callable[[], Callable[[bytes], None]]
    #: Exception types that are a normal answer to bad input.
    expected: Callable[[], tuple[type[BaseException], ...]]
    #: Top-level packages/modules atheris instruments.
    modules: tuple[str, ...]
    _target: Callable[[bytes], None] | None = field(default=None, repr=False)
    _expected: tuple[type[BaseException], ...] | None = field(default=None, repr=False)

    def prepare(self) -> None:
        if self._target is None:
            self._expected = self.expected()
            self._target = self.setup()

    def run(self, data: bytes) -> None:
        """Run one input; only the expected exceptions are swallowed."""
        self.prepare()
        try:
            self._target(data)
        except self._expected:
            pass


HARNESSES: dict[str, Harness] = {}


def _harness(name: str, modules: tuple[str, ...]):
    def register(fn):
        HARNESSES[name] = Harness(name, fn, fn.expected, modules)
        return fn
    return register


def _expects(*names: str):
    """Attach the expected exception types (imported lazily) to a setup function."""
    def attach(fn):
        def expected():
            import importlib
            out = []
            for dotted in names:
                module, _, attr = dotted.rpartition(".")
                out.append(getattr(importlib.import_module(module), attr))
            return tuple(out)
        fn.expected = expected
        return fn
    return attach


# -- options ---------------------------------------------------------------------


@_harness("options", ("compat",))
@_expects("compat.errors.OptionError", "compat.errors.HelpRequest")
def _options():
    """argv (NUL-separated words) through the command-line parser; then the
    ``-print-translation`` text must parse again to the same translation."""
    import creds
    from compat.cmdline import format_translation, parse_command_line
    from compat.errors import OptionError
    registry = creds.new_registry()

    def one(data: bytes) -> None:
        argv = [w.decode("utf-8", "surrogateescape") for w in data.split(b"\0")]
        invocation = parse_command_line(argv, registry=registry, version="fuzz")
        text = format_translation(invocation, registry=registry)
        words = shlex.split(text)
        try:
            again = parse_command_line(words[1:], registry=registry, version="fuzz")
        except OptionError as e:
            raise AssertionError(f"the translation {text!r} does not parse: {e}") from None
        assert format_translation(again, registry=registry) == text, (
            text, format_translation(again, registry=registry))
    return one


# -- creds_files -----------------------------------------------------------------

#: What the first byte of a ``creds_files`` input replaces: the file name
#: in an otherwise valid credentials directory, or another object's file.
CREDS_TARGETS = (
    "ca-cert.pem", "server-cert.pem", "server-key.pem", "ca-crl.pem", "dh-params.pem",
    "server-key.pem+password", "client-cert.pem", "secret-raw", "secret-base64",
    "authz-listfile",
)
#: The password of the encrypted key target.
KEY_PASSWORD = b"fuzz-key-password"


@_harness("creds_files", ("creds",))
@_expects("creds.objects.ObjectError")
def _creds_files():
    """File bytes into a credentials directory (or a secret/authz file), then
    ``-object`` creation as the command line does it."""
    import atexit

    import creds
    from tests import certgen
    base = tempfile.mkdtemp(prefix="vncd-fuzz-creds-")
    atexit.register(shutil.rmtree, base, True)
    ca = certgen.ca("fuzz CA")
    server = certgen.server(ca, "localhost", dns=["localhost"])
    client = certgen.client(ca, "fuzz client")
    valid = os.path.join(base, "valid")
    certgen.write_dir(valid, ca=[ca], server=server, client=client, crl=certgen.crl(ca))
    work = os.path.join(base, "work")

    def one(data: bytes) -> None:
        if not data:
            return
        target = CREDS_TARGETS[data[0] % len(CREDS_TARGETS)]
        body = data[1:]
        if os.path.isdir(work):
            shutil.rmtree(work)
        shutil.copytree(valid, work)
        registry = creds.new_registry(warn=lambda message: None)
        if target.startswith("secret"):
            path = os.path.join(work, "secret")
            _write(path, body)
            registry.create("secret", {"id": "s0", "file": path,
                                       "format": target.partition("-")[2]})
            return
        if target == "authz-listfile":
            path = os.path.join(work, "authz.json")
            _write(path, body)
            obj = registry.create("authz-listfile", {"id": "a0", "filename": path,
                                                     "refresh": "off"})
            obj.is_allowed("CN=fuzz")
            return
        name, _, password = target.partition("+")
        _write(os.path.join(work, name), body)
        props = {"id": "t0", "dir": work,
                 "endpoint": "client" if name.startswith("client") else "server"}
        if password:
            registry.create("secret", {"id": "kp", "data": KEY_PASSWORD.decode()})
            props["passwordid"] = "kp"
        registry.create("tls-creds-x509", props)
    return one


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


# -- rfb_server --------------------------------------------------------------------

#: ``rfb_server`` modes (first byte): (password?, prefix a valid handshake?).
RFB_MODES = ((False, False), (True, False), (False, True), (True, True))


@_harness("rfb_server", ("vncd",))
@_expects()
def _rfb_server():
    """Client bytes into a served display (server core, updates, screen), before
    or after a valid handshake, with None or VNC authentication.  Protocol
    errors end the connection (normal); the server's output must stay
    readable by the project's client."""
    from tests.vncd.served import Served, handshake

    def one(data: bytes) -> None:
        if not data:
            return
        password, prefixed = RFB_MODES[data[0] % len(RFB_MODES)]
        served = Served(password=password)
        try:
            stream = (handshake(password) if prefixed else b"") + data[2:]
            for piece in chunks(stream, data[1] if len(data) > 1 else 0):
                served.feed(piece)
                if served.finished:
                    break
                # Screen activity between client messages.
                if piece and piece[0] & 0x80:
                    served.screen.framebuffer[:8, :8, :3] ^= 0x55
                    served.screen.damage(0, 0, 8, 8)
                    served.settle()
            assert served.bad_output is None, served.bad_output
        finally:
            served.close()
    return one


# -- vencrypt ------------------------------------------------------------------------

#: ``vencrypt`` modes (first byte): which side the input plays against.
VENCRYPT_MODES = ("server-x509", "server-anon", "server-x509-password", "client-x509",
                  "server-x509-tls-records")


@_harness("vencrypt", ("vncd", "creds"))
@_expects("vncd.rfb.errors.RemoteProtocolError")
def _vencrypt():
    """The VeNCrypt exchange up to and into TLS: the input is what a client
    sends to a VeNCrypt server (or a server to a VeNCrypt client); in the
    last mode a real client gets the server to TLS and the input follows
    as TLS records."""
    import creds
    from creds.session import TLSSession
    from creds.tlscreds import Endpoint
    from tests import certgen
    from vncd.rfb.client import ClientConnection, ClientSecurity
    from vncd.rfb.events import CLOSED, NEED_DATA, PAUSED, ClientInitReceived
    from vncd.rfb.security import SecurityConfig, auth_for
    from vncd.rfb.server import PROTOCOL_VERSION, ServerConnection
    from vncd.rfb.stack import RFBStack
    from vncd.pixels import DEFAULT_FORMAT
    import atexit

    base = tempfile.mkdtemp(prefix="vncd-fuzz-vencrypt-")
    atexit.register(shutil.rmtree, base, True)
    ca = certgen.ca("fuzz CA")
    server_dir = certgen.write_dir(os.path.join(base, "server"), ca=[ca],
                                   server=certgen.server(ca, "localhost", dns=["localhost"]))
    client_dir = certgen.write_dir(os.path.join(base, "client"), ca=[ca],
                                   client=certgen.client(ca, "fuzz"))
    registry = creds.new_registry(warn=lambda message: None)
    x509 = registry.create("tls-creds-x509", {"id": "x", "endpoint": "server", "dir": server_dir})
    anon = registry.create("tls-creds-anon", {"id": "a", "endpoint": "server"})
    cx509 = registry.create("tls-creds-x509", {"id": "cx", "endpoint": "client",
                                               "dir": client_dir})
    password = b"vencrypt"

    def server(kind, with_password):
        obj = x509 if kind == "x509" else anon
        security = SecurityConfig(auth_for(kind, with_password),
                                  password if with_password else None)
        return RFBStack(ServerConnection(security),
                        lambda: TLSSession(obj, Endpoint.SERVER))

    def drain(stack) -> None:
        for _ in range(64):
            event = stack.next_event()
            if event is NEED_DATA or event is PAUSED or event is CLOSED:
                return
            if isinstance(event, ClientInitReceived):
                stack.rfb.send_server_init(32, 16, DEFAULT_FORMAT, "fuzz")
        raise AssertionError("the stack produced more than 64 events from one input piece")

    def feed(stack, pieces) -> None:
        for piece in pieces:
            stack.receive_data(piece)
            drain(stack)
            stack.data_to_send()
        stack.receive_data(b"")
        drain(stack)

    def one(data: bytes) -> None:
        if not data:
            return
        mode = VENCRYPT_MODES[data[0] % len(VENCRYPT_MODES)]
        pieces = chunks(data[2:], data[1] if len(data) > 1 else 0)
        if mode == "client-x509":
            stack = RFBStack(ClientConnection(ClientSecurity(tls="x509")),
                             lambda: TLSSession(cx509, Endpoint.CLIENT, hostname="localhost"))
            feed(stack, pieces)
            return
        if mode == "server-x509-tls-records":
            stack = server("x509", False)
            # A client that gets as far as StartTLS: version, VeNCrypt, 0.2, X509None.
            stack.receive_data(PROTOCOL_VERSION + bytes([19, 0, 2]) + struct.pack(">I", 260))
            drain(stack)
            stack.data_to_send()
            feed(stack, pieces)
            return
        kind = "anon" if mode == "server-anon" else "x509"
        feed(server(kind, mode.endswith("password")), pieces)
    return one


# -- websocket -------------------------------------------------------------------------

#: A valid upgrade request (noVNC's shape), the prefix of ``websocket`` mode 1.
UPGRADE = (b"GET /websockify HTTP/1.1\r\nHost: localhost:5700\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n")


@_harness("websocket", ("vncd.websocket", "wsproto", "h11"))
@_expects("vncd.rfb.errors.RemoteProtocolError")
def _websocket():
    """Bytes into the WebSocket layer: the upgrade request (mode 0) or frames
    after a valid upgrade (mode 1); RFB bytes are sent back meanwhile."""
    from vncd.websocket import OuterStack

    def one(data: bytes) -> None:
        if not data:
            return
        stack = OuterStack()
        stream = (UPGRADE if data[0] & 1 else b"") + data[2:]
        stack.send(b"RFB 003.008\n")
        for piece in chunks(stream, data[1] if len(data) > 1 else 0):
            stack.receive_data(piece)
            stack.send(b"x" * (len(piece) % 5))
            stack.data_to_send()
            if stack.closed:
                break
        stack.receive_data(b"")
        stack.close()
        stack.data_to_send()
    return one


# -- decode ------------------------------------------------------------------------------

#: ``decode`` pixel formats (second byte): the client's choices that change
#: how every encoding reads pixels.
def _decode_formats():
    from vncd.pixels import DEFAULT_FORMAT, PixelFormat
    return (
        DEFAULT_FORMAT,
        PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0),
        PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6),
        PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0),
        PixelFormat(32, 24, True, True, 255, 255, 255, 0, 8, 16),
        PixelFormat(16, 15, True, True, 31, 31, 31, 10, 5, 0),
    )


@_harness("decode", ("vncd",))
@_expects("vncd.rfb.errors.RemoteProtocolError", "vncd.encoding.decode.DecodeError")
def _decode():
    """What a hostile server sends: FramebufferUpdates straight into the
    decoder (mode 0), or the whole server side of a connection into the
    project's client after a valid handshake (mode 1)."""
    from vncd.encoding.decode import NEED_DATA as DECODER_NEED_DATA
    from vncd.encoding.decode import FramebufferDecoder, UpdateComplete
    from vncd.rfb.client import ClientConnection, ClientSecurity
    from vncd.rfb.events import CLOSED, NEED_DATA, PAUSED
    from vncd.rfb.messages import SetPixelFormat
    from vncd.rfb.server import PROTOCOL_VERSION
    from vncd.rfb.messages import encode_server_init
    from vncd.pixels import DEFAULT_FORMAT
    formats = _decode_formats()

    def decoder_mode(data: bytes, pf) -> None:
        decoder = FramebufferDecoder(40, 30, pf)
        decoder.set_colour_map_entries(0, [(i * 256, 0, 65535 - i * 256) for i in range(256)])
        buf = data
        for _ in range(256):
            if not buf:
                return
            if buf[0] != 0:
                buf = b"\0" + buf[1:]
            decoder.receive_data(buf)
            while True:
                event = decoder.next_event()
                if event is DECODER_NEED_DATA:
                    return
                if isinstance(event, UpdateComplete):
                    break
            buf = decoder.trailing_data

    def client_mode(data: bytes, pf, selector: int) -> None:
        client = ClientConnection(ClientSecurity())
        client.receive_data(PROTOCOL_VERSION + b"\x01\x01" + struct.pack(">I", 0)
                            + encode_server_init(40, 30, DEFAULT_FORMAT, "fuzz", 64))
        for piece in [b""] + chunks(data, selector):
            if piece:
                client.receive_data(piece)
            for _ in range(10_000):
                event = client.next_event()
                if event is NEED_DATA or event is PAUSED or event is CLOSED:
                    break
                if type(event).__name__ == "ServerInitReceived" and pf != DEFAULT_FORMAT:
                    client.send(SetPixelFormat(pf))
            else:
                raise AssertionError("the client produced 10000 events from one piece")
            client.data_to_send()
        client.receive_data(b"")
        while client.next_event() not in (NEED_DATA, PAUSED, CLOSED):
            pass

    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        pf = formats[data[1] % len(formats)]
        if data[0] & 1:
            client_mode(data[2:], pf, data[0] >> 1)
        else:
            decoder_mode(data[2:], pf)
    return one


# -- monitor -------------------------------------------------------------------------------


@_harness("monitor", ("vncd.monitor", "compat", "creds"))
@_expects()
def _monitor():
    """Bytes into a QMP connection (mode 0: JSON stream, envelope checks, then
    every command run by the monitor) or an HMP connection (mode 1: lines
    parsed and run).  Nothing may escape: every bad input gets an error reply."""
    from twisted.internet.task import Clock
    from twisted.python.failure import Failure

    import creds
    from tests.vncd.monitor.fakes import SyncReloader, FakeService, display
    from vncd.monitor.control import Monitor
    from vncd.monitor.hmp import HMPConnection, HMPInterpreter, PasswordPrompt
    from vncd.monitor.qmp import QMPConnection
    from vncd.monitor.schema import QMPError

    #: Commands that would stop the process or touch files are answered as unknown.
    skipped = frozenset({"quit", "q", "system_powerdown", "object-add", "object_add",
                         "display-reload", "change"})

    def make_monitor():
        clock = Clock()
        registry = creds.new_registry(warn=lambda message: None)
        registry.create("secret", {"id": "s0", "data": "password"})
        registry.create("authz-list", {"id": "vnc.x509dname", "policy": "deny"})
        monitor = Monitor(clock, registry, SyncReloader(), version="fuzz",
                          stop=lambda: None, now=lambda: 1_700_000_000.0)
        monitor.attach(FakeService([display(password=True), display("d2")]))
        return monitor

    def finished(results: list, d) -> None:
        d.addBoth(results.append)
        assert results, "a monitor command did not finish"
        result = results.pop()
        if isinstance(result, Failure):
            if result.check(QMPError, PasswordPrompt):
                return result.value
            result.raiseException()
        return result

    def qmp(data: bytes, selector: int) -> None:
        monitor = make_monitor()
        conn = QMPConnection(monitor.query_version())
        for piece in chunks(data, selector):
            conn.receive_data(piece)
            while (request := conn.next_request()) is not None:
                if request.command in skipped:
                    conn.reply_error(request, QMPError("skipped by the fuzzer"))
                    continue
                outcome = finished([], monitor.execute(request.command, request.arguments))
                if isinstance(outcome, QMPError):
                    conn.reply_error(request, outcome)
                else:
                    conn.reply(request, outcome)
            conn.data_to_send()

    def hmp(data: bytes, selector: int) -> None:
        monitor = make_monitor()
        conn = HMPConnection("fuzz")
        interpreter = HMPInterpreter(monitor)
        for piece in chunks(data, selector):
            conn.receive_data(piece)
            while (item := conn.next_line()) is not None:
                line, password_for = item
                if line.strip().partition(" ")[0] in skipped:
                    conn.finished("")
                    continue
                d = password_for(line) if password_for is not None else interpreter.run(line)
                outcome = finished([], d)
                if isinstance(outcome, PasswordPrompt):
                    conn.prompt_password(outcome.then)
                elif isinstance(outcome, QMPError):
                    raise AssertionError(f"HMP let a QMP error escape: {outcome}")
                else:
                    conn.finished(outcome)
            conn.data_to_send()

    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        (hmp if data[0] & 1 else qmp)(data[2:], data[1])
    return one
