"""Every named limit, each enforced where a peer could push against it."""

from __future__ import annotations

import struct

from twisted.internet.address import UNIXAddress
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tests.vncd.test_server import PASSWORD, Client, display_server
from vncd.rfb import limits as L
from vncd.rfb import messages as m
from vncd.rfb.events import Refused
from vncd.rfb.limits import Limits
from vncd.server import THROTTLED_REASON, AuthThrottle


class HandshakeTimeoutTests(SynchronousTestCase):

    def test_default(self):
        """The handshake timeout defaults to 60 seconds."""
        self.assertEqual(Limits().handshake_timeout, L.HANDSHAKE_TIMEOUT)
        self.assertEqual(L.HANDSHAKE_TIMEOUT, 60.0)

    def test_stall_anywhere_before_server_init(self):
        """A client stalling at any handshake step is dropped when the timeout expires."""
        stalls = [
            ("await-version", False, b""),
            ("await-security-choice", False, b"RFB 003.008\n"),
            ("await-vnc-response", True, b"RFB 003.008\n\x02"),
            ("await-client-init", False, b"RFB 003.008\n\x01"),
        ]
        for state, password, sent in stalls:
            reactor = MemoryReactorClock()
            server = display_server(password=password, reactor=reactor,
                                    limits=Limits(handshake_timeout=5))
            client = Client(server)
            if sent:
                client.proto.dataReceived(sent)
            reactor.advance(4.9)
            self.assertFalse(client.transport.disconnecting, state)
            reactor.advance(0.2)
            self.assertTrue(client.transport.disconnected, state)
            self.assertIn(state, client.proto.drop_reason)

    def test_no_timeout_after_server_init(self):
        """Once ServerInit is sent the handshake timer is gone."""
        reactor = MemoryReactorClock()
        server = display_server(reactor=reactor, limits=Limits(handshake_timeout=5))
        client = Client(server).pump()
        reactor.advance(100)
        self.assertFalse(client.dropped)
        self.assertEqual(reactor.getDelayedCalls(), [])


class ConnectionsTests(SynchronousTestCase):

    def test_connections_limit_counts_negotiating_clients(self):
        """connections=N drops the oldest negotiating client when N+1 negotiate."""
        server = display_server(connections=3)
        clients = [Client(server, port=p) for p in range(5)]
        self.assertEqual([c.dropped for c in clients], [True, True, False, False, False])


class SourceLimitTests(SynchronousTestCase):

    def test_defaults(self):
        """16 handshakes per source, IPv6 sources per /64, log windows of 10 s, 4096 pairs."""
        limits = Limits()
        self.assertEqual((limits.max_handshakes_per_source, limits.ipv6_source_prefix),
                         (L.MAX_HANDSHAKES_PER_SOURCE, L.IPV6_SOURCE_PREFIX))
        self.assertEqual((L.MAX_HANDSHAKES_PER_SOURCE, L.IPV6_SOURCE_PREFIX), (16, 64))
        self.assertEqual((limits.log_summary_window, limits.log_max_tracked), (10.0, 4096))
        self.assertLessEqual(2 * L.MAX_HANDSHAKES_PER_SOURCE, 32,
                             "one source holds at most half of QEMU's default connections=")

    def test_invalid_values_refused(self):
        """A per-source limit below 1 or an IPv6 prefix above 128 is a configuration error."""
        self.assertRaises(ValueError, Limits, max_handshakes_per_source=0)
        self.assertRaises(ValueError, Limits, ipv6_source_prefix=129)

    def test_refused_at_the_limit(self):
        """The connection past the per-source limit is refused before a protocol exists."""
        server = display_server(limits=Limits(max_handshakes_per_source=2))
        clients = [Client(server, host="198.51.100.1", port=p) for p in range(3)]
        self.assertEqual([c.refused for c in clients], [False, False, True])
        self.assertIsNone(clients[2].proto)


class CutTextTests(SynchronousTestCase):

    def test_default_is_one_mebibyte(self):
        """ClientCutText is limited to 1 MiB, QEMU's limit."""
        self.assertEqual(L.MAX_CUT_TEXT, 1 << 20)

    def test_over_limit_disconnects_on_the_header(self):
        """A cut text over the limit closes the connection before any payload is sent."""
        server = display_server(limits=Limits(max_cut_text=1000))
        client = Client(server).pump()
        client.proto.dataReceived(b"\x06\x00\x00\x00" + struct.pack(">I", 1001))
        self.assertTrue(client.transport.disconnecting)
        self.assertEqual(client.updates.calls, [])
        self.assertIn("1001", client.proto.drop_reason)

    def test_at_limit_is_delivered(self):
        """A cut text of exactly the limit reaches the display."""
        server = display_server(limits=Limits(max_cut_text=1000))
        client = Client(server).pump()
        client.send(m.ClientCutText(b"a" * 1000))
        self.assertEqual(client.updates.calls, [("cut_text", (b"a" * 1000,))])


class EncodingsTests(SynchronousTestCase):

    def test_set_encodings_count(self):
        """SetEncodings over the limit closes the connection; at the limit it passes."""
        server = display_server(limits=Limits(max_encodings=4))
        client = Client(server).pump()
        client.send(m.SetEncodings((0, 1, 2, 3)))
        self.assertEqual(client.updates.calls, [("set_encodings", ([0, 1, 2, 3],))])
        client.proto.dataReceived(b"\x02\x00\x00\x05")
        self.assertTrue(client.transport.disconnecting)


class OutputTests(SynchronousTestCase):

    def test_pending_output_cap(self):
        """A client that stops reading is dropped once its queued output passes the cap."""
        server = display_server(limits=Limits(max_pending_output=10_000))
        client = Client(server).pump()
        client.proto.pauseProducing()
        client.proto.write(b"x" * 6000)
        client.proto.flush()
        self.assertFalse(client.transport.disconnecting)
        client.proto.write(b"x" * 6000)
        client.proto.flush()
        self.assertTrue(client.transport.disconnected)
        self.assertIn("not reading", client.proto.drop_reason)

    def test_backlog_counts_the_write_that_paused(self):
        """A write that makes the transport pause counts towards output_buffered()."""
        server = display_server()
        client = Client(server).pump()
        proto = client.proto
        original = client.transport.write

        def pausing_write(data):
            original(data)
            proto.pauseProducing()

        client.transport.write = pausing_write
        client.transport.bufferSize = 100
        proto.write(b"y" * 5000)
        proto.flush()
        self.assertEqual(proto.output_buffered(), 5100)

    def test_writable_only_when_drained(self):
        """writable() is called when the transport resumes, not while it stays paused."""
        server = display_server()
        client = Client(server).pump()
        proto = client.proto
        proto.pauseProducing()
        proto.write(b"z" * 10)
        proto.flush()
        original = client.transport.write
        client.transport.write = lambda data: (original(data), proto.pauseProducing())
        proto.resumeProducing()
        self.assertNotIn(("writable", ()), client.updates.calls)
        client.transport.write = original
        proto.resumeProducing()
        self.assertEqual(client.updates.calls, [("writable", ())])


class CloseTimeoutTests(SynchronousTestCase):

    def test_refused_client_that_does_not_read_is_cut(self):
        """After a refusal the connection waits close_timeout for the reason to drain."""
        reactor = MemoryReactorClock()
        server = display_server(password=True, reactor=reactor, limits=Limits(close_timeout=3))
        client = Client(server, password=b"wrong").pump()
        self.assertTrue(client.transport.disconnecting)
        self.assertFalse(client.transport.disconnected)
        reactor.advance(3)
        self.assertTrue(client.transport.disconnected)


class ThrottleTests(SynchronousTestCase):

    def fail_once(self, server, host="198.51.100.7"):
        return Client(server, host=host, password=b"wrong").pump()

    def test_blocks_after_five_failures(self):
        """After five failures an address is refused with a reason; others are unaffected."""
        reactor = MemoryReactorClock()
        server = display_server(password=True, reactor=reactor)
        for _ in range(L.AUTH_FAILURES_BEFORE_BLOCK):
            self.assertFalse(server.throttle.blocked("198.51.100.7"))
            self.fail_once(server)
        self.assertTrue(server.throttle.blocked("198.51.100.7"))
        refused = Client(server, host="198.51.100.7", password=PASSWORD).pump()
        self.assertEqual(refused.rfb.minor, 8)
        self.assertEqual([e for e in refused.events if isinstance(e, Refused)],
                         [Refused(THROTTLED_REASON)])
        ok = Client(server, host="198.51.100.8", password=PASSWORD).pump()
        self.assertFalse(ok.dropped)
        for minor in (3, 7):
            old = Client(server, host="198.51.100.7", password=PASSWORD, max_minor=minor).pump()
            self.assertEqual([e for e in old.events if isinstance(e, Refused)],
                             [Refused(THROTTLED_REASON)])

    def test_block_doubles_and_success_forgets(self):
        """Each failure after a block doubles it (to the maximum); a success forgets."""
        clock = MemoryReactorClock()
        limits = Limits(auth_failures_before_block=2, auth_block_initial=10, auth_block_max=25)
        throttle = AuthThrottle(clock.seconds, limits)
        host = "203.0.113.1"
        throttle.failed(host)
        self.assertFalse(throttle.blocked(host))
        throttle.failed(host)
        self.assertTrue(throttle.blocked(host))
        clock.advance(10)
        self.assertFalse(throttle.blocked(host))
        throttle.failed(host)
        clock.advance(19.9)
        self.assertTrue(throttle.blocked(host))
        clock.advance(0.1)
        throttle.failed(host)
        clock.advance(24.9)
        self.assertTrue(throttle.blocked(host), "capped at 25, not 40")
        clock.advance(0.1)
        self.assertFalse(throttle.blocked(host))
        throttle.succeeded(host)
        throttle.failed(host)
        self.assertFalse(throttle.blocked(host))

    def test_forgets_idle_addresses(self):
        """An address without failures for auth_forget_after starts afresh."""
        clock = MemoryReactorClock()
        throttle = AuthThrottle(clock.seconds, Limits(auth_failures_before_block=2,
                                                      auth_forget_after=100))
        throttle.failed("a")
        clock.advance(101)
        throttle.failed("a")
        self.assertFalse(throttle.blocked("a"))

    def test_table_is_bounded(self):
        """At most auth_max_tracked addresses are remembered; the oldest go first."""
        clock = MemoryReactorClock()
        throttle = AuthThrottle(clock.seconds, Limits(auth_max_tracked=3,
                                                      auth_failures_before_block=1))
        for host in ("a", "b", "c", "d"):
            throttle.failed(host)
        self.assertEqual(len(throttle), 3)
        self.assertFalse(throttle.blocked("a"))
        self.assertTrue(throttle.blocked("d"))

    def test_tls_credential_failures_count(self):
        """A refused client certificate counts as an authentication failure."""
        from vncd.rfb.tls import CredentialsRejected
        server = display_server()
        client = Client(server, host="192.0.2.99")
        client.proto._failed(CredentialsRejected("TLS x509 authz check for C=UK,CN=bob is denied"))
        self.assertEqual(len(server.throttle), 1)

    def test_unix_sockets_are_not_throttled(self):
        """Clients on a UNIX socket have no address to throttle."""
        server = display_server(password=True, limits=Limits(auth_failures_before_block=1))
        for _ in range(3):
            Client(server, address=UNIXAddress("/s"), password=b"wrong").pump()
        ok = Client(server, address=UNIXAddress("/s"), password=PASSWORD).pump()
        self.assertFalse(ok.dropped)
        self.assertEqual(len(server.throttle), 0)


class ServerNameTests(SynchronousTestCase):

    def test_long_display_name_is_cut(self):
        """A display name longer than max_server_name is cut in ServerInit."""
        server = display_server(limits=Limits(max_server_name=8))
        server.display.name = "a-very-long-display-name"
        client = Client(server).pump()
        init = [e for e in client.events if type(e).__name__ == "ServerInitReceived"][0]
        self.assertEqual(init.name, "a-very-l")


class LimitsObjectTests(SynchronousTestCase):

    def test_negative_limits_refused(self):
        """A negative limit is a configuration error."""
        self.assertRaises(ValueError, Limits, max_cut_text=-1)

    def test_receive_buffer_bound(self):
        """The receive buffer bound covers the longest legal message plus one read."""
        limits = Limits()
        self.assertGreater(limits.max_receive_buffer, 8 + limits.max_cut_text)
        self.assertGreater(limits.max_receive_buffer, 4 + 4 * limits.max_encodings)


class ThrottleResetTests(SynchronousTestCase):

    def test_only_proof_of_a_secret_resets(self):
        """A VNC-authenticated success clears an address; an unauthenticated display does not."""
        from vncd.rfb.security import SecurityConfig, auth_for
        from vncd.rfb.testing import FakeDisplay
        from vncd.server import DisplayServer

        reactor = MemoryReactorClock()
        protected = display_server(password=True, reactor=reactor)
        open_display = DisplayServer(FakeDisplay(), SecurityConfig(auth_for(None, False)),
                                     reactor=reactor, throttle=protected.throttle)
        Client(protected, host="198.51.100.9", password=b"wrong").pump()
        Client(open_display, host="198.51.100.9").pump()
        self.assertEqual(len(protected.throttle), 1)
        Client(protected, host="198.51.100.9", password=PASSWORD).pump()
        self.assertEqual(len(protected.throttle), 0)


class CoalescingTests(SynchronousTestCase):

    def test_client_that_stops_reading_costs_bounded_memory(self):
        """A client that asks but stops reading holds about one update; damage is merged."""
        import numpy as np

        from vncd.rfb.security import SecurityConfig, auth_for
        from vncd.screens.array import ArrayScreen
        from vncd.server import DisplayServer
        from vncd.updates import Display

        reactor = MemoryReactorClock()
        screen = ArrayScreen(256, 128)
        display = Display(screen, reactor=reactor)
        server = DisplayServer(display, SecurityConfig(auth_for(None, False)), reactor=reactor)
        client = Client(server).pump()
        client.send(m.SetEncodings((0,)), m.FramebufferUpdateRequest(False, 0, 0, 256, 128))
        reactor.advance(0)
        client.proto.pauseProducing()
        frame = 256 * 128 * 4
        rng = np.random.default_rng(7)
        for _ in range(40):
            screen.update(rng.integers(0, 255, (128, 256, 3), dtype=np.uint8))
            client.send(m.FramebufferUpdateRequest(True, 0, 0, 256, 128))
            reactor.advance(0)
        held = client.proto.output_buffered()
        self.assertGreaterEqual(held, frame, "at least one update was produced and held")
        self.assertLess(held, 2 * frame + 256 * 1024)
        self.assertFalse(client.transport.disconnecting)
