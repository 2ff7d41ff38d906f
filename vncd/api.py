# -*- test-case-name: tests.vncd.test_api -*-
"""Embedding vncd: serve your own pixels from a Twisted program, securely.

A program that wants to show something over VNC -- an emulator, a kiosk,
a robot's camera, a headless GUI -- creates credential objects the way
``-object`` does, a screen it draws into, and calls :func:`serve` with
the ``-vnc`` option string it would give the command line (or a typed
:class:`compat.config.DisplayConfig`).  Everything
the ``vncd`` command checks is checked here too (certificates when the
objects are created, the display options when serving), with the same
messages.

A complete program (also in README.md; ``tests/vncd/test_api.py`` runs
it)::

    import sys

    from twisted.internet import reactor, task

    import creds
    from vncd.api import ArrayScreen, serve

    cert_dir, display = sys.argv[1], sys.argv[2]      # e.g. /etc/pki/vnc :1

    registry = creds.new_registry()
    registry.create("tls-creds-x509", {"id": "tls0", "endpoint": "server",
                                       "dir": cert_dir, "verify-peer": "no"})

    def on_key(event):
        print("key", hex(event.keysym), "down" if event.down else "up", flush=True)

    screen = ArrayScreen(320, 240, name="embedded demo", on_key=on_key)
    screen.framebuffer[:, :, 2] = 160                 # a blue background

    def draw():
        screen.framebuffer[100:140, 40:280, :3] = (255, 200, 0)   # a yellow bar
        screen.damage(40, 100, 240, 40)

    task.LoopingCall(draw).start(0.5)
    serve(screen, f"127.0.0.1{display},tls-creds=tls0", registry=registry, reactor=reactor)
    reactor.run()

The screen API (:class:`~vncd.screens.array.ArrayScreen` and its base
:class:`~vncd.screens.base.Screen`): draw into ``screen.framebuffer`` (a
numpy ``(height, width, 4)`` uint8 array, channels R, G, B, X) or hand
arrays to ``screen.update(pixels, x, y)``, then call
``screen.damage(x, y, w, h)`` (no arguments: the whole screen); only
pixels that really changed are sent.  ``screen.move(...)`` reports a
scroll (sent as CopyRect), ``screen.resize(w, h)``, ``screen.set_name``,
``screen.set_cursor``, ``screen.set_led_state``, ``screen.bell()`` and
``screen.set_clipboard(text)`` do what they say.  Input arrives at the
callbacks as :class:`~vncd.screens.base.KeyEvent`,
:class:`~vncd.screens.base.PointerEvent` and
:class:`~vncd.screens.base.CutTextEvent` (key events spaced by
``key-delay-ms``, 10 ms unless the option says otherwise, as in QEMU).
Once :func:`serve` returns, ``screen.listen_addresses`` lists the
addresses alone (``127.0.0.1:5901``) and ``screen.served_addresses``
each with the security a client meets there
(``127.0.0.1:5901 (VeNCrypt X509None)``).

This module only assembles the other parts; it knows nothing of its own
about certificates, sockets or RFB.
"""

from __future__ import annotations

from typing import Sequence

import creds
from compat.config import DisplayConfig, Invocation
from compat.vnc import parse_vnc
from creds.objects import ObjectRegistry
from vncd import service
from vncd.screens.array import ArrayScreen
from vncd.screens.base import (
    Cursor, CutTextEvent, KeyEvent, PointerEvent, Screen, ScreenArea, ScreenError, ServedAddress,
)

__all__ = [
    "serve", "DisplayConfig", "ArrayScreen", "Screen", "ScreenError", "KeyEvent", "PointerEvent",
    "CutTextEvent", "Cursor", "ScreenArea", "ServedAddress",
]


def serve(screen: Screen, vnc: str | DisplayConfig | Sequence[str | DisplayConfig], *,
          registry: ObjectRegistry | None = None, reactor=None) -> "service.Service":
    """Serve ``screen`` on the displays described by ``vnc``.

    ``vnc`` is one display or a list of them, each either a ``-vnc``
    option value (``"127.0.0.1:1,tls-creds=tls0"``,
    ``"unix:/run/app.sock,password=on"`` ...; every key of the command
    line works, legacy ones included) or a
    :class:`compat.config.DisplayConfig` built by the program.
    ``registry`` holds the objects the displays name (from
    :func:`creds.new_registry`); objects a legacy option asks for
    (``tls,x509=DIR``) are created in it.  ``reactor`` defaults to the
    global one.

    Returns the running :class:`vncd.service.Service` (``service.stop()``
    stops listening and drops the clients).  Raises
    :class:`compat.errors.OptionError`, :class:`creds.objects.ObjectError`
    or :class:`vncd.service.StartupError`, whose ``str()`` is the message
    the ``vncd`` command would print.
    """
    if reactor is None:
        from twisted.internet import reactor
    if registry is None:
        registry = creds.new_registry()
    items = [vnc] if isinstance(vnc, (str, DisplayConfig)) else list(vnc)
    invocation = Invocation()
    for item in items:
        if isinstance(item, DisplayConfig):
            display, objects = item, []
        else:
            display, objects = parse_vnc(item, used_ids=[d.id for d in invocation.displays])
        invocation.displays.append(display)
        invocation.objects.extend(objects)
    for spec in invocation.objects:
        registry.create(spec.qom_type, spec.props)
    return service.start(reactor, registry, invocation, screen=screen)
