"""The log summariser on a fake clock: first lines in full, repeats counted, bounds kept."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from vncd.logsummary import OTHER_SOURCES, LogSummary, Summary
from vncd.rfb import limits as L


class Feed:
    """Drives a LogSummary as vncd.server does: due() before every event."""

    def __init__(self, **kw):
        self.clock = Clock()
        self.summary = LogSummary(self.clock.seconds, **kw)
        #: Every line that would be logged: ("full", source, kind) or a Summary.
        self.lines: list = []

    def event(self, source, kind="auth", what="refusals (authentication failed)"):
        self.lines += self.summary.due()
        if self.summary.record(source, kind, what):
            self.lines.append(("full", source, kind))

    def advance(self, seconds):
        self.clock.advance(seconds)
        self.lines += self.summary.due()


class LogSummaryTests(SynchronousTestCase):

    def test_flood_from_one_source_is_bounded(self):
        """100,000 events from one source in 20 s make four lines; another source's
        first event is still logged in full."""
        feed = Feed(window=10.0)
        for i in range(100_000):
            feed.event("127.0.0.2")
            if i == 50_000:
                feed.event("192.0.2.7")
            feed.clock.advance(20.0 / 100_000)
        feed.advance(10.0)
        flood = [line for line in feed.lines
                 if (line[1] if isinstance(line, tuple) else line.source) == "127.0.0.2"]
        self.assertLessEqual(len(flood), 4)
        self.assertEqual(flood[0], ("full", "127.0.0.2", "auth"))
        counted = sum(line.count for line in flood if isinstance(line, Summary))
        self.assertEqual(counted, 99_999)
        self.assertIn(("full", "192.0.2.7", "auth"), feed.lines)

    def test_summary_text(self):
        """A summary line names the source, the count with separators, what and the window."""
        feed = Feed(window=10.0)
        for _ in range(5013):
            feed.event("127.0.0.2")
        feed.advance(10.0)
        self.assertEqual(str(feed.lines[-1]), "127.0.0.2: 5,012 more refusals"
                                              " (authentication failed) in the last 10 s")

    def test_kinds_are_counted_apart(self):
        """The first event of every (source, kind) is logged in full."""
        feed = Feed()
        for kind in ("auth", "tls", "auth", "tls", "refused"):
            feed.event("198.51.100.1", kind)
        self.assertEqual([line[2] for line in feed.lines], ["auth", "tls", "refused"])

    def test_quiet_window_forgets(self):
        """After a window without repeats the source is forgotten and logged in full again."""
        feed = Feed(window=10.0)
        feed.event("a")
        feed.event("a")
        feed.advance(10.0)
        self.assertEqual(feed.lines[-1].count, 1)
        self.assertEqual(len(feed.summary), 1, "a new window counts further repeats")
        feed.advance(10.0)
        self.assertEqual(len(feed.summary), 0)
        feed.event("a")
        self.assertEqual(feed.lines[-1], ("full", "a", "auth"))

    def test_sustained_flood_one_summary_per_window(self):
        """A flood lasting many windows adds one summary line per window, no full lines."""
        feed = Feed(window=10.0)
        for _ in range(600):
            feed.event("a")
            feed.clock.advance(0.1)
        self.assertEqual(sum(1 for line in feed.lines if isinstance(line, tuple)), 1)
        self.assertEqual(sum(1 for line in feed.lines if isinstance(line, Summary)), 5)

    def test_tracked_pairs_are_bounded(self):
        """Beyond max_tracked pairs, new sources are counted together as other addresses
        (the first of them is still logged in full, under its own address)."""
        feed = Feed(window=10.0, max_tracked=3)
        for i in range(1000):
            feed.event(f"10.0.{i // 256}.{i % 256}")
        self.assertEqual(len(feed.summary), 4)
        self.assertEqual(len(feed.lines), 4)
        self.assertEqual(feed.lines[-1], ("full", "10.0.0.3", "auth"))
        feed.advance(10.0)
        self.assertEqual((feed.lines[-1].source, feed.lines[-1].count), (OTHER_SOURCES, 996))

    def test_next_due_and_flush(self):
        """next_due names the end of the oldest window; flush reports every count at once."""
        feed = Feed(window=10.0)
        self.assertIsNone(feed.summary.next_due())
        feed.event("a")
        feed.clock.advance(3)
        feed.event("b")
        feed.event("b")
        self.assertEqual(feed.summary.next_due(), 10.0)
        self.assertEqual(feed.summary.flush(), [Summary("b", 1, "refusals (authentication failed)",
                                                        0.0)])
        self.assertEqual(len(feed.summary), 0)

    def test_zero_window_logs_everything(self):
        """A window of 0 s turns summarising off."""
        feed = Feed(window=0.0)
        for _ in range(5):
            feed.event("a")
        self.assertEqual(len(feed.lines), 5)

    def test_negative_limits_refused(self):
        """A negative window or table size is refused."""
        self.assertRaises(ValueError, LogSummary, Clock().seconds, window=-1)
        self.assertRaises(ValueError, LogSummary, Clock().seconds, max_tracked=-1)

    def test_defaults_are_the_named_limits(self):
        """The defaults are the named limits, with the values the manual gives."""
        self.assertEqual((L.LOG_SUMMARY_WINDOW, L.LOG_MAX_TRACKED), (10.0, 4096))

    @settings(max_examples=50, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 3), st.floats(0, 5)),
                    max_size=300))
    def test_any_sequence_keeps_the_bounds(self, events):
        """For any events, tracked pairs stay within the bound and every event is
        either logged in full or counted in exactly one summary."""
        feed = Feed(window=2.0, max_tracked=8)
        for source, kind, gap in events:
            feed.event(f"s{source}", f"k{kind}")
            self.assertLessEqual(len(feed.summary), 8 + 4)
            feed.clock.advance(gap)
        feed.lines += feed.summary.flush()
        full = sum(1 for line in feed.lines if isinstance(line, tuple))
        counted = sum(line.count for line in feed.lines if isinstance(line, Summary))
        self.assertEqual(full + counted, len(events))
