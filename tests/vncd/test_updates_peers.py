"""The order of layout and pixel updates, over real sockets, against QEMU 7.2 and vncd.

rfbproto keeps an ExtendedDesktopSize rectangle out of any update that
carries pixels, and requires one in answer to every non-incremental
FramebufferUpdateRequest.  QEMU 7.2 answers such a request with the layout
in an update of its own and then, without waiting for another request,
the pixels.  vncd's own client records every update both servers send for
a few non-incremental requests in a row; the two must agree, so a client
that never sends incremental requests still sees the screen.
"""

import numpy as np
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from compat.config import ListenAddress
from tests.tools import free_display, qemu_vnc, wait_for_port
from vncd import api
from vncd.client import ClientOptions, connect
from vncd.encoding import EXTENDED_DESKTOP_SIZE, RAW
from vncd.encoding.decode import DesktopSizeChanged, RectDecoded, UpdateComplete
from vncd.rfb import messages as m

#: Non-incremental requests sent in a row: the first could be special (the
#: start of the session), the later ones are what a request-only client sees.
REQUESTS = 3

#: Updates looked at for one request before giving up: the layout, the
#: pixels and one spare.
MAX_UPDATES_PER_REQUEST = 3

#: Seconds QEMU gets to listen (it starts in well under one).
QEMU_START = 10.0

#: Seconds one update may take to arrive (both servers need milliseconds);
#: past it the request counts as unanswered.
UPDATE_TIMEOUT = 5.0


def kind(update: list, width: int, height: int) -> str:
    """``layout`` (ExtendedDesktopSize alone), ``pixels`` (rectangles covering the
    whole screen and nothing else) or a description of anything else."""
    if update and all(isinstance(e, DesktopSizeChanged) and e.extended for e in update):
        return "layout"
    mask = np.zeros((height, width), dtype=bool)
    for event in update:
        if not isinstance(event, RectDecoded):
            return f"mixed: {update!r}"
        mask[event.y:event.y + event.height, event.x:event.x + event.width] = True
    return "pixels" if update and mask.all() else f"partial: {update!r}"


class NonIncrementalRequestTests(TestCase):
    timeout = 60

    async def answers(self, port: int) -> list[list[str]]:
        """The kinds of update answering each of :data:`REQUESTS` non-incremental
        requests from a client of Raw and ExtendedDesktopSize."""
        updates: list[list] = [[]]

        def on_event(event):
            if isinstance(event, UpdateComplete):
                updates.append([])
            else:
                updates[-1].append(event)

        client = await connect(reactor, ListenAddress("tcp", "127.0.0.1", port),
                               ClientOptions(), timeout=10, on_event=on_event)
        self.addCleanup(client.close)
        fb = client.framebuffer
        client.send(m.SetEncodings((RAW, EXTENDED_DESKTOP_SIZE)))
        answers = []
        for _ in range(REQUESTS):
            first = len(updates) - 1
            client.send(m.FramebufferUpdateRequest(False, 0, 0, fb.width, fb.height))
            kinds: list[str] = []
            while not {"pixels", "nothing"} & set(kinds) and len(kinds) < MAX_UPDATES_PER_REQUEST:
                if len(updates) - 1 - first > len(kinds):
                    kinds.append(kind(updates[first + len(kinds)], fb.width, fb.height))
                    continue
                try:
                    await client.next_update().addTimeout(UPDATE_TIMEOUT, reactor)
                except defer.TimeoutError:
                    kinds.append("nothing")
            answers.append(kinds)
        return answers

    async def test_qemu(self):
        """QEMU 7.2 answers each non-incremental request with the layout alone, then
        the pixels (the reference for vncd's order)."""
        display = free_display()
        proc, started = qemu_vnc(["-vnc", f"127.0.0.1:{display}"])
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        self.assertTrue(started, proc.stderr.read().decode() if not started else "")
        self.assertTrue(wait_for_port("127.0.0.1", 5900 + display, QEMU_START, proc))
        self.assertEqual(await self.answers(5900 + display), [["layout", "pixels"]] * REQUESTS)

    async def test_vncd(self):
        """vncd answers each non-incremental request as QEMU does: the layout alone,
        then the pixels, with no incremental request needed."""
        screen = api.ArrayScreen(150, 90, name="order")
        screen.framebuffer[..., 1] = np.arange(150, dtype=np.uint8)[None, :]
        display = free_display()
        service = api.serve(screen, f"127.0.0.1:{display}", reactor=reactor)
        self.addCleanup(service.stop)
        self.assertEqual(await self.answers(5900 + display), [["layout", "pixels"]] * REQUESTS)
