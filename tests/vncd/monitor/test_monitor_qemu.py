"""vncd's QMP monitor against QEMU 7.2's, the same scenarios on both, over real sockets.

Each test starts ``qemu-system-x86_64 -machine none -nodefaults -display
none`` and ``python -m vncd`` with the same ``-object``/``-vnc`` options
and a ``-qmp unix:...`` monitor, sends both the same requests with a raw
socket client (exact bytes: CR LF line ends, pretty layout) and compares
greeting, negotiation, reply shapes, error classes and descriptions.
vncd may add an explanation after QEMU's description (``(hint: ...)`` or
``: ...``); where it differs on purpose, the test asserts both sides and
that ``man/vncd.8`` lists the difference.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from tests import certgen
from tests.compat.helpers import VALIDITY, client_identity, server_dir
from tests.tools import ROOT
from tests.vncd.monitor.peers import RawQMP, RawVNC, short_dir, start_pair, start_qemu, start_vncd

#: The manual page, where vncd's deliberate differences are listed.
MANUAL = os.path.join(ROOT, "man", "vncd.8")


def same_error(vncd: dict, qemu: dict) -> bool:
    """Same class; vncd's description is QEMU's, or QEMU's followed by an explanation."""
    if "error" not in vncd or "error" not in qemu:
        return False
    v, q = vncd["error"], qemu["error"]
    return v["class"] == q["class"] and (
        v["desc"] == q["desc"] or v["desc"].startswith(q["desc"] + " (")
        or v["desc"].startswith(q["desc"] + ": "))


def shape(value):
    """A value's structure: member names and JSON types, not the values themselves."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


#: (command, arguments) run on both servers, in order; each must give the
#: same return value or the same error (see :func:`same_error`).
SAME = [
    ("nope", None),
    ("object-del", None),
    ("object-del", {"id": "x", "y": 1}),
    ("object-del", {"id": 1}),
    ("object-del", {"id": "x"}),
    ("object-add", {"id": "z"}),
    ("object-add", {"qom-type": "secret"}),
    ("object-add", {"qom-type": "nope", "id": "x"}),
    ("object-add", {"qom-type": "secret", "id": "1bad", "data": "x"}),
    ("object-add", {"qom-type": "secret", "id": "s0", "data": "abc"}),
    ("object-add", {"qom-type": "secret", "id": "s0", "data": "abc"}),
    ("object-add", {"qom-type": "secret", "id": "s1", "bogus": "abc"}),
    ("object-add", {"qom-type": "secret", "id": "s1"}),
    ("object-add", {"qom-type": "secret", "id": "s1", "data": "x", "format": "nope"}),
    ("object-add", {"qom-type": "secret", "id": "s1", "data": "x", "keyid": "nope"}),
    ("object-del", {"id": "s0"}),
    ("object-add", {"qom-type": "tls-creds-anon", "id": "a0", "verify-peer": "yes"}),
    ("object-add", {"qom-type": "tls-creds-anon", "id": "a0", "verify-peer": 1}),
    ("object-add", {"qom-type": "tls-creds-anon", "id": "a0", "endpoint": "sideways"}),
    ("object-add", {"qom-type": "tls-creds-anon", "id": "a0", "endpoint": 5}),
    ("object-add", {"qom-type": "tls-creds-anon", "id": "a0", "bogus": 5}),
    ("object-add", {"qom-type": "tls-creds-x509", "id": "x0", "dir": 5}),
    ("object-add", {"qom-type": "tls-creds-x509", "id": "x0", "dir": "/nonexistent"}),
    ("object-add", {"qom-type": "tls-creds-x509", "id": "x0", "sanity-check": "off",
                    "dir": "/nonexistent"}),
    ("object-add", {"qom-type": "authz-simple", "id": "as0"}),
    ("object-add", {"qom-type": "authz-simple", "id": "as0", "identity": 5}),
    ("object-add", {"qom-type": "authz-simple", "id": "as0", "identity": "x", "extra": 1}),
    ("object-add", {"qom-type": "authz-simple", "id": "as0", "identity": "CN=bob"}),
    ("object-add", {"qom-type": "authz-simple", "id": "as0", "identity": "CN=bob"}),
    ("object-del", {"id": "as0"}),
    ("object-add", {"qom-type": "authz-list", "id": "l0", "rules": "x"}),
    ("object-add", {"qom-type": "authz-list", "id": "l0", "rules": {"0": {"match": "a",
                                                                          "policy": "allow"}}}),
    ("object-add", {"qom-type": "authz-list", "id": "l0", "rules": ["x"]}),
    ("object-add", {"qom-type": "authz-list", "id": "l0", "rules": [{"match": "a"}]}),
    ("object-add", {"qom-type": "authz-list", "id": "l0", "rules": [{"policy": "allow"}]}),
    ("object-add", {"qom-type": "authz-list", "id": "l0",
                    "rules": [{"match": 5, "policy": "allow"}]}),
    ("object-add", {"qom-type": "authz-list", "id": "l0",
                    "rules": [{"match": "a", "policy": "allow", "extra": 1}]}),
    ("object-add", {"qom-type": "authz-list", "id": "l0", "policy": "maybe"}),
    ("object-add", {"qom-type": "authz-list", "id": "l0", "policy": 5}),
    ("object-add", {"qom-type": "authz-list", "id": "l0", "rules": []}),
    ("object-del", {"id": "l0"}),
    ("object-add", {"qom-type": "authz-listfile", "id": "f0"}),
    ("object-add", {"qom-type": "authz-listfile", "id": "f0", "refresh": True}),
    ("object-add", {"qom-type": "authz-listfile", "id": "f0", "filename": 5}),
    ("object-add", {"qom-type": "authz-listfile", "id": "f0", "filename": "/x",
                    "refresh": "yes"}),
    ("object-add", {"qom-type": "authz-listfile", "id": "f0", "filename": "/x",
                    "bogus": 1}),
    ("object-add", {"qom-type": "tls-creds-x509", "id": "x0", "dir": "/nonexistent",
                    "verify-peer": "no"}),
    ("object-add", {"qom-type": "tls-creds-x509", "id": "x0", "dir": "/nonexistent",
                    "endpoint": "both"}),
    ("object-add", {"qom-type": "tls-creds-x509", "id": "x0", "dir": "/nonexistent",
                    "priority": 5}),
    ("object-add", {"qom-type": "tls-creds-x509", "id": "x0", "dir": "/nonexistent",
                    "loaded": True}),
    ("object-add", {"qom-type": "tls-creds-anon", "id": "a0", "loaded": True}),
    ("object-add", {"qom-type": "secret", "id": "s1", "data": "x", "format": 5}),
    ("object-add", {"qom-type": "secret", "id": "s1", "data": 5}),
    ("object-add", {"qom-type": "secret", "id": "s1", "data": "x", "file": "/x"}),
    ("object-add", {"qom-type": "authz-simple", "id": "as1", "identity": "x",
                    "loaded": True}),
    ("query-vnc", {"x": 1}),
    ("change-vnc-password", None),
    ("change-vnc-password", {"password": 5}),
    ("set_password", {"protocol": "vnc"}),
    ("set_password", {"protocol": "rdp", "password": "x"}),
    ("set_password", {"protocol": "vnc", "password": "abc"}),
    ("set_password", {"protocol": "vnc", "password": "abc", "connected": "sometimes"}),
    ("set_password", {"protocol": "spice", "password": "abc"}),
    ("change-vnc-password", {"password": "abc"}),
    ("expire_password", {"protocol": "vnc"}),
    ("expire_password", {"protocol": "spice", "time": "now"}),
    ("display-reload", None),
    ("display-reload", {"type": "sdl"}),
    ("display-reload", {"type": "vnc"}),
    ("display-reload", {"type": "vnc", "tls-certs": "yes"}),
    ("display-reload", {"type": "vnc", "tls-certs": True}),
    ("human-monitor-command", None),
    ("human-monitor-command", {"command-line": "bogus"}),
    ("human-monitor-command", {"command-line": "info bogus"}),
    ("human-monitor-command", {"command-line": "object_del nope"}),
    ("human-monitor-command", {"command-line": "object_add secret,id=h0,data=x"}),
    ("human-monitor-command", {"command-line": "object_add secret,id=h0,data=x"}),
    ("human-monitor-command", {"command-line": "object_del h0"}),
]

#: Where vncd answers otherwise on purpose: (command, arguments, QEMU's
#: reply, vncd's reply, the words man/vncd.8 must contain about it).
DIFFERENT = [
    # A rule's bad policy or format: vncd names the rule, QEMU only the member.
    ("object-add", {"qom-type": "authz-list", "id": "l1",
                    "rules": [{"match": "a", "policy": "bogus"}]},
     {"error": {"class": "GenericError",
                "desc": "Parameter 'policy' does not accept value 'bogus'"}},
     {"error": {"class": "GenericError",
                "desc": "Parameter 'rules[0].policy' does not accept value 'bogus'"}},
     "rules[0].policy"),
    # expire_password on a display without password authentication:
    # QEMU accepts it and never asks; vncd refuses.
    ("expire_password", {"protocol": "vnc", "time": "now"},
     {"return": {}}, "Could not set password expire time: display 'default' does not use VNC"
                     " password authentication",
     "expiry set on a display that does not check a password is refused"),
]


class ShapeTests(SynchronousTestCase):
    """Greeting, negotiation, replies and errors: vncd and QEMU 7.2 side by side."""

    def setUp(self):
        self.base = short_dir(self)

    def test_greeting_and_negotiation(self):
        """The greeting's shape, CR LF line ends, and the negotiation rules are QEMU's."""
        qemu, vncd = start_pair(self, self.base)
        for server in (qemu, vncd):
            client = RawQMP(server.qmp_path)
            self.addCleanup(client.close)
            server.client = client
        q, v = qemu.client, vncd.client
        self.assertEqual(shape(v.greeting), shape(q.greeting) | {
            "QMP": {"version": shape(q.greeting)["QMP"]["version"], "capabilities": []}})
        self.assertEqual(q.greeting["QMP"]["capabilities"], ["oob"])
        for raw in (q.greeting_raw, v.greeting_raw):
            self.assertTrue(raw.endswith(b"}\r\n"), raw)
            self.assertNotIn(b"\n", raw[:-2])
        steps = [("query-version", None), ("qmp_capabilities", {"enable": ["bogus"]}),
                 ("qmp_capabilities", {"x": 1}), ("qmp_capabilities", None),
                 ("qmp_capabilities", None)]
        for command, arguments in steps:
            qraw, qreply = q.execute_raw(command, arguments, id="a")
            vraw, vreply = v.execute_raw(command, arguments, id="a")
            self.assertTrue(vraw.endswith(b"\r\n") and qraw.endswith(b"\r\n"), (qraw, vraw))
            self.assertEqual(vreply, qreply, command)
        self.assertEqual(shape(v.execute("query-version")), shape(q.execute("query-version")))
        raw = b'{"execute": "query-status"} {"execute":"nope"}\n[]\n{"foo": 1}\n'
        for client in (q, v):
            client.send(raw)
        for _ in range(4):
            qreply, vreply = q.reply()[1], v.reply()[1]
            if qreply.get("return") is not None:        # query-status: QEMU only
                self.assertEqual(vreply["error"]["class"], "CommandNotFound")
            else:
                self.assertEqual(vreply, qreply)

    def test_same_errors(self):
        """Every scenario in SAME gets QEMU's return value or QEMU's error class and words."""
        qemu, vncd = start_pair(self, self.base)
        q, v = qemu.qmp(), vncd.qmp()
        self.addCleanup(q.close)
        self.addCleanup(v.close)
        problems = []
        for command, arguments in SAME:
            qreply, vreply = q.execute(command, arguments), v.execute(command, arguments)
            if "return" in qreply:
                if vreply != qreply:
                    problems.append((command, arguments, qreply, vreply))
            elif not same_error(vreply, qreply):
                problems.append((command, arguments, qreply, vreply))
        self.assertEqual(problems, [])

    def test_deliberate_differences(self):
        """Where vncd differs on purpose, QEMU really does otherwise and the manual says so."""
        qemu, vncd = start_pair(self, self.base)
        q, v = qemu.qmp(), vncd.qmp()
        self.addCleanup(q.close)
        self.addCleanup(v.close)
        with open(MANUAL, encoding="utf-8") as f:
            manual = " ".join(f.read().replace("\\-", "-").split())
        for command, arguments, qemu_reply, vncd_reply, documented in DIFFERENT:
            self.assertEqual(q.execute(command, arguments), qemu_reply)
            got = v.execute(command, arguments)
            if isinstance(vncd_reply, str):
                self.assertEqual(got["error"]["class"], "GenericError")
                self.assertTrue(got["error"]["desc"].startswith(vncd_reply), got)
            else:
                self.assertEqual(got, vncd_reply)
            if documented is not None:
                self.assertTrue(documented in manual, f"man/vncd.8 lacks {documented!r}")

    def test_query_commands(self):
        """query-commands lists ours; every QEMU-named one vncd has exists in QEMU 7.2."""
        qemu, vncd = start_pair(self, self.base)
        q, v = qemu.qmp(), vncd.qmp()
        self.addCleanup(q.close)
        self.addCleanup(v.close)
        theirs = {c["name"] for c in q.execute("query-commands")["return"]}
        ours = {c["name"] for c in v.execute("query-commands")["return"]}
        self.assertTrue({"qmp_capabilities", "query-version", "object-add", "object-del",
                         "query-vnc", "query-vnc-servers", "set_password", "expire_password",
                         "change-vnc-password", "display-reload", "human-monitor-command",
                         "quit", "vncd-query-credentials", "vncd-query-clients"} <= ours)
        own = {name for name in ours if name.startswith("vncd-")}
        self.assertEqual(ours - own - theirs, set())

    def test_pretty_bytes(self):
        """-qmp-pretty writes QEMU's exact bytes, empty objects and arrays included."""
        qemu, vncd = start_pair(self, self.base, qmp="-qmp-pretty")
        q, v = RawQMP(qemu.qmp_path), RawQMP(vncd.qmp_path)
        self.addCleanup(q.close)
        self.addCleanup(v.close)
        self.assertTrue(v.greeting_raw.startswith(b'{\r\n    "QMP": {\r\n        "version"'))
        for command, arguments in [
                ("qmp_capabilities", None),
                ("object-add", {"qom-type": "authz-list", "id": "l0", "rules": []}),
                ("nope", None)]:
            qraw, _ = q.execute_raw(command, arguments)
            vraw, _ = v.execute_raw(command, arguments)
            self.assertEqual(vraw, qraw)

    def test_query_vnc_with_client(self):
        """query-vnc and query-vnc-servers: QEMU's members and types, a client connected."""
        qemu, vncd = start_pair(self, self.base,
                                vnc="127.0.0.1:{display},websocket=127.0.0.1:{wsport}")
        shapes = {}
        for server in (qemu, vncd):
            vnc = RawVNC(server.port)
            self.addCleanup(vnc.close)
            client = server.qmp()
            self.addCleanup(client.close)
            servers = client.execute("query-vnc-servers")
            self.assertEqual(sorted(s["websocket"] for s in servers["return"][0]["server"]),
                             [False, True])
            shapes[server.kind] = (shape(client.execute("query-vnc")), shape(servers))
            info = client.execute("human-monitor-command", {"command-line": "info vnc"})
            self.assertIn("Client:", info["return"])
        self.assertEqual(shapes["vncd"], shapes["qemu"])

    def test_x509_client_fields(self):
        """With an x509 client: auth, vencrypt, x509_dname as QEMU 7.2 reports them."""
        root = certgen.ca("monitor test CA", not_after=VALIDITY)
        x509 = server_dir(os.path.join(self.base, "x509"), root)
        cert, key = client_identity(os.path.join(self.base, "bob"), root, "bob")
        creds = f"tls-creds-x509,id=tls0,endpoint=server,dir={x509},verify-peer=on"
        qemu, vncd = start_pair(self, self.base, objects=(creds,),
                                vnc="127.0.0.1:{display},tls-creds=tls0")
        import ssl
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(os.path.join(x509, "ca-cert.pem"))
        context.load_cert_chain(cert, key)
        replies = {}
        for server in (qemu, vncd):
            vnc = RawVNC(server.port, tls=context)
            self.addCleanup(vnc.close)
            client = server.qmp()
            self.addCleanup(client.close)
            replies[server.kind] = (client.execute("query-vnc")["return"],
                                    client.execute("query-vnc-servers")["return"])
            self.assertEqual(client.execute("display-reload",
                                            {"type": "vnc", "tls-certs": True}), {"return": {}})
        (qvnc, qservers), (vvnc, vservers) = replies["qemu"], replies["vncd"]
        self.assertEqual(shape(vvnc), shape(qvnc))
        self.assertEqual(shape(vservers), shape(qservers))
        self.assertEqual(vvnc["auth"], qvnc["auth"])
        for name in ("auth", "vencrypt"):
            self.assertEqual(vservers[0][name], qservers[0][name])
        self.assertEqual(vvnc["clients"][0]["x509_dname"], qvnc["clients"][0]["x509_dname"])
        self.assertEqual(vservers[0]["server"][0]["websocket"], False)

    def test_held_credentials_not_deleted(self):
        """object-del of credentials a display holds: QEMU deletes them, vncd names the holder."""
        root = certgen.ca("monitor test CA", not_after=VALIDITY)
        x509 = server_dir(os.path.join(self.base, "x509"), root)
        creds = f"tls-creds-x509,id=tls0,endpoint=server,dir={x509}"
        qemu = start_qemu(self, self.base, objects=(creds,),
                          vnc="127.0.0.1:{display},tls-creds=tls0")
        vncd = start_vncd(self, self.base, objects=(creds,),
                          vnc="127.0.0.1:{display},tls-creds=tls0")
        q, v = qemu.qmp(), vncd.qmp()
        self.addCleanup(q.close)
        self.addCleanup(v.close)
        self.assertEqual(q.execute("object-del", {"id": "tls0"}), {"return": {}})
        reply = v.execute("object-del", {"id": "tls0"})
        self.assertEqual(reply["error"]["class"], "GenericError")
        self.assertIn("display", reply["error"]["desc"])
        self.assertIn("tls0", reply["error"]["desc"])
        with open(MANUAL, encoding="utf-8") as f:
            manual = " ".join(f.read().replace("\\-", "-").split())
        self.assertTrue("naming the holder" in manual, "man/vncd.8 lacks 'naming the holder'")


class StartupTests(SynchronousTestCase):
    """What the command line prints before the monitor serves."""

    def test_waiting_line(self):
        """wait=on: vncd prints QEMU's line (its own name for QEMU's), located at the option."""
        import subprocess
        import sys
        from tests.tools import QEMU, require_tool
        from tests.vncd.realclients import require_vncd
        require_vncd()
        base = short_dir(self)
        lines = {}
        for kind, argv in (
                ("qemu", [require_tool(QEMU), "-machine", "none", "-nodefaults",
                          "-display", "none", "-serial", "none"]),
                ("vncd", [sys.executable, "-m", "vncd"])):
            path = os.path.join(base, f"{kind}.sock")
            proc = subprocess.Popen(argv + ["-qmp", f"unix:{path},server=on"], cwd=ROOT,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            try:
                for line in proc.stderr:
                    line = line.decode().rstrip("\n")
                    if "waiting for connection" in line:
                        lines[kind] = line.replace(path, "PATH")
                        break
            finally:
                proc.kill()
                proc.wait()
                proc.stderr.close()
        expected = lines["qemu"].replace("qemu-system-x86_64: ", "vncd: ").replace(
            "QEMU waiting", "vncd waiting")
        self.assertEqual(lines["vncd"], expected)
        self.assertEqual(lines["qemu"], "qemu-system-x86_64: -qmp unix:PATH,server=on: info:"
                         " QEMU waiting for connection on: disconnected:unix:PATH,server=on")


class QemuQmpTests(SynchronousTestCase):
    """The same through the qemu.qmp library, as management tools see it."""

    def test_library_view(self):
        """qemu.qmp negotiates with both; its ExecuteError carries the same class and words."""
        from qemu.qmp import ExecuteError
        from tests.vncd.monitor.peers import with_qmp
        base = short_dir(self)
        qemu, vncd = start_pair(self, base)

        async def body(client):
            out = [await client.execute("query-vnc"), client.greeting.QMP.capabilities]
            for command, arguments in (("object-del", {"id": "nope"}),
                                       ("object-add", {"qom-type": "tls-creds-anon",
                                                       "id": "a", "verify-peer": "yes"}),
                                       ("nope", None)):
                try:
                    await client.execute(command, arguments)
                    out.append(None)
                except ExecuteError as e:
                    out.append((e.error_class, e.error.error.desc))
            return out

        q = with_qmp(qemu.qmp_path, body)
        v = with_qmp(vncd.qmp_path, body)
        self.assertEqual(shape(v[0]), shape(q[0]))
        self.assertEqual((q[1], v[1]), (["oob"], []))
        self.assertEqual(v[2:], q[2:])


class HMPTests(SynchronousTestCase):
    """The human monitor socket next to QEMU 7.2's (-monitor unix:...)."""

    def test_banner_prompt_output(self):
        """Banner shape, prompt and CR LF output lines are QEMU's; QEMU echoes, vncd does not."""
        import socket
        from tests.vncd.monitor.test_monitor_live import PROMPT
        base = short_dir(self)
        outputs = {}
        for start in (start_qemu, start_vncd):
            hmp_path = os.path.join(base, f"{start.__name__}.hmp")
            server = start(self, base, extra=("-monitor", f"unix:{hmp_path},server=on,wait=off"))
            sock = socket.socket(socket.AF_UNIX)
            self.addCleanup(sock.close)
            sock.settimeout(10)
            sock.connect(hmp_path)

            def until_prompt():
                data = b""
                while not data.endswith(PROMPT):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise EOFError(data)
                    data += chunk
                return data[:-len(PROMPT)]

            def run(line):
                sock.sendall(line + b"\n")
                out = until_prompt()
                if server.kind == "qemu":                # drop QEMU's echo of the line
                    out = out[out.index(b"\r\n") + 2:]
                return out.replace(str(server.port).encode(), b"PORT")

            got = [until_prompt()]
            for line in (b"info vnc", b"bogus", b"object_del nope"):
                got.append(run(line))
            outputs[server.kind] = got
        q, v = outputs["qemu"], outputs["vncd"]
        self.assertTrue(q[0].startswith(b"QEMU ") and v[0].startswith(b"vncd "), (q[0], v[0]))
        self.assertEqual(q[0].split(b" ", 2)[2], v[0].split(b" ", 2)[2])
        self.assertEqual(v[1:], q[1:])
