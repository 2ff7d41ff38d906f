"""Passwords set and expired at run time, and the VNC events, with real clients.

``set_password``/``expire_password``/``change-vnc-password`` are compared
with QEMU 7.2 on the same ``password=on`` display, logging in with a raw
RFB client; then vncd alone is driven with ``qemu.qmp`` while gtk-vnc's
``gvnccapture`` and TigerVNC's ``vncviewer`` (under Xvfb) log in with the
new password and fail with the old one.  The events test compares
``VNC_CONNECTED``/``VNC_INITIALIZED``/``VNC_DISCONNECTED`` payloads with
QEMU's for the same client, on a monitor that negotiated and not on one
that did not.
"""

from __future__ import annotations

import os
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.tools import require_tool
from tests.vncd import realclients
from tests.vncd.monitor.peers import (
    RawQMP, RawVNC, VNCRefused, short_dir, start_pair, start_vncd, with_qmp,
)
from tests.vncd.monitor.test_monitor_qemu import same_error, shape

#: Seconds a real viewer gets to log in (about one on loopback).
LOGIN_TIMEOUT = 20.0


def login(port: int, password: str | None) -> str:
    """'ok' or the server's reason for refusing."""
    try:
        RawVNC(port, password=password).close()
    except VNCRefused as e:
        return e.reason
    return "ok"


class PasswordTests(SynchronousTestCase):
    """Run-time VNC passwords: QEMU 7.2's rules, and real clients logging in."""

    def setUp(self):
        self.base = short_dir(self)

    def test_against_qemu(self):
        """set_password, expire_password and their errors behave as in QEMU 7.2."""
        qemu, vncd = start_pair(self, self.base, vnc="127.0.0.1:{display},password=on")
        problems = []
        for server in (qemu, vncd):
            q = server.qmp()
            self.addCleanup(q.close)
            server.q = q
            # Nobody gets in before a password is set.
            self.assertNotEqual(login(server.port, ""), "ok")
            self.assertNotEqual(login(server.port, "x"), "ok")
        steps = [
            ("set_password", {"protocol": "vnc", "password": "first"}, "first", "ok"),
            ("set_password", {"protocol": "vnc", "password": "second", "connected": "keep"},
             "first", None),
            ("set_password", {"protocol": "vnc", "password": "x", "connected": "fail"},
             "second", "ok"),
            ("set_password", {"protocol": "vnc", "password": "x", "display": "nope"},
             "second", "ok"),
            ("set_password", {"protocol": "vnc", "password": "second", "display": "default"},
             "second", "ok"),
            ("expire_password", {"protocol": "vnc", "time": "now"}, "second", None),
            ("expire_password", {"protocol": "vnc", "time": "never"}, "second", "ok"),
            ("expire_password", {"protocol": "vnc", "time": "+600"}, "second", "ok"),
            ("expire_password", {"protocol": "vnc", "time": "1"}, "second", None),
            ("expire_password", {"protocol": "vnc", "time": str(int(time.time()) + 600)},
             "second", "ok"),
            ("expire_password", {"protocol": "vnc", "time": "now", "display": "nope"},
             "second", "ok"),
            ("change-vnc-password", {"password": "third"}, "third", "ok"),
            ("change-vnc-password", {"password": "fourth"}, "third", None),
        ]
        reasons = {}
        for index, (command, arguments, password, expect) in enumerate(steps):
            replies = {}
            for server in (qemu, vncd):
                replies[server.kind] = server.q.execute(command, arguments)
                result = login(server.port, password)
                if expect == "ok" and result != "ok" or expect is None and result == "ok":
                    problems.append((server.kind, command, arguments, password, result))
                reasons.setdefault(index, {})[server.kind] = result
            q, v = replies["qemu"], replies["vncd"]
            if not (q == v or same_error(v, q)):
                problems.append((command, arguments, q, v))
        self.assertEqual(problems, [])
        # An expired password: the wire says what QEMU says, the log says why.
        expired = reasons[5]
        self.assertEqual(expired["vncd"], expired["qemu"])

    def test_empty_password_refused(self):
        """An empty password: QEMU 7.2 accepts it (and admits an empty login), vncd refuses."""
        qemu, vncd = start_pair(self, self.base, vnc="127.0.0.1:{display},password=on")
        q, v = qemu.qmp(), vncd.qmp()
        self.addCleanup(q.close)
        self.addCleanup(v.close)
        empty = {"protocol": "vnc", "password": ""}
        self.assertEqual(q.execute("set_password", empty), {"return": {}})
        self.assertEqual(login(qemu.port, ""), "ok")
        reply = v.execute("set_password", empty)
        self.assertEqual(reply["error"]["class"], "GenericError")
        self.assertTrue(reply["error"]["desc"].startswith("Could not set password"), reply)
        self.assertNotEqual(login(vncd.port, ""), "ok")

    def test_legacy_password_key(self):
        """Legacy ``-vnc :N,password``: everyone is refused until the monitor sets one."""
        vncd = start_vncd(self, self.base, vnc="127.0.0.1:{display},password")
        self.assertNotEqual(login(vncd.port, ""), "ok")
        self.assertNotEqual(login(vncd.port, "secret"), "ok")
        v = vncd.qmp()
        self.addCleanup(v.close)
        self.assertEqual(v.execute("change-vnc-password", {"password": "secret"}),
                         {"return": {}})
        self.assertEqual(login(vncd.port, "secret"), "ok")

    def test_real_clients(self):
        """gvnccapture and TigerVNC log in with the password set over qemu.qmp, not the old one."""
        require_tool("gvnccapture")
        require_tool("vncviewer")
        vncd = start_vncd(self, self.base, vnc="127.0.0.1:{display},password=on")

        def set_password(password):
            async def body(client):
                return await client.execute("set_password",
                                            {"protocol": "vnc", "password": password})
            self.assertEqual(with_qmp(vncd.qmp_path, body), {})

        set_password("old-pw")
        set_password("new-pw")
        out = os.path.join(self.base, "shot.png")
        ok = realclients.gvnccapture("127.0.0.1", vncd.display, out, password="new-pw")
        self.assertTrue(ok.ok, ok.output)
        self.assertTrue(os.path.getsize(out) > 0)
        bad = realclients.gvnccapture("127.0.0.1", vncd.display, out, password="old-pw")
        self.assertFalse(bad.ok, bad.output)

        events = vncd.qmp()
        self.addCleanup(events.close)
        xvfb = realclients.Xvfb(self, 640, 480)
        viewer = realclients.start_vncviewer(self, realclients.vncviewer_command(
            xvfb, vncd.port, security_types="VncAuth",
            password_file=self.password_file("new-pw")))
        event = events.wait_event("VNC_INITIALIZED", LOGIN_TIMEOUT)
        self.assertEqual(event["data"]["client"]["host"], "127.0.0.1")
        self.assertIsNone(viewer.poll(), viewer.describe())
        viewer.stop()
        refused = realclients.start_vncviewer(self, realclients.vncviewer_command(
            xvfb, vncd.port, security_types="VncAuth",
            password_file=self.password_file("old-pw")))
        self.assertIsNotNone(refused.wait(LOGIN_TIMEOUT), refused.describe())
        self.assertIn("Authentication failed", refused.output())

        # expire_password now: the right password is refused, saying why.
        self.assertEqual(events.execute("expire_password", {"protocol": "vnc", "time": "now"}),
                         {"return": {}})
        expired = realclients.gvnccapture("127.0.0.1", vncd.display, out, password="new-pw")
        self.assertFalse(expired.ok, expired.output)
        with self.assertRaises(VNCRefused):
            RawVNC(vncd.port, password="new-pw", source="127.0.0.3")
        logged = realclients.wait_until(
            lambda: "127.0.0.3" in vncd.output() and "the VNC password has expired"
            in vncd.output(), 10)
        self.assertTrue(logged, vncd.output())

    def password_file(self, password: str) -> str:
        path = os.path.join(self.base, f"passwd-{password}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(realclients.vnc_password_file_bytes(password))
        return path


class EventTests(SynchronousTestCase):
    """VNC_CONNECTED, VNC_INITIALIZED, VNC_DISCONNECTED as QEMU 7.2 sends them."""

    def test_payloads(self):
        """Same members and types as QEMU's, to negotiated monitors only."""
        base = short_dir(self)
        payloads, problems = {}, []
        qemu, vncd = start_pair(self, base)
        for server in (qemu, vncd):
            negotiated = server.qmp()
            self.addCleanup(negotiated.close)
            vnc = RawVNC(server.port)
            vnc.close()
            got = {}
            for name in ("VNC_CONNECTED", "VNC_INITIALIZED", "VNC_DISCONNECTED"):
                got[name] = negotiated.wait_event(name)
            payloads[server.kind] = got
        for name in ("VNC_CONNECTED", "VNC_INITIALIZED", "VNC_DISCONNECTED"):
            q, v = payloads["qemu"][name], payloads["vncd"][name]
            if shape(q) != shape(v):
                problems.append((name, shape(q), shape(v)))
            for part in ("server", "client"):
                for key in ("host", "family", "auth"):
                    if key in q["data"][part] and q["data"][part][key] != v["data"][part][key]:
                        problems.append((name, part, key, q["data"][part][key],
                                         v["data"][part][key]))
        self.assertEqual(problems, [])

    def test_not_before_negotiation(self):
        """Every negotiated connection, on every monitor, gets each event; an idle one none."""
        base = short_dir(self)
        hmp_free = os.path.join(base, "second.sock")
        vncd = start_vncd(self, base, extra=("-qmp", f"unix:{hmp_free},server=on,wait=off"))
        idle = RawQMP(vncd.qmp_path)
        self.addCleanup(idle.close)
        negotiated = [vncd.qmp(), vncd.qmp(), RawQMP(hmp_free)]
        negotiated[2].negotiate()
        for client in negotiated:
            self.addCleanup(client.close)
        RawVNC(vncd.port).close()
        for client in negotiated:
            for name in ("VNC_CONNECTED", "VNC_INITIALIZED", "VNC_DISCONNECTED"):
                client.wait_event(name)
        raw, reply = idle.execute_raw("qmp_capabilities")
        self.assertEqual(reply, {"return": {}})
        self.assertEqual(idle.events, [])
        RawVNC(vncd.port).close()
        idle.wait_event("VNC_DISCONNECTED")
