"""The monitor's Twisted edge over in-memory transports."""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from compat.config import ChardevConfig, ListenAddress, MonitorConfig
from tests.vncd.monitor.fakes import display
from tests.vncd.monitor.test_control import MonitorTestCase
from vncd.monitor.hmp import HMPInterpreter
from vncd.monitor.limits import MonitorLimits
from vncd.monitor.server import MonitorFactory

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


def chardev() -> ChardevConfig:
    return ChardevConfig(id="mon0", backend="socket", source="-chardev socket,id=mon0",
                         address=ListenAddress("tcp", "127.0.0.1", 4444), server=True,
                         wait=False)


class EdgeTests(MonitorTestCase):

    def connect(self, mode="control", limits=None):
        factory = MonitorFactory(self.monitor, MonitorConfig("mon0", mode), chardev(),
                                 reactor=self.clock, limits=limits)
        self.monitor.hmp = HMPInterpreter(self.monitor).run
        protocol = factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        return factory, protocol, transport

    def replies(self, transport) -> list:
        lines = transport.value().decode().splitlines()
        transport.clear()
        return [json.loads(line) for line in lines if line]

    def test_qmp_session(self):
        """Greeting, negotiation, a command and its reply over a transport."""
        _, protocol, transport = self.connect()
        self.assertIn("QMP", self.replies(transport)[0])
        protocol.dataReceived(b'{"execute":"qmp_capabilities"}{"execute":"query-vnc","id":1}')
        self.assertEqual(self.replies(transport), [{"return": {}},
                                                   {"return": {"enabled": False}, "id": 1}])

    def test_events(self):
        """A negotiated connection receives the monitor's events; it stops at disconnect."""
        _, protocol, transport = self.connect()
        protocol.dataReceived(b'{"execute":"qmp_capabilities"}')
        transport.clear()
        self.monitor.emit("TEST", {"a": 1})
        [event] = self.replies(transport)
        self.assertEqual((event["event"], event["data"]), ("TEST", {"a": 1}))
        protocol.connectionLost(None)
        self.monitor.emit("TEST", {"a": 2})
        self.assertEqual(self.replies(transport), [])

    def test_pipelining_pauses_reading(self):
        """Many pipelined requests: reading pauses while too many wait, every reply comes in
        order."""
        limits = MonitorLimits(max_pending_requests=4)
        _, protocol, transport = self.connect(limits=limits)
        transport.clear()
        held = []
        original = self.reloader.create

        def slow_create(registry, qom_type, props):
            from twisted.internet import defer
            d = defer.Deferred()
            held.append((d, lambda: original(registry, qom_type, props)))
            return d

        self.reloader.create = slow_create
        requests = b'{"execute":"qmp_capabilities"}' + b"".join(
            b'{"execute":"object-add","arguments":{"qom-type":"secret","id":"s%d","data":"x"},'
            b'"id":%d}' % (i, i) for i in range(10))
        protocol.dataReceived(requests)
        self.assertEqual(transport.producerState, "paused")
        while held:
            d, make = held.pop(0)
            make().chainDeferred(d)
        self.assertEqual(transport.producerState, "producing")
        replies = self.replies(transport)
        self.assertEqual([r.get("id") for r in replies], [None, *range(10)])
        self.assertEqual(len(self.registry), 10)

    def test_slow_reader_dropped(self):
        """Output piling up behind a full send buffer beyond the limit gets the client dropped."""
        _, protocol, transport = self.connect(limits=MonitorLimits(max_pending_output=1000))
        self.assertIs(transport.producer, protocol)
        protocol.dataReceived(b'{"execute":"qmp_capabilities"}')
        protocol.pauseProducing()
        for _ in range(10):
            self.monitor.emit("TEST", {"a": 1})
        self.assertFalse(transport.disconnecting)
        protocol.resumeProducing()
        protocol.pauseProducing()
        for _ in range(30):
            self.monitor.emit("TEST", {"a": 1})
        self.assertTrue(transport.disconnecting)

    def test_reader_catching_up_kept(self):
        """A client whose send buffer drains in time is never dropped, however much it gets."""
        _, protocol, transport = self.connect(limits=MonitorLimits(max_pending_output=1000))
        protocol.dataReceived(b'{"execute":"qmp_capabilities"}')
        for _ in range(200):
            protocol.pauseProducing()
            self.monitor.emit("TEST", {"a": 1})
            protocol.resumeProducing()
        self.assertFalse(transport.disconnecting)

    def test_pipelined_thousands(self):
        """Thousands of requests in one packet are answered in order without deep recursion."""
        _, protocol, transport = self.connect()
        protocol.dataReceived(b'{"execute":"qmp_capabilities"}')
        transport.clear()
        count = 5000
        protocol.dataReceived(b"".join(b'{"execute":"query-version","id":%d}' % i
                                       for i in range(count)))
        replies = self.replies(transport)
        self.assertEqual([r.get("id") for r in replies], list(range(count)))

    def test_connection_limit(self):
        """A monitor serves at most max_connections clients at once."""
        factory, _, _ = self.connect(limits=MonitorLimits(max_connections=1))
        self.assertIsNone(factory.buildProtocol(PEER))

    def test_quit(self):
        """quit: the reply, SHUTDOWN, the connection closes, vncd stops when it has."""
        _, protocol, transport = self.connect()
        protocol.dataReceived(b'{"execute":"qmp_capabilities"}')
        transport.clear()
        protocol.dataReceived(b'{"execute":"quit"}')
        replies = self.replies(transport)
        self.assertEqual(replies[0], {"return": {}})
        self.assertEqual(replies[1]["event"], "SHUTDOWN")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.stopped, [])
        protocol.connectionLost(None)
        self.assertEqual(self.stopped, [True])

    def test_hmp_session(self):
        """HMP: banner, prompt, a command's output, the password prompt."""
        d = display(password=True)
        self.serve(d)
        _, protocol, transport = self.connect(mode="readline")
        self.assertTrue(transport.value().endswith(b"\r\n(qemu) "))
        transport.clear()
        protocol.dataReceived(b"info vnc\r\n")
        self.assertEqual(transport.value(), b"default:\r\n  Server: 127.0.0.1:5901 (ipv4)\r\n"
                                            b"    Auth: vnc (Sub: none)\r\n(qemu) ")
        transport.clear()
        protocol.dataReceived(b"change vnc password\n")
        self.assertEqual(transport.value(), b"Password: ")
        protocol.dataReceived(b"n3w\n")
        self.assertEqual(d.server.security.password, b"n3w")


class ChardevTests(TestCase):

    def test_waiting_notice(self):
        """QEMU's line for a monitor waiting for its client."""
        from vncd.monitor.server import waiting_notice

        class Factory:
            chardev = ChardevConfig(id="m", backend="socket", source="-qmp unix:/run/m.sock",
                                    address=ListenAddress("unix", "/run/m.sock"), server=True)

        self.assertEqual(waiting_notice(Factory()),
                         "-qmp unix:/run/m.sock: info: vncd waiting for connection on:"
                         " disconnected:unix:/run/m.sock,server=on")
