"""The test helpers that hand out ports and display numbers (tests.tools)."""

from __future__ import annotations

import socket

from twisted.trial.unittest import SynchronousTestCase

from tests import tools


class FreePortTests(SynchronousTestCase):

    def setUp(self) -> None:
        self.patch(tools, "_next_port", None)

    def test_ports_below_the_ephemeral_range(self):
        """Ports come from below the kernel's ephemeral range, where no outgoing
        connection can take one between the check and the server's bind; two
        calls in a row give two ports, each bindable at once."""
        low = tools._ephemeral_low()
        ports = [tools.free_port() for _ in range(20)]
        self.assertEqual(len(set(ports)), len(ports))
        for port in ports:
            self.assertGreaterEqual(port, tools.PORT_LOW)
            self.assertLess(port, low)
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))

    def test_taken_port_is_skipped(self):
        """A port something listens on is passed over."""
        first = tools.free_port()
        held = socket.socket()
        self.addCleanup(held.close)
        held.bind(("127.0.0.1", first + 1))
        held.listen(1)
        self.assertNotEqual(tools.free_port(), first + 1)

    def test_workers_scan_separate_shares(self):
        """Parallel trial workers take ports from disjoint shares of the range."""
        low, high = tools.PORT_LOW, tools._ephemeral_low()
        shares = set()
        for worker in range(tools.WORKER_SHARES):
            self.patch(tools, "_trial_worker", lambda worker=worker: worker)
            shares.add(tools._worker_share(low, high))
        self.assertEqual(len(shares), tools.WORKER_SHARES)
        ordered = sorted(shares)
        for (_, end), (start, _) in zip(ordered, ordered[1:]):
            self.assertLessEqual(end, start)
        self.patch(tools, "_trial_worker", lambda: 3)
        self.patch(tools, "_next_port", None)
        lo, hi = tools._worker_share(low, high)
        self.assertTrue(lo <= tools.free_port() < hi)

    def test_unusual_kernel_range_falls_back_to_the_kernel(self):
        """With no room below the ephemeral range the kernel picks (bind to 0)."""
        self.patch(tools, "_ephemeral_low", lambda: tools.PORT_LOW + 3)
        port = tools.free_port()
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
