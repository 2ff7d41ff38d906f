"""The ``vncd`` command: read the command line, create the objects, serve.

The steps, each finished before the next starts, as QEMU does them:

1. parse every option (:func:`compat.cmdline.parse_command_line`), in
   command-line order -- syntax, keys, value types, object types;
2. create every object in order (typed ``-object`` first, then those
   the legacy ``-vnc`` keys ask for), loading and checking its files;
3. check every chardev and monitor (:func:`compat.monitor.check_monitors`),
   then every display (:func:`compat.vnc.check_display`), against the
   objects, in QEMU's order;
4. take the sockets a service manager passed (:mod:`vncd.activation`),
   detach for ``-daemonize`` (:mod:`vncd.daemon`), write the pid file,
   start the service (:func:`vncd.service.start`) and tell the manager
   (``READY=1``) or the waiting parent, run until SIGTERM or SIGINT
   (logged with the sender), stop the service, remove the pid file.

The monitors are checked but not served yet.

Any error stops the program before anything listens: one line on
standard error, ``vncd: <option as typed>: <message>``, exit status 1.
Warnings look the same with ``warning:`` after the location.  A clean
stop exits with status 0.

This module parses nothing itself (that is :mod:`compat`) and touches
no certificate (that is :mod:`creds`).
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import signal
import sys
import threading
from typing import Any, Callable, Sequence, TextIO

from twisted.internet import defer

import creds
from compat.cmdline import format_translation, parse_command_line
from compat.config import Invocation
from compat.errors import HelpRequest, OptionError
from compat.monitor import check_monitors
from compat.vnc import check_display
from creds.objects import ObjectError, ObjectRegistry
from vncd import __version__

__all__ = ["main", "PROG", "PidFile", "MAX_PIDFILE_ATTEMPTS"]

#: The name every message starts with (QEMU uses its program name).
PROG = "vncd"

#: How often to retry when another process replaces the pid file between
#: our open and our lock (QEMU retries without limit); each retry means
#: a competing process won a race, so a handful is plenty.
MAX_PIDFILE_ATTEMPTS = 8


class PidFile:
    """A pid file written and locked the way QEMU does (``qemu_write_pidfile``).

    The file is created if needed, locked (a second process with the same
    pid file fails instead of overwriting it), truncated and given our
    pid.  :meth:`remove` deletes it again on exit.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def write(self) -> None:
        """Create, lock and fill the file; raise :class:`OSError` with QEMU's wording."""
        for _ in range(MAX_PIDFILE_ATTEMPTS):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as err:
                raise OSError(
                    err.errno, f"Could not create '{self.path}': {os.strerror(err.errno)}"
                ) from None
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                raise OSError(
                    err.errno, f"Cannot lock pid file: {os.strerror(err.errno)}"
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise OSError(errno.EAGAIN, "Cannot lock pid file: it keeps being replaced")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def remove(self) -> None:
        """Delete the file we wrote (if it is still ours) and release the lock."""
        if self._fd is None:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None


def _write_out(stream: TextIO, text: str) -> None:
    """Write ``text`` to standard output, bytes from a non-UTF-8 argv included."""
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(text)
    else:
        buffer.write(text.encode(sys.getfilesystemencoding(), "surrogateescape"))
        buffer.flush()


class _Console:
    """Where messages go: ``vncd: <location>: [warning: ]<text>`` on stderr.

    ``location`` names the option being acted on, for warnings that come
    from the object registry (which knows nothing of options).
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.location = PROG
        #: The ``-object`` option that created each object, by id.
        self.sources: dict[str, str] = {}
        #: Lines start with an ISO 8601 time once serving (see :func:`start_logging`);
        #: start-up errors stay as QEMU prints them.
        self.timestamps = False
        self.stamp_when_serving = False

    def location_of(self, obj: Any) -> str:
        """Where messages about ``obj`` point: its ``-object`` option, or its id."""
        return self.sources.get(obj.id, f"object '{obj.id}'")

    def say(self, line: str) -> None:
        stamp = f"{_timestamp()} " if self.timestamps else ""
        try:
            self.stream.write(f"{stamp}{PROG}: {line}\n")
            self.stream.flush()
        except (OSError, ValueError):
            # Standard error is gone (a closed pipe, a vanished terminal):
            # the message is lost, but vncd must go on (and stop) regardless.
            pass

    def registry_warning(self, text: str) -> None:
        self.say(f"{self.location}: warning: {text}")


def _prepare(
    argv: Sequence[str],
    registry: ObjectRegistry,
    console: _Console,
    out: TextIO,
) -> Invocation | int:
    """Steps 1-3.  Returns the invocation to serve, or an exit status."""
    say = console.say
    try:
        invocation = parse_command_line(
            argv, registry=registry, warn=say, version=__version__
        )
        if invocation.print_translation:
            line = format_translation(invocation, registry=registry, warn=say)
            _write_out(out, line + "\n")
            return 0
    except HelpRequest as request:
        _write_out(out, request.text)
        return 0
    except OptionError as err:
        say(str(err))
        return 1
    if invocation.daemonize:
        # A daemon's standard input and output are /dev/null (QEMU's check and words).
        for chardev in invocation.chardevs:
            if chardev.backend == "stdio":
                say(f"{chardev.source}: cannot use stdio with -daemonize")
                return 1
    console.sources = {str(spec.props.get("id")): spec.source for spec in invocation.objects}
    for spec in invocation.objects:
        console.location = spec.source
        try:
            registry.create(spec.qom_type, spec.props)
        except ObjectError as err:
            say(f"{spec.source}: {err}")
            return 1
    try:
        check_monitors(invocation, registry, warn=say)
        for display in invocation.displays:
            check_display(display, registry, warn=say)
    except OptionError as err:
        say(str(err))
        return 1
    return invocation


def _serve(
    invocation: Invocation,
    registry: ObjectRegistry,
    reactor: Any,
    service: Any,
    console: "_Console",
    manager: "_Manager | None" = None,
) -> int:
    """Step 4: pid file, service, reactor; returns the exit status.

    The service's start-up notices (QEMU's "VNC server running on ..."
    for ``to=``) go to standard error without prefix, as QEMU prints them.
    ``manager`` carries what a service manager or ``-daemonize`` asks
    for: inherited sockets, readiness notification, the waiting parent.
    """
    say, stderr = console.say, console.stream
    manager = manager or _Manager()
    pidfile = None
    if invocation.pidfile is not None:
        pidfile = PidFile(invocation.pidfile)
        try:
            pidfile.write()
        except OSError as err:
            say(f"-pidfile {invocation.pidfile}: cannot create PID file: {err.strerror}")
            return 1
    monitor, reloader = _monitor(reactor, registry, console)
    previous_handlers, watcher = _stop_on_signals(reactor, monitor, console)
    previous_handlers.update(_reload_on_sighup(reactor, registry, reloader, console,
                                               manager.notifier))
    monitors = None
    try:
        if invocation.monitors:
            from vncd.monitor.server import start_monitors, waiting_notice
            try:
                monitors = start_monitors(reactor, monitor, invocation.monitors,
                                          invocation.chardevs)
            except service.StartupError as err:
                say(str(err))
                return 1
            reactor.addSystemEventTrigger("before", "shutdown", monitors.stop)
        status = [0]

        def start_displays() -> bool:
            extra = {"inherited": manager.inherited} if manager.inherited else {}
            try:
                running = service.start(reactor, registry, invocation, **extra)
            except service.StartupError as err:
                say(str(err))
                status[0] = 1
                return False
            monitor.attach(running)
            console.timestamps = console.stamp_when_serving
            for notice in running.notices:
                stderr.write(notice + "\n")
            stderr.flush()
            reactor.addSystemEventTrigger("before", "shutdown", running.stop)
            if manager.notifier is not None:
                reactor.addSystemEventTrigger("before", "shutdown", manager.stopping)
            manager.listening(running, say)
            return True

        waiting = monitors.waiting() if monitors is not None else []
        if waiting:
            # QEMU opens a server chardev with wait=on and blocks until a
            # client connects, before any display listens.
            for factory in waiting:
                say(waiting_notice(factory))
            started = defer.gatherResults([f.first_client for f in waiting])

            def go(_):
                if not start_displays():
                    reactor.stop()

            started.addCallback(go)
        elif not start_displays():
            if monitors is not None:
                monitors.stop()
            return 1
        if previous_handlers:
            reactor.run(installSignalHandlers=False)
        else:
            reactor.run()
        return status[0]
    finally:
        if watcher is not None:
            watcher.close()
        for signum, old in previous_handlers.items():
            signal.signal(signum, old)
        if pidfile is not None:
            pidfile.remove()


def _monitor(reactor: Any, registry: ObjectRegistry,
             console: "_Console") -> tuple[Any, Any]:
    """The monitor's shared state and the credentials loader SIGHUP and the monitor use."""
    from vncd.monitor.control import Monitor
    from vncd.monitor.hmp import HMPInterpreter, PasswordPrompt
    from vncd.reload import Reloader

    def point_at(obj: Any) -> None:
        console.location = console.location_of(obj)

    reloader = Reloader(reactor, before_commit=point_at)

    def stop() -> None:
        if reactor.running:
            reactor.stop()

    monitor = Monitor(reactor, registry, reloader, version=__version__, stop=stop)
    interpreter = HMPInterpreter(monitor)

    def human(line: str) -> Any:
        def no_prompt(failure: Any) -> Any:
            failure.trap(PasswordPrompt)
            return "terminal does not support password prompting\n"

        # QEMU's monitor output always ends lines with CR LF, in this reply too.
        return interpreter.run(line).addErrback(no_prompt).addCallback(
            lambda text: text.replace("\n", "\r\n"))

    monitor.hmp = human
    return monitor, reloader


def _reload_on_sighup(reactor: Any, registry: ObjectRegistry, reloader: Any,
                      console: "_Console", notifier: Any = None) -> dict[int, Any]:
    """SIGHUP re-reads every TLS credentials object from its files.

    What QEMU's ``display-reload`` does for VNC, for every object at once,
    through the :class:`vncd.reload.Reloader` the monitor uses too: the
    files are read and checked off the reactor thread, so clients are
    served meanwhile, and SIGHUPs arriving while a reload waits its turn
    join it.  New connections use the new files; established ones keep
    their sessions.  Each object's outcome is one line located at the
    ``-object`` option that created it: ``reloaded (generation N)``, or
    ``reload failed, previous credentials stay in force: <error>``.
    A service manager listening on ``NOTIFY_SOCKET`` hears ``RELOADING=1``
    when a reload starts and ``READY=1`` when it is over.
    """
    call_from_thread = getattr(reactor, "callFromThread", None)
    if call_from_thread is None or threading.current_thread() is not threading.main_thread():
        return {}
    reported: list = [None]

    def report(results: list) -> None:
        # Every SIGHUP that joined a run gets the same results: print them once.
        if results is reported[0]:
            return
        reported[0] = results
        if notifier is not None:
            notifier.ready()
        for result in results:
            reloader_location = console.location_of(result.obj)
            if result.error is None:
                console.say(f"{reloader_location}: reloaded (generation {result.generation})")
            else:
                console.say(f"{reloader_location}: reload failed, previous credentials"
                            f" stay in force: {result.error}")

    def failed(failure: Any) -> None:
        if notifier is not None:
            notifier.ready()
        console.say(f"error: reload failed: {failure.getErrorMessage()}")

    def reload() -> None:
        if notifier is not None:
            notifier.reloading()
        reloader.reload_all(registry).addCallbacks(report, failed)

    def handler(signum: int, frame: Any) -> None:
        call_from_thread(reload)

    return {signal.SIGHUP: signal.signal(signal.SIGHUP, handler)}


def _stop_on_signals(reactor: Any, monitor: Any = None,
                     console: "_Console | None" = None) -> tuple[dict[int, Any], Any]:
    """SIGTERM/SIGINT stop the reactor once, cleanly, from before it runs until it ends.

    The listeners open in ``service.start()``; a signal between that and
    ``reactor.run()`` must not kill the process with the signal's default
    action.  vncd keeps these handlers for the whole run (the reactor is
    run without its own), so a second signal during shutdown is harmless.
    The signals are taken by a :class:`vncd.daemon.SignalWatcher`, which
    knows the sender, and the stop is logged as QEMU logs it:
    ``terminating on signal 15 from pid 1234 (kill)`` (no sender for a
    Ctrl-C from the terminal).  Plain handlers stay installed behind it for
    a signal that reaches a thread not blocking it.

    Returns the previous handlers, which the caller restores, and the
    watcher, which the caller closes; ``({}, None)`` when the reactor cannot
    take calls from a signal handler (test fakes).
    """
    call_from_thread = getattr(reactor, "callFromThread", None)
    if call_from_thread is None or threading.current_thread() is not threading.main_thread():
        return {}, None
    stopping = []

    def stop(signum: int | None = None, pid: int = 0) -> None:
        if stopping:
            return
        stopping.append(True)
        if console is not None and signum is not None:
            from vncd.daemon import describe_sender
            console.say(f"terminating on signal {signum}{describe_sender(pid)}")
        if monitor is not None:
            monitor.shutting_down("host-signal")
        if reactor.running:
            reactor.stop()
        else:
            reactor.callWhenRunning(reactor.stop)

    def handler(signum: int, frame: Any) -> None:
        call_from_thread(stop, signum)

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handler)
    from vncd.daemon import SignalWatcher
    watcher = SignalWatcher(lambda signum, pid: call_from_thread(stop, signum, pid))
    return previous, watcher


class _Manager:
    """What a service manager or ``-daemonize`` gave us, and what they want to hear.

    ``inherited``: sockets passed by socket activation; ``notifier``: the
    ``sd_notify`` channel (silent without ``NOTIFY_SOCKET``); ``daemon``:
    the waiting parent of ``-daemonize`` (None without it).
    """

    def __init__(self, inherited: Sequence[Any] = (), notifier: Any = None,
                 daemon: Any = None) -> None:
        self.inherited = list(inherited)
        self.notifier = notifier
        self.daemon = daemon
        self._stopping_sent = False

    def listening(self, running: Any, say: Callable[[str], None]) -> None:
        """Every display listens: tell the manager, release the waiting parent."""
        if self.notifier is not None:
            addresses = [text for d in getattr(running, "displays", [])
                         for text, _ in getattr(d, "addresses", [])]
            problem = self.notifier.ready(
                "serving on " + ", ".join(addresses) if addresses else "serving")
            if problem:
                say(f"warning: {problem}")
        if self.daemon is not None:
            self.daemon.ready()

    def stopping(self) -> None:
        """The reactor begins to shut down: tell the manager (once)."""
        if self.notifier is not None and not self._stopping_sent:
            self._stopping_sent = True
            self.notifier.stopping()

    def stopped(self, status: int) -> None:
        """The run is over with ``status``."""
        self.stopping()
        if self.daemon is not None and status:
            self.daemon.failed(status)
        elif self.daemon is not None:
            self.daemon.ready()


def main(
    argv: Sequence[str] | None = None,
    *,
    reactor: Any = None,
    service: Any = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    clock: Callable | None = None,
) -> int:
    """Run ``vncd`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    ``reactor`` (default: Twisted's global reactor), ``service`` (default:
    :mod:`vncd.service`, anything with ``start`` and ``StartupError``),
    the output streams and the registry's ``clock`` can be injected.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    if reactor is not None or threading.current_thread() is not threading.main_thread():
        return _main(argv, reactor, service, out, err, clock)
    # Block SIGTERM and SIGINT before any library starts a thread (numpy's
    # BLAS does at import): every thread inherits the block, so the kernel
    # keeps them for the signal watcher, which learns their sender.  One
    # that arrives while starting waits for it.
    from vncd.daemon import SignalWatcher

    mask = signal.pthread_sigmask(signal.SIG_BLOCK, SignalWatcher.SIGNALS)
    try:
        return _main(argv, reactor, service, out, err, clock)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _main(argv: list[str], reactor: Any, service: Any, out: TextIO, err: TextIO,
          clock: Callable | None) -> int:
    console = _Console(err)
    registry = creds.new_registry(
        warn=console.registry_warning,
        **({"clock": clock} if clock is not None else {}),
    )
    prepared = _prepare(argv, registry, console, out)
    if isinstance(prepared, int):
        return prepared
    manager = _Manager()
    if reactor is None:
        from vncd import activation, daemon

        try:
            manager.inherited = activation.inherited_sockets()
        except activation.ActivationError as e:
            console.say(f"socket activation: {e}")
            return 1
        manager.notifier = activation.Notifier()
        if prepared.daemonize:
            # Before the reactor exists: the daemon must not share its state.
            manager.daemon = daemon.daemonize()
    if service is None:
        from vncd import service
    if reactor is None:
        _install_reactor()
        from twisted.internet import reactor

        console.stamp_when_serving = start_logging(err)
    status = 1
    try:
        status = _serve(prepared, registry, reactor, service, console, manager)
    finally:
        manager.stopped(status)
    return status


def _install_reactor() -> None:
    """The command's own reactor (:mod:`vncd.reactor`), unless one is installed already."""
    if "twisted.internet.reactor" in sys.modules:
        return
    from vncd import reactor

    reactor.install()


#: Events below this level (per-connection TLS details) are not printed.
LOG_LEVEL = "info"


def _timestamp() -> str:
    """The current time as QEMU's ``-msg timestamp=on`` writes it (ISO 8601, UTC)."""
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _under_journald(stream: TextIO, environ: Any = None) -> bool:
    """Whether ``stream`` is the journal's stream (``JOURNAL_STREAM=DEV:INODE``).

    systemd sets the variable to the device and inode of the socket it
    connected standard output and error to; a program that redirected
    its error elsewhere still inherits it, so the inode is compared.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError, io.UnsupportedOperation):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def start_logging(stream: TextIO) -> bool:
    """Send the server's log (connections refused, authentication and TLS
    failures, listeners) to ``stream``, one line each, as ``vncd: <text>``.

    Each line starts with an ISO 8601 UTC time (QEMU's ``-msg
    timestamp=on`` form), except when ``stream`` is the journal, which
    stamps lines itself.  Returns whether lines are stamped.

    Only for the ``vncd`` command's own process: an embedding program
    chooses its own log observers.
    """
    from twisted.logger import (
        FilteringLogObserver, LogLevel, LogLevelFilterPredicate, formatEvent,
        globalLogBeginner,
    )

    prefixes = {LogLevel.warn: "warning: ", LogLevel.error: "error: ",
                LogLevel.critical: "error: "}

    def write(event: dict) -> None:
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        stamp = f"{_timestamp()} " if stamped else ""
        try:
            stream.write(f"{stamp}{PROG}: {prefixes.get(event.get('log_level'), '')}{text}\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    stamped = not _under_journald(stream)

    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(LOG_LEVEL))
    # Twisted's own start/stop chatter ("Starting factory", "Main loop
    # terminated") is for Twisted developers; its warnings and errors stay.
    predicate.setLogLevelForNamespace("twisted", LogLevel.warn)
    predicate.setLogLevelForNamespace("log_legacy", LogLevel.warn)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(write, [predicate])],
                                     redirectStandardIO=False)
    return stamped
