"""vncd against QEMU 7.2: the same -object/-vnc options, the same verdict and error text.

Each case is run by a real QEMU 7.2 (``qemu-system-x86_64 -machine none
... -object ... -vnc ...``) and by vncd's front end.  QEMU "starts" when
its VNC port accepts connections; it "refuses" when it exits.  The two
must agree on the verdict; on a refusal the message must be QEMU's
(vncd may add ``(hint: ...)``), and every warning QEMU prints (the
short-form boolean ones) must be printed by vncd too.

vncd's side runs the real ``python -m vncd`` (stopped with SIGTERM,
which must give exit status 0) once :mod:`vncd.service` exists; until
then its verdict is taken in-process up to the point where the service
would start (every option parsed, every object created, every display
checked), with a recording service in place of the server.

QEMU processes are started in small batches, each case on its own free
display, and always killed.  Where vncd deliberately differs from QEMU
7.2 (SASL, the legacy keys), the difference itself is asserted.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from compat.vnc import SASL_MESSAGE
from tests import certgen
from tests.compat.helpers import VALIDITY, client_dir, client_identity, server_dir
from tests.tools import QEMU, ROOT, free_display, free_port, require_tool, wait_for_port
from tests.vncd.qemuprobe import ClientKind, ProbeError, run_probe
from vncd.cli import main
from vncd.rfb.limits import AUTH_FAILURES_BEFORE_BLOCK
from vncd.rfb.security import EMPTY_PASSWORD

#: QEMU processes alive at once: each takes ~50 MB and a share of 2 busy cores.
BATCH = 8

#: Seconds a process gets to either listen or exit.  A refusal takes well
#: under a second; a start up to a few seconds on a loaded machine.
VERDICT_TIMEOUT = 20.0

#: Seconds a stopped process gets to exit after SIGTERM / SIGKILL.
EXIT_TIMEOUT = 20.0

QEMU_PREFIX = "qemu-system-x86_64: "

AUTHZ_LIST = json.dumps({"qom-type": "authz-list", "id": "authz1", "policy": "deny",
                         "rules": [{"match": "CN=bob", "policy": "allow"}]},
                        separators=(",", ":"))


#: vncd.service refuses a tls-authz that QEMU accepts but never applies.
AUTHZ_ANON = ("'tls-authz' cannot take effect: TLS credentials 'tls0' are anonymous, so"
              " clients present no certificate to authorise")
AUTHZ_NO_VERIFY = ("'tls-authz' cannot take effect: TLS credentials 'tls0' have"
                   " verify-peer=off, so client certificates are not checked")


@dataclass
class Case:
    """One command line (``{addr}``, ``{x509}`` ... filled in per run) and what to expect."""

    name: str
    args: list[str]
    #: QEMU's message on refusal (None: QEMU starts).
    qemu_error: str | None = None
    #: vncd deliberately differs: its expected message (None: vncd starts).
    vncd_differs: bool = False
    vncd_error: str | None = None
    #: The difference comes from vncd.service (not checked without it).
    service_only: bool = False


@dataclass
class Outcome:
    started: bool
    stderr: str
    exit_status: int | None = None
    #: What each probe client saw while the server ran (see :func:`probe_security`).
    security: list[tuple] = field(default_factory=list)


def vnc(arg, *objects):
    args = []
    for obj in objects:
        args += ["-object", obj]
    return args + ["-vnc", arg]


ANON = "tls-creds-anon,id=tls0,endpoint=server"
X509_ON = "tls-creds-x509,id=tls0,endpoint=server,dir={x509},verify-peer=on"
X509_OFF = "tls-creds-x509,id=tls0,endpoint=server,dir={x509},verify-peer=off"
#: The VNC password of the password-secret cases.
PASSWORD = "letmein"
SECRET = f"secret,id=sec0,data={PASSWORD}"
#: The same secret from a file (a translation never prints inline secret data).
SECRET_FILE = "secret,id=sec0,file={pwfile}"
AUTHZ = "authz-simple,id=authz0,identity=CN=bob"

ACCEPTED = [
    Case("no credentials", vnc("{addr}")),
    Case("anon", vnc("{addr},tls-creds=tls0", ANON)),
    Case("x509 verify on", vnc("{addr},tls-creds=tls0", X509_ON)),
    Case("x509 verify off", vnc("{addr},tls-creds=tls0", X509_OFF)),
    Case("password-secret", vnc("{addr},password-secret=sec0", SECRET)),
    Case("anon + password-secret", vnc("{addr},tls-creds=tls0,password-secret=sec0",
                                       SECRET, ANON)),
    Case("x509 on + password-secret", vnc("{addr},tls-creds=tls0,password-secret=sec0",
                                          SECRET, X509_ON)),
    Case("x509 off + password-secret", vnc("{addr},tls-creds=tls0,password-secret=sec0",
                                           SECRET, X509_OFF)),
    Case("x509 on + authz-simple", vnc("{addr},tls-creds=tls0,tls-authz=authz0",
                                       AUTHZ, X509_ON)),
    Case("x509 on + authz-list (JSON)", vnc("{addr},tls-creds=tls0,tls-authz=authz1",
                                            AUTHZ_LIST, X509_ON)),
    Case("x509 on + authz + password", vnc("{addr},tls-creds=tls0,tls-authz=authz0,password=on",
                                           AUTHZ, X509_ON)),
    Case("x509 on + missing authz", vnc("{addr},tls-creds=tls0,tls-authz=nope", X509_ON)),
    Case("x509 JSON object", vnc("{addr},tls-creds=tls0",
                                 '{"qom-type":"tls-creds-x509","id":"tls0","endpoint":"server",'
                                 '"dir":"{x509}","verify-peer":true}')),
    Case("password short form", vnc("{addr},password")),
    Case("every tunable", vnc("{addr},share=force-shared,connections=5,lossy=on,"
                              "non-adaptive=on,key-delay-ms=20,ipv4=on,to={to}")),
    Case("websocket", vnc("{addr},websocket={wsport},tls-creds=tls0", X509_ON)),
    Case("share=ignore, vnc= key", vnc("vnc={addr},share=ignore")),
]

REFUSED = [
    Case("unknown key", vnc("{addr},frobnicate=on"), "Invalid parameter 'frobnicate'"),
    Case("bad endpoint", vnc("{addr}", "tls-creds-anon,id=tls0,endpoint=sideways"),
         "Parameter 'endpoint' does not accept value 'sideways'"),
    Case("duplicate object id", vnc("{addr}", ANON, ANON), "Duplicate ID 'tls0' for object"),
    Case("missing creds", vnc("{addr},tls-creds=nope"), "No TLS credentials with id 'nope'"),
    Case("creds not creds", vnc("{addr},tls-creds=sec0", SECRET),
         "Object with id 'sec0' is not TLS credentials"),
    Case("client anon creds", vnc("{addr},tls-creds=tls0", "tls-creds-anon,id=tls0"),
         "Expected TLS credentials for a server endpoint"),
    Case("client x509 creds", vnc("{addr},tls-creds=tls0", "tls-creds-x509,id=tls0,dir={client}"),
         "Expected TLS credentials for a server endpoint"),
    Case("password twice", vnc("{addr},password=on,password-secret=sec0", SECRET),
         "'password' flag is redundant with 'password-secret'"),
    Case("missing secret", vnc("{addr},password-secret=nope"), "No secret with id 'nope'"),
    Case("secret not secret", vnc("{addr},password-secret=tls0", ANON),
         "Object with id 'tls0' is not a secret"),
    Case("authz without TLS", vnc("{addr},tls-authz=authz0", AUTHZ),
         "'tls-authz' provided but TLS is not enabled"),
    Case("sasl-authz without SASL", vnc("{addr},sasl-authz=authz0", AUTHZ),
         "'sasl-authz' provided but SASL auth is not enabled"),
    Case("bad share", vnc("{addr},share=foo"), "unknown vnc share= option"),
    Case("no port", vnc("127.0.0.1,share=foo"), "no vnc port specified"),
    Case("empty port", vnc("127.0.0.1:"), "vnc port cannot be empty"),
    Case("bad port", vnc("127.0.0.1:abc"), "can't convert to a number: abc"),
    Case("port out of range", vnc("127.0.0.1:99999"), "port 99999 out of range"),
    Case("unix with to", vnc("unix:{unix},to=5"), "Port range not support with UNIX socket"),
    Case("websocket needs port", vnc("{addr},vnc=127.0.0.1:{display2},websocket=on"),
         "explicit websocket port is required"),
    Case("bad bool", vnc("{addr},password=maybe"), "Parameter 'password' expects 'on' or 'off'"),
    Case("bad number", vnc("{addr},connections=abc"), "Parameter 'connections' expects a number"),
    Case("bad vnc id", vnc("{addr},id=1x"), "Parameter 'id' expects an identifier"),
    Case("duplicate vnc id", vnc("{addr},id=a") + ["-vnc", "127.0.0.1:{display2},id=a"],
         "Duplicate ID 'a' for vnc"),
    Case("short-form n-adaptive", vnc("{addr},non-adaptive"), "Invalid parameter 'n-adaptive'"),
    Case("short-form endpoint", vnc("{addr}", "tls-creds-anon,id=tls0,endpoint"),
         "Parameter 'endpoint' does not accept value 'on'"),
    Case("JSON unknown key", vnc("{addr}", '{"qom-type":"tls-creds-anon","id":"tls0","frob":1}'),
         "Parameter 'frob' is unexpected"),
    Case("JSON id type", vnc("{addr}", '{"qom-type":"tls-creds-anon","id":5}'),
         "Invalid parameter type for 'id', expected: string"),
    Case("unknown object type", vnc("{addr}", "frob,id=x"),
         "Parameter 'qom-type' does not accept value 'frob'"),
    Case("x509 dir missing", vnc("{addr},tls-creds=tls0",
                                 "tls-creds-x509,id=tls0,endpoint=server,dir=/nonexistent"),
         "Unable to access credentials /nonexistent/ca-cert.pem: No such file or directory"),
    Case("x509 server cert missing", vnc("{addr},tls-creds=tls0",
                                         "tls-creds-x509,id=tls0,endpoint=server,dir={caonly}"),
         "Unable to access credentials {caonly}/server-cert.pem: No such file or directory"),
]

#: vncd.service refuses an empty VNC password; QEMU 7.2 starts and admits an empty login.
EMPTY_PASSWORD_ERROR = f"secret 'sec0' (password-secret): {EMPTY_PASSWORD}"

DIFFERENT = [
    Case("sasl", vnc("{addr},sasl=on"), None, vncd_differs=True, vncd_error=SASL_MESSAGE),
    Case("empty password-secret", vnc("{addr},password-secret=sec0", "secret,id=sec0,data="),
         None, vncd_differs=True, vncd_error=EMPTY_PASSWORD_ERROR, service_only=True),
    Case("anon + authz", vnc("{addr},tls-creds=tls0,tls-authz=authz0", AUTHZ, ANON), None,
         vncd_differs=True, vncd_error=AUTHZ_ANON, service_only=True),
    Case("x509 off + authz", vnc("{addr},tls-creds=tls0,tls-authz=authz0", AUTHZ, X509_OFF),
         None, vncd_differs=True, vncd_error=AUTHZ_NO_VERIFY, service_only=True),
    Case("legacy tls", vnc("{addr},tls=on"), "Invalid parameter 'tls'", vncd_differs=True),
    Case("legacy x509verify", vnc("{addr},tls=on,x509verify={x509}"),
         "Invalid parameter 'tls'", vncd_differs=True),
]


def free_displays(count: int) -> list[int]:
    """``count`` distinct display numbers whose ports are free on 127.0.0.1 right now."""
    found: list[int] = []
    start = free_display()
    candidate = start
    while len(found) < count:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", 5900 + candidate))
                found.append(candidate)
            except OSError:
                pass
        candidate = 100 + (candidate - 99) % 4900
        if candidate == start:
            raise RuntimeError("not enough free VNC displays")
    return found


def last_message(stderr: str, prefix: str) -> str:
    """The message part of the last error line (program name and option stripped)."""
    lines = [line for line in stderr.splitlines()
             if line.startswith(prefix) and ": warning: " not in line
             and "terminating on signal" not in line]
    return lines[-1][len(prefix):] if lines else ""


def warning_blocks(stderr: str, prefix: str) -> list[str]:
    """Each warning with its continuation line, program name stripped."""
    lines = stderr.splitlines()
    blocks = []
    for index, line in enumerate(lines):
        if line.startswith(prefix) and ": warning: " in line:
            block = line[len(prefix):]
            if index + 1 < len(lines) and not lines[index + 1].startswith(prefix):
                block += "\n" + lines[index + 1]
            blocks.append(block)
    return blocks


def fill(text: str, values: dict[str, str]) -> str:
    """``text`` with every ``{name}`` placeholder replaced (JSON braces left alone)."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def same_message(vncd: str, qemu: str) -> bool:
    """Whether vncd's error line says what QEMU's does.

    Both are "<option as typed>: <message>", except that QEMU reports
    object loading errors without the option; vncd may add a
    parenthesised explanation (its hint, or QEMU's second line).
    """
    if not qemu.startswith(("-object ", "-vnc ")):
        vncd = vncd.split(": ", 1)[-1]
    return vncd == qemu or vncd.startswith(qemu + " (")


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=EXIT_TIMEOUT)
    return proc.returncode


def run_batch(commands: list[tuple[list[str], int]],
              inspect: Callable[[int], list[tuple]] | None = None) -> list[Outcome]:
    """Start every command, take each verdict (listening or exited), stop them all.

    ``inspect(display)`` runs against each started server before it is stopped.
    """
    procs = []
    security: list[list[tuple]] = []
    try:
        for argv, _ in commands:
            procs.append(subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        started = [wait_for_port("127.0.0.1", 5900 + display, timeout=VERDICT_TIMEOUT, proc=proc)
                   for proc, (_, display) in zip(procs, commands)]
        for ok, (_, display) in zip(started, commands):
            security.append(inspect(display) if ok and inspect is not None else [])
    finally:
        statuses = [stop(proc) for proc in procs]
    outcomes = []
    for proc, ok, status, seen in zip(procs, started, statuses, security):
        stderr = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        outcomes.append(Outcome(ok, stderr, status, seen))
    return outcomes


def probe_security(display: int, kinds: list[ClientKind]) -> list[tuple]:
    """Security types, VeNCrypt version/subtypes and outcome, for each client kind."""
    seen = []
    for kind in kinds:
        try:
            seen.append((kind.name, run_probe("127.0.0.1", 5900 + display, kind).key()))
        except ProbeError as err:
            seen.append((kind.name, ("probe error", err.stage)))
    return seen


class RecordingService:
    """Stands where vncd.service will be: records that start-up got this far."""

    class StartupError(Exception):
        pass

    def __init__(self):
        self.started = False
        #: The running displays (the monitor reads them) and start-up notices; none here.
        self.displays = []
        self.notices = []

    def start(self, reactor, registry, invocation):
        self.started = True
        return self

    def stop(self):
        return None


def run_vncd_in_process(args: list[str]) -> Outcome:
    err = io.StringIO()
    service = RecordingService()
    status = main(args, stdout=io.StringIO(), stderr=err, service=service,
                  reactor=MemoryReactor())
    return Outcome(service.started, err.getvalue(), status)


SERVICE_EXISTS = importlib.util.find_spec("vncd.service") is not None


#: Legacy -vnc forms: vncd runs them as typed, QEMU 7.2 runs vncd's translation.
LEGACY = [
    Case("tls", vnc("{addr},tls")),
    Case("tls,x509", vnc("{addr},tls,x509={x509}")),
    Case("tls,x509verify", vnc("{addr},tls,x509verify={x509}")),
    Case("tls,x509verify,acl", vnc("{addr},tls,x509verify={x509},acl")),
    Case("tls,x509,x509verify", vnc("{addr},tls,x509={x509},x509verify=/nonexistent")),
    Case("x509verify without tls", vnc("{addr},x509verify={x509}")),
    Case("tls,x509verify,password-secret",
         vnc("{addr},tls,x509verify={x509},password-secret=sec0", SECRET_FILE)),
    Case("tls-creds with acl", vnc("{addr},tls-creds=tls0,acl", X509_ON)),
    Case("tls,x509verify with a bad dir", vnc("{addr},tls,x509verify=/nonexistent"),
         "Unable to access credentials /nonexistent/ca-cert.pem: No such file or directory"),
]


def translated(args: list[str]) -> list[str]:
    """vncd's -print-translation of ``args``, as an argument list (without "vncd")."""
    out = io.StringIO()
    status = main([*args, "-print-translation"], stdout=out, stderr=io.StringIO())
    assert status == 0, args
    words = shlex.split(out.getvalue())
    assert words[0] == "vncd"
    return words[1:]


class QemuCompareTests(SynchronousTestCase):
    """vncd and QEMU 7.2 reach the same verdict with the same words."""

    def setUp(self):
        self.qemu = require_tool(QEMU)
        base = os.path.abspath(self.mktemp())
        root = certgen.ca("vncd test CA", not_after=VALIDITY)
        cert, key = client_identity(os.path.join(base, "bob"), root, "bob")
        eve_cert, eve_key = client_identity(os.path.join(base, "eve"), root, "eve")
        self.kinds = [ClientKind("no certificate, no password"),
                      ClientKind("bob", cert=cert, key=key),
                      ClientKind("bob, right password", password=PASSWORD, cert=cert, key=key),
                      ClientKind("eve", cert=eve_cert, key=eve_key)]
        # vncd (not QEMU) refuses an address after a few failed authentications;
        # one server sees every probe from 127.0.0.1, so stay under that count.
        self.assertLess(len(self.kinds), AUTH_FAILURES_BEFORE_BLOCK)
        self.values = {
            "x509": server_dir(os.path.join(base, "x509"), root),
            "client": client_dir(os.path.join(base, "client")),
            "caonly": os.path.join(base, "caonly"),
            "unix": os.path.join(base, "vnc.sock"),
            "pwfile": os.path.join(base, "password"),
        }
        with open(self.values["pwfile"], "w") as f:
            f.write(PASSWORD)
        os.makedirs(self.values["caonly"])
        with open(os.path.join(self.values["x509"], "ca-cert.pem"), "rb") as src, \
                open(os.path.join(self.values["caonly"], "ca-cert.pem"), "wb") as dst:
            dst.write(src.read())

    def fill(self, case: Case, display: int, display2: int) -> list[str]:
        values = dict(self.values, addr=f"127.0.0.1:{display}", display2=str(display2),
                      to=str(display), wsport=str(free_port()))
        return [fill(arg, values) for arg in case.args]

    def outcomes(self, cases: list[Case], qemu_args=lambda args: args):
        """(filled args, QEMU outcome, vncd outcome) for every case.

        ``qemu_args`` maps vncd's arguments to QEMU's (the identity, or
        the translation of a legacy command line).
        """
        displays = free_displays(2 * len(cases))
        filled = [(self.fill(c, displays[2 * i], displays[2 * i + 1]), displays[2 * i])
                  for i, c in enumerate(cases)]
        qemu_cmds = [([self.qemu, "-machine", "none", "-nodefaults", "-display", "none",
                       "-monitor", "none", "-serial", "none", *qemu_args(args)], d)
                     for args, d in filled]
        inspect = (lambda display: probe_security(display, self.kinds)) if SERVICE_EXISTS \
            else None
        qemu = []
        for i in range(0, len(qemu_cmds), BATCH):
            qemu += run_batch(qemu_cmds[i:i + BATCH], inspect)
        if SERVICE_EXISTS:
            vncd_cmds = [([sys.executable, "-m", "vncd", *args], d) for args, d in filled]
            vncd = []
            for i in range(0, len(vncd_cmds), BATCH):
                vncd += run_batch(vncd_cmds[i:i + BATCH], inspect)
        else:
            vncd = [run_vncd_in_process(args) for args, _ in filled]
        return [(args, q, v) for (args, _), q, v in zip(filled, qemu, vncd)]

    def compare(self, cases: list[Case], qemu_args=lambda args: args, warnings=True):
        cases = [c for c in cases if SERVICE_EXISTS or not c.service_only]
        problems = []
        for case, (args, q, v) in zip(cases, self.outcomes(cases, qemu_args)):
            where = f"{case.name}: {' '.join(args)}"
            expected_qemu = None if case.qemu_error is None else fill(case.qemu_error,
                                                                      self.values)
            if q.started != (expected_qemu is None):
                problems.append(f"{where}: QEMU started={q.started}: {q.stderr!r}")
                continue
            qemu_message = last_message(q.stderr, QEMU_PREFIX)
            if expected_qemu is not None and not qemu_message.endswith(expected_qemu):
                problems.append(f"{where}: QEMU said {qemu_message!r}")
            if SERVICE_EXISTS and v.started and v.exit_status != 0:
                problems.append(f"{where}: vncd exit status {v.exit_status} after SIGTERM")
            vncd_message = last_message(v.stderr, "vncd: ")
            if case.vncd_differs:
                if v.started != (case.vncd_error is None):
                    problems.append(f"{where}: vncd started={v.started}: {v.stderr!r}")
                elif case.vncd_error and not vncd_message.split(" (hint: ")[0].endswith(
                        case.vncd_error):
                    problems.append(f"{where}: vncd said {vncd_message!r}")
                continue
            if v.started != q.started:
                problems.append(f"{where}: vncd started={v.started}, QEMU {q.started}:"
                                f" {v.stderr!r}")
                continue
            if not q.started and not same_message(vncd_message, qemu_message):
                problems.append(f"{where}: vncd {vncd_message!r} != QEMU {qemu_message!r}")
            if q.security != v.security:
                problems.append(f"{where}: security differs: vncd {v.security} != QEMU"
                                f" {q.security}")
            for block in warning_blocks(q.stderr, QEMU_PREFIX) if warnings else ():
                if block not in warning_blocks(v.stderr, "vncd: "):
                    problems.append(f"{where}: vncd lacks QEMU's warning {block!r}")
        self.assertEqual(problems, [])

    def test_accepted(self):
        """What QEMU 7.2 starts with, vncd starts with, with the same security for each client."""
        self.compare(ACCEPTED)

    def test_refused(self):
        """Every command line QEMU 7.2 refuses, vncd refuses with QEMU's message."""
        self.compare(REFUSED)

    def test_deliberate_differences(self):
        """Where vncd differs on purpose (SASL, legacy keys), QEMU 7.2 really behaves otherwise."""
        self.compare(DIFFERENT)

    def test_legacy_as_translated(self):
        """A legacy line run by vncd behaves like QEMU 7.2 running vncd's translation of it."""
        self.compare(LEGACY, qemu_args=translated, warnings=False)


#: -vnc arguments without a listen address: QEMU 7.2 runs, serving nothing.
NO_ADDRESS_ARGS = ("", "password=on")

#: vncd's message for them (it refuses to start).
NO_ADDRESS_ERROR = "no listen address: give [HOST]:N, [IPV6]:N, unix:PATH, or none"


def qmp_answers(path: str, commands: list[str], proc: subprocess.Popen) -> list:
    """Run ``commands`` on QEMU's QMP socket at ``path``; their ``return`` values.

    QEMU answers on QMP only once every command-line option has been
    processed, so the answers describe the configuration it runs with.
    """
    if not wait_for_unix(path, VERDICT_TIMEOUT, proc):
        raise AssertionError(f"QEMU gave no QMP socket: {proc.stderr.read()!r}")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(VERDICT_TIMEOUT)
        sock.connect(path)
        stream = sock.makefile("rw", encoding="utf-8")
        json.loads(stream.readline())
        answers = []
        for command in ["qmp_capabilities", *commands]:
            stream.write(json.dumps({"execute": command}) + "\n")
            stream.flush()
            answers.append(json.loads(stream.readline())["return"])
        return answers[1:]


def wait_for_unix(path: str, timeout: float, proc: subprocess.Popen) -> bool:
    """Whether a UNIX socket at ``path`` accepts within ``timeout`` (while ``proc`` runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
                return True
            except OSError:
                time.sleep(0.05)
    return False


class NoListenAddressTests(SynchronousTestCase):
    """A -vnc option without an address: QEMU 7.2 runs serving nothing; vncd refuses."""

    def test_qemu_runs_without_listening(self):
        """QEMU 7.2 starts, prints nothing, and reports VNC disabled with no server socket."""
        qemu = require_tool(QEMU)
        for arg in NO_ADDRESS_ARGS:
            path = os.path.join(tempfile.mkdtemp(prefix="vncd-qmp-"), "qmp.sock")
            self.addCleanup(shutil.rmtree, os.path.dirname(path), True)
            proc = subprocess.Popen(
                [qemu, "-machine", "none", "-nodefaults", "-display", "none", "-monitor",
                 "none", "-serial", "none", "-vnc", arg, "-qmp",
                 f"unix:{path},server=on,wait=off"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                vnc_info, servers = qmp_answers(path, ["query-vnc", "query-vnc-servers"], proc)
            finally:
                stop(proc)
                stderr = proc.stderr.read().decode("utf-8", "replace")
                proc.stderr.close()
            self.assertEqual(vnc_info, {"enabled": False}, arg)
            self.assertEqual([s["server"] for s in servers], [[]], arg)
            self.assertEqual(last_message(stderr, QEMU_PREFIX), "", arg)

    def test_vncd_refuses(self):
        """vncd exits with status 1 and says how to give an address (or 'none')."""
        for arg in NO_ADDRESS_ARGS:
            outcome = run_vncd_in_process(["-vnc", arg])
            self.assertEqual(outcome.exit_status, 1, arg)
            self.assertFalse(outcome.started, arg)
            self.assertTrue(outcome.stderr.startswith(f"vncd: -vnc {arg}: {NO_ADDRESS_ERROR}"),
                            outcome.stderr)


#: Seconds QEMU gets to refuse a command line; still running then means accepted.
QEMU_REFUSAL_TIME = 2.0


class LegacyCatalogueTests(SynchronousTestCase):
    """The manual's round-trip claim, for every legacy form of tests/compat/test_legacy.py:
    vncd's -print-translation is a line vncd accepts and QEMU 7.2 accepts with the program
    name changed; where vncd refuses the original, -print-translation refuses, saying why."""

    def setUp(self):
        require_tool(QEMU)
        base = os.path.abspath(self.mktemp())
        root = certgen.ca("vncd test CA", not_after=VALIDITY)
        self.x509 = server_dir(os.path.join(base, "x509"), root)
        self.comma = server_dir(os.path.join(base, "with,comma"), root)

    def concrete(self, arg: str, display: int) -> list[str]:
        """A catalogue -vnc argument with real directories, a free port and its objects."""
        for placeholder, path in (("/a,,b", self.comma.replace(",", ",,")),
                                  ("/etc/pki/vnc", self.x509), ("/a", self.x509),
                                  ("/b", self.x509), ("/d", self.x509)):
            arg = arg.replace("=" + placeholder, "=" + path)
        first, rest = (arg.split(",", 1) + [""])[:2]
        if first != "none":
            arg = f"127.0.0.1:{display}" + ("," + rest if rest else "")
        objects = []
        if "tls-creds=mine" in arg:
            objects += ["-object", f"tls-creds-x509,id=mine,endpoint=server,dir={self.x509}"]
        if "tls-authz=mine" in arg:
            objects += ["-object", "authz-simple,id=mine,identity=CN=bob"]
        return [*objects, "-vnc", arg]

    def test_every_form(self):
        """Every catalogue form: a translation is printed iff vncd runs the original, and
        vncd and QEMU 7.2 both run every printed translation."""
        from tests.compat.test_legacy import FORMS, SASL_FORMS

        catalogue = [f[0] for f in FORMS] + [f[0] for f in SASL_FORMS]
        displays = free_displays(len(catalogue))
        problems, qemu_runs = [], []
        for form, display in zip(catalogue, displays):
            args = self.concrete(form, display)
            original = run_vncd_in_process(args)
            out, err = io.StringIO(), io.StringIO()
            status = main([*args, "-print-translation"], stdout=out, stderr=err)
            if status != 0:
                if original.started:
                    problems.append(f"{form}: vncd runs it but prints no translation:"
                                    f" {err.getvalue()!r}")
                elif "no equivalent vncd command line" not in err.getvalue():
                    problems.append(f"{form}: no translation, and no reason: {err.getvalue()!r}")
                continue
            if not original.started:
                problems.append(f"{form}: vncd refuses it ({original.stderr!r}) but prints"
                                f" {out.getvalue()!r}")
                continue
            words = shlex.split(out.getvalue())
            if words[0] != "vncd":
                problems.append(f"{form}: translation does not start with vncd: {words}")
                continue
            again = run_vncd_in_process(words[1:])
            if not again.started:
                problems.append(f"{form}: vncd refuses its own translation: {again.stderr!r}")
            qemu_runs.append((form, [QEMU, *words[1:]]))
        for start in range(0, len(qemu_runs), BATCH):
            batch = qemu_runs[start:start + BATCH]
            procs = [subprocess.Popen(
                [argv[0], "-machine", "none", "-nodefaults", "-display", "none",
                 "-monitor", "none", "-serial", "none", *argv[1:]],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for _, argv in batch]
            try:
                time.sleep(QEMU_REFUSAL_TIME)
                running = [proc.poll() is None for proc in procs]
            finally:
                for proc in procs:
                    stop(proc)
            for (form, argv), proc, ok in zip(batch, procs, running):
                stderr = proc.stderr.read().decode("utf-8", "replace")
                proc.stderr.close()
                if not ok:
                    problems.append(f"{form}: QEMU 7.2 refuses {shlex.join(argv)}: {stderr!r}")
        self.assertEqual(problems, [])
        self.assertGreater(len(qemu_runs), len(catalogue) // 2)
