"""Connection rate end to end: vncd against QEMU 7.2, same options, real sockets.

    .venv/bin/python -m benchmarks.connections [--workers 8] [--seconds 5]
        [--cases none,vncauth,x509none,tlsnone] [--screen image|testcard]
        [--rounds 1] [--before DIR] [--instructions N]

For every case both servers are started in turn on the same loopback
display with the same ``-object``/``-vnc`` options:

* ``none``      security None;
* ``vncauth``   VNC password (``password-secret=`` naming a ``secret``
                object read from a file, so no password is on a command line);
* ``x509none``  VeNCrypt X509None, ``tls-creds-x509,verify-peer=on``: the
                client verifies the server against the CA and presents its
                own certificate (RSA 2048, generated at start by
                tests/certgen.py into a temporary directory);
* ``tlsnone``   VeNCrypt TLSNone, ``tls-creds-anon`` (anonymous DH, TLS 1.2).

``--workers`` client processes then run complete handshakes -- connect,
RFB 3.8, security, ClientInit, ServerInit, close -- back to back for
``--seconds``.  The table gives, per case and server: handshakes per second
(wall clock); the server's CPU time per handshake and the rate one core
of it would reach at that cost (``/proc/PID/stat`` utime+stime of the
server process, all threads, before and after); the server's and the
clients' share of the machine; the 50th and 99th percentile and the
longest handshake as a client saw it; failures (the first few messages
are printed under the table); and ``drops``, the connections the kernel
refused to queue because the server's listen backlog was full during the
run (``ListenOverflows`` in /proc/net/netstat, counted system-wide).
QEMU 7.2 listens on VNC with a backlog of 1 (``ss -ltn`` shows it), so
with several clients connecting at once some wait for TCP's one-second
retransmission or time out: that, not its CPU, limits its wall rate.

``--rounds N`` repeats every case N times, the servers taking turns in
an order that rotates each round, and ends with a table of medians and
the ratios vncd/QEMU; ``--before DIR`` adds the vncd of another checkout
(e.g. a work tree of main) as a third server, for vncd/before ratios
from the same run.

``--instructions N`` counts instead of timing: each server runs under
``valgrind --tool=callgrind`` with instrumentation off, one client makes
:data:`WARM_UP` handshakes, then ``callgrind_control -i on`` brackets N
more, and the table gives user-space instructions per handshake (all
threads; the kernel's share is not counted) with the ratios to QEMU and
``--before``.  Instruction counts do not depend on the machine's load,
so small changes to the handshake path show in one run; they are not
time (an interpreter runs fewer instructions per cycle than QEMU's C),
so the CPU columns of the timed run remain the target.

The client is as small as a client can be: blocking stdlib sockets, one
``ssl.SSLContext`` built per worker before the clock starts, no session
resumption (every TLS handshake is a full one), no pixel traffic.  Its
cost is printed in the ``client %`` column (100 % = one core).  On the
2-core development machine it is about half the server's for None and
VNC authentication, about the server's own for X509None (each side signs
once and verifies the other), and three times the server's for TLSNone
(the anonymous-DH client does the more expensive half of the key
exchange), so the TLSNone wall rate is the client's limit, not the
servers'.  Clients and server share the same cores: handshakes/s is what
this machine does end to end, CPU ms per handshake is the server's own
cost and the fairer comparison.

vncd runs as ``python -m vncd`` with ``-screen image`` of QEMU's size
(640x480, QEMU's -machine none console) so both serve a still picture;
``--screen testcard`` measures vncd's default screen instead, which
redraws itself for every client that connects.  vncd logs connections
and disconnections to stderr (here a file), repeats from one address
summarised every 10 seconds; the ``log/hs`` column counts those lines per
handshake (near 0, as every client comes from 127.0.0.1), a cost QEMU
(which logs nothing) does not pay.  Keep ``--workers`` at 16 or less: both servers allow 32
clients at once (``connections=``) and QEMU evicts the oldest client
beyond it.
"""

from __future__ import annotations

import argparse
import array
import itertools
import multiprocessing
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from PIL import Image

from benchmarks import peers
from tests import certgen

#: Most concurrent clients: both servers default to ``connections=32`` and
#: closing clients linger for a moment, so 16 keeps every handshake clear
#: of the limit (and of QEMU's eviction of the oldest client).
MAX_WORKERS = 16

#: Longest measurement accepted, so a typo cannot tie up the shared machine.
MAX_SECONDS = 120.0

#: Handshake durations kept per worker for the percentiles: a 2-minute run
#: at QEMU's best rate on this machine stays below it, and 100 000 doubles
#: are under 1 MB to send back.
MAX_SAMPLES = 100_000

#: Distinct failure messages kept per run for the report; more are counted.
MAX_ERROR_KINDS = 4

#: Seconds a worker may run past the end of the measurement before it is
#: declared hung: one handshake in flight may take up to the client's I/O
#: timeout per step, a few steps at most.
WORKER_GRACE = 4 * peers.IO_TIMEOUT

#: Most rounds accepted (``--rounds``).
MAX_ROUNDS = 10

#: Handshakes before an instruction count starts (first-use costs excluded).
WARM_UP = 50

#: Most handshakes counted per server with ``--instructions`` (each is
#: some 50 times slower under callgrind).
MAX_COUNTED = 5000

#: Seconds a server under callgrind may take to start listening, and to
#: write its counts after SIGTERM.
CALLGRIND_TIMEOUT = 120.0

#: The password of the ``vncauth`` case; a benchmark value, not a secret.
PASSWORD = "bench"

#: QEMU's console size with ``-machine none`` (what vncd's image shows).
SCREEN_SIZE = (640, 480)

CASES = ("none", "vncauth", "x509none", "tlsnone")


@dataclass
class Files:
    """Everything the cases read, in one temporary directory."""

    root: str
    server_x509: str = ""
    client_ca: str = ""
    client_cert: str = ""
    client_key: str = ""
    password_file: str = ""
    picture: str = ""


def make_files(root: str) -> Files:
    files = Files(root)
    ca = certgen.ca("vncd benchmark CA")
    srv = certgen.server(ca, "localhost", dns=["localhost"], ips=["127.0.0.1"])
    cli = certgen.client(ca, "benchmark client")
    files.server_x509 = certgen.write_dir(os.path.join(root, "server"), ca=[ca], server=srv)
    client_dir = certgen.write_dir(os.path.join(root, "client"), ca=[ca], client=cli)
    files.client_ca = os.path.join(client_dir, "ca-cert.pem")
    files.client_cert = os.path.join(client_dir, "client-cert.pem")
    files.client_key = os.path.join(client_dir, "client-key.pem")
    files.password_file = os.path.join(root, "password")
    with open(os.open(files.password_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(PASSWORD)
    files.picture = os.path.join(root, "screen.png")
    Image.new("RGB", SCREEN_SIZE, (0, 0, 0)).save(files.picture)
    return files


def server_options(case: str, files: Files, display: int) -> list[str]:
    """The ``-object``/``-vnc`` arguments of ``case``, identical for both servers."""
    vnc = f"127.0.0.1:{display}"
    if case == "none":
        return ["-vnc", vnc]
    if case == "vncauth":
        return ["-object", f"secret,id=pw0,file={files.password_file}",
                "-vnc", f"{vnc},password-secret=pw0"]
    if case == "x509none":
        return ["-object", f"tls-creds-x509,id=tls0,endpoint=server,verify-peer=on,"
                           f"dir={files.server_x509}",
                "-vnc", f"{vnc},tls-creds=tls0"]
    if case == "tlsnone":
        return ["-object", "tls-creds-anon,id=tls0,endpoint=server",
                "-vnc", f"{vnc},tls-creds=tls0"]
    raise ValueError(f"unknown case {case!r}")


@dataclass(frozen=True)
class ClientSpec:
    """What a worker needs to build its client once (picklable, no contexts)."""

    port: int
    case: str
    ca: str
    cert: str
    key: str
    #: The loopback address the client connects from (see :func:`fresh_source`).
    source: str = "127.0.0.1"

    def context(self) -> ssl.SSLContext | None:
        if self.case == "x509none":
            return peers.x509_client_context(self.ca, self.cert, self.key)
        if self.case == "tlsnone":
            return peers.anon_client_context()
        return None

    def password(self) -> str | None:
        return PASSWORD if self.case == "vncauth" else None


_sources = itertools.count()


def fresh_source() -> str:
    """A loopback address no earlier run of this process connected from.

    The client closes first, so each handshake leaves a socket in
    TIME_WAIT on the client's side for a minute: a run of a few seconds
    leaves thousands, and the next run from the same address to the same
    port finds its ephemeral ports taken.  Linux then reuses them
    (``tcp_tw_reuse``) but searches the port range under locks the
    server's accepts and closes take too: measured on the 2-core machine,
    five runs of None handshakes in a row from 127.0.0.1 fell from 1,600
    to 400-700 per second and vncd's CPU per handshake rose from 0.40 to
    0.75-1.2 ms (QEMU's as much), so whichever server came later in a
    round paid for the earlier ones.  From a fresh address of 127/8 per
    run they stayed at 1,800-2,000 per second with 65,000 sockets in
    TIME_WAIT.  The process id picks the second byte, so two benchmarks
    at once do not share addresses either.
    """
    n = next(_sources)
    return f"127.{100 + os.getpid() % 100}.{n // 250 % 250}.{n % 250 + 1}"


def connect_once(spec: ClientSpec, tls: ssl.SSLContext | None) -> str:
    """One complete handshake up to ServerInit, then close; the TLS version and
    cipher, or '' without TLS.  Any failure is an RFBError naming the stage."""
    try:
        sock = socket.create_connection(("127.0.0.1", spec.port), timeout=peers.IO_TIMEOUT,
                                        source_address=(spec.source, 0))
    except OSError as e:
        raise peers.RFBError(f"connect: {type(e).__name__}: {e}") from None
    try:
        sock, _ = peers.handshake(sock, password=spec.password(), tls=tls)
        if isinstance(sock, ssl.SSLSocket):
            return f"{sock.version()} {sock.cipher()[0]}"
        return ""
    except OSError as e:
        raise peers.RFBError(f"handshake: {type(e).__name__}: {e}") from None
    finally:
        sock.close()


@dataclass
class WorkerResult:
    #: Handshakes completed within the measured seconds.
    done: int = 0
    failed: int = 0
    errors: dict = field(default_factory=dict)
    cpu: float = 0.0
    #: Seconds each successful handshake took (the first MAX_SAMPLES).
    durations: array.array = field(default_factory=lambda: array.array("d"))


def worker(spec: ClientSpec, go, seconds: float, out) -> None:
    """Handshake back to back from ``go`` until ``seconds`` later; send a WorkerResult."""
    result = WorkerResult()
    try:
        tls = spec.context()
        go.wait()
        start = time.monotonic()
        times0 = os.times()
        deadline = start + seconds
        now = start
        while now < deadline:
            then = now
            try:
                connect_once(spec, tls)
            except peers.RFBError as e:
                now = time.monotonic()
                result.failed += 1
                text = str(e)
                if text in result.errors or len(result.errors) < MAX_ERROR_KINDS:
                    result.errors[text] = result.errors.get(text, 0) + 1
                continue
            now = time.monotonic()
            if now <= deadline:
                result.done += 1
            if len(result.durations) < MAX_SAMPLES:
                result.durations.append(now - then)
        times1 = os.times()
        result.cpu = (times1.user - times0.user) + (times1.system - times0.system)
        out.send(result)
    except KeyboardInterrupt:
        pass
    finally:
        out.close()


@dataclass
class Row:
    case: str
    server: str
    rate: float = 0.0
    cpu_ms: float = 0.0
    server_pct: float = 0.0
    client_pct: float = 0.0
    failed: int = 0
    tls: str = ""
    log_per_handshake: float | None = None
    errors: dict = field(default_factory=dict)
    problem: str = ""
    #: Handshake duration percentiles, ms.
    p50: float = float("nan")
    p99: float = float("nan")
    worst: float = float("nan")
    #: Connections the kernel dropped because the listen queue was full.
    overflows: int = 0


def listen_overflows() -> int:
    """The kernel's count of SYNs dropped for a full listen queue (system wide)."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    names, values = lines[0], lines[1]
    return int(values[names.index("ListenOverflows")])


def run_clients(spec: ClientSpec, workers: int, seconds: float,
                server: peers.Child) -> tuple[list[WorkerResult], float]:
    """Start the workers, release them together; (results, server CPU seconds
    within the measured time).  A handshake still in flight at the end is
    waited for (up to WORKER_GRACE) but neither it nor the server's CPU
    after the end is counted."""
    mp = multiprocessing.get_context("fork")
    go = mp.Event()
    procs, pipes = [], []
    try:
        for _ in range(workers):
            receive, send = mp.Pipe(duplex=False)
            proc = mp.Process(target=worker, args=(spec, go, seconds, send), daemon=True)
            proc.start()
            send.close()
            procs.append(proc)
            pipes.append(receive)
        cpu0 = server.cpu()
        start = time.monotonic()
        go.set()
        time.sleep(seconds)
        spent = server.cpu() - cpu0
        results = []
        for receive in pipes:
            remaining = start + seconds + WORKER_GRACE - time.monotonic()
            if receive.poll(max(0.0, remaining)):
                results.append(receive.recv())
            else:
                results.append(WorkerResult(failed=1, errors={"worker hung": 1}))
        return results, spent
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(peers.STOP_GRACE)


def measure(children: peers.Children, server_name: str, argv: list[str], case: str,
            files: Files, port: int, workers: int, seconds: float,
            root: str = peers.ROOT) -> Row:
    row = Row(case, server_name)
    server = children.start(argv, name=server_name, root=root)
    try:
        server.wait_for_port(port)
        spec = ClientSpec(port, case, files.client_ca, files.client_cert, files.client_key,
                          fresh_source())
        try:
            row.tls = connect_once(spec, spec.context())
        except peers.RFBError as e:
            row.problem = f"first handshake failed: {e}"
            return row
        lines0 = server.log_lines()
        overflows0 = listen_overflows()
        results, spent = run_clients(spec, workers, seconds, server)
        row.overflows = listen_overflows() - overflows0
        durations = sorted(d for r in results for d in r.durations)
        if durations:
            row.p50, row.p99, row.worst = (1000 * durations[int(q * (len(durations) - 1))]
                                           for q in (0.5, 0.99, 1.0))
        done = sum(r.done for r in results)
        row.failed = sum(r.failed for r in results)
        for r in results:
            for text, n in r.errors.items():
                row.errors[text] = row.errors.get(text, 0) + n
        row.rate = done / seconds
        row.cpu_ms = 1000 * spent / done if done else float("nan")
        row.server_pct = 100 * spent / seconds
        row.client_pct = 100 * sum(r.cpu for r in results) / seconds
        if server_name.startswith("vncd") and done:
            row.log_per_handshake = (server.log_lines() - lines0) / done
        if not server.running():
            row.problem = f"{server_name} exited during the run:\n{server.tail()}"
        return row
    except RuntimeError as e:
        row.problem = str(e)
        return row
    finally:
        children.stop(server)


def count_instructions(children: peers.Children, server_name: str, argv: list[str],
                       case: str, files: Files, port: int, handshakes: int, out_dir: str,
                       root: str = peers.ROOT) -> float | None:
    """User-space instructions per handshake of the server ``argv`` (see ``--instructions``)."""
    out = os.path.join(out_dir, f"callgrind.{len(os.listdir(out_dir))}.out")
    server = children.start(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                             f"--callgrind-out-file={out}", *argv],
                            name=server_name, root=root)
    try:
        server.wait_for_port(port, timeout=CALLGRIND_TIMEOUT)
        spec = ClientSpec(port, case, files.client_ca, files.client_cert, files.client_key,
                          fresh_source())
        tls = spec.context()
        for _ in range(WARM_UP):
            connect_once(spec, tls)
        subprocess.run(["callgrind_control", "-i", "on", str(server.pid)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=CALLGRIND_TIMEOUT)
        for _ in range(handshakes):
            connect_once(spec, tls)
        subprocess.run(["callgrind_control", "-i", "off", str(server.pid)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=CALLGRIND_TIMEOUT)
        # Callgrind writes its counts when the server exits: give it time
        # (Children.stop would kill it after a few seconds).
        server.popen.send_signal(signal.SIGTERM)
        server.popen.wait(CALLGRIND_TIMEOUT)
    finally:
        children.stop(server)
    total = 0
    for name in os.listdir(out_dir):
        if os.path.join(out_dir, name).startswith(out):
            with open(os.path.join(out_dir, name)) as f:
                # "totals:" (callgrind's "summary:" stays 0 when
                # instrumentation was switched on and off by hand).
                for line in f:
                    if line.startswith("totals:"):
                        total += int(line.split()[1])
                        break
    return total / handshakes if total else None


def print_instructions(counts: dict, cases: list[str], servers: list[str]) -> None:
    print()
    print(f"{'case':10s} {'server':14s} {'M instr/hs':>10s} {'/QEMU':>6s} {'/before':>8s}")
    for case in cases:
        for name in servers:
            value = counts.get((case, name))
            if value is None:
                print(f"{case:10s} {name:14s} {'-':>10s}")
                continue

            def ratio(other):
                base = counts.get((case, other))
                return f"{value / base:.2f}" if base else "-"
            print(f"{case:10s} {name:14s} {value / 1e6:10.3f} {ratio('QEMU 7.2'):>6s}"
                  f" {ratio('before'):>8s}")


def print_table(rows: list[Row]) -> None:
    print(f"{'case':<10} {'server':<14} {'hs/s':>7} {'CPU ms/hs':>9} {'hs/s/core':>9} "
          f"{'server %':>8} {'client %':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'failed':>6} {'drops':>6} {'log/hs':>6}  tls")
    for r in rows:
        if r.problem:
            print(f"{r.case:<10} {r.server:<14} -- {r.problem.splitlines()[0]}")
            continue
        per_core = 1000 / r.cpu_ms if r.cpu_ms > 0 else float("inf")
        log = f"{r.log_per_handshake:6.2f}" if r.log_per_handshake is not None else f"{'-':>6}"
        print(f"{r.case:<10} {r.server:<14} {r.rate:7.0f} {r.cpu_ms:9.2f} {per_core:9.0f} "
              f"{r.server_pct:8.0f} {r.client_pct:8.0f} {r.p50:7.1f} {r.p99:7.1f} "
              f"{r.worst:7.0f} {r.failed:6d} {r.overflows:6d} {log}  {r.tls or '-'}")
    for r in rows:
        for text, n in r.errors.items():
            print(f"  {r.case} {r.server}: {n} x {text}")
        if r.problem and "\n" in r.problem:
            print(f"  {r.case} {r.server}: {r.problem}")


def _median(values: list[float]) -> float:
    values = sorted(v for v in values if v == v)
    if not values:
        return float("nan")
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def print_medians(rows: list[Row], cases: list[str], servers: list[str]) -> None:
    """Per case and server: median rate and CPU per handshake over the rounds,
    and their ratios to QEMU's and to the ``before`` vncd's."""
    print()
    print(f"{'case':<10} {'server':<14} {'rounds':>6} {'hs/s':>7} {'CPU ms/hs':>9} "
          f"{'rate/QEMU':>9} {'CPU/QEMU':>8} {'rate/before':>11} {'CPU/before':>10}")
    for case in cases:
        med = {}
        for name in servers:
            ok = [r for r in rows if r.case == case and r.server == name and not r.problem]
            if ok:
                med[name] = (len(ok), _median([r.rate for r in ok]),
                             _median([r.cpu_ms for r in ok]))
        qemu = next((v for k, v in med.items() if k.startswith("QEMU")), None)
        before = next((v for k, v in med.items() if k.startswith("before")), None)
        for name, (n, rate, cpu) in med.items():
            def ratio(other, i):
                if other is None or not other[i]:
                    return f"{'-':>9}"
                return f"{(rate if i == 1 else cpu) / other[i]:9.2f}"
            print(f"{case:<10} {name:<14} {n:6d} {rate:7.0f} {cpu:9.3f} {ratio(qemu, 1):>9} "
                  f"{ratio(qemu, 2):>8} {ratio(before, 1):>11} {ratio(before, 2):>10}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8,
                        help=f"concurrent client processes (1..{MAX_WORKERS})")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="measurement time per case and server")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--screen", choices=("image", "testcard"), default="image",
                        help="what vncd shows (QEMU shows its still console)")
    parser.add_argument("--rounds", type=int, default=1,
                        help=f"runs of every case and server, alternating (1..{MAX_ROUNDS})")
    parser.add_argument("--before", metavar="DIR",
                        help="also run the vncd of another checkout (e.g. main's work tree)")
    parser.add_argument("--instructions", type=int, metavar="N", default=0,
                        help="count callgrind instructions over N handshakes per server"
                             f" instead of timing (1..{MAX_COUNTED})")
    args = parser.parse_args(argv)
    if args.instructions and not 1 <= args.instructions <= MAX_COUNTED:
        parser.error(f"--instructions must be 1..{MAX_COUNTED}")
    if args.instructions and peers.tool("valgrind") is None:
        parser.error(f"--instructions needs valgrind: {peers.install_hint('valgrind')}")
    if not 1 <= args.rounds <= MAX_ROUNDS:
        parser.error(f"--rounds must be 1..{MAX_ROUNDS}")
    if args.before and not os.path.isfile(os.path.join(args.before, "vncd", "__main__.py")):
        parser.error(f"--before {args.before}: not a vncd checkout")
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers must be 1..{MAX_WORKERS}")
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:.0f}]")
    peers.stop_on_sigterm()
    have_qemu = peers.tool("qemu-system-x86_64") is not None
    print(f"connection rate: {args.workers} client processes, {args.seconds:g} s per run, "
          f"{os.cpu_count()} CPUs, load average {peers.load_average()} at start")
    if not have_qemu:
        print(f"  QEMU skipped: {peers.install_hint('qemu-system-x86_64')}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vncd-bench-") as root, peers.Children() as children:
        files = make_files(root)
        display = peers.free_display()
        port = peers.VNC_BASE_PORT + display
        vncd_screen = (["-screen", f"image,file={files.picture}"] if args.screen == "image"
                       else ["-screen", "testcard"])
        names = []
        counts: dict = {}
        counts_dir = os.path.join(root, "callgrind")
        os.mkdir(counts_dir)
        for case in cases:
            options = server_options(case, files, display)
            servers = [(f"vncd ({args.screen})", peers.vncd_argv(vncd_screen + options),
                        peers.ROOT)]
            if args.before:
                servers.append(("before", peers.vncd_argv(vncd_screen + options),
                                os.path.abspath(args.before)))
            if have_qemu:
                servers.append(("QEMU 7.2", peers.qemu_argv(options), peers.ROOT))
            names = [name for name, _, _ in servers]
            if args.instructions:
                for name, server_argv, root in servers:
                    counts[(case, name)] = count_instructions(
                        children, name, server_argv, case, files, port, args.instructions,
                        counts_dir, root)
                continue
            for rnd in range(args.rounds):
                turn = rnd % len(servers)
                for name, server_argv, root in servers[turn:] + servers[:turn]:
                    rows.append(measure(children, name, server_argv, case, files, port,
                                        args.workers, args.seconds, root))
    if args.instructions:
        print_instructions(counts, cases, names)
        return
    print_table(rows)
    if args.rounds > 1 or args.before:
        print_medians(rows, cases, names)
    print(f"load average {peers.load_average()} at end")


if __name__ == "__main__":
    peers.run_script(main)
