"""Test doubles for vncd.updates: a sink that records, a viewer that decodes.

:class:`RecordingSink` stands in for the protocol layer's connection;
:class:`Viewer` parses everything a :class:`~vncd.updates.ClientUpdates`
wrote, the way a real client would, using the project's decoder.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from twisted.internet.task import Clock

from vncd.encoding import decode
from vncd.encoding.decode import FramebufferDecoder, NEED_DATA, UpdateComplete
from vncd.info import ConnectionInfo
from vncd.pixels import DEFAULT_FORMAT, PixelFormat
from vncd.screens.base import Screen
from vncd.updates import Display


class RecordingSink:
    """Records writes; ``stalled`` makes every byte count as still queued."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.queued = 0
        self.stalled = False
        self.closed: str | None = None
        self.writes = 0
        self.flushes = 0

    def write(self, data: bytes) -> None:
        self.data += data
        self.writes += 1
        if self.stalled:
            self.queued += len(data)

    def flush(self) -> None:
        self.flushes += 1

    def output_buffered(self) -> int:
        return self.queued

    def close(self, reason: str) -> None:
        self.closed = reason

    def drain(self) -> None:
        self.queued = 0


@dataclass
class Message:
    """A server message other than FramebufferUpdate, as the viewer saw it."""

    kind: str
    value: object = None


class Viewer:
    """Decodes a recorded server byte stream into updates and messages."""

    def __init__(self, sink: RecordingSink, width: int, height: int,
                 pf: PixelFormat = DEFAULT_FORMAT) -> None:
        self.sink = sink
        self.offset = 0
        self.decoder = FramebufferDecoder(width, height, pf)

    def set_pixel_format(self, pf: PixelFormat) -> None:
        self.decoder.set_pixel_format(pf)

    def read(self) -> list:
        """Everything written since the last call: a list whose items are
        lists of decoder events (one list per FramebufferUpdate) or
        :class:`Message` objects."""
        buf = bytes(self.sink.data[self.offset:])
        self.offset = len(self.sink.data)
        out = []
        while buf:
            kind = buf[0]
            if kind == 0:
                self.decoder.receive_data(buf)
                events = []
                while True:
                    event = self.decoder.next_event()
                    if event is NEED_DATA:
                        raise AssertionError("update truncated")
                    if isinstance(event, UpdateComplete):
                        break
                    events.append(event)
                buf = self.decoder.trailing_data
                out.append(events)
            elif kind == 1:
                first, n = struct.unpack(">HH", buf[2:6])
                colours = [struct.unpack(">HHH", buf[6 + 6 * i:12 + 6 * i]) for i in range(n)]
                self.decoder.set_colour_map_entries(first, colours)
                out.append(Message("colour-map", (first, colours)))
                buf = buf[6 + 6 * n:]
            elif kind == 2:
                out.append(Message("bell"))
                buf = buf[1:]
            elif kind == 3:
                (n,) = struct.unpack(">I", buf[4:8])
                out.append(Message("cut-text", buf[8:8 + n]))
                buf = buf[8 + n:]
            elif kind == 150:
                out.append(Message("end-of-continuous-updates"))
                buf = buf[1:]
            elif kind == 248:
                flags, n = struct.unpack(">IB", buf[4:9])
                out.append(Message("fence", (flags, buf[9:9 + n])))
                buf = buf[9 + n:]
            else:
                raise AssertionError(f"unknown server message {kind}")
        return out

    def updates(self) -> list[list]:
        return [item for item in self.read() if isinstance(item, list)]

    def rgbx(self) -> np.ndarray:
        return self.decoder.rgbx()


class Setup:
    """A screen, a display on a fake clock, and helpers to attach clients."""

    def __init__(self, width: int = 200, height: int = 150, screen: Screen | None = None,
                 **display_args) -> None:
        self.clock = Clock()
        self.screen = screen if screen is not None else Screen(width, height)
        self.display = Display(self.screen, reactor=self.clock, **display_args)

    def client(self, encodings=(), pf: PixelFormat = DEFAULT_FORMAT, peer: str = "127.0.0.1:5000"):
        info = ConnectionInfo(peer=peer)
        self.display.register(info)
        sink = RecordingSink()
        client = self.display.attach(info, sink)
        viewer = Viewer(sink, self.display.width, self.display.height, pf)
        if pf != DEFAULT_FORMAT:
            client.set_pixel_format(pf)
        if encodings:
            client.set_encodings(list(encodings))
        return client, sink, viewer

    def settle(self) -> None:
        """Run every callback due now (the display's compare-and-send tick)."""
        self.clock.advance(0)


def pixels_events(events) -> list:
    return [e for e in events if isinstance(e, decode.RectDecoded)]
