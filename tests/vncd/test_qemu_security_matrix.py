"""vncd against QEMU 7.2: the same security options, the same wire behaviour.

For every combination of credentials (none, anon, x509 with verify-peer on
and off), password (none, set through a secret, ``password=on`` with no
password) and authz (none, an ``authz-simple`` that allows the client
"alice", an ``authz-list`` that denies her), plus SASL, both servers are
started with identical ``-object``/``-vnc`` options.  Recorded for each:
whether it starts (and QEMU's message when it does not), and for every kind
of client (no certificate, alice's, bob's -- same CA --, mallory's from
another CA; right, wrong or no password) the security types, the VeNCrypt
version and subtypes offered and how far the client got
(:mod:`tests.vncd.qemuprobe`).  vncd must match QEMU everywhere except the
cases in :data:`DELIBERATE_DIFFERENCES`, which are asserted as differences,
and vncd's refusal of an address after repeated authentication failures
(QEMU has no throttling), which has a test of its own; every probe
connects from its own loopback address so that throttling never links
the matrix's probes.

One QEMU process serves every configuration at once (several ``-vnc``
displays); a configuration it refuses is found from its error line and
dropped until the rest start.  vncd is run the same way.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests import certgen
from tests.tools import free_display
from tests.vncd import realclients
from vncd.rfb.limits import AUTH_FAILURES_BEFORE_BLOCK
from tests.vncd.qemuprobe import (
    ClientKind, Outcome, ProbeError, ProbeResult, Wire, probe, run_probe,
    session_tickets, vnc_auth_response)

CREDS = ("none", "anon", "x509-verify", "x509-noverify")
PASSWORDS = ("none", "secret", "unset", "sasl")
AUTHZ = ("none", "allow", "deny")

#: The VNC password of the ``secret`` configurations (8 characters: VNC
#: authentication uses no more).
PASSWORD = "s3cret!!"
WRONG_PASSWORD = "guessed"

#: Probes run concurrently, one worker per display.  QEMU listens with a
#: backlog of 1, so each display is probed by one worker at a time; eight
#: workers keep both cores busy without piling up handshakes.
PROBE_WORKERS = 8

#: Separate single-configuration processes started at once when checking
#: configurations expected to be refused (each is a short-lived process).
REFUSAL_WORKERS = 4

#: What both servers' refusal says when a port is taken ("Failed to find
#: an available port: Address already in use", QEMU and vncd alike).
PORT_TAKEN = "Address already in use"

#: Displays moved to a fresh port in one start before giving up: other
#: tests grab ports at random, so one or two collisions can happen.
MAX_PORT_MOVES = 5

#: The loopback /16 probes connect from (one address each, see
#: :func:`source_address`), and how many addresses it offers.
SOURCE_PREFIX = "127.77"
MAX_SOURCES = 250 * 256

#: The identity string the allow/deny rules match: GnuTLS's DN text, which
#: QEMU 7.2 passes to authz (RDNs in certificate order, C first).
ALICE_DN = "C=UK,CN=alice"


@dataclass(frozen=True)
class Config:
    """One ``-vnc`` security configuration."""

    creds: str
    password: str
    authz: str

    def __str__(self) -> str:
        return f"creds={self.creds} password={self.password} authz={self.authz}"

    def options(self) -> str:
        """The ``-vnc`` keys after the address."""
        keys = []
        if self.creds != "none":
            keys.append("tls-creds=" + {"anon": "anon0", "x509-verify": "x509v",
                                        "x509-noverify": "x509n"}[self.creds])
        keys += {"none": [], "secret": ["password-secret=vncpw"],
                 "unset": ["password=on"], "sasl": ["sasl=on"]}[self.password]
        if self.authz != "none":
            keys.append("tls-authz=" + {"allow": "allow0", "deny": "deny0"}[self.authz])
        return ",".join(keys)


CONFIGS = tuple(
    Config(c, p, a) for c, p, a in itertools.product(CREDS, PASSWORDS, AUTHZ)
    if not (p == "sasl" and a != "none"))


@dataclass(frozen=True)
class Difference:
    """A configuration where vncd deliberately refuses what QEMU 7.2 accepts."""

    what: str
    applies: object
    #: A word vncd's refusal message must contain (the option it names).
    names: str
    reason: str


#: Deliberate differences from QEMU 7.2 (for the manual page): in each case
#: QEMU starts and silently ignores a security option the administrator
#: configured; vncd refuses to start instead.
DELIBERATE_DIFFERENCES = (
    Difference(
        "tls-authz with tls-creds-anon",
        lambda c: c.creds == "anon" and c.authz != "none", "tls-authz",
        "anonymous TLS has no client identity to authorise: QEMU never"
        " consults the authz object, so the rule the administrator wrote has"
        " no effect"),
    Difference(
        "tls-authz with tls-creds-x509,verify-peer=off",
        lambda c: c.creds == "x509-noverify" and c.authz != "none", "tls-authz",
        "without verify-peer the client certificate is not checked and QEMU"
        " skips the authz check: every client gets in despite the rule"),
    Difference(
        "sasl=on",
        lambda c: c.password == "sasl", "sasl",
        "vncd has no SASL; offering a SASL type it cannot complete would lock"
        " every client out"),
)


def deliberate(config: Config) -> Difference | None:
    for difference in DELIBERATE_DIFFERENCES:
        if difference.applies(config):
            return difference
    return None


# -- the fixture: certificates, objects, clients ----------------------------

class Pki:
    """Certificates and files for one server run, in a private directory."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        ca = certgen.ca("vncd matrix CA")
        other = certgen.ca("other CA")
        server = certgen.server(ca, "localhost", dns=["localhost"], ips=["127.0.0.1"])
        self.server_dir = certgen.write_dir(os.path.join(directory, "server"),
                                            ca=[ca], server=server)
        self.clients = {}
        for name, issuer in (("alice", ca), ("bob", ca), ("mallory", other)):
            cert = certgen.client(issuer, name)
            cert_path = certgen.write_pem(os.path.join(directory, f"{name}.pem"), cert)
            key_path = certgen.write_pem(os.path.join(directory, f"{name}-key.pem"),
                                         cert.key_pem(), mode=0o600)
            self.clients[name] = (cert_path, key_path)
        self.secret_file = os.path.join(directory, "vnc-password")
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(PASSWORD)

    def objects(self) -> list[str]:
        deny = {"qom-type": "authz-list", "id": "deny0", "policy": "allow",
                "rules": [{"match": ALICE_DN, "policy": "deny", "format": "exact"}]}
        return [
            "-object", f"secret,id=vncpw,file={self.secret_file}",
            "-object", "tls-creds-anon,id=anon0,endpoint=server",
            "-object", f"tls-creds-x509,id=x509v,endpoint=server,dir={self.server_dir},"
                       "verify-peer=on",
            "-object", f"tls-creds-x509,id=x509n,endpoint=server,dir={self.server_dir},"
                       "verify-peer=off",
            "-object", "authz-simple,id=allow0,identity=" + ALICE_DN.replace(",", ",,"),
            "-object", json.dumps(deny),
        ]

    def kinds(self, config: Config) -> list[ClientKind]:
        certs = ["none"]
        if config.creds.startswith("x509"):
            certs += ["alice", "bob", "mallory"]
        kinds = []
        for cert, (pw_name, password) in itertools.product(
                certs, (("nopw", None), ("right", PASSWORD), ("wrong", WRONG_PASSWORD))):
            paths = self.clients.get(cert, (None, None))
            kinds.append(ClientKind(f"{cert}/{pw_name}", password, *paths))
        return kinds


@dataclass
class Verdict:
    started: bool
    message: str | None = None


@dataclass
class ServerRun:
    verdicts: dict
    probes: dict
    notes: list


def source_address(index: int) -> str:
    """The loopback address probe number ``index`` connects from.

    Every probe gets its own, so vncd's per-address throttling of failed
    authentications (a deliberate difference, tested on its own) never
    links one probe's result to another's, as with QEMU, which has none.
    """
    if index >= MAX_SOURCES:
        raise ValueError(f"more than {MAX_SOURCES} probes")
    return f"{SOURCE_PREFIX}.{index // 250}.{index % 250 + 1}"


def _vnc_arg(config: Config, display: int) -> str:
    options = config.options()
    return f"127.0.0.1:{display},id=d{display}" + (f",{options}" if options else "")


def _refusal(output: str, vnc_args: dict) -> tuple[Config, str] | None:
    """The configuration whose ``-vnc`` option the error line names, and the message."""
    for config, arg in vnc_args.items():
        marker = f"-vnc {arg}: "
        for line in output.splitlines():
            if marker in line:
                message = line.split(marker, 1)[1].strip()
                if not message.startswith("warning:"):   # start-up advice, not the refusal
                    return config, message
    return None


def _start_group(command, objects: list[str], configs: list[Config],
                 displays: dict, name: str, notes: list):
    """Start ``configs`` in one process, dropping each one the server refuses.

    A display whose port another program took meanwhile is moved to a
    fresh one (that is the environment, not the server refusing).
    Returns ``(proc or None, {config: message})``.
    """
    remaining = list(configs)
    refused = {}
    moves = 0
    while remaining:
        vnc_args = {c: _vnc_arg(c, displays[c]) for c in remaining}
        argv = command(objects + [x for c in remaining for x in ("-vnc", vnc_args[c])])
        proc = realclients.launch(argv, [5900 + displays[c] for c in remaining], name=name)
        if proc.poll() is None:
            return proc, refused
        output = proc.output()
        proc.stop()
        found = _refusal(output, vnc_args)
        if found is None:
            raise RuntimeError(f"{name} failed without naming a -vnc option: {output}")
        config, message = found
        if PORT_TAKEN in message and moves < MAX_PORT_MOVES:
            moves += 1
            displays[config] = _fresh_display(displays)
            continue
        refused[config] = message
        notes.append(f"{name} refused {config}: {message}")
        remaining.remove(config)
    return None, refused


def _fresh_display(displays: dict) -> int:
    """A free display number not already given to another configuration."""
    used = set(displays.values())
    display = free_display()
    while display in used:
        display = free_display()
    return display


def run_server(command, name: str, expect_refused=frozenset()) -> ServerRun:
    """Start ``command`` with every configuration and probe every client kind.

    ``expect_refused`` configurations are each tried in a process of their
    own (so one refusal costs one short start, not a restart of all);
    should one start after all, it is probed like the rest.
    """
    directory = tempfile.mkdtemp(prefix="vncd-matrix-")
    procs = []
    try:
        pki = Pki(directory)
        objects = pki.objects()
        displays: dict = {}
        for config in CONFIGS:
            displays[config] = _fresh_display(displays)
        notes: list[str] = []
        verdicts = {}
        serving = []

        def alone(config):
            return config, _start_group(command, objects, [config], displays, name, notes)

        singles = [c for c in CONFIGS if c in expect_refused]
        with ThreadPoolExecutor(REFUSAL_WORKERS) as pool:
            for config, (proc, refused) in pool.map(alone, singles):
                if proc is not None:
                    procs.append(proc)
                    serving.append(config)
                verdicts.update({c: Verdict(False, m) for c, m in refused.items()})
        group = [c for c in CONFIGS if c not in expect_refused]
        proc, refused = _start_group(command, objects, group, displays, name, notes)
        if proc is not None:
            procs.append(proc)
            serving += [c for c in group if c not in refused]
        verdicts.update({c: Verdict(False, m) for c, m in refused.items()})
        verdicts.update({c: Verdict(True) for c in serving})

        sources = {}
        for config in serving:
            for kind in pki.kinds(config):
                sources[(config, kind.name)] = source_address(len(sources))

        def probe_display(config):
            results = {}
            for kind in pki.kinds(config):
                try:
                    results[(config, kind.name)] = run_probe(
                        "127.0.0.1", 5900 + displays[config], kind,
                        source=sources[(config, kind.name)])
                except ProbeError as e:
                    results[(config, kind.name)] = ProbeResult(
                        (), None, None, Outcome.CLOSED, detail=str(e))
            return results

        probes = {}
        with ThreadPoolExecutor(PROBE_WORKERS) as pool:
            for results in pool.map(probe_display, serving):
                probes.update(results)
        return ServerRun(verdicts, probes, notes)
    finally:
        for proc in procs:
            proc.stop()
        shutil.rmtree(directory, ignore_errors=True)


_RUNS: dict[str, ServerRun] = {}


def qemu_run() -> ServerRun:
    if "qemu" not in _RUNS:
        _RUNS["qemu"] = run_server(realclients.qemu_command, "qemu")
    return _RUNS["qemu"]


def vncd_run() -> ServerRun:
    realclients.require_vncd()
    if "vncd" not in _RUNS:
        qemu = qemu_run()
        expect = {c for c, v in qemu.verdicts.items() if not v.started}
        expect |= {c for c in CONFIGS if deliberate(c)}
        _RUNS["vncd"] = run_server(realclients.vncd_command, "vncd", frozenset(expect))
    return _RUNS["vncd"]


# -- the documented QEMU model, to prove the probe sees real differences -----

def documented_offer(config: Config) -> tuple:
    """QEMU's auth mapping (ui/vnc.c vnc_display_setup_auth): (types, subtypes)."""
    inner = {"none": "None", "secret": "Vnc", "unset": "Vnc", "sasl": "SASL"}[config.password]
    if config.creds == "none":
        return ({"None": (1,), "Vnc": (2,), "SASL": (20,)}[inner], None)
    x509 = config.creds.startswith("x509")
    subtype = {(False, "None"): 257, (False, "Vnc"): 258, (False, "SASL"): 264,
               (True, "None"): 260, (True, "Vnc"): 261, (True, "SASL"): 263}[(x509, inner)]
    return ((19,), (subtype,))


def documented_outcome(config: Config, kind_name: str) -> Outcome:
    """Who QEMU lets in, from its documentation (qemu-tls.md sections 3.5, 5.3)."""
    cert, password = kind_name.split("/")
    wants_password = config.password in ("secret", "unset")
    if config.creds == "none":
        if config.password == "none":
            return Outcome.SERVER_INIT
        if config.password == "sasl" or password == "nopw":
            return Outcome.AUTH_FAILED
    else:
        if config.password == "sasl" or (password != "nopw") != wants_password:
            return Outcome.VENCRYPT_REJECTED
        if config.creds == "x509-verify":
            if cert not in ("alice", "bob"):
                return Outcome.TLS_REFUSED
            if config.authz == "allow" and cert != "alice":
                return Outcome.TLS_REFUSED
            if config.authz == "deny" and cert == "alice":
                return Outcome.TLS_REFUSED
        if not wants_password:
            return Outcome.SERVER_INIT
    if config.password == "secret" and password == "right":
        return Outcome.SERVER_INIT
    return Outcome.AUTH_FAILED


class QemuReferenceTests(SynchronousTestCase):
    """QEMU 7.2 behaves as documented, so the probe measures something real."""

    def test_refusals(self):
        """QEMU refuses exactly tls-authz without TLS, with its own message."""
        run = qemu_run()
        refused = {c: v.message for c, v in run.verdicts.items() if not v.started}
        expected = {c: "'tls-authz' provided but TLS is not enabled"
                    for c in CONFIGS if c.creds == "none" and c.authz != "none"}
        self.assertEqual(refused, expected)

    def test_offers(self):
        """Every started display offers the one type or subtype QEMU documents."""
        run = qemu_run()
        for (config, kind), result in sorted(run.probes.items(), key=str):
            types, subtypes = documented_offer(config)
            self.assertEqual((result.security_types, result.subtypes), (types, subtypes),
                             f"{config} {kind}: {result.describe()} {result.detail}")
            if subtypes is not None:
                self.assertEqual(result.vencrypt_version, (0, 2))

    def test_admissions(self):
        """Each kind of client gets exactly as far as QEMU's documented rules say."""
        run = qemu_run()
        self.assertTrue(run.probes)
        wrong = []
        for (config, kind), result in sorted(run.probes.items(), key=str):
            if result.outcome is not documented_outcome(config, kind):
                wrong.append(f"{config} {kind}: {result.describe()} [{result.detail}]"
                             f" expected {documented_outcome(config, kind).value}")
        self.assertEqual(wrong, [])

    def test_failure_reason(self):
        """A refused password gets QEMU's reason, whose length counts a trailing NUL."""
        run = qemu_run()
        reasons = {r.reason for r in run.probes.values() if r.outcome is Outcome.AUTH_FAILED}
        self.assertEqual(reasons, {"Authentication failed\0"})


class VncdMatchesQemuTests(SynchronousTestCase):
    """vncd started with QEMU's options behaves like QEMU on the wire."""

    def test_start_and_refuse_like_qemu(self):
        """vncd starts where QEMU starts and refuses where QEMU refuses, with QEMU's message."""
        qemu, vncd = qemu_run(), vncd_run()
        wrong = []
        for config in CONFIGS:
            if deliberate(config):
                continue
            q, v = qemu.verdicts[config], vncd.verdicts[config]
            if q.started != v.started:
                wrong.append(f"{config}: QEMU {'starts' if q.started else 'refuses'},"
                             f" vncd {'starts' if v.started else 'refuses: ' + v.message}")
            elif not q.started and q.message not in v.message:
                wrong.append(f"{config}: QEMU says {q.message!r}, vncd {v.message!r}")
        self.assertEqual(wrong, [])

    def test_offers_like_qemu(self):
        """vncd lists the security types, VeNCrypt version and subtypes QEMU lists."""
        self._compare(lambda r: (r.security_types, r.vencrypt_version, r.subtypes))

    def test_admits_like_qemu(self):
        """Every kind of client gets exactly as far with vncd as with QEMU."""
        self._compare(lambda r: (r.outcome, r.reason))

    def _compare(self, part):
        qemu, vncd = qemu_run(), vncd_run()
        wrong = []
        for key, q in sorted(qemu.probes.items(), key=str):
            if deliberate(key[0]):
                continue
            v = vncd.probes.get(key)
            if v is None:
                wrong.append(f"{key[0]} {key[1]}: vncd was not serving")
            elif part(q) != part(v):
                wrong.append(f"{key[0]} {key[1]}: QEMU {q.describe()},"
                             f" vncd {v.describe()} [{v.detail}]")
        self.assertEqual(wrong, [])

    def test_deliberate_differences(self):
        """vncd refuses, naming the option, each configuration QEMU starts and half-ignores."""
        qemu, vncd = qemu_run(), vncd_run()
        wrong = []
        for config in CONFIGS:
            difference = deliberate(config)
            if difference is None:
                continue
            if not qemu.verdicts[config].started:
                wrong.append(f"{config}: QEMU refuses it too ({difference.what})")
            verdict = vncd.verdicts[config]
            if verdict.started:
                wrong.append(f"{config}: vncd starts ({difference.what})")
            elif difference.names.lower() not in verdict.message.lower():
                wrong.append(f"{config}: vncd's message {verdict.message!r}"
                             f" does not name {difference.names!r}")
        self.assertEqual(wrong, [])


class ThrottleDifferenceTests(SynchronousTestCase):
    """The one deliberate difference that is about repetition, not configuration."""

    def failures_from_one_address(self, command, name: str) -> list[ProbeResult]:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        secret = os.path.join(directory, "pw")
        with open(secret, "w") as f:
            f.write(PASSWORD)
        display = free_display()
        realclients.start_server(
            self, command(["-object", f"secret,id=pw0,file={secret}",
                           "-vnc", f"127.0.0.1:{display},password-secret=pw0"]),
            [5900 + display], name=name)
        source = f"{SOURCE_PREFIX}.255.1"
        return [run_probe("127.0.0.1", 5900 + display, ClientKind("guess", WRONG_PASSWORD),
                          source=source)
                for _ in range(AUTH_FAILURES_BEFORE_BLOCK + 1)]

    def test_repeated_failures(self):
        """After repeated wrong passwords from one address vncd refuses it; QEMU never does."""
        realclients.require_vncd()
        qemu = self.failures_from_one_address(realclients.qemu_command, "qemu")
        self.assertEqual({r.outcome for r in qemu}, {Outcome.AUTH_FAILED})
        vncd = self.failures_from_one_address(realclients.vncd_command, "vncd")
        self.assertEqual([r.outcome for r in vncd],
                         [Outcome.AUTH_FAILED] * AUTH_FAILURES_BEFORE_BLOCK + [Outcome.REFUSED])
        self.assertIn("Too many authentication failures", vncd[-1].reason)


class SessionTicketTests(SynchronousTestCase):
    """TLS 1.3 session tickets: TigerVNC 1.12 can hang on them (seen against vncd)."""

    def tickets(self, command, name: str) -> tuple[str, bool]:
        directory = os.path.abspath(self.mktemp())
        ca = certgen.ca("ticket CA")
        server = certgen.server(ca, "localhost", dns=["localhost"], ips=["127.0.0.1"])
        creds = certgen.write_dir(directory, ca=[ca], server=server)
        display = free_display()
        realclients.start_server(
            self, command(["-object", f"tls-creds-x509,id=t0,endpoint=server,dir={creds},"
                                      "verify-peer=off",
                           "-vnc", f"127.0.0.1:{display},tls-creds=t0"]),
            [5900 + display], name=name)
        result, version, ticket = session_tickets("127.0.0.1", 5900 + display)
        self.assertIs(result.outcome, Outcome.SERVER_INIT, result.detail)
        return version, ticket

    def test_qemu_sends_none(self):
        """QEMU 7.2 (GnuTLS) completes a TLS 1.3 X509None session without a ticket."""
        self.assertEqual(self.tickets(realclients.qemu_command, "qemu"), ("TLSv1.3", False))

    def test_vncd_sends_none(self):
        """vncd completes a TLS 1.3 X509None session without a ticket, like QEMU."""
        self.assertEqual(self.tickets(realclients.vncd_command, "vncd"), ("TLSv1.3", False))


# -- the probe itself --------------------------------------------------------

class _Script:
    """A fake socket that plays ``data`` and records what the probe sends."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent = b""
        self.reads = 0

    def recv(self, n: int) -> bytes:
        self.reads += 1
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk

    def sendall(self, data: bytes) -> None:
        self.sent += data


def _no_tls(wire, x509, kind):
    raise ProbeError("tls", "no TLS in this test")


class ProbeTests(SynchronousTestCase):
    """The probe's own parsing, without a server."""

    def test_vnc_auth_vector(self):
        """VNC authentication reproduces the published DES test vector."""
        self.assertEqual(vnc_auth_response("password", bytes(range(16))).hex(),
                         "b866924125c8eebb9debc1db61c538e2")

    def test_none_server(self):
        """A None server is classified as reaching ServerInit, size recorded."""
        data = (b"RFB 003.008\n\x01\x01" + b"\0\0\0\0" + b"\x01\x40\x00\xf0"
                + bytes(16) + b"\0\0\0\x03abc")
        result = probe(Wire(_Script(data)), ClientKind("c"))
        self.assertEqual((result.security_types, result.outcome, result.detail),
                         ((1,), Outcome.SERVER_INIT, "320x240"))

    def test_vencrypt_subtype_rejected(self):
        """A VeNCrypt server that refuses the chosen subtype is VENCRYPT_REJECTED."""
        data = b"RFB 003.008\n\x01\x13\x00\x02\x00\x01\x00\x00\x01\x05\x00"
        sock = _Script(data)
        result = probe(Wire(sock), ClientKind("c"), _no_tls)
        self.assertEqual((result.subtypes, result.outcome), ((261,), Outcome.VENCRYPT_REJECTED))
        self.assertEqual(sock.sent, b"RFB 003.008\n\x13\x00\x02\x00\x00\x01\x04")

    def test_refused_reason(self):
        """An empty type list with a reason is REFUSED with that reason."""
        data = b"RFB 003.008\n\x00\x00\x00\x00\x04nope"
        result = probe(Wire(_Script(data)), ClientKind("c"))
        self.assertEqual((result.outcome, result.reason), (Outcome.REFUSED, "nope"))

    def test_oversized_reason(self):
        """A reason longer than the limit is a protocol error, not an allocation."""
        data = b"RFB 003.008\n\x00\xff\xff\xff\xff"
        self.assertRaises(ProbeError, probe, Wire(_Script(data)), ClientKind("c"))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200), st.sampled_from([None, "pw"]))
    def test_garbage(self, data, password):
        """Any server bytes end in a ProbeResult or ProbeError after a bounded number of reads."""
        sock = _Script(b"RFB 003.008\n" + data)
        try:
            result = probe(Wire(sock), ClientKind("c", password), _no_tls)
        except ProbeError:
            return
        self.assertIsInstance(result.outcome, Outcome)
        self.assertLessEqual(sock.reads, 20 + len(data))

    def test_refusal_line(self):
        """A refusal is attributed to the -vnc option its error line quotes."""
        a, b = Config("none", "none", "allow"), Config("anon", "none", "none")
        args = {a: _vnc_arg(a, 7), b: _vnc_arg(b, 8)}
        output = ("warning: something\n"
                  f"qemu-system-x86_64: -vnc {args[a]}: "
                  "'tls-authz' provided but TLS is not enabled\n")
        self.assertEqual(_refusal(output, args),
                         (a, "'tls-authz' provided but TLS is not enabled"))
        self.assertIsNone(_refusal("vncd: -object x: bad\n", args))

