"""The monitor's commands and events against a real registry and stand-in displays."""

from __future__ import annotations

import os

from twisted.python.failure import Failure
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

import creds
from tests.compat.helpers import server_dir
from tests.vncd.monitor.fakes import FakeService, SyncReloader, client, display
from vncd.monitor.control import QUIT_GRACE, Monitor, parse_expiry
from vncd.monitor.schema import QMPError


class Sink:
    def __init__(self) -> None:
        self.events = []

    def send_event(self, name, data, timestamp):
        self.events.append((name, data, timestamp))


class MonitorTestCase(TestCase):

    def setUp(self) -> None:
        self.clock = Clock()
        self.now = 1_700_000_000.25
        self.registry = creds.new_registry()
        self.stopped = []
        self.reloader = SyncReloader()
        self.monitor = Monitor(self.clock, self.registry, self.reloader, version="0.1.0",
                               stop=lambda: self.stopped.append(True), now=lambda: self.now)

    def run_command(self, name, arguments=None):
        results = []
        self.monitor.execute(name, arguments or {}).addBoth(results.append)
        self.assertEqual(len(results), 1, "the command did not finish")
        result = results[0]
        if isinstance(result, Failure):
            result.trap(QMPError)
            return result.value
        return result

    def assertError(self, name, arguments, desc, error_class="GenericError"):
        error = self.run_command(name, arguments)
        self.assertIsInstance(error, QMPError, error)
        self.assertEqual((error.error_class, error.desc), (error_class, desc))

    def serve(self, *displays):
        service = FakeService(list(displays))
        self.monitor.attach(service)
        return service


class DispatchTests(MonitorTestCase):

    def test_unknown(self):
        """An unknown command is CommandNotFound, in QEMU's words."""
        self.assertError("nope", {}, "The command nope has not been found", "CommandNotFound")

    def test_arguments(self):
        """Arguments are checked before the command runs."""
        self.assertError("query-vnc", {"x": 1}, "Parameter 'x' is unexpected")
        self.assertError("object-del", {}, "Parameter 'id' is missing")

    def test_version(self):
        """query-version has QEMU's shape with vncd's numbers."""
        self.assertEqual(self.run_command("query-version"), {
            "qemu": {"major": 0, "minor": 1, "micro": 0}, "package": "vncd 0.1.0"})

    def test_commands(self):
        """query-commands lists every command, qmp_capabilities included."""
        names = [c["name"] for c in self.run_command("query-commands")]
        self.assertIn("qmp_capabilities", names)
        self.assertIn("vncd-query-credentials", names)
        self.assertEqual(len(names), len(set(names)))


class ObjectTests(MonitorTestCase):

    def test_add_and_delete(self):
        """object-add creates with -object's checks; object-del deletes."""
        self.assertEqual(self.run_command("object-add", {"qom-type": "secret", "id": "s0",
                                                         "data": "x"}), {})
        self.assertIn("s0", self.registry)
        self.assertEqual(self.run_command("object-del", {"id": "s0"}), {})
        self.assertNotIn("s0", self.registry)

    def test_add_errors(self):
        """QEMU's errors for a duplicate, an unknown type or property, missing members."""
        self.run_command("object-add", {"qom-type": "secret", "id": "s0", "data": "x"})
        self.assertError("object-add", {"qom-type": "secret", "id": "s0", "data": "x"},
                         "attempt to add duplicate property 's0' to object (type 'container')")
        self.assertError("object-add", {"qom-type": "nope", "id": "s1"},
                         "Parameter 'qom-type' does not accept value 'nope'")
        self.assertError("object-add", {"qom-type": "secret", "id": "s2", "bogus": "x"},
                         "Parameter 'bogus' is unexpected")
        self.assertError("object-add", {"id": "x"}, "Parameter 'qom-type' is missing")
        self.assertError("object-add", {"qom-type": "secret"}, "Parameter 'id' is missing")

    def test_add_checks_files(self):
        """A credentials object with broken files is refused with the sanity-check message."""
        directory = self.mktemp()
        os.makedirs(directory)
        error = self.run_command("object-add", {"qom-type": "tls-creds-x509", "id": "t",
                                                "dir": directory, "endpoint": "server"})
        self.assertIsInstance(error, QMPError)
        self.assertIn(directory, error.desc)
        self.assertNotIn("t", self.registry)

    def test_delete_held(self):
        """A held object is not deleted; the message names the holder."""
        self.run_command("object-add", {"qom-type": "secret", "id": "s0", "data": "x"})
        self.registry.hold("s0", "VNC display 'default'")
        error = self.run_command("object-del", {"id": "s0"})
        self.assertIn("held by VNC display 'default'", error.desc)
        self.assertError("object-del", {"id": "s9"}, "object 's9' not found")


class PasswordTests(MonitorTestCase):

    def test_set(self):
        """set_password and change-vnc-password set the first display's password."""
        d = display(password=True)
        self.serve(d)
        self.assertEqual(self.run_command("change-vnc-password", {"password": "abc"}), {})
        self.assertEqual(d.server.security.password, b"abc")
        self.assertEqual(self.run_command("set_password", {"protocol": "vnc", "password": "zz",
                                                           "connected": "keep"}), {})
        self.assertEqual(d.server.security.password, b"zz")

    def test_errors(self):
        """No display, a display without password auth, an empty password, spice,
        a 'connected' other than keep, an unknown display id."""
        self.assertError("change-vnc-password", {"password": "x"},
                         "Could not set password: no VNC display")
        self.serve(display(creds_kind="x509"), display("two", password=True))
        self.assertError("change-vnc-password", {"password": "x"},
                         "Could not set password: display 'default' does not use VNC password"
                         " authentication (it offers VeNCrypt X509None); start it with"
                         " password=on or password-secret=ID")
        self.assertEqual(self.run_command("set_password", {"protocol": "vnc", "password": "x",
                                                           "display": "two"}), {})
        error = self.run_command("set_password", {"protocol": "vnc", "password": "",
                                                  "display": "two"})
        self.assertTrue(error.desc.startswith("Could not set password: the VNC password is"
                                              " empty"), error.desc)
        self.assertError("set_password", {"protocol": "spice", "password": "x"},
                         "SPICE is not in use", "DeviceNotActive")
        self.assertError("set_password", {"protocol": "vnc", "password": "x",
                                          "connected": "fail"}, "Invalid parameter 'connected'")
        self.assertError("set_password", {"protocol": "vnc", "password": "x", "display": "no"},
                         "Could not set password: no VNC display with id 'no'")

    def test_expire(self):
        """expire_password takes now, never, +seconds and UNIX times."""
        d = display(password=True, clock=lambda: self.now)
        self.serve(d)
        security = d.server.security
        self.run_command("expire_password", {"protocol": "vnc", "time": "+60"})
        self.assertEqual(security.password_expires, self.now + 60)
        self.assertFalse(security.password_expired())
        self.run_command("expire_password", {"protocol": "vnc", "time": "now"})
        self.assertTrue(security.password_expired())
        self.run_command("expire_password", {"protocol": "vnc", "time": "never"})
        self.assertFalse(security.password_expired())
        self.run_command("expire_password", {"protocol": "vnc", "time": "1000"})
        self.assertTrue(security.password_expired())
        self.assertError("expire_password", {"protocol": "vnc", "time": "soon"},
                         "Parameter 'time' doesn't take value 'soon'")

    def test_parse_expiry(self):
        """Garbage times are refused (QEMU 7.2 reads them as 1970)."""
        for text in ("", "+", "-5", "1e3", "+ 5", "nowish", "9" * 30):
            self.assertRaises(QMPError, parse_expiry, text, 0.0)


class ReloadTests(MonitorTestCase):

    def test_errors(self):
        """display-reload: nothing to do without tls-certs; QEMU's errors otherwise."""
        self.assertEqual(self.run_command("display-reload", {"type": "vnc"}), {})
        self.assertError("display-reload", {"type": "vnc", "tls-certs": True},
                         "Can not find vnc display")
        self.serve(display())
        self.assertError("display-reload", {"type": "vnc", "tls-certs": True},
                         "vnc tls is not enabled")
        self.assertError("display-reload", {"type": "sdl"},
                         "Parameter 'type' does not accept value 'sdl'")

    def test_anon(self):
        """Anonymous credentials cannot be reloaded (QEMU's words)."""
        self.registry.create("tls-creds-anon", {"id": "a", "endpoint": "server"})
        self.serve(display(creds_kind="anon", tls_creds="a"))
        self.assertError("display-reload", {"type": "vnc", "tls-certs": True},
                         "tls-creds-anon doesn't support to reload TLS credential")

    def test_x509(self):
        """The first display's credentials are reloaded; broken files keep the old ones."""
        directory = server_dir(self.mktemp())
        self.registry.create("tls-creds-x509", {"id": "t", "dir": directory,
                                                "endpoint": "server"})
        self.serve(display(creds_kind="x509", tls_creds="t"))
        self.assertEqual(self.run_command("display-reload", {"type": "vnc", "tls-certs": True}),
                         {})
        self.assertEqual(self.registry.get("t").loaded.generation, 2)
        os.unlink(os.path.join(directory, "server-key.pem"))
        error = self.run_command("display-reload", {"type": "vnc", "tls-certs": True})
        self.assertIn("server-key.pem", error.desc)
        self.assertEqual(self.registry.get("t").loaded.generation, 2)

    def test_query_credentials(self):
        """vncd-query-credentials describes each object's certificates and holders."""
        directory = server_dir(self.mktemp())
        self.registry.create("tls-creds-x509", {"id": "t", "dir": directory,
                                                "endpoint": "server"})
        self.registry.hold("t", "VNC display 'default'")
        [entry] = self.run_command("vncd-query-credentials")
        self.assertEqual((entry["id"], entry["generation"], entry["users"]),
                         ("t", 1, ["VNC display 'default'"]))
        roles = [cert["role"] for cert in entry["certificates"]]
        self.assertEqual(roles, ["ca", "server"])
        server = entry["certificates"][1]
        self.assertIn("DNS:localhost", server["subject-alt-names"])
        self.assertTrue(server["not-after"].endswith("Z"))


class EventTests(MonitorTestCase):

    def test_vnc_events(self):
        """Client events carry QEMU's server and client payloads and a timestamp."""
        sink = Sink()
        self.monitor.add_event_sink(sink)
        d = display()
        self.serve(d)
        self.assertEqual(d.server.observers, [self.monitor])
        info = client(dn="CN=alice")
        self.monitor.client_connected(d.server, info)
        self.monitor.client_initialized(d.server, info)
        self.monitor.client_disconnected(d.server, info)
        server = {"host": "127.0.0.1", "service": "5901", "family": "ipv4",
                  "websocket": False, "auth": "none"}
        basic = {"host": "127.0.0.1", "service": "40000", "family": "ipv4", "websocket": False}
        self.assertEqual(sink.events, [
            ("VNC_CONNECTED", {"server": server, "client": basic}, (1_700_000_000, 250000)),
            ("VNC_INITIALIZED", {"server": server, "client": {**basic, "x509_dname": "CN=alice"}},
             (1_700_000_000, 250000)),
            ("VNC_DISCONNECTED", {"server": server,
                                  "client": {**basic, "x509_dname": "CN=alice"}},
             (1_700_000_000, 250000))])
        self.monitor.remove_event_sink(sink)
        self.monitor.client_connected(d.server, info)
        self.assertEqual(len(sink.events), 3)

    def test_no_sink_builds_nothing(self):
        """Without a monitor connection listening, no event payload is built."""
        from vncd.monitor import control

        built = []

        def spy(name):
            real = getattr(control.vncinfo, name)

            def wrapper(*args, **kwargs):
                built.append(name)
                return real(*args, **kwargs)
            self.patch(control.vncinfo, name, wrapper)

        for name in ("basic_client", "client_info", "server_info"):
            spy(name)
        d = display()
        self.serve(d)
        info = client()
        self.monitor.client_connected(d.server, info)
        self.monitor.client_initialized(d.server, info)
        self.monitor.client_disconnected(d.server, info)
        self.assertEqual(built, [])
        sink = Sink()
        self.monitor.add_event_sink(sink)
        self.monitor.client_connected(d.server, info)
        self.assertEqual(built, ["basic_client", "server_info"])
        self.assertEqual([e[0] for e in sink.events], ["VNC_CONNECTED"])

    def test_no_listener_no_event(self):
        """A display without a plain socket makes no event (QEMU's rule)."""
        sink = Sink()
        self.monitor.add_event_sink(sink)
        d = display(listeners=[])
        self.serve(d)
        self.monitor.client_connected(d.server, client())
        self.assertEqual(sink.events, [])

    def test_quit(self):
        """quit replies, then SHUTDOWN once, then vncd stops when the reply is out."""
        sink = Sink()
        self.monitor.add_event_sink(sink)
        self.assertEqual(self.run_command("quit"), {})
        self.assertEqual(sink.events, [])
        self.monitor.quit_replied()
        self.monitor.quit_replied()
        self.assertEqual([e[:2] for e in sink.events],
                         [("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"})])
        self.monitor.quit_reply_sent()
        self.assertEqual(self.stopped, [True])
        self.clock.advance(QUIT_GRACE)
        self.assertEqual(self.stopped, [True])

    def test_quit_client_gone(self):
        """A client that never takes its reply does not keep vncd running."""
        self.run_command("quit")
        self.clock.advance(QUIT_GRACE)
        self.assertEqual(self.stopped, [True])
