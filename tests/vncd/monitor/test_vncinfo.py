"""query-vnc, query-vnc-servers, info vnc and event payloads in QEMU 7.2's shapes."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.vncd.monitor.fakes import client, display
from vncd.listen import Listener
from vncd.monitor import vncinfo

ALICE = "C=GB,O=ACME,CN=alice"


def x509_display():
    d = display(creds_kind="x509", password=True, listeners=[
        Listener("127.0.0.1:5901", "127.0.0.1", "5901", "ipv4"),
        Listener("127.0.0.1:5701", "127.0.0.1", "5701", "ipv4", websocket=True)])
    d.server.clients = [client(service="1", dn=ALICE), client(service="2", websocket=True)]
    return d


class QueryTests(TestCase):

    def test_query_vnc(self):
        """The first display, its first plain socket, clients newest first."""
        self.assertEqual(vncinfo.query_vnc([x509_display()]), {
            "enabled": True, "host": "127.0.0.1", "service": "5901", "family": "ipv4",
            "auth": "vencrypt+x509+vnc",
            "clients": [
                {"host": "127.0.0.1", "service": "2", "family": "ipv4", "websocket": True},
                {"host": "127.0.0.1", "service": "1", "family": "ipv4", "websocket": False,
                 "x509_dname": ALICE}]})

    def test_disabled(self):
        """No display, or one without a plain socket, is reported disabled."""
        self.assertEqual(vncinfo.query_vnc([]), {"enabled": False})
        self.assertEqual(vncinfo.query_vnc([display(listeners=[])]), {"enabled": False})

    def test_query_vnc_servers(self):
        """Displays and sockets newest first; WebSocket sockets show the inner auth."""
        unix = display("two", listeners=[Listener("unix:/run/x", "", "/run/x", "unix")])
        self.assertEqual(vncinfo.query_vnc_servers([x509_display(), unix]), [
            {"id": "two", "auth": "none", "clients": [], "server": [
                {"host": "", "service": "/run/x", "family": "unix", "websocket": False,
                 "auth": "none"}]},
            {"id": "default", "auth": "vencrypt", "vencrypt": "x509-vnc",
             "clients": vncinfo.query_vnc([x509_display()])["clients"], "server": [
                 {"host": "127.0.0.1", "service": "5701", "family": "ipv4", "websocket": True,
                  "auth": "vnc"},
                 {"host": "127.0.0.1", "service": "5901", "family": "ipv4", "websocket": False,
                  "auth": "vencrypt", "vencrypt": "x509-vnc"}]}])

    def test_info_vnc(self):
        """HMP info vnc prints QEMU 7.2's lines."""
        unix = display("two", listeners=[Listener("unix:/run/x", "", "/run/x", "unix")])
        self.assertEqual(vncinfo.info_vnc([x509_display(), unix]), (
            "two:\n"
            "  Server: :/run/x (unix)\n"
            "    Auth: none (Sub: none)\n"
            "default:\n"
            "  Server: 127.0.0.1:5701 (ipv4 (Websocket))\n"
            "    Auth: vnc (Sub: none)\n"
            "  Server: 127.0.0.1:5901 (ipv4)\n"
            "    Auth: vencrypt (Sub: x509-vnc)\n"
            "  Client: 127.0.0.1:2 (ipv4 (Websocket))\n"
            "    x509_dname: none\n"
            "    sasl_username: none\n"
            "  Client: 127.0.0.1:1 (ipv4)\n"
            f"    x509_dname: {ALICE}\n"
            "    sasl_username: none\n"))
        self.assertEqual(vncinfo.info_vnc([]), "None\n")
        self.assertEqual(vncinfo.info_vnc([display(listeners=[])]),
                         "default:\n  Auth: none (Sub: none)\n")

    def test_events(self):
        """Events name the display's first plain socket and its auth string."""
        self.assertEqual(vncinfo.server_info(x509_display()), {
            "host": "127.0.0.1", "service": "5901", "family": "ipv4", "websocket": False,
            "auth": "vencrypt+x509+vnc"})
        self.assertIsNone(vncinfo.server_info(display(listeners=[])))
        self.assertEqual(vncinfo.basic_client(client(dn=ALICE)),
                         {"host": "127.0.0.1", "service": "40000", "family": "ipv4",
                          "websocket": False})
