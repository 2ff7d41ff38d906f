# -*- test-case-name: tests.vncd.test_capture -*-
"""``vncd-capture``: save a PNG of a remote VNC display, over TLS if need be.

::

    vncd-capture [--tls-creds-dir DIR | --anon-tls] [--hostname NAME]
                 [--password-file FILE] [--timeout SECONDS] [--shared|--exclusive]
                 [--rfb-version 3.3|3.7|3.8] [--encodings LIST] SERVER OUTPUT.png

``SERVER`` is ``HOST:DISPLAY`` (port 5900 + DISPLAY), ``HOST::PORT``,
``:DISPLAY`` (localhost), ``[IPV6]:DISPLAY`` or ``unix:PATH``.

``--tls-creds-dir`` names a client credentials directory in QEMU's
layout: ``ca-cert.pem`` to check the server's certificate, and
optionally ``client-cert.pem``/``client-key.pem`` to present one.  The
server's certificate must name ``--hostname`` (default: the host of
``SERVER``).  ``--anon-tls`` uses anonymous TLS (no server
authentication).  With either, the capture refuses a server that does
not offer the matching VeNCrypt subtypes.  The password is the content
of ``--password-file`` byte for byte, as ``-object secret,file=`` reads
it, so one file serves both ends (a trailing newline is part of it).

Exit status: 0 the PNG was written; 1 no connection, protocol or I/O
error; 2 bad command line; 3 refused or authentication failed (including
security the options do not allow); 4 TLS or certificate failure; 5
timed out.  Errors are one line on standard error, naming the server
(and the file, for credential problems); passwords are never printed.
"""

from __future__ import annotations

import argparse
import re
import sys

from PIL import Image
from twisted.internet import defer, task

import creds
from compat.config import ListenAddress
from creds.objects import ObjectError
from vncd import encoding
from vncd.client import ClientOptions, RFBClientError, connect, fetch_framebuffer

__all__ = ["main", "parse_server", "EXIT_CODES", "ENCODING_NAMES", "MAX_PASSWORD_FILE"]

#: Exit status by failure kind.
EXIT_CODES = {
    "ok": 0, "connect": 1, "protocol": 1, "closed": 1, "io": 1, "usage": 2,
    "refused": 3, "auth": 3, "security": 3, "tls": 4, "timeout": 5,
}

#: ``--encodings`` names.
ENCODING_NAMES = {
    "raw": encoding.RAW, "copyrect": encoding.COPYRECT, "hextile": encoding.HEXTILE,
    "zlib": encoding.ZLIB, "tight": encoding.TIGHT, "zrle": encoding.ZRLE,
}

#: Pseudo-encodings always sent, so resizes during the capture are followed.
_PSEUDO = (encoding.DESKTOP_SIZE, encoding.EXTENDED_DESKTOP_SIZE, encoding.LAST_RECT)

#: Largest password file read: VNC uses 8 bytes; a file much larger than
#: a password is the wrong file.
MAX_PASSWORD_FILE = 4096

#: Default seconds for the whole capture (connect, handshake, pixels).
DEFAULT_TIMEOUT = 30.0


#: Host names and IPv4/IPv6 literals (the brackets already removed).
_HOST = re.compile(r"[A-Za-z0-9._:%-]{0,255}")


class UsageError(Exception):
    """The command line is unusable (exit status 2)."""


def parse_server(text: str) -> ListenAddress:
    """``HOST:DISPLAY``, ``HOST::PORT``, ``[V6]:DISPLAY``, ``:DISPLAY``, ``unix:PATH``."""
    if text.startswith("unix:"):
        if len(text) == 5:
            raise UsageError("unix: needs a socket path")
        return ListenAddress("unix", text[5:])
    if "::" in text and not text.startswith("["):
        host, _, port_text = text.partition("::")
        offset = 0
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, "0"
        offset = 5900
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or len(port_text) > 5 or not _HOST.fullmatch(host):
        raise UsageError(f"'{text}': expected HOST:DISPLAY, HOST::PORT or unix:PATH")
    port = int(port_text) + offset
    if not 0 < port <= 65535:
        raise UsageError(f"'{text}': port {port} is out of range")
    return ListenAddress("tcp", host or "localhost", port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vncd-capture", description="Save a PNG of a remote VNC display.",
        epilog="Exit status: 0 written, 1 connection/protocol/I-O error, 2 usage, "
               "3 refused or authentication failed, 4 TLS failure, 5 timeout.")
    p.add_argument("server", help="HOST:DISPLAY, HOST::PORT, [IPV6]:DISPLAY, :DISPLAY or unix:PATH")
    p.add_argument("output", help="PNG file to write")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--tls-creds-dir", metavar="DIR",
                     help="x509 client credentials: ca-cert.pem [client-cert.pem client-key.pem]")
    tls.add_argument("--anon-tls", action="store_true", help="anonymous TLS (no server check)")
    p.add_argument("--hostname", help="name the server certificate must carry")
    p.add_argument("--password-file", metavar="FILE",
                   help="file holding the password (its content, as -object secret,file=)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS")
    share = p.add_mutually_exclusive_group()
    share.add_argument("--shared", dest="shared", action="store_true", default=True,
                       help="let other clients stay connected (default)")
    share.add_argument("--exclusive", dest="shared", action="store_false",
                       help="ask for exclusive access")
    p.add_argument("--rfb-version", choices=("3.3", "3.7", "3.8"), default="3.8",
                   help="highest RFB version to speak")
    p.add_argument("--encodings", default="zrle,tight,hextile,zlib,copyrect,raw",
                   help=f"comma-separated, preferred first: {', '.join(ENCODING_NAMES)}")
    return p


def _read_password(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PASSWORD_FILE + 1)
    except OSError as e:
        raise UsageError(f"cannot read password file {path}: {e.strerror}") from None
    if len(data) > MAX_PASSWORD_FILE:
        raise UsageError(f"password file {path} is larger than {MAX_PASSWORD_FILE} bytes")
    return data


def _encodings(text: str) -> tuple[int, ...]:
    out = []
    for name in filter(None, (part.strip().lower() for part in text.split(","))):
        if name not in ENCODING_NAMES:
            raise UsageError(f"unknown encoding '{name}' (known: {', '.join(ENCODING_NAMES)})")
        out.append(ENCODING_NAMES[name])
    if not out:
        raise UsageError("--encodings lists no encoding")
    return (*out, *_PSEUDO)


def _options(args, address: ListenAddress) -> ClientOptions:
    registry = creds.new_registry()
    tls_creds = None
    hostname = args.hostname
    if args.tls_creds_dir:
        if hostname is None:
            if address.kind == "unix":
                raise UsageError("a unix: server needs --hostname to check its certificate")
            hostname = address.host
        tls_creds = registry.create("tls-creds-x509", {
            "id": "capture", "endpoint": "client", "dir": args.tls_creds_dir})
    elif args.anon_tls:
        tls_creds = registry.create("tls-creds-anon", {"id": "capture", "endpoint": "client"})
    password = _read_password(args.password_file) if args.password_file else None
    return ClientOptions(password=password, tls_creds=tls_creds, hostname=hostname,
                         shared=args.shared, max_minor=int(args.rfb_version[-1]))


async def capture(reactor, address: ListenAddress, options: ClientOptions, output: str,
                  encodings, timeout: float) -> None:
    """Connect, fetch the whole framebuffer, write it as PNG (raises RFBClientError/OSError)."""
    attempt = connect(reactor, address, options, timeout=timeout)
    timer = reactor.callLater(timeout, attempt.cancel)
    try:
        client = await attempt
        fetched = defer.Deferred.fromCoroutine(fetch_framebuffer(client, encodings))
        timer.cancel()
        timer = reactor.callLater(timeout, fetched.cancel)
        try:
            rgbx = await fetched
        finally:
            client.close()
    except defer.CancelledError:
        raise RFBClientError("timeout", f"no complete screen within {timeout:g} s") from None
    finally:
        if timer.active():
            timer.cancel()
    Image.fromarray(rgbx[..., :3], "RGB").save(output, format="PNG")


async def run(reactor, argv, err=None) -> int:
    """The command's body; returns the exit status (errors go to ``err``, stderr)."""
    err = err or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_CODES["usage"]
    try:
        address = parse_server(args.server)
        options = _options(args, address)
        encodings = _encodings(args.encodings)
    except UsageError as e:
        return _error(err, args.server, str(e), "usage")
    except ObjectError as e:
        return _error(err, args.server, str(e), "io")
    try:
        await capture(reactor, address, options, args.output, encodings, args.timeout)
    except RFBClientError as e:
        return _error(err, args.server, e.message, e.kind)
    except OSError as e:
        return _error(err, args.server, f"cannot write {args.output}: {e.strerror}", "io")
    return EXIT_CODES["ok"]


def main(argv=None) -> None:
    """Console-script entry point (exits with the status)."""
    argv = sys.argv[1:] if argv is None else argv

    async def body(reactor):
        raise SystemExit(await run(reactor, argv))

    task.react(lambda reactor: defer.Deferred.fromCoroutine(body(reactor)))


def _error(err, server: str, message: str, kind: str) -> int:
    err.write(f"vncd-capture: {server}: {message}\n")
    return EXIT_CODES[kind]


if __name__ == "__main__":
    main()
