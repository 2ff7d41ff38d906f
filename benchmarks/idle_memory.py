"""Server memory per idle connected client: vncd against QEMU 7.2.

    .venv/bin/python -m benchmarks.idle_memory [--clients 500]
        [--cases x509none,tlsnone,none] [--update] [--rounds 2]

For each case (see :mod:`benchmarks.connections` for what they mean) both
servers are started in turn with the same ``-object``/``-vnc`` options plus
``connections=`` large enough for every client.  After one warm-up client
has connected and left, the server's resident memory is read (``VmRSS``
and the proportional set size ``Pss`` from ``/proc/PID/smaps_rollup``);
then ``--clients`` clients complete the handshake up to ServerInit one
after another and stay connected, idle, and the memory is read again.
The table gives the growth per client, medians over ``--rounds`` runs
with the spread (min..max).  With ``--update`` each client first asks for
one full-screen update in Raw and reads it before going idle, so the
server also holds whatever a client that has seen the screen costs.

The issue's target: at most 64 KiB of server memory per idle connected
TLS client, with 500 of them.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import tempfile
import time

from benchmarks import peers
from benchmarks.connections import CASES, ClientSpec, make_files, server_options

#: The issue's target, KiB per idle TLS client.
TARGET_KIB = 64

#: Most clients (file descriptors in this one process, and the server's).
MAX_CLIENTS = 2000

#: Seconds the server gets to settle after the last client before reading.
SETTLE = 1.0

_RAW = 0


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` in KiB."""
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pss = rss
    return rss, pss


def full_update(sock: socket.socket, init: peers.ServerInit) -> None:
    """Ask for the whole screen in Raw and read the update to its end."""
    sock.sendall(struct.pack(">BxHi", 2, 1, _RAW))
    sock.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, init.width, init.height))
    header = peers.recv_exact(sock, 4)
    if header[0] != 0:
        raise peers.RFBError(f"expected a FramebufferUpdate, got message type {header[0]}")
    for _ in range(struct.unpack(">H", header[2:])[0]):
        x, y, w, h, encoding = struct.unpack(">HHHHi", peers.recv_exact(sock, 12))
        if encoding != _RAW:
            raise peers.RFBError(f"unexpected encoding {encoding} in a Raw update")
        peers.recv_exact(sock, w * h * init.bytes_per_pixel)


def connect(spec: ClientSpec, tls, update: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", spec.port), timeout=peers.IO_TIMEOUT)
    sock, init = peers.handshake(sock, password=spec.password(), tls=tls)
    if update:
        full_update(sock, init)
    return sock


def measure(children: peers.Children, name: str, argv: list[str], spec: ClientSpec,
            clients: int, update: bool) -> dict:
    child = children.start(argv, name=name)
    try:
        child.wait_for_port(spec.port)
        tls = spec.context()
        connect(spec, tls, update).close()
        time.sleep(SETTLE)
        before = memory_kib(child.pid)
        held = []
        try:
            for _ in range(clients):
                held.append(connect(spec, tls, update))
            time.sleep(SETTLE)
            after = memory_kib(child.pid)
        finally:
            for sock in held:
                sock.close()
        return {"rss": (after[0] - before[0]) / clients, "pss": (after[1] - before[1]) / clients,
                "base": before[0]}
    finally:
        children.stop(child)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}..{max(values):.1f})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--cases", default="x509none,tlsnone,none")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--update", action="store_true",
                        help="each client reads one full-screen Raw update before idling")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be 1..{MAX_CLIENTS}")
    cases = [c for c in args.cases.split(",") if c]
    if set(cases) - set(CASES) or not cases:
        parser.error(f"choose cases from {', '.join(CASES)}")
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be 1..10")
    peers.stop_on_sigterm()
    have_qemu = peers.tool("qemu-system-x86_64") is not None
    print(f"idle clients: {args.clients} per run, {args.rounds} rounds, "
          f"{'one full Raw update each' if args.update else 'handshake only'}, "
          f"load average {peers.load_average()}")
    if not have_qemu:
        print(f"  QEMU skipped: {peers.install_hint('qemu-system-x86_64')}")
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="vncd-bench-") as root, peers.Children() as children:
        files = make_files(root)
        display = peers.free_display()
        port = peers.VNC_BASE_PORT + display
        limit = f"connections={args.clients + 8}"
        for _ in range(args.rounds):
            for case in cases:
                options = server_options(case, files, display)
                options[-1] += "," + limit
                spec = ClientSpec(port, case, files.client_ca, files.client_cert,
                                  files.client_key)
                servers = [("vncd", peers.vncd_argv(
                    ["-screen", f"image,file={files.picture}"] + options))]
                if have_qemu:
                    servers.append(("QEMU 7.2", peers.qemu_argv(options)))
                for name, server_argv in servers:
                    results.setdefault((case, name), []).append(
                        measure(children, name, server_argv, spec, args.clients, args.update))
    print()
    print("| case | server | base RSS MiB | RSS KiB/client | PSS KiB/client | target |")
    print("|---|---|---|---|---|---|")
    for (case, name), runs in results.items():
        target = (f"<= {TARGET_KIB}" if case in ("x509none", "tlsnone") and name == "vncd"
                  else "")
        met = ""
        if target:
            met = " met" if statistics.median(r["pss"] for r in runs) <= TARGET_KIB else " MISSED"
        print(f"| {case} | {name} | {statistics.median(r['base'] for r in runs) / 1024:.1f} | "
              f"{spread([r['rss'] for r in runs])} | {spread([r['pss'] for r in runs])} | "
              f"{target}{met} |")


if __name__ == "__main__":
    peers.run_script(main)
