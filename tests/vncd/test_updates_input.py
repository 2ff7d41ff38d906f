"""Tests for the way input reaches the screen: key-delay-ms pacing (vncd.updates.InputPacer).

Every test runs on twisted.internet.task.Clock; times are multiples of
the 250 ms delay used here, which binary floating point holds exactly.
"""

from hypothesis import given, settings, strategies as st
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from compat.vnc import MAX_KEY_DELAY_MS
from tests.vncd.test_updates_helpers import Setup
from vncd import encoding as enc
from vncd.screens.array import ArrayScreen
from vncd.screens.base import CutTextEvent, KeyEvent, PointerEvent
from vncd.updates import Display, UpdateConfig

#: The key delay of these tests, in ms and in seconds.
DELAY_MS = 250
DELAY = DELAY_MS / 1000


class Recorder:
    """A screen whose input callbacks note ``(clock time, event)``."""

    def __init__(self, **display_args) -> None:
        self.got: list[tuple[float, object]] = []
        screen = ArrayScreen(64, 64, on_key=self.note, on_pointer=self.note,
                             on_cut_text=self.note)
        display_args.setdefault("key_delay_ms", DELAY_MS)
        self.setup = Setup(screen=screen, **display_args)
        self.clock = self.setup.clock

    def note(self, event) -> None:
        self.got.append((self.clock.seconds(), event))

    def client(self, peer="127.0.0.1:5000"):
        client, _, _ = self.setup.client([enc.RAW, enc.QEMU_EXTENDED_KEY_EVENT], peer=peer)
        return client

    def keysyms(self):
        return [(t, e.keysym) for t, e in self.got if isinstance(e, KeyEvent)]


class KeyDelayTests(SynchronousTestCase):
    def test_keys_spaced(self):
        """Key events sent together reach the screen in order, the first at once and
        each next one key-delay-ms after the one before."""
        r = Recorder()
        c = r.client()
        for keysym in (1, 2, 3, 4):
            c.key_event(True, keysym)
        self.assertEqual(r.keysyms(), [(0, 1)])
        r.clock.advance(DELAY - 0.125)
        self.assertEqual(len(r.got), 1)
        r.clock.advance(0.125)
        self.assertEqual(len(r.got), 2)
        r.clock.pump([DELAY] * 3)
        self.assertEqual(r.keysyms(), [(0, 1), (DELAY, 2), (2 * DELAY, 3), (3 * DELAY, 4)])
        self.assertEqual(r.clock.getDelayedCalls(), [])

    def test_next_key_waits_only_the_rest_of_the_delay(self):
        """A key event sent during the pause after another waits for the pause to end,
        not a whole delay from its arrival; after a quiet pause a key goes at once."""
        r = Recorder()
        c = r.client()
        c.key_event(True, 1)
        r.clock.advance(0.125)
        c.key_event(False, 1)
        r.clock.advance(0.125)
        r.clock.advance(2 * DELAY)
        c.key_event(True, 2)
        self.assertEqual(r.keysyms(), [(0, 1), (DELAY, 1), (3 * DELAY, 2)])

    def test_plain_and_extended_keys_of_all_clients_share_the_pacing(self):
        """KeyEvent and QEMU extended key events, from every client of the display,
        queue together in arrival order, keycodes kept."""
        r = Recorder()
        a, b = r.client("192.0.2.1:1"), r.client("192.0.2.2:2")
        a.key_event(True, 0x61)
        b.qemu_key_event(True, 0x62, 48)
        a.qemu_key_event(False, 0x61, 30)
        b.key_event(False, 0x62)
        r.clock.pump([DELAY] * 3)
        self.assertEqual(r.got, [
            (0, KeyEvent(True, 0x61, None, "192.0.2.1:1")),
            (DELAY, KeyEvent(True, 0x62, 48, "192.0.2.2:2")),
            (2 * DELAY, KeyEvent(False, 0x61, 30, "192.0.2.1:1")),
            (3 * DELAY, KeyEvent(False, 0x62, None, "192.0.2.2:2"))])

    def test_displays_pace_separately(self):
        """Each display has its own pacing: keys for one do not hold back another's."""
        first, second = Recorder(), Recorder()
        c1, c2 = first.client(), second.client()
        c1.key_event(True, 1)
        c2.key_event(True, 2)
        self.assertEqual((first.keysyms(), second.keysyms()), ([(0, 1)], [(0, 2)]))

    def test_zero_delay(self):
        """key-delay-ms=0 delivers every key event at once and starts no timer."""
        r = Recorder(key_delay_ms=0)
        c = r.client()
        for keysym in range(5):
            c.key_event(True, keysym)
        self.assertEqual(r.keysyms(), [(0, k) for k in range(5)])
        self.assertEqual(r.clock.getDelayedCalls(), [])

    def test_delay_out_of_range(self):
        """A Display refuses a key delay outside QEMU's 0 .. 10000 ms."""
        for bad in (-1, MAX_KEY_DELAY_MS + 1):
            with self.assertRaises(ValueError) as cm:
                Display(ArrayScreen(8, 8), reactor=Recorder().clock, key_delay_ms=bad)
            self.assertIn(str(bad), str(cm.exception))


class OrderTests(SynchronousTestCase):
    def test_pointer_not_delayed(self):
        """A pointer event with no key event waiting goes at once, even during the
        pause after a key."""
        r = Recorder()
        c = r.client()
        c.key_event(True, 1)
        r.clock.advance(0.125)
        c.pointer_event(0, 5, 6)
        self.assertEqual([t for t, _ in r.got], [0, 0.125])

    def test_pointer_and_clipboard_keep_their_place_behind_waiting_keys(self):
        """Pointer and clipboard events sent behind waiting key events reach the screen
        after them (never overtaking, unlike QEMU), without a delay of their own."""
        r = Recorder()
        c = r.client()
        c.key_event(True, 0xFFE3)
        c.key_event(True, 0x61)
        c.pointer_event(1, 10, 10)
        c.cut_text(b"x")
        c.key_event(False, 0x61)
        c.key_event(False, 0xFFE3)
        c.pointer_event(0, 10, 10)
        r.clock.pump([DELAY] * 3)
        self.assertEqual([(t, type(e).__name__) for t, e in r.got], [
            (0, "KeyEvent"), (DELAY, "KeyEvent"), (DELAY, "PointerEvent"),
            (DELAY, "CutTextEvent"), (2 * DELAY, "KeyEvent"), (3 * DELAY, "KeyEvent"),
            (3 * DELAY, "PointerEvent")])
        self.assertEqual(r.got[3][1], CutTextEvent(b"x", "127.0.0.1:5000"))

    def test_motion_merged_while_waiting(self):
        """Pointer motion queued behind keys keeps only the latest position for the
        same buttons; a button change is kept."""
        r = Recorder()
        c = r.client()
        c.key_event(True, 1)
        c.key_event(False, 1)
        for x in range(100):
            c.pointer_event(0, x, 0)
        c.pointer_event(1, 99, 0)
        c.pointer_event(1, 50, 7)
        self.assertEqual(len(r.setup.display.input_pacer), 3)
        r.clock.advance(DELAY)
        self.assertEqual([e for _, e in r.got[1:]], [
            KeyEvent(False, 1, None, "127.0.0.1:5000"),
            PointerEvent(0, 99, 0, "127.0.0.1:5000"),
            PointerEvent(1, 50, 7, "127.0.0.1:5000")])

    def test_motion_of_different_clients_not_merged(self):
        """Motion from two clients is not merged into one."""
        r = Recorder()
        a, b = r.client("192.0.2.1:1"), r.client("192.0.2.2:2")
        a.key_event(True, 1)
        a.key_event(False, 1)
        a.pointer_event(0, 1, 1)
        b.pointer_event(0, 2, 2)
        r.clock.advance(DELAY)
        self.assertEqual([(e.x, e.client) for _, e in r.got if isinstance(e, PointerEvent)],
                         [(1, "192.0.2.1:1"), (2, "192.0.2.2:2")])

    def test_failing_screen_does_not_stop_the_queue(self):
        """A screen that raises on a queued event is logged; the events behind it
        still arrive."""
        got = []

        def on_key(event):
            if event.keysym == 2:
                raise RuntimeError("embedding bug")
            got.append(event.keysym)

        st = Setup(screen=ArrayScreen(8, 8, on_key=on_key), key_delay_ms=DELAY_MS)
        c, _, _ = st.client([enc.RAW])
        for keysym in (1, 2, 3):
            c.key_event(True, keysym)
        st.clock.pump([DELAY] * 2)
        self.assertEqual(got, [1, 3])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_closed_client_events_still_delivered(self):
        """Events a client sent before disconnecting still arrive (its key releases)."""
        r = Recorder()
        c = r.client()
        c.key_event(True, 1)
        c.key_event(False, 1)
        c.close()
        r.clock.advance(DELAY)
        self.assertEqual(r.keysyms(), [(0, 1), (DELAY, 1)])


class BoundTests(SynchronousTestCase):
    def test_overflow_drops_newest(self):
        """Past max_queued_input waiting events, new ones are dropped (as QEMU drops
        them), counted, and logged once per overflow naming the peer."""
        r = Recorder(config=UpdateConfig(max_queued_input=3))
        c = r.client("192.0.2.9:9")
        with capturedLogs() as logs:
            for keysym in range(10):
                c.key_event(True, keysym)
        pacer = r.setup.display.input_pacer
        self.assertEqual((len(pacer), pacer.dropped), (3, 6))
        warnings = [e for e in logs if "dropping input" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["peer"], "192.0.2.9:9")
        r.clock.pump([DELAY] * 3)
        self.assertEqual([k for _, k in r.keysyms()], [0, 1, 2, 3])
        with capturedLogs() as logs:
            for keysym in range(5):
                c.key_event(True, keysym)
        self.assertEqual(pacer.dropped, 8)
        self.assertEqual(len([e for e in logs if "dropping input" in e.get("log_format", "")]),
                         1)

    def test_close_drops_waiting_input(self):
        """Closing the display drops waiting events and cancels the timer."""
        r = Recorder()
        c = r.client()
        for keysym in range(3):
            c.key_event(True, keysym)
        r.setup.display.close()
        self.assertEqual(r.clock.getDelayedCalls(), [])
        self.assertEqual(len(r.setup.display.input_pacer), 0)
        r.clock.advance(10 * DELAY)
        self.assertEqual(len(r.got), 1)

    @settings(max_examples=80, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(["key", "move", "button", "text"]),
                              st.integers(0, 600)), max_size=40))
    def test_order_and_spacing(self, script):
        """Whatever the mix and timing of input, the screen sees every key and clipboard
        event and every button change, in the order sent, key events at least the
        delay apart, and the pointer where it was last put."""
        r = Recorder()
        c = r.client()
        sent, buttons = [], 0
        for number, (kind, wait_ms) in enumerate(script):
            r.clock.advance(wait_ms / 1000)
            if kind == "key":
                c.key_event(number % 2, number)
            elif kind == "text":
                c.cut_text(str(number).encode())
            else:
                buttons ^= kind == "button"
                c.pointer_event(buttons, number, 0)
            sent.append((kind, number, buttons))
        r.clock.pump([DELAY] * (len(script) + 1))
        got = [(e.keysym if isinstance(e, KeyEvent) else
                e.x if isinstance(e, PointerEvent) else int(e.text)) for _, e in r.got]
        self.assertEqual(got, sorted(set(got)))
        for kinds in (("key",), ("text",)):
            self.assertEqual([n for n in got if sent[n][0] in kinds],
                             [n for kind, n, _ in sent if kind in kinds])
        pointer_sent = [(n, b) for kind, n, b in sent if kind in ("move", "button")]
        pointer_got = [(e.x, e.buttons) for _, e in r.got if isinstance(e, PointerEvent)]
        self.assertEqual(_changes(b for _, b in pointer_got),
                         _changes(b for _, b in pointer_sent))
        self.assertEqual(pointer_got[-1:], pointer_sent[-1:])
        key_times = [t for t, e in r.got if isinstance(e, KeyEvent)]
        for before, after in zip(key_times, key_times[1:]):
            self.assertGreaterEqual(round(after - before, 9), DELAY)


def _changes(states) -> list:
    """``states`` with runs of equal values collapsed to one."""
    out: list = []
    for state in states:
        if not out or out[-1] != state:
            out.append(state)
    return out
