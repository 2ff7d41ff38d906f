"""vncd against QEMU 7.2 on monitor command lines: the same verdict, the same words.

Each case runs a real QEMU 7.2 (``qemu-system-x86_64 -machine none
-nodefaults -display none -serial none ...``) and vncd's front end.  When
QEMU accepts, it must really serve every monitor asked for: each answers
with a QMP greeting (and negotiates capabilities) or an HMP banner, over
UNIX, TCP, TLS with a client certificate or standard input and output;
the last one then tells QEMU to quit, and it must exit 0 (over TLS only
the greeting is checked: see :class:`tests.monitorprobe.MonitorProbe`).  When QEMU
refuses, vncd must refuse with QEMU's first error line, option included
(vncd may add ``(hint: ...)``), and print every warning QEMU prints.

vncd does not serve monitors yet, so its verdict is taken in process up
to where the service would start (every option parsed, every object
created, every chardev, monitor and display checked), with a recording
service in place of the server.

vncd's ``-print-translation`` of each accepted line must parse back to
the same chardevs and monitors and be accepted by QEMU 7.2, which must
then serve the same monitors.  Where vncd differs on purpose, QEMU's
behaviour is checked too, so the difference is known to be real.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

import creds
from compat.cmdline import parse_command_line
from tests import certgen
from tests.compat.helpers import VALIDITY, client_identity, server_dir
from tests.compat.test_qemu_compare import (
    EXIT_TIMEOUT, VERDICT_TIMEOUT, stop, translated, warning_blocks,
)
from tests.monitorprobe import MonitorProbe, MonitorProbeError, probe_monitor
from tests.tools import QEMU, free_port, require_tool
from vncd.cli import main

#: QEMU processes alive at once: each takes ~50 MB and a share of 2 busy cores.
BATCH = 6

QEMU_PREFIX = "qemu-system-x86_64: "

X509 = "tls-creds-x509,id=tls0,endpoint=server,dir={x509},verify-peer=on"
ANON = "tls-creds-anon,id=tls0,endpoint=server"
AUTHZ = "authz-simple,id=authz0,identity=CN=bob"


def qmp(where, tls=False):
    """A QMP probe; over TLS only the greeting (see :class:`MonitorProbe`)."""
    return MonitorProbe("qmp-greeting" if tls else "qmp", where, tls=True if tls else None)


def hmp(where):
    return MonitorProbe("hmp", where)


@dataclass
class Case:
    """A command line (``{sock1}``, ``{port1}``, ``{x509}`` ... filled in per run)."""

    name: str
    args: list[str]
    #: Monitors QEMU must serve (QEMU accepts the line).
    probes: list[MonitorProbe] = field(default_factory=list)
    #: QEMU refuses: its message, option included.
    qemu_error: str | None = None
    #: vncd differs on purpose: its message (None: vncd accepts).
    vncd_differs: bool = False
    vncd_error: str | None = None


ACCEPTED = [
    Case("qmp unix", ["-qmp", "unix:{sock1},server=on,wait=off"], [qmp("unix:{sock1}")]),
    Case("qmp tcp, short forms", ["-qmp", "tcp:127.0.0.1:{port1},server,nowait"],
         [qmp("tcp:{port1}")]),
    Case("qmp tcp, every interface", ["-qmp", "tcp::{port1},server=on,wait=off,nodelay"],
         [qmp("tcp:{port1}")]),
    Case("qmp-pretty", ["-qmp-pretty", "unix:{sock1},server=on,wait=off"],
         [MonitorProbe("qmp-pretty", "unix:{sock1}")]),
    Case("monitor unix", ["-monitor", "unix:{sock1},server=on,wait=off"], [hmp("unix:{sock1}")]),
    Case("qmp waits for its client", ["-qmp", "unix:{sock1},server=on"], [qmp("unix:{sock1}")]),
    Case("chardev + mon control",
         ["-chardev", "socket,id=m0,path={sock1},server=on,wait=off",
          "-mon", "chardev=m0,mode=control"], [qmp("unix:{sock1}")]),
    Case("chardev + mon default, short forms",
         ["-chardev", "socket,id=m0,host=127.0.0.1,port={port1},server,nowait", "-mon", "m0"],
         [hmp("tcp:{port1}")]),
    Case("qmp chardev:", ["-chardev", "socket,id=m0,path={sock1},server=on,wait=off",
                          "-qmp", "chardev:m0"], [qmp("unix:{sock1}")]),
    Case("qmp and monitor", ["-monitor", "none", "-qmp", "unix:{sock1},server=on,wait=off",
                             "-monitor", "tcp:127.0.0.1:{port1},server=on,wait=off,ipv4=on"],
         [qmp("unix:{sock1}"), hmp("tcp:{port1}")]),
    Case("tcp to= and delay=off",
         ["-chardev", "socket,id=m0,host=127.0.0.1,port={port1},to={port2},server=on,wait=off,"
          "delay=off", "-mon", "m0,mode=control,pretty=off,id=mon0"], [qmp("tcp:{port1}")]),
    Case("qmp over TLS", ["-object", X509, "-chardev",
                          "socket,id=m0,host=127.0.0.1,port={port1},server=on,wait=off,"
                          "tls-creds=tls0", "-mon", "m0,mode=control"],
         [qmp("tcp:{port1}", tls=True)]),
    Case("qmp over TLS with authz", ["-object", AUTHZ, "-object", X509, "-qmp",
                                     "tcp:127.0.0.1:{port1},server=on,wait=off,tls-creds=tls0,"
                                     "tls-authz=authz0"],
         [qmp("tcp:{port1}", tls=True)]),
    Case("qmp stdio", ["-qmp", "stdio"], [qmp("stdio")]),
    Case("chardev stdio, pretty", ["-chardev", "stdio,id=s", "-mon", "s,mode=control,pretty=on"],
         [MonitorProbe("qmp-pretty", "stdio")]),
]

REFUSED = [
    Case("qmp none", ["-qmp", "none"], qemu_error="-qmp none: 'none' is not a valid char driver"),
    Case("qmp bogus form", ["-qmp", "bogus"],
         qemu_error="-qmp bogus: 'bogus' is not a valid char driver"),
    Case("qmp tcp without port", ["-qmp", "tcp:localhost"],
         qemu_error="-qmp tcp:localhost: parse error: tcp:localhost"),
    Case("qmp unknown key", ["-qmp", "unix:{sock1},server=on,frob=1"],
         qemu_error="-qmp unix:{sock1},server=on,frob=1: Invalid parameter 'frob'"),
    Case("mon missing chardev", ["-mon", "chardev=missing"],
         qemu_error='-mon chardev=missing: chardev "missing" not found'),
    Case("qmp chardev: missing", ["-qmp", "chardev:nope"],
         qemu_error='-qmp chardev:nope: chardev "nope" not found'),
    Case("duplicate chardev id", ["-chardev", "socket,id=m0,path={sock1},server=on,wait=off",
                                  "-chardev", "socket,id=m0,path={sock2},server=on,wait=off"],
         qemu_error="-chardev socket,id=m0,path={sock2},server=on,wait=off: Duplicate ID 'm0'"
                    " for chardev"),
    Case("duplicate mon id", ["-chardev", "socket,id=m0,path={sock1},server=on,wait=off",
                              "-qmp-pretty", "chardev:m0", "-qmp", "chardev:m0"],
         qemu_error="-qmp chardev:m0: Duplicate ID 'm0' for mon"),
    Case("chardev without id", ["-chardev", "socket,path={sock1},server=on,wait=off"],
         qemu_error="-chardev socket,path={sock1},server=on,wait=off: chardev: no id specified"),
    Case("chardev bad backend", ["-chardev", "frob,id=f"],
         qemu_error="-chardev frob,id=f: 'frob' is not a valid char driver name"),
    Case("chardev unknown key", ["-chardev", "socket,id=m0,frob=1"],
         qemu_error="-chardev socket,id=m0,frob=1: Invalid parameter 'frob'"),
    Case("chardev host without port", ["-chardev", "socket,id=m0,host=127.0.0.1"],
         qemu_error="-chardev socket,id=m0,host=127.0.0.1: chardev: socket: no port given"),
    Case("chardev path and host", ["-chardev",
                                   "socket,id=m0,host=127.0.0.1,port={port1},path={sock1}"],
         qemu_error="-chardev socket,id=m0,host=127.0.0.1,port={port1},path={sock1}: None or"
                    " one of 'path', 'fd' or 'host' option required."),
    Case("tls on unix", ["-object", ANON, "-chardev",
                         "socket,id=m0,path={sock1},server=on,wait=off,tls-creds=tls0"],
         qemu_error="-chardev socket,id=m0,path={sock1},server=on,wait=off,tls-creds=tls0:"
                    " 'tls_creds' option is incompatible with 'unix' address type"),
    Case("authz without creds", ["-chardev", "socket,id=m0,host=127.0.0.1,port={port1},"
                                 "server=on,wait=off,tls-authz=authz0"],
         qemu_error="-chardev socket,id=m0,host=127.0.0.1,port={port1},server=on,wait=off,"
                    "tls-authz=authz0: 'tls_authz' option requires 'tls_creds' option"),
    Case("missing creds", ["-qmp", "tcp:127.0.0.1:{port1},server=on,wait=off,tls-creds=nope"],
         qemu_error="-qmp tcp:127.0.0.1:{port1},server=on,wait=off,tls-creds=nope: No TLS"
                    " credentials with id 'nope'"),
    Case("creds not creds", ["-object", "secret,id=sec0,data=x", "-qmp",
                             "tcp:127.0.0.1:{port1},server=on,wait=off,tls-creds=sec0"],
         qemu_error="-qmp tcp:127.0.0.1:{port1},server=on,wait=off,tls-creds=sec0: Object"
                    " with id 'sec0' is not TLS credentials"),
    Case("client creds", ["-object", "tls-creds-anon,id=tls0", "-qmp",
                          "tcp:127.0.0.1:{port1},server=on,wait=off,tls-creds=tls0"],
         qemu_error="-qmp tcp:127.0.0.1:{port1},server=on,wait=off,tls-creds=tls0: Expected TLS"
                    " credentials for a server endpoint"),
    Case("wait in client mode", ["-qmp", "unix:{sock1},wait=off"],
         qemu_error="-qmp unix:{sock1},wait=off: 'wait' option is incompatible with socket in"
                    " client connect mode"),
    Case("mode bogus", ["-chardev", "socket,id=m0,path={sock1},server=on,wait=off",
                        "-mon", "chardev=m0,mode=bogus"],
         qemu_error="-mon chardev=m0,mode=bogus: Parameter 'mode' does not accept value 'bogus'"),
    Case("mon without chardev", ["-mon", "mode=control"],
         qemu_error="-mon mode=control: Parameter 'chardev' is missing"),
    Case("mon id", ["-mon", "chardev=m0,id=1x"],
         qemu_error="-mon chardev=m0,id=1x: Parameter 'id' expects an identifier"),
    Case("two monitors on one chardev",
         ["-chardev", "socket,id=m0,path={sock1},server=on,wait=off", "-mon", "chardev=m0",
          "-mon", "chardev=m0,mode=control"],
         qemu_error="-mon chardev=m0,mode=control: Device 'm0' is in use"),
    Case("pretty HMP", ["-chardev", "socket,id=m0,path={sock1},server=on,wait=off",
                        "-mon", "m0,pretty"],
         qemu_error="-mon m0,pretty: 'pretty' is not compatible with HMP monitors"),
    Case("stdio twice", ["-qmp", "stdio", "-monitor", "stdio"],
         qemu_error="-monitor stdio: cannot use stdio by multiple character devices"),
    Case("delay and nodelay", ["-chardev", "socket,id=m0,path={sock1},server=on,wait=off,"
                               "delay=off,nodelay=on"],
         qemu_error="-chardev socket,id=m0,path={sock1},server=on,wait=off,delay=off,nodelay=on:"
                    " 'delay' and 'nodelay' are mutually exclusive"),
    Case("bad bool", ["-qmp", "unix:{sock1},server=maybe"],
         qemu_error="-qmp unix:{sock1},server=maybe: Parameter 'server' expects 'on' or 'off'"),
]

DIFFERENT = [
    Case("client mode", ["-qmp", "unix:{sock1}"],
         qemu_error="-qmp unix:{sock1}: Failed to connect to '{sock1}': No such file or directory",
         vncd_differs=True,
         vncd_error="-qmp unix:{sock1}: vncd's monitor sockets only listen; connecting out"
                    " (server=off, QEMU's default) is not supported"),
    Case("telnet key", ["-chardev", "socket,id=m0,path={sock1},server=on,wait=off,telnet=on",
                        "-mon", "m0"], [MonitorProbe("listen", "unix:{sock1}")],
         vncd_differs=True,
         vncd_error="-chardev socket,id=m0,path={sock1},server=on,wait=off,telnet=on:"
                    " Parameter 'telnet' is not supported by vncd"),
    Case("file form", ["-qmp", "file:{file}", "-monitor", "unix:{sock1},server=on,wait=off"],
         [hmp("unix:{sock1}")], vncd_differs=True,
         vncd_error="-qmp file:{file}: 'file:' is not supported by vncd"),
    Case("-monitor none prefix", ["-monitor", "nonexyz", "-qmp",
                                  "unix:{sock1},server=on,wait=off"], [qmp("unix:{sock1}")],
         vncd_differs=True, vncd_error="-monitor nonexyz: 'nonexyz' is not a valid char driver"),
    Case("socket without address", ["-chardev", "socket,id=m0,server=on,wait=off",
                                     "-qmp", "unix:{sock1},server=on,wait=off"],
         [qmp("unix:{sock1}")], vncd_differs=True,
         vncd_error="-chardev socket,id=m0,server=on,wait=off: the socket has no address"),
    Case("anon creds with authz", ["-object", ANON, "-object", AUTHZ, "-chardev",
                                   "socket,id=m0,host=127.0.0.1,port={port1},server=on,"
                                   "wait=off,tls-creds=tls0,tls-authz=authz0", "-mon", "m0"],
         [MonitorProbe("listen", "tcp:{port1}")], vncd_differs=True,
         vncd_error="-chardev socket,id=m0,host=127.0.0.1,port={port1},server=on,wait=off,"
                    "tls-creds=tls0,tls-authz=authz0: 'tls-authz' cannot take effect: TLS"
                    " credentials 'tls0' are anonymous, so clients present no certificate to"
                    " authorise"),
    Case("port above 65535", ["-qmp", "tcp:127.0.0.1:{bigport},server=on,wait=off"],
         [qmp("tcp:{port1}")], vncd_differs=True,     # QEMU's getaddrinfo wraps it
         vncd_error="-qmp tcp:127.0.0.1:{bigport},server=on,wait=off: port '{bigport}' is not"
                    " a number from 0 to 65535"),
]


@dataclass
class Outcome:
    started: bool
    stderr: str
    #: What each monitor answered, or why it did not.
    answers: list[str] = field(default_factory=list)
    exit_status: int | None = None


class RecordingService:
    """Stands where the service would start: records that start-up got this far."""

    class StartupError(Exception):
        pass

    def __init__(self):
        self.started = False
        self.notices: list[str] = []
        self.displays: list = []

    def start(self, reactor, registry, invocation):
        self.started = True
        return self

    def stop(self):
        return None


def run_vncd(args: list[str]) -> Outcome:
    """vncd's verdict on ``args``, in process, up to where it would serve."""
    err = io.StringIO()
    service = RecordingService()
    status = main(args, stdout=io.StringIO(), stderr=err, service=service,
                  reactor=MemoryReactor())
    # With wait=on the displays start once a monitor client connects (the
    # in-memory reactor never runs): vncd accepted the line and is waiting,
    # as QEMU is.
    waiting = "waiting for connection on: disconnected:" in err.getvalue()
    return Outcome(service.started or (waiting and status == 0), err.getvalue(),
                   exit_status=status)


def fill(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def first_error(stderr: str) -> str:
    """QEMU's first error line without the program name (the informative one)."""
    for line in stderr.splitlines():
        if (line.startswith(QEMU_PREFIX) and ": warning: " not in line
                and ": info: " not in line and "terminating on signal" not in line):
            return line[len(QEMU_PREFIX):]
    return ""


def vncd_error(stderr: str) -> str:
    lines = [line[len("vncd: "):] for line in stderr.splitlines()
             if line.startswith("vncd: ") and ": warning: " not in line]
    return lines[-1] if lines else ""


def same_message(vncd: str, qemu: str) -> bool:
    """vncd says what QEMU says; it may add a parenthesised hint or explanation."""
    return vncd == qemu or vncd.startswith(qemu + " (")


class MonitorQemuTests(SynchronousTestCase):
    """vncd's monitor options against QEMU 7.2."""

    def setUp(self):
        self.qemu = require_tool(QEMU)
        # UNIX socket paths must stay under 108 bytes: a short directory of our own.
        self.base = tempfile.mkdtemp(prefix="vncd-mon-")
        self.addCleanup(shutil.rmtree, self.base, True)
        root = certgen.ca("vncd test CA", not_after=VALIDITY)
        self.x509 = server_dir(os.path.join(self.base, "x509"), root)
        cert, key = client_identity(os.path.join(self.base, "bob"), root, "bob")
        self.tls = (cert, key, os.path.join(self.x509, "ca-cert.pem"))
        self.runs = 0

    def values(self) -> dict[str, str]:
        """Fresh socket paths and ports for one run."""
        self.runs += 1
        port1 = free_port()
        return {"sock1": os.path.join(self.base, f"{self.runs}a.sock"),
                "sock2": os.path.join(self.base, f"{self.runs}b.sock"),
                "file": os.path.join(self.base, f"{self.runs}.out"),
                "port1": str(port1), "port2": str(port1 + 3), "bigport": str(port1 + 65536),
                "x509": self.x509}

    def probes(self, case: Case, values: dict[str, str]) -> list[MonitorProbe]:
        return [dataclasses.replace(p, where=fill(p.where, values),
                                    tls=self.tls if p.tls else None) for p in case.probes]

    def run_qemu(self, runs: list[tuple[list[str], list[MonitorProbe]]]) -> list[Outcome]:
        """Run QEMU on each (args, probes); probe the monitors of those that should start."""
        outcomes = []
        for first in range(0, len(runs), BATCH):
            batch = runs[first:first + BATCH]
            procs = [subprocess.Popen(
                [self.qemu, "-machine", "none", "-nodefaults", "-display", "none",
                 "-serial", "none", *args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for args, _ in batch]
            try:
                for proc, (_, probes) in zip(procs, batch):
                    outcomes.append(self.verdict(proc, probes))
            finally:
                for proc in procs:
                    stop(proc)
                    for stream in (proc.stdin, proc.stdout):
                        stream.close()
            for proc, outcome in zip(procs, outcomes[first:]):
                outcome.stderr = proc.stderr.read().decode("utf-8", "replace")
                proc.stderr.close()
        return outcomes

    def verdict(self, proc: subprocess.Popen, probes: list[MonitorProbe]) -> Outcome:
        """QEMU serves every probe (the last quits it, status 0), or it exits by itself."""
        if not probes:
            try:
                proc.wait(timeout=VERDICT_TIMEOUT)
            except subprocess.TimeoutExpired:
                return Outcome(True, "")
            return Outcome(False, "", exit_status=proc.returncode)
        answers = []
        quitter = max((i for i, p in enumerate(probes) if p.kind in MonitorProbe.CAN_QUIT),
                      default=None)
        for index, probe in enumerate(probes):
            try:
                answers.append(probe_monitor(probe, proc, quit=index == quitter))
            except MonitorProbeError as err:
                return Outcome(False, "", answers + [f"{probe.where}: {err}"])
        if quitter is None:
            return Outcome(True, "", answers)
        try:
            status = proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            status = None
        return Outcome(True, "", answers, status)

    def compare(self, cases: list[Case]) -> None:
        problems = []
        filled = []
        for case in cases:
            values = self.values()
            filled.append((case, values, [fill(a, values) for a in case.args]))
        qemu = self.run_qemu([(args, self.probes(case, values)) for case, values, args in filled])
        for (case, values, args), q in zip(filled, qemu):
            where = f"{case.name}: {' '.join(args)}"
            qemu_error = None if case.qemu_error is None else fill(case.qemu_error, values)
            if q.started != (qemu_error is None):
                problems.append(f"{where}: QEMU started={q.started} {q.answers} {q.stderr!r}")
                continue
            if q.started and any(p.kind in MonitorProbe.CAN_QUIT for p in case.probes) \
                    and q.exit_status != 0:
                problems.append(f"{where}: QEMU did not quit cleanly ({q.exit_status})")
            if qemu_error is not None and first_error(q.stderr) != qemu_error:
                problems.append(f"{where}: QEMU said {first_error(q.stderr)!r}")
            v = run_vncd(args)
            message = vncd_error(v.stderr)
            if case.vncd_differs:
                expected = None if case.vncd_error is None else fill(case.vncd_error, values)
                if v.started != (expected is None):
                    problems.append(f"{where}: vncd started={v.started}: {v.stderr!r}")
                elif expected is not None and not same_message(message, expected):
                    problems.append(f"{where}: vncd said {message!r}")
                continue
            if v.started != q.started:
                problems.append(f"{where}: vncd started={v.started}, QEMU {q.started}:"
                                f" {v.stderr!r}")
            elif not q.started and not same_message(message, qemu_error):
                problems.append(f"{where}: vncd {message!r} != QEMU {qemu_error!r}")
            for block in warning_blocks(q.stderr, QEMU_PREFIX):
                if block not in warning_blocks(v.stderr, "vncd: "):
                    problems.append(f"{where}: vncd lacks QEMU's warning {block!r}")
        self.assertEqual(problems, [])

    def test_accepted(self):
        """What QEMU 7.2 serves monitors for, vncd accepts; QEMU's monitors answer and quit."""
        self.compare(ACCEPTED)

    def test_refused(self):
        """What QEMU 7.2 refuses, vncd refuses with QEMU's first error line."""
        self.compare(REFUSED)

    def test_deliberate_differences(self):
        """Where vncd refuses on purpose, QEMU 7.2 really behaves otherwise."""
        self.compare(DIFFERENT)

    def test_translation(self):
        """vncd's translation parses back the same, and QEMU 7.2 serves the same monitors on it."""
        registry = creds.new_registry
        runs, problems = [], []
        for case in ACCEPTED:
            values = self.values()
            args = [fill(a, values) for a in case.args]
            words = translated(args)
            again = parse_command_line(words, registry=registry())
            first = parse_command_line(args, registry=registry())
            for name in ("chardevs", "monitors"):
                strip = [dataclasses.replace(x, source="") for x in getattr(first, name)]
                back = [dataclasses.replace(x, source="") for x in getattr(again, name)]
                if strip != back:
                    problems.append(f"{case.name}: {name} differ after {words}")
            runs.append((words, self.probes(case, values)))
        for (words, probes), outcome in zip(runs, self.run_qemu(runs)):
            quits = any(p.kind in MonitorProbe.CAN_QUIT for p in probes)
            if not outcome.started or quits and outcome.exit_status != 0:
                problems.append(f"QEMU on {words}: {outcome.answers} {outcome.stderr!r}")
        self.assertEqual(problems, [])
