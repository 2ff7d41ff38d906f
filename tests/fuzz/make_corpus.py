"""Regenerate the seed corpus: ``python -m tests.fuzz.make_corpus [HARNESS...]``.

Each harness's seeds go to ``tests/fuzz/corpus/<harness>/`` (the
directory is emptied first), one file per seed named after what it
holds.  Seeds are the inputs the unit tests use, recorded from the real
code: the bytes a real client and server exchange (with real TLS), the
output of a served display for every encoding, the command lines of the
option tests, files from the certificate generator.  Inputs follow each
harness's layout (:mod:`tests.fuzz.harnesses`: a mode byte, a chunking
byte, then the payload).  Seeds stay small: tens of files of a few KB.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import tempfile

from tests.fuzz import harnesses as H

__all__ = ["CORPUS_DIR", "SEEDS", "main"]

CORPUS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

#: Largest seed written (bigger recordings are cut).
MAX_SEED = 8 * 1024


def _options() -> dict[str, bytes]:
    lines = {
        "vnc-plain": ["-vnc", ":1"],
        "vnc-legacy-tls": ["-vnc", ":1,tls,x509verify=/etc/pki/vnc"],
        "vnc-legacy-acl": ["-vnc", "127.0.0.1:2,tls,x509=/etc/pki/vnc,acl,id=d2", "-print-translation"],
        "vnc-modern": ["-object", "tls-creds-x509,id=tls0,dir=/etc/pki/vnc,endpoint=server",
                       "-vnc", ":0,tls-creds=tls0,tls-authz=auth0",
                       "-object", "authz-simple,id=auth0,identity=CN=laptop.example.com,,O=Example"],
        "object-json": ["-object", '{"qom-type":"authz-list","id":"a","policy":"deny",'
                        '"rules":[{"match":"CN=*","policy":"allow","format":"glob"}]}'],
        "secret": ["-object", "secret,id=s0,data=eA==,format=base64",
                   "-vnc", "[::1]:3,password-secret=s0,websocket=5703,share=force-shared"],
        "secret-file": ["--object", "secret,id=s1,file=/dev/null", "-vnc", "unix:/tmp/v.sock,password=on"],
        "screen": ["-screen", "pipe,path=-,size=320x200,format=rgb24", "-vnc", "none"],
        "qmp": ["-qmp", "tcp:127.0.0.1:4444,server=on,wait=off", "-vnc", ":5"],
        "chardev-mon": ["-chardev", "socket,id=mon0,path=/tmp/m.sock,server=on,wait=off",
                        "-mon", "chardev=mon0,mode=control,pretty=on"],
        "monitor-stdio": ["-monitor", "stdio", "-qmp-pretty", "unix:/tmp/q,server,nowait"],
        "short-bools": ["-vnc", ":4,reverse=off,lossy,non-adaptive,noipv6,to=10,connections=3"],
        "ignored-keys": ["-vnc", ":6,audiodev=a,power-control=on,key-delay-ms=5"],
        "help": ["-vnc", "help"],
        "anon": ["-object", "tls-creds-anon,id=a0,endpoint=server,priority=NORMAL",
                 "-vnc", "localhost:7,tls-creds=a0,sasl=off", "-pidfile", "/tmp/p"],
        "listfile": ["-object", "authz-listfile,id=l0,filename=/tmp/acl.json,refresh=off"],
        "empty-param": ["-vnc", ":1,,"],
    }
    return {name: b"\0".join(w.encode() for w in argv)
            for name, argv in lines.items()}


def _creds_files() -> dict[str, bytes]:
    from cryptography.hazmat.primitives import serialization
    from tests import certgen
    ca = certgen.ca("seed CA")
    server = certgen.server(ca, "localhost", dns=["localhost"])
    client = certgen.client(ca, "seed client")
    ec_key = certgen.key("ec", 256)
    with open(os.path.join(os.path.dirname(H.__file__), "..", "..", "creds", "data",
                           "ffdhe2048.pem"), "rb") as f:
        dh = f.read()
    T = {name: i for i, name in enumerate(H.CREDS_TARGETS)}
    pem = lambda *certs: b"".join(c.cert.public_bytes(serialization.Encoding.PEM) for c in certs)
    seeds = {
        "ca-cert": (T["ca-cert.pem"], pem(ca)),
        "server-cert": (T["server-cert.pem"], pem(server)),
        "server-cert-p192": (T["server-cert.pem"], pem(certgen.server(
            ca, "localhost", dns=["localhost"], key_kind="ec", key_size=192))),
        "server-key-pkcs8": (T["server-key.pem"], server.key_pem()),
        "server-key-rsa": (T["server-key.pem"], server.key_pem(fmt="traditional")),
        "server-key-ec": (T["server-key.pem"], certgen.key_pem(ec_key, fmt="traditional")),
        "key-encrypted-pkcs8": (T["server-key.pem+password"], server.key_pem(H.KEY_PASSWORD)),
        "key-encrypted-dek-info": (T["server-key.pem+password"],
                                   server.key_pem(H.KEY_PASSWORD, fmt="traditional")),
        "crl": (T["ca-crl.pem"], certgen.crl(ca, [client]).public_bytes(
            serialization.Encoding.PEM)),
        "dh-params": (T["dh-params.pem"], dh),
        "client-cert": (T["client-cert.pem"], pem(client)),
        "secret-raw": (T["secret-raw"], b"password"),
        "secret-base64": (T["secret-base64"], b"cGFzc3dvcmQ="),
        "authz-listfile": (T["authz-listfile"], json.dumps({
            "policy": "deny", "rules": [
                {"match": "CN=fuzz", "policy": "allow"},
                {"match": "O=Example,CN=*", "policy": "allow", "format": "glob"}]}).encode()),
    }
    return {name: bytes([target]) + body for name, (target, body) in seeds.items()}


def _rfb_client_messages() -> dict[str, bytes]:
    from vncd import encoding as enc
    from vncd.pixels import PixelFormat
    from vncd.rfb import messages as msg
    everything = [enc.TIGHT, enc.ZRLE, enc.HEXTILE, enc.ZLIB, enc.COPYRECT, enc.RAW,
                  enc.DESKTOP_SIZE, enc.EXTENDED_DESKTOP_SIZE, enc.CURSOR, enc.DESKTOP_NAME,
                  enc.LAST_RECT, enc.QEMU_LED_STATE, enc.QEMU_EXTENDED_KEY_EVENT, enc.FENCE,
                  enc.CONTINUOUS_UPDATES, -32 + 6, -256 + 3, -23]
    full = msg.FramebufferUpdateRequest(False, 0, 0, 64, 48).encode()
    incr = msg.FramebufferUpdateRequest(True, 8, 8, 16, 16).encode()
    return {
        "request-raw": full + incr,
        "encodings-all": msg.SetEncodings(everything).encode() + full + incr,
        "pixel-format-16": (msg.SetPixelFormat(PixelFormat(16, 16, False, True, 31, 63, 31,
                                                           11, 5, 0)).encode()
                            + msg.SetEncodings([enc.ZRLE]).encode() + full),
        "colour-map": (msg.SetPixelFormat(PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0))
                       .encode() + msg.SetEncodings([enc.HEXTILE]).encode() + full),
        "input": (msg.KeyEvent(True, 0x61).encode() + msg.KeyEvent(False, 0x61).encode()
                  + msg.PointerEvent(1, 10, 10).encode() + msg.ClientCutText(b"hello").encode()
                  + msg.QEMUExtendedKeyEvent(True, 0x61, 30).encode()),
        "continuous-fence": (msg.SetEncodings([enc.FENCE, enc.CONTINUOUS_UPDATES, enc.TIGHT])
                             .encode() + msg.EnableContinuousUpdates(True, 0, 0, 64, 48).encode()
                             + msg.ClientFence((1 << 31) | 7, b"abc").encode() + incr
                             + msg.EnableContinuousUpdates(False, 0, 0, 64, 48).encode()),
        "resize": (msg.SetEncodings([enc.EXTENDED_DESKTOP_SIZE, enc.ZRLE]).encode() + full
                   + msg.SetDesktopSize(80, 60, [msg.Screen(1, 0, 0, 80, 60, 0)]).encode()
                   + msg.SetEncodings([enc.RAW, enc.DESKTOP_SIZE]).encode() + incr
                   + msg.SetDesktopSize(32, 20, [msg.Screen(1, 0, 0, 32, 20, 0)]).encode()
                   + full),
    }


def _rfb_server() -> dict[str, bytes]:
    from tests.vncd.served import handshake
    from vncd.rfb.server import PROTOCOL_VERSION
    seeds = {}
    for name, body in _rfb_client_messages().items():
        seeds[f"none-{name}"] = bytes([2, 3]) + body
        seeds[f"vnc-{name}"] = bytes([3, 0]) + body
    seeds["raw-none"] = bytes([0, 0]) + handshake(False) + _rfb_client_messages()["request-raw"]
    seeds["raw-vnc"] = bytes([1, 1]) + handshake(True) + _rfb_client_messages()["input"]
    seeds["rfb-3.3"] = bytes([0, 2]) + b"RFB 003.003\n\x01"
    seeds["rfb-3.7"] = bytes([1, 0]) + b"RFB 003.007\n\x02" + bytes(16) + b"\x00"
    seeds["bad-version"] = bytes([0, 0]) + b"RFB 004.001\n"
    seeds["wrong-type"] = bytes([1, 0]) + PROTOCOL_VERSION + b"\x13\x00\x02"
    return seeds


def _record_vencrypt() -> dict[str, bytes]:
    """Real x509 and anonymous exchanges between the project's client and server."""
    import creds
    from creds.session import TLSSession
    from creds.tlscreds import Endpoint
    from tests import certgen
    from vncd.rfb.client import ClientConnection, ClientSecurity
    from vncd.rfb.security import SecurityConfig, auth_for
    from vncd.rfb.server import ServerConnection
    from vncd.rfb.stack import RFBStack
    from vncd.rfb.testing import MemoryPeer, converse

    base = tempfile.mkdtemp(prefix="vncd-corpus-")
    try:
        ca = certgen.ca("seed CA")
        server_dir = certgen.write_dir(os.path.join(base, "s"), ca=[ca],
                                       server=certgen.server(ca, "localhost", dns=["localhost"]))
        client_dir = certgen.write_dir(os.path.join(base, "c"), ca=[ca],
                                       client=certgen.client(ca, "seed"))
        reg = creds.new_registry(warn=lambda m: None)
        objs = {
            "x509": reg.create("tls-creds-x509", {"id": "x", "endpoint": "server",
                                                  "dir": server_dir}),
            "anon": reg.create("tls-creds-anon", {"id": "a", "endpoint": "server"}),
            "cx509": reg.create("tls-creds-x509", {"id": "cx", "endpoint": "client",
                                                   "dir": client_dir}),
            "canon": reg.create("tls-creds-anon", {"id": "ca", "endpoint": "client"}),
        }
        out = {}
        for kind, password in (("x509", False), ("anon", False), ("x509", True)):
            security = SecurityConfig(auth_for(kind, password), b"vencrypt" if password else None)
            server = RFBStack(ServerConnection(security),
                              lambda o=objs[kind]: TLSSession(o, Endpoint.SERVER))
            cobj = objs["c" + kind]
            client = RFBStack(ClientConnection(ClientSecurity(tls=kind, password=b"vencrypt"
                                                              if password else None)),
                              lambda o=cobj: TLSSession(o, Endpoint.CLIENT, hostname="localhost"))
            a, b = MemoryPeer(server), MemoryPeer(client)
            converse(a, b)
            out[(kind, password)] = (bytes(a.received), bytes(b.received))
        return out
    finally:
        shutil.rmtree(base, True)


def _vencrypt() -> dict[str, bytes]:
    from vncd.rfb.server import PROTOCOL_VERSION
    M = {name: i for i, name in enumerate(H.VENCRYPT_MODES)}
    rec = _record_vencrypt()
    client_x509, server_x509 = rec[("x509", False)]
    client_anon, _ = rec[("anon", False)]
    client_pw, _ = rec[("x509", True)]
    prefix = len(PROTOCOL_VERSION + bytes([19, 0, 2]) + struct.pack(">I", 260))
    seeds = {
        "server-x509": bytes([M["server-x509"], 4]) + client_x509,
        "server-anon": bytes([M["server-anon"], 3]) + client_anon,
        "server-x509-password": bytes([M["server-x509-password"], 0]) + client_pw,
        "client-x509": bytes([M["client-x509"], 3]) + server_x509,
        "tls-records": bytes([M["server-x509-tls-records"], 3]) + client_x509[prefix:],
        "bad-subtype": bytes([M["server-x509"], 0]) + PROTOCOL_VERSION + bytes([19, 0, 2])
        + struct.pack(">I", 257),
        "starttls-injection": bytes([M["server-anon"], 3]) + PROTOCOL_VERSION
        + bytes([19, 0, 2]) + struct.pack(">I", 257) + b"\x00\x00\x00\x01",
    }
    return {k: v[:MAX_SEED] for k, v in seeds.items()}


def _websocket() -> dict[str, bytes]:
    import wsproto
    from wsproto.events import (
        AcceptConnection, BytesMessage, CloseConnection, Ping, Request, TextMessage,
    )
    seeds = {}
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    request = client.send(Request(host="localhost", target="/websockify",
                                  subprotocols=["binary"]))
    seeds["upgrade"] = bytes([0, 3]) + request
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    server.receive_data(request)
    for _ in server.events():
        pass
    client.receive_data(server.send(AcceptConnection(subprotocol="binary")))
    for _ in client.events():
        pass
    frames = (client.send(BytesMessage(data=b"RFB 003.008\n"))
              + client.send(BytesMessage(data=b"\x01" * 300))
              + client.send(Ping(payload=b"p")))
    text = client.send(TextMessage(data="hi"))
    seeds["frames"] = bytes([1, 0]) + frames + client.send(CloseConnection(code=1000))
    seeds["text-frame"] = bytes([1, 1]) + text
    seeds["no-subprotocol"] = bytes([0, 0]) + H.UPGRADE.replace(
        b"Sec-WebSocket-Protocol: binary\r\n", b"")
    seeds["non-ascii-header"] = bytes([0, 2]) + H.UPGRADE.replace(
        b"Host: localhost:5700", "Host: h\u00e9te".encode("latin-1"))
    return seeds


def _served_output(encodings, pf_index: int, resize: bool = False) -> bytes:
    """A served 40x30 display's output after ServerInit for one client."""
    import numpy as np
    from tests.vncd.served import Served, handshake
    from vncd.rfb import messages as msg
    pf = H._decode_formats()[pf_index]
    served = Served(40, 30)
    try:
        fb = served.screen.framebuffer
        ys, xs = np.mgrid[0:30, 0:40]
        fb[..., 0] = xs * 6
        fb[..., 1] = ys * 8
        fb[..., 2] = (xs // 8 + ys // 8) % 2 * 255
        fb[10:20, 10:30, :3] = 200
        served.screen.damage()
        served.feed(handshake(False))
        start = len(served.output)
        if pf_index:
            served.feed(msg.SetPixelFormat(pf).encode())
        served.feed(msg.SetEncodings(list(encodings)).encode())
        served.feed(msg.FramebufferUpdateRequest(False, 0, 0, 40, 30).encode())
        if resize:
            served.feed(msg.SetDesktopSize(24, 16, [msg.Screen(1, 0, 0, 24, 16, 0)]).encode())
            served.feed(msg.FramebufferUpdateRequest(True, 0, 0, 24, 16).encode())
        assert served.bad_output is None, served.bad_output
        # ServerInit is the first thing after the handshake: skip it.
        out = bytes(served.output[start:])
        name_len = struct.unpack(">I", out[20:24])[0]
        return out[24 + name_len:]
    finally:
        served.close()


def _decode() -> dict[str, bytes]:
    from vncd import encoding as enc
    seeds = {}
    plain = {"raw": [enc.RAW], "hextile": [enc.HEXTILE], "zlib": [enc.ZLIB],
             "zrle": [enc.ZRLE], "tight": [enc.TIGHT, -32 + 5],
             "tight-jpeg": [enc.TIGHT, -32 + 5, -23]}
    for name, encodings in plain.items():
        for pf_index in (0, 1, 2):
            if name in ("raw", "tight-jpeg") and pf_index:
                continue
            data = _served_output(encodings, pf_index)
            seeds[f"decoder-{name}-pf{pf_index}"] = bytes([0, pf_index]) + data
    pseudo = [enc.ZRLE, enc.DESKTOP_SIZE, enc.EXTENDED_DESKTOP_SIZE, enc.CURSOR,
              enc.DESKTOP_NAME, enc.LAST_RECT, enc.QEMU_LED_STATE,
              enc.QEMU_EXTENDED_KEY_EVENT, enc.FENCE, enc.CONTINUOUS_UPDATES]
    seeds["client-pseudo"] = bytes([1, 0]) + _served_output(pseudo, 0, resize=True)
    seeds["client-colour-map"] = bytes([3, 3]) + _served_output([enc.HEXTILE], 3)
    seeds["client-tight-16"] = bytes([5, 1]) + _served_output([enc.TIGHT, enc.CURSOR], 1)
    return {k: v[:MAX_SEED] for k, v in seeds.items()}


def _monitor() -> dict[str, bytes]:
    qmp = {
        "qmp-basic": '{"execute": "qmp_capabilities"}\n{"execute": "query-vnc"}\n'
                     '{"execute": "query-version", "id": 1}',
        "qmp-quotes": "{'execute': 'qmp_capabilities'}{'execute':'query-commands'}",
        "qmp-password": '{"execute":"qmp_capabilities"}{"execute":"set_password","arguments":'
                        '{"protocol":"vnc","password":"n3w"}}{"execute":"expire_password",'
                        '"arguments":{"protocol":"vnc","time":"+60"}}',
        "qmp-bad": '{"execute": "qmp_capabilities"}@{"exec": 1}[1,2,{"a":-1.5e3}]'
                   '{"execute":"query-vnc","arguments":[]}"\\u00e9\\ud800"',
        "qmp-hmp": '{"execute":"qmp_capabilities"}{"execute":"human-monitor-command",'
                   '"arguments":{"command-line":"info vnc"}}',
        "qmp-objects": '{"execute":"qmp_capabilities"}{"execute":"qom-list-types"}'
                       '{"execute":"query-objects"}{"execute":"object-del","arguments":{"id":"s0"}}',
    }
    hmp = {
        "hmp-info": "info vnc\r\ninfo version\nhelp\nhelp info\n",
        "hmp-password": "set_password vnc secret\nexpire_password vnc +30\nchange vnc password\nx\n",
        "hmp-acl": 'acl_show vnc.x509dname\nacl_add vnc.x509dname "CN=*,O=x" allow 1\n'
                   "acl_policy vnc.x509dname allow\nacl_remove vnc.x509dname CN=*,O=x\n"
                   "acl_reset vnc.x509dname\n",
        "hmp-bad": 'bogus\nacl_show "unterminated\nobject_del a b\nexpire_password vnc 0x1g\n',
    }
    seeds = {k: bytes([0, i]) + v.encode() for i, (k, v) in enumerate(qmp.items())}
    seeds.update({k: bytes([1, i]) + v.encode() for i, (k, v) in enumerate(hmp.items())})
    return seeds


SEEDS = {
    "options": _options, "creds_files": _creds_files, "rfb_server": _rfb_server,
    "vencrypt": _vencrypt, "websocket": _websocket, "decode": _decode, "monitor": _monitor,
}


def write(name: str) -> int:
    directory = os.path.join(CORPUS_DIR, name)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    seeds = SEEDS[name]()
    for label, data in sorted(seeds.items()):
        with open(os.path.join(directory, label), "wb") as f:
            f.write(data[:MAX_SEED])
    return len(seeds)


def main(argv: list[str]) -> int:
    names = argv or sorted(SEEDS)
    for name in names:
        if name not in SEEDS:
            print(f"unknown harness {name!r}; known: {', '.join(sorted(SEEDS))}", file=sys.stderr)
            return 2
        print(f"{name}: {write(name)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
