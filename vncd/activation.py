# -*- test-case-name: tests.vncd.test_activation -*-
"""What a service manager hands vncd: inherited listening sockets and a readiness channel.

Socket activation (systemd's ``sd_listen_fds`` protocol): the manager
opens the listening sockets, starts vncd with them as file descriptors
3, 4, ... and says so in the environment -- ``LISTEN_PID`` (the process
meant, so a child that inherits the environment does not take them too),
``LISTEN_FDS`` (how many) and ``LISTEN_FDNAMES`` (a colon-separated name
for each, systemd's ``FileDescriptorName=``).  :func:`inherited_sockets`
reads them once and removes the variables; :class:`InheritedSockets`
hands each display the sockets whose name is its id, or, with one socket
and one display, that socket whatever its name.

Readiness (systemd's ``sd_notify`` protocol): ``NOTIFY_SOCKET`` names a
UNIX datagram socket (a path, or with a leading ``@`` an abstract
address); each state change is one datagram of ``KEY=value`` lines
(``READY=1``, ``STOPPING=1``, ``RELOADING=1``, ``STATUS=...``).
:class:`Notifier` sends them, and does nothing when the variable is unset.

This module knows nothing about RFB, Twisted or certificates.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Mapping, MutableMapping, Sequence

__all__ = [
    "ActivationError", "InheritedSocket", "InheritedSockets", "Notifier",
    "inherited_sockets", "LISTEN_FDS_START", "MAX_LISTEN_FDS", "MAX_NOTIFY_BYTES",
]

#: The first inherited descriptor (after standard input, output and error).
LISTEN_FDS_START = 3

#: Most inherited sockets taken.  vncd serves at most 64 displays, each
#: with a few listeners; a larger count is a broken environment, not a
#: configuration, and would have vncd poke at unrelated descriptors.
MAX_LISTEN_FDS = 256

#: Longest notification sent.  Datagrams to the manager are small; a
#: status line that long is a bug, and the kernel may refuse big ones.
MAX_NOTIFY_BYTES = 4096

_ENVIRONMENT = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class ActivationError(Exception):
    """The inherited sockets cannot be used as the environment describes them."""


@dataclass(frozen=True)
class InheritedSocket:
    """One descriptor passed by the service manager."""

    fd: int
    #: Its ``LISTEN_FDNAMES`` entry (``""`` when there is none).
    name: str

    def describe(self) -> str:
        return f"inherited socket '{self.name}' (fd {self.fd})" if self.name \
            else f"inherited socket fd {self.fd}"


def inherited_sockets(environ: MutableMapping[str, str] | None = None,
                      pid: int | None = None,
                      first_fd: int = LISTEN_FDS_START) -> list[InheritedSocket]:
    """The sockets the service manager passed to this process (often none).

    The variables are removed from ``environ`` (default :data:`os.environ`)
    whether or not they were meant for us, as ``sd_listen_fds(1)`` does,
    and each descriptor is made close-on-exec.  Raises
    :class:`ActivationError` when they are meant for us but malformed.
    ``pid`` and ``first_fd`` stand in for this process's (tests).
    """
    environ = os.environ if environ is None else environ
    values = {key: environ.pop(key, None) for key in _ENVIRONMENT}
    if values["LISTEN_PID"] is None and values["LISTEN_FDS"] is None:
        return []
    try:
        listen_pid = int(values["LISTEN_PID"] or "")
    except ValueError:
        raise ActivationError(
            f"LISTEN_PID={values['LISTEN_PID']!r} is not a process id") from None
    if listen_pid != (os.getpid() if pid is None else pid):
        return []
    try:
        count = int(values["LISTEN_FDS"] or "")
    except ValueError:
        raise ActivationError(
            f"LISTEN_FDS={values['LISTEN_FDS']!r} is not a number of sockets") from None
    if not 0 <= count <= MAX_LISTEN_FDS:
        raise ActivationError(f"LISTEN_FDS={count} is outside 0..{MAX_LISTEN_FDS}")
    names: Sequence[str] = [""] * count
    if values["LISTEN_FDNAMES"] is not None:
        names = values["LISTEN_FDNAMES"].split(":")
        if len(names) != count:
            raise ActivationError(
                f"LISTEN_FDNAMES has {len(names)} names for LISTEN_FDS={count} sockets")
    found = []
    for index, name in enumerate(names):
        fd = first_fd + index
        try:
            os.set_inheritable(fd, False)
        except OSError as e:
            raise ActivationError(
                f"{InheritedSocket(fd, name).describe()}: {os.strerror(e.errno)}") from None
        found.append(InheritedSocket(fd, name))
    return found


class InheritedSockets:
    """Inherited sockets waiting for the displays that take them.

    A display takes the sockets named like its id; when exactly one
    socket and one display exist, the display takes it whatever its name
    (systemd names an unnamed socket after its unit).
    """

    def __init__(self, sockets: Sequence[InheritedSocket], display_ids: Sequence[str]) -> None:
        self._left = list(sockets)
        self._ids = list(display_ids)

    def take(self, display_id: str) -> list[InheritedSocket]:
        if len(self._left) == 1 and self._ids == [display_id]:
            taken, self._left = self._left, []
            return taken
        taken = [s for s in self._left if s.name == display_id]
        self._left = [s for s in self._left if s.name != display_id]
        return taken

    def unclaimed(self) -> list[InheritedSocket]:
        """Sockets no display took (the caller warns and closes them)."""
        return list(self._left)


class Notifier:
    """Tells the service manager about state changes (``sd_notify``).

    Sends nothing without ``NOTIFY_SOCKET``.  A manager that went away is
    not an error worth stopping for: the failure is returned for logging.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET") or None
        if address is not None and address.startswith("@"):
            address = "\0" + address[1:]
        elif address is not None and not address.startswith("/"):
            # vsock and other forms are for virtual machines' managers.
            address = None
        self.address = address

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> str | None:
        """Send ``fields`` (``"READY=1"``, ...) as one datagram; the error text, or None."""
        if self.address is None:
            return None
        payload = "\n".join(fields).encode("utf-8", "replace")[:MAX_NOTIFY_BYTES]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, self.address)
        except OSError as e:
            return f"cannot notify the service manager at NOTIFY_SOCKET: {e.strerror or e}"
        return None

    def ready(self, status: str = "") -> str | None:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> str | None:
        return self.notify("STOPPING=1")

    def reloading(self) -> str | None:
        # systemd (253+) wants the monotonic time with RELOADING=1.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")
