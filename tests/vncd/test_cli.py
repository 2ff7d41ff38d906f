"""Tests for vncd.cli: the vncd command's steps, messages, exit status and pid file."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time

from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from tests.compat.helpers import server_dir
from tests.tools import ROOT, free_display, wait_for_port
from vncd import __version__
from vncd.cli import PidFile, main


class FakeStartupError(Exception):
    """What the service raises when it cannot start (source, message)."""

    def __init__(self, source, message, hint=None):
        super().__init__(source, message)
        self.source = source
        self.message = message
        self.hint = hint

    def __str__(self):
        return f"{self.source}: {self.message}" + (f" (hint: {self.hint})" if self.hint else "")


class RecordingService:
    """A service module double: records what main() asks of it."""

    StartupError = FakeStartupError

    def __init__(self, fail=None, notices=()):
        self.fail = fail
        self.notices = list(notices)
        #: The running displays (the monitor looks at them); none in this double.
        self.displays = []
        self.started = []
        self.stopped = 0
        self.pid_during_start = None

    def start(self, reactor, registry, invocation):
        self.started.append((reactor, registry, invocation))
        if invocation.pidfile is not None:
            with open(invocation.pidfile) as f:
                self.pid_during_start = f.read()
        if self.fail is not None:
            raise FakeStartupError(*self.fail)
        return self

    def stop(self):
        self.stopped += 1


def run(*argv, service=None, reactor=None):
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), stdout=out, stderr=err,
                  service=service or RecordingService(), reactor=reactor or MemoryReactor())
    return status, out.getvalue(), err.getvalue()


class ErrorTests(SynchronousTestCase):
    """Every error: one line 'vncd: <option as typed>: <message>' and exit status 1."""

    def test_parse_error(self):
        """A parse error names the option as typed."""
        self.assertEqual(run("-vnc", "127.0.0.1:1,frobnicate=on"),
                         (1, "", "vncd: -vnc 127.0.0.1:1,frobnicate=on:"
                                 " Invalid parameter 'frobnicate'\n"))

    def test_invalid_option(self):
        """An unknown or abbreviated option is refused."""
        self.assertEqual(run("-vn", ":1"), (1, "", "vncd: -vn: invalid option\n"))

    def test_object_load_error(self):
        """An object that fails to load is reported at its -object option; nothing starts."""
        service = RecordingService()
        status, out, err = run("-object", "tls-creds-x509,id=t,dir=/nonexistent,endpoint=server",
                               "-vnc", ":1,tls-creds=t", service=service)
        self.assertEqual(status, 1)
        self.assertTrue(err.startswith(
            "vncd: -object tls-creds-x509,id=t,dir=/nonexistent,endpoint=server: Unable to"
            " access credentials /nonexistent/ca-cert.pem: No such file or directory"), err)
        self.assertEqual(err.count("\n"), 1)
        self.assertEqual(service.started, [])

    def test_legacy_load_error(self):
        """Credentials generated from legacy keys report errors at the -vnc option."""
        status, out, err = run("-vnc", ":1,tls=on,x509verify=/nonexistent")
        self.assertEqual(status, 1)
        self.assertIn("\nvncd: -vnc :1,tls=on,x509verify=/nonexistent: Unable to access"
                      " credentials /nonexistent/ca-cert.pem", err)

    def test_duplicate_generated_id(self):
        """A typed object with a generated id clashes at the -vnc option."""
        status, out, err = run("-object", "tls-creds-anon,id=tlsvncdefault,endpoint=server",
                               "-vnc", ":1,tls=on")
        self.assertEqual(status, 1)
        self.assertTrue(err.endswith("vncd: -vnc :1,tls=on: Duplicate ID 'tlsvncdefault' for"
                                     " object\n"), err)

    def test_display_check_error(self):
        """Display checks that need objects run after creation, with QEMU's messages."""
        for argv, message in [
            (["-vnc", ":1,tls-creds=nope"], "No TLS credentials with id 'nope'"),
            (["-object", "secret,id=sec0,data=x", "-vnc", ":1,tls-creds=sec0"],
             "Object with id 'sec0' is not TLS credentials"),
            (["-object", "tls-creds-anon,id=tls0", "-vnc", ":1,tls-creds=tls0"],
             "Expected TLS credentials for a server endpoint"),
        ]:
            status, out, err = run(*argv)
            self.assertEqual((status, err), (1, f"vncd: {argv[-2]} {argv[-1]}: {message}\n"))

    def test_startup_error(self):
        """A service start-up failure is reported with its source; status 1."""
        service = RecordingService(fail=("-vnc :1", "Failed to bind socket: Address in use",
                                         "try another display"))
        self.assertEqual(run("-vnc", ":1", service=service),
                         (1, "", "vncd: -vnc :1: Failed to bind socket: Address in use"
                                 " (hint: try another display)\n"))

    def test_secret_never_printed(self):
        """An error on an object carrying a secret hides the secret."""
        status, out, err = run("-object", "secret,id=s,data=hunter2,format=frob")
        self.assertEqual(status, 1)
        self.assertNotIn("hunter2", err)
        self.assertIn("data=<hidden>", err)


class WarningTests(SynchronousTestCase):
    """Warnings: 'vncd: <option as typed>: warning: <text>', and the program goes on."""

    def test_parse_warnings(self):
        """Short-form and deprecation warnings come out in QEMU's layout."""
        status, out, err = run("-vnc", ":1,lossy,tls")
        self.assertEqual(status, 0)
        self.assertEqual(err.splitlines()[:2], [
            "vncd: -vnc :1,lossy,tls: warning: short-form boolean option 'lossy' deprecated",
            "Please use lossy=on instead"])
        self.assertNotIn("tls=on", err)
        self.assertIn("vncd: -vnc :1,lossy,tls: warning: -vnc ...,tls is deprecated; use -object"
                      " tls-creds-anon,id=tlsvncdefault,endpoint=server"
                      " -vnc ...,tls-creds=tlsvncdefault\n", err)

    def test_registry_warnings_located(self):
        """Warnings the objects raise while loading are located at their option."""
        status, out, err = run("-object", "tls-creds-anon,id=t,endpoint=server,"
                               "priority=NORMAL:%NO_TICKETS", "-vnc", ":1,tls-creds=t")
        self.assertEqual(status, 0)
        self.assertTrue(err.startswith("vncd: -object tls-creds-anon,id=t,endpoint=server,"
                                       "priority=NORMAL:%NO_TICKETS: warning: "), err)

    def test_display_warnings(self):
        """Display checks warn about a tls-authz that would refuse every client."""
        directory = server_dir(self.mktemp())
        status, out, err = run("-object", f"tls-creds-x509,id=t,dir={directory},endpoint=server",
                               "-vnc", ":1,tls-creds=t,tls-authz=a")
        self.assertEqual(status, 0)
        self.assertEqual(err, "vncd: -vnc :1,tls-creds=t,tls-authz=a: warning: no object with"
                              " id 'a' exists (tls-authz); every client is refused until it is"
                              " created\n")

    def test_notices(self):
        """The service's start-up notices are printed as QEMU prints them, unprefixed."""
        service = RecordingService(notices=["VNC server running on 127.0.0.1:5901"])
        self.assertEqual(run("-vnc", "127.0.0.1:1,to=3", service=service),
                         (0, "", "VNC server running on 127.0.0.1:5901\n"))


class InformationTests(SynchronousTestCase):
    """-h, -version, help arguments and -print-translation print and exit 0 without serving."""

    def test_version(self):
        """-version prints the package version."""
        service = RecordingService()
        self.assertEqual(run("-version", service=service),
                         (0, f"vncd version {__version__}\n", ""))
        self.assertEqual(service.started, [])

    def test_help(self):
        """-h prints the usage."""
        status, out, err = run("-h")
        self.assertEqual((status, err), (0, ""))
        self.assertTrue(out.startswith("usage: vncd "))

    def test_object_help(self):
        """-object help lists the object types."""
        status, out, err = run("-object", "help")
        self.assertEqual(status, 0)
        self.assertIn("tls-creds-x509", out)

    def test_print_translation(self):
        """-print-translation prints the modern line, creates nothing and serves nothing."""
        service = RecordingService()
        status, out, err = run("-vnc", ":1,tls,x509verify=/nonexistent", "-print-translation",
                               service=service)
        self.assertEqual((status, out), (0, "vncd -object tls-creds-x509,id=tlsvncdefault,"
                                            "dir=/nonexistent,endpoint=server,verify-peer=on"
                                            " -vnc :1,tls-creds=tlsvncdefault\n"))
        self.assertEqual(service.started, [])


class ServeTests(SynchronousTestCase):
    """Start, run, stop: what main() does once everything is checked."""

    def test_serves(self):
        """main() starts the service with the registry and invocation, runs, and exits 0."""
        service = RecordingService()
        reactor = MemoryReactor()
        directory = server_dir(self.mktemp())
        status, out, err = run("-object", f"tls-creds-x509,id=t,dir={directory},endpoint=server",
                               "-vnc", "127.0.0.1:1,tls-creds=t", service=service,
                               reactor=reactor)
        self.assertEqual((status, out, err), (0, "", ""))
        [(used_reactor, registry, invocation)] = service.started
        self.assertIs(used_reactor, reactor)
        self.assertEqual(registry.get("t").kind, "x509")
        self.assertEqual(invocation.displays[0].tls_creds, "t")
        self.assertTrue(reactor.hasRun)

    def test_monitor_options(self):
        """Monitor options are accepted, checked and handed to the service with the displays."""
        service = RecordingService()
        directory = server_dir(self.mktemp())
        status, out, err = run(
            "-object", f"tls-creds-x509,id=t,dir={directory},endpoint=server",
            "-qmp", "tcp:127.0.0.1:4444,server=on,wait=off,tls-creds=t",
            "-chardev", "stdio,id=s", "-mon", "s", "-vnc", "127.0.0.1:1,tls-creds=t",
            service=service)
        self.assertEqual((status, out, err), (0, "", ""))
        [(_, _, invocation)] = service.started
        self.assertEqual([c.id for c in invocation.chardevs], ["compat_monitor0", "s"])
        self.assertEqual([(m.chardev, m.mode) for m in invocation.monitors],
                         [("compat_monitor0", "control"), ("s", "readline")])

    def test_monitor_errors(self):
        """Chardevs and monitors are checked after the objects and before the displays."""
        for argv, message in [
            (["-object", "tls-creds-x509,id=t,dir=/nonexistent,endpoint=server",
              "-mon", "missing"],
             "-object tls-creds-x509,id=t,dir=/nonexistent,endpoint=server: Unable to access"
             " credentials /nonexistent/ca-cert.pem: No such file or directory"),
            (["-vnc", ":1,tls-creds=nope", "-mon", "missing"],
             '-mon missing: chardev "missing" not found'),
            (["-qmp", "tcp::1,server=on,tls-creds=nope"],
             "-qmp tcp::1,server=on,tls-creds=nope: No TLS credentials with id 'nope'"),
        ]:
            service = RecordingService()
            status, out, err = run(*argv, service=service)
            self.assertEqual(status, 1, argv)
            self.assertEqual(err.splitlines()[-1].split(" (hint: ")[0], f"vncd: {message}", argv)
            self.assertEqual(service.started, [])

    def test_unused_chardev_warning(self):
        """A chardev no monitor uses is reported as not opened; vncd starts."""
        status, out, err = run("-chardev", "socket,id=c,path=/tmp/c,server=on")
        self.assertEqual((status, err), (0, "vncd: -chardev socket,id=c,path=/tmp/c,server=on:"
                                            " warning: chardev 'c' is not used by any monitor;"
                                            " vncd does not open it\n"))

    def test_stop_on_shutdown(self):
        """The service is stopped before the reactor shuts down (SIGTERM/SIGINT path)."""
        service = RecordingService()
        reactor = MemoryReactor()
        run("-vnc", "none", service=service, reactor=reactor)
        [(trigger, args, kwargs)] = reactor.triggers["before"]["shutdown"]
        self.assertEqual(service.stopped, 0)
        trigger(*args, **kwargs)
        self.assertEqual(service.stopped, 1)

    def test_pidfile(self):
        """The pid file holds our pid while serving and is removed on exit."""
        service = RecordingService()
        path = self.mktemp()
        status, out, err = run("-vnc", "none", "-pidfile", path, service=service)
        self.assertEqual(status, 0)
        self.assertEqual(service.pid_during_start, f"{os.getpid()}\n")
        self.assertFalse(os.path.exists(path))

    def test_pidfile_removed_on_startup_error(self):
        """A start-up failure removes the pid file too."""
        path = self.mktemp()
        status, out, err = run("-vnc", ":1", "-pidfile", path,
                               service=RecordingService(fail=("-vnc :1", "busy")))
        self.assertEqual(status, 1)
        self.assertFalse(os.path.exists(path))

    def test_pidfile_error(self):
        """An unwritable pid file stops start-up with QEMU's message."""
        path = os.path.join(self.mktemp(), "missing", "vncd.pid")
        service = RecordingService()
        status, out, err = run("-vnc", "none", "-pidfile", path, service=service)
        self.assertEqual((status, err), (1, f"vncd: -pidfile {path}: cannot create PID file:"
                                            f" Could not create '{path}': No such file or"
                                            " directory\n"))
        self.assertEqual(service.started, [])


class PidFileTests(SynchronousTestCase):
    """PidFile: created, locked against a second process, removed only if still ours."""

    def test_lock(self):
        """A second writer of the same pid file fails with QEMU's lock message."""
        path = os.path.abspath(self.mktemp())
        first = PidFile(path)
        first.write()
        self.addCleanup(first.remove)
        probe = subprocess.run(
            [sys.executable, "-c",
             "import sys; from vncd.cli import PidFile\n"
             "try:\n    PidFile(sys.argv[1]).write()\n"
             "except OSError as e:\n    print(e.strerror)",
             path], cwd=ROOT, capture_output=True, text=True, timeout=60)
        self.assertEqual(probe.stdout, "Cannot lock pid file: Resource temporarily unavailable\n")
        with open(path) as f:
            self.assertEqual(f.read(), f"{os.getpid()}\n")

    def test_existing_file_replaced(self):
        """A stale pid file is truncated and rewritten."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("999999999 stale\n")
        pidfile = PidFile(path)
        pidfile.write()
        with open(path) as f:
            self.assertEqual(f.read(), f"{os.getpid()}\n")
        pidfile.remove()
        self.assertFalse(os.path.exists(path))

    def test_not_ours_not_removed(self):
        """A pid file replaced by someone else is left alone on exit."""
        path = self.mktemp()
        pidfile = PidFile(path)
        pidfile.write()
        os.unlink(path)
        with open(path, "w") as f:
            f.write("other\n")
        pidfile.remove()
        with open(path) as f:
            self.assertEqual(f.read(), "other\n")


class CommandTests(SynchronousTestCase):
    """python -m vncd as a real process."""

    def vncd(self, *argv):
        return subprocess.run([sys.executable, "-m", "vncd", *argv], cwd=ROOT,
                              capture_output=True, timeout=60)

    def test_version(self):
        """python -m vncd -version prints the version and exits 0."""
        result = self.vncd("-version")
        self.assertEqual((result.returncode, result.stdout, result.stderr),
                         (0, f"vncd version {__version__}\n".encode(), b""))

    def test_error(self):
        """python -m vncd with a bad option prints one line and exits 1."""
        result = self.vncd("-vnc", "127.0.0.1:1,frobnicate=on")
        self.assertEqual((result.returncode, result.stdout, result.stderr),
                         (1, b"", b"vncd: -vnc 127.0.0.1:1,frobnicate=on:"
                                  b" Invalid parameter 'frobnicate'\n"))

    def serve_then_signal(self, signum):
        display = free_display()
        pidfile = os.path.abspath(self.mktemp())
        proc = subprocess.Popen([sys.executable, "-m", "vncd", "-vnc", f"127.0.0.1:{display}",
                                 "-pidfile", pidfile], cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.assertTrue(wait_for_port("127.0.0.1", 5900 + display, timeout=30, proc=proc),
                            proc.stderr.read() if proc.poll() is not None else "no listener")
            with open(pidfile) as f:
                self.assertEqual(f.read(), f"{proc.pid}\n")
            proc.send_signal(signum)
            status = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()
        self.assertEqual(status, 0)
        self.assertFalse(os.path.exists(pidfile))

    def test_sigterm(self):
        """A serving vncd stops cleanly on SIGTERM: exit status 0, pid file removed."""
        self.serve_then_signal(signal.SIGTERM)

    def test_sigint(self):
        """A serving vncd stops cleanly on SIGINT: exit status 0, pid file removed."""
        self.serve_then_signal(signal.SIGINT)

    def test_translation_keeps_bytes(self):
        """A non-UTF-8 path survives -print-translation byte for byte."""
        path = b"/etc/pki/\xff\xfe"
        result = subprocess.run([sys.executable, "-m", "vncd", "-print-translation", "-vnc",
                                 b":1,tls,x509=" + path], cwd=ROOT, capture_output=True,
                                timeout=60)
        self.assertEqual(result.returncode, 0)
        self.assertIn(b"dir=" + path + b",endpoint=server", result.stdout)


def _read_stderr_until(proc, needle: bytes, timeout: float = 30.0) -> bytes:
    """Read ``proc``'s stderr until ``needle`` appears (or fail after ``timeout``)."""
    import select
    import time

    seen = b""
    deadline = time.monotonic() + timeout
    fd = proc.stderr.fileno()
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise AssertionError(f"{needle!r} not printed; stderr so far: {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"stderr closed; so far: {seen!r}")
            seen += chunk
    return seen


class ReloadTests(SynchronousTestCase):
    """SIGHUP re-reads every TLS credentials object, keeping the old one on failure."""

    def test_sighup_reloads_credentials(self):
        """New files take effect on SIGHUP; a broken file is reported and the last good
        credentials keep serving."""
        from creds import new_registry
        from tests import certgen
        from tests.creds.sessionpump import vencrypt_x509none
        from creds.session import TLSCheckError

        base = os.path.abspath(self.mktemp())
        old_ca, new_ca = certgen.ca("old CA"), certgen.ca("new CA")
        server_dir = certgen.write_dir(
            os.path.join(base, "server"), ca=[old_ca],
            server=certgen.server(old_ca, "127.0.0.1", ips=["127.0.0.1"]))
        client_dir = certgen.write_dir(os.path.join(base, "client"), ca=[new_ca])
        client = new_registry().create("tls-creds-x509", {
            "id": "c", "dir": client_dir, "endpoint": "client", "verify-peer": "on"})

        display = free_display()
        proc = subprocess.Popen(
            [sys.executable, "-m", "vncd",
             "-object", f"tls-creds-x509,id=tls0,dir={server_dir},endpoint=server,"
                        "verify-peer=off",
             "-vnc", f"127.0.0.1:{display},tls-creds=tls0"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        self.addCleanup(proc.stderr.close)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait(30)))
        port = 5900 + display
        self.assertTrue(wait_for_port("127.0.0.1", port, timeout=30, proc=proc))

        # The client trusts only the new CA: the old certificate is refused.
        err = self.assertRaises(TLSCheckError, vencrypt_x509none, port, client)
        self.assertIn("known issuer", str(err))

        certgen.write_dir(server_dir, ca=[new_ca],
                          server=certgen.server(new_ca, "127.0.0.1", ips=["127.0.0.1"]))
        proc.send_signal(signal.SIGHUP)
        printed = _read_stderr_until(proc, b"reloaded (generation 2)")
        self.assertIn(b"vncd: -object tls-creds-x509,id=tls0,", printed)
        self.assertTrue(vencrypt_x509none(port, client))

        with open(os.path.join(server_dir, "server-cert.pem"), "wb") as f:
            f.write(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        proc.send_signal(signal.SIGHUP)
        printed = _read_stderr_until(proc, b"reload failed, previous credentials stay in force")
        self.assertIn(b"server-cert.pem", printed)
        self.assertTrue(vencrypt_x509none(port, client))

        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)


#: SIGHUPs in the storm test (50 in half a second once ran 18 reloads in a
#: row and stalled every client), and the pause between two.  Signals sent
#: back to back merge in the kernel; a millisecond apart each arrives on
#: its own, while the whole storm stays shorter than one reload.
SIGHUP_STORM = 50
SIGHUP_SPACING = 0.001

#: Seconds the capture during the storm, and the first reload report, may take.
STORM_TIMEOUT = 60.0


class ReloadStormTests(SynchronousTestCase):
    """A burst of SIGHUPs is coalesced and does not stop vncd serving."""

    def test_sighup_storm(self):
        """50 SIGHUPs in a burst cause at most two reloads, and meanwhile an x509 client
        (vncd-capture) gets the screen pixel for pixel."""
        from tests.vncd import realclients

        base = os.path.abspath(self.mktemp())
        server = realclients.start_x509_vncd(self, base, "storm")
        proc, port, client_dir, picture = (server.proc, server.port, server.client_dir,
                                           server.picture)

        for _ in range(SIGHUP_STORM):
            os.kill(proc.popen.pid, signal.SIGHUP)
            time.sleep(SIGHUP_SPACING)
        out = os.path.join(base, "capture.png")
        capture = subprocess.run(
            [sys.executable, "-m", "vncd.capture", "--tls-creds-dir", client_dir,
             "--hostname", "localhost", f"127.0.0.1::{port}", out],
            cwd=ROOT, capture_output=True, text=True, timeout=STORM_TIMEOUT)
        self.assertEqual(capture.returncode, 0, capture.stderr)
        realclients.assert_same_pixels(self, realclients.read_png(out), picture,
                                       "capture during a SIGHUP storm")

        self.assertTrue(realclients.wait_until(
            lambda: "reloaded (generation 2)" in proc.output(), STORM_TIMEOUT),
            proc.describe())
        self.assertEqual(proc.stop(), 0)
        log = proc.output()
        reloads = re.findall(r": reloaded \(generation (\d+)\)", log)
        self.assertIn(reloads, (["2"], ["2", "3"]), log)
        self.assertNotIn("reload failed", log)


class LogTests(SynchronousTestCase):
    """The vncd command logs what an administrator needs, one line each, on stderr."""

    def test_connection_log(self):
        """Listening, a failed password, a dropped handshake and a session are logged;
        Twisted's own chatter and the password are not."""
        import socket

        display = free_display()
        proc = subprocess.Popen(
            [sys.executable, "-m", "vncd", "-object", "secret,id=pw,data=s3cret",
             "-vnc", f"127.0.0.1:{display},password-secret=pw"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        self.addCleanup(proc.stderr.close)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait(30)))
        port = 5900 + display
        printed = _read_stderr_until(proc, b"serving on")
        self.assertIn(f"display default: serving on 127.0.0.1:{port} (VNC password)".encode(),
                      printed)

        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.recv(12)
            s.sendall(b"RFB 003.008\n")
            s.recv(2)
            s.sendall(b"\x02")
            s.recv(16)
            s.sendall(bytes(16))
            s.recv(64)
        printed += _read_stderr_until(proc, b"authentication failed")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.recv(12)
        printed += _read_stderr_until(proc, b"disconnected during the handshake")

        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)
        printed += proc.stderr.read()
        lines = printed.decode().splitlines()
        # Each line: an ISO 8601 UTC time (standard error is not the journal), then vncd:.
        stamped = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z vncd: ")
        self.assertTrue(all(stamped.match(line) for line in lines), lines)
        self.assertTrue(any(re.search(r": terminating on signal 15 from pid \d+ \(", line)
                            for line in lines), lines)
        self.assertTrue(any(line.endswith("authentication failed: wrong VNC password")
                            for line in lines), lines)
        self.assertNotIn("s3cret", printed.decode())
        self.assertNotIn("Starting factory", printed.decode())
        self.assertNotIn("Main loop terminated", printed.decode())


class JournalTests(SynchronousTestCase):
    """Log lines carry no timestamp when standard error is the journal (JOURNAL_STREAM)."""

    def test_under_journald(self):
        """JOURNAL_STREAM must name standard error's device and inode; garbage does not."""
        from vncd.cli import _under_journald

        with open(self.mktemp(), "w") as stream:
            st = os.fstat(stream.fileno())
            journal = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
            self.assertTrue(_under_journald(stream, journal))
            for value in ("", "1:2", "x:y", f"{st.st_dev}:{st.st_ino}:0", ":", "9" * 400):
                self.assertFalse(_under_journald(stream, {"JOURNAL_STREAM": value}), value)
            self.assertFalse(_under_journald(io.StringIO(), {"JOURNAL_STREAM": "1:2"}))

    def test_no_timestamps_on_the_journal(self):
        """A vncd whose stderr is the stream JOURNAL_STREAM names writes plain 'vncd: ' lines."""
        read_fd, write_fd = os.pipe()
        st = os.fstat(write_fd)
        display = free_display()
        proc = subprocess.Popen(
            [sys.executable, "-m", "vncd", "-vnc", f"127.0.0.1:{display}"], cwd=ROOT,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=write_fd,
            env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as err:
            try:
                self.assertTrue(wait_for_port("127.0.0.1", 5900 + display, timeout=30,
                                              proc=proc))
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=30), 0)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(30)
            lines = err.read().decode().splitlines()
        self.assertTrue(lines)
        self.assertTrue(all(line.startswith("vncd: ") for line in lines), lines)
        self.assertIn("serving on", lines[0])
