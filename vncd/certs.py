# -*- test-case-name: tests.creds.test_certs_tool -*-
"""``vncd-certs``: create, revoke, check and show ``tls-creds-x509`` directories.

::

    vncd-certs create DIR [--dns NAME]... [--ip ADDR]... [--client-dn DN]...
                          [--ca-dn DN] [--days N] [--force]
    vncd-certs revoke DIR CERT [--ca-key FILE] [--crl-days N]
    vncd-certs check DIR [--endpoint server|client] [--password-file FILE]
    vncd-certs show DIR
    vncd-certs gtk-vnc DIR [--pki-dir DIR] [--program NAME]... [--force]

The work is done by :mod:`creds.pki`; this module is the command line
only.  Exit status: 0 success (``check``: every check passed or only
warned); 1 a check failed or the request could not be carried out;
2 bad command line.  Errors are one line on standard error starting with
``vncd-certs:``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import sys
from typing import Sequence, TextIO

from creds import pki
from creds import x509 as x509creds

__all__ = ["main", "run", "MAX_PASSWORD_FILE"]

#: Largest --password-file read (a key password, not data).
MAX_PASSWORD_FILE = 4096

#: How each verdict is printed by ``check``.
_MARKS = {"ok": "ok  ", "warning": "WARN", "failed": "FAIL", "skipped": "skip"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vncd-certs",
        description="Create, revoke, check and show tls-creds-x509 credentials "
                    "directories (QEMU's file layout).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("create", help="make a CA, a server and a client certificate")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--dns", action="append", metavar="NAME",
                   help="DNS name for the server certificate (repeatable; default: "
                        f"{', '.join(pki.DEFAULT_DNS)})")
    p.add_argument("--ip", action="append", metavar="ADDR",
                   help="IP address for the server certificate (repeatable; default: "
                        f"{', '.join(pki.DEFAULT_IPS)})")
    p.add_argument("--client-dn", action="append", metavar="DN",
                   help="subject of a client certificate, in authz identity form "
                        "(repeatable: the first goes to DIR/client-cert.pem, the others "
                        f"to DIR/{pki.CLIENTS_DIR}/CN/; default: {pki.DEFAULT_CLIENT_DN})")
    p.add_argument("--ca-dn", default=pki.DEFAULT_CA_DN, metavar="DN",
                   help=f"subject of the CA (default: {pki.DEFAULT_CA_DN})")
    p.add_argument("--days", type=int, default=pki.DEFAULT_DAYS, metavar="N",
                   help=f"validity of the server and client certificates "
                        f"(default: {pki.DEFAULT_DAYS}; at most {pki.MAX_DAYS})")
    p.add_argument("--force", action="store_true",
                   help="replace existing files (their certificates stop working)")

    p = sub.add_parser("revoke", help="add a certificate to ca-crl.pem")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("cert", metavar="CERT", help="PEM file of the certificate to revoke")
    p.add_argument("--ca-key", metavar="FILE", help="the CA's key (default: DIR/ca-key.pem)")
    p.add_argument("--crl-days", type=int, default=pki.CRL_DAYS, metavar="N",
                   help=f"days until the CRL's nextUpdate (default: {pki.CRL_DAYS})")

    p = sub.add_parser("check", help="run the credentials objects' checks, every one")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--endpoint", choices=("server", "client"), default="server")
    p.add_argument("--password-file", metavar="FILE",
                   help="password of an encrypted key (the file's bytes, as "
                        "-object secret,file= reads them)")

    p = sub.add_parser("show", help="describe the certificates and CRLs")
    p.add_argument("directory", metavar="DIR")

    p = sub.add_parser("gtk-vnc", help="copy the CA and client identity to ~/.pki for "
                                       "gtk-vnc clients (gvncviewer, gvnccapture)")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--pki-dir", metavar="DIR",
                   help="where to write (default: .pki in the passwd home, where "
                        "gtk-vnc looks)")
    p.add_argument("--program", action="append", metavar="NAME",
                   help="gtk-vnc program to give the client certificate (repeatable; "
                        f"default: {', '.join(GTK_VNC_PROGRAMS)})")
    p.add_argument("--force", action="store_true", help="replace different existing files")
    return parser


def _read_password(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_PASSWORD_FILE + 1)
    if len(data) > MAX_PASSWORD_FILE:
        raise pki.PKIError(f"{path}: longer than {MAX_PASSWORD_FILE} bytes; "
                           "not a password file")
    return data


def run(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Carry out one command; returns the exit status."""
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = _parser().parse_args(list(argv))
    except SystemExit as e:
        return 2 if e.code else 0
    try:
        return _COMMANDS[args.command](args, out)
    except pki.PKIError as e:
        err.write(f"vncd-certs: {e}\n")
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        err.write(f"vncd-certs: {where}{e.strerror or e}\n")
    return 1


def _create(args, out: TextIO) -> int:
    made = pki.create(args.directory, dns=args.dns or pki.DEFAULT_DNS,
                      ips=args.ip or pki.DEFAULT_IPS,
                      client_dn=args.client_dn or pki.DEFAULT_CLIENT_DN,
                      ca_dn=args.ca_dn, days=args.days, force=args.force)
    out.write(f"vncd-certs: created {', '.join(made.files)}\n"
              f"  server names: {', '.join(made.alt_names)}\n")
    for dn, where in made.clients:
        extra = "" if where == made.directory else f" (client directory {where})"
        out.write(f"  client identity (for authz-simple): {dn}{extra}\n")
    out.write(f"  keep {made.files[1]} secret: it signs certificates and CRLs\n")
    return 0


def _revoke(args, out: TextIO) -> int:
    fresh = pki.revoke(args.directory, args.cert, ca_key_path=args.ca_key,
                       crl_days=args.crl_days)
    state = "revoked" if fresh else "was already revoked; CRL renewed"
    out.write(f"vncd-certs: {args.cert} {state} in {args.directory}/ca-crl.pem\n"
              "  a running vncd uses it after SIGHUP (or the monitor's vncd-reload-credentials)\n")
    return 0


def _check(args, out: TextIO) -> int:
    password = _read_password(args.password_file) if args.password_file else None
    checks = pki.check(args.directory, args.endpoint, password=password)
    for c in checks:
        line = f"{_MARKS[c.verdict]} {c.name}"
        if c.detail:
            line += f": {c.detail}"
        out.write(line + "\n")
        if c.hint:
            out.write(f"     fix: {c.hint}\n")
    failed = sum(c.failed for c in checks)
    warned = sum(c.verdict == "warning" for c in checks)
    out.write(f"{args.directory} as {args.endpoint}: "
              + (f"{failed} check(s) failed" if failed else "usable")
              + (f", {warned} warning(s)" if warned else "") + "\n")
    return 1 if failed else 0


def _show(args, out: TextIO) -> int:
    out.write("\n".join(pki.show(args.directory)) + "\n")
    return 0


#: gtk-vnc programs whose client certificate directory ``gtk-vnc`` fills,
#: and the most that may be named.
GTK_VNC_PROGRAMS = ("gvnccapture", "gvncviewer")
MAX_PROGRAMS = 16


def default_pki_dir() -> str:
    """``~/.pki`` of the passwd entry: gtk-vnc looks there, not under ``$HOME``."""
    return os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".pki")


def gtk_vnc_plan(directory: str, pki_dir: str,
                 programs: Sequence[str]) -> list[tuple[str, str, int]]:
    """Where gtk-vnc clients read a credentials directory's files: ``(source,
    target, mode)`` for ``PKI/CA/cacert.pem`` (and ``cacrl.pem``), and per
    program ``PKI/PROGRAM/clientcert.pem`` and ``PKI/PROGRAM/private/clientkey.pem``."""
    if not programs or len(programs) > MAX_PROGRAMS:
        raise pki.PKIError(f"name 1 to {MAX_PROGRAMS} gtk-vnc programs")
    for program in programs:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", program) or program in (".", ".."):
            raise pki.PKIError(f"--program {program!r}: not a program name")
    src = {n: os.path.join(directory, n) for n in
           (x509creds.CA_CERT, x509creds.CA_CRL, x509creds.CLIENT_CERT, x509creds.CLIENT_KEY)}
    for name in (x509creds.CA_CERT, x509creds.CLIENT_CERT, x509creds.CLIENT_KEY):
        if not os.path.isfile(src[name]):
            raise pki.PKIError(f"{src[name]} is missing (vncd-certs create {directory} makes it)")
    plan = [(src[x509creds.CA_CERT], os.path.join(pki_dir, "CA", "cacert.pem"), 0o644)]
    if os.path.isfile(src[x509creds.CA_CRL]):
        plan.append((src[x509creds.CA_CRL], os.path.join(pki_dir, "CA", "cacrl.pem"), 0o644))
    for program in programs:
        plan.append((src[x509creds.CLIENT_CERT],
                     os.path.join(pki_dir, program, "clientcert.pem"), 0o644))
        plan.append((src[x509creds.CLIENT_KEY],
                     os.path.join(pki_dir, program, "private", "clientkey.pem"), 0o600))
    return plan


def _gtk_vnc(args, out: TextIO) -> int:
    plan = gtk_vnc_plan(args.directory, args.pki_dir or default_pki_dir(),
                        args.program or GTK_VNC_PROGRAMS)
    written = pki.install_copies(plan, force=args.force)
    for path in written:
        out.write(f"vncd-certs: wrote {path}\n")
    return 0


_COMMANDS = {"create": _create, "revoke": _revoke, "check": _check, "show": _show,
             "gtk-vnc": _gtk_vnc}


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (exits with the status)."""
    sys.exit(run(sys.argv[1:] if argv is None else argv, sys.stdout, sys.stderr))


if __name__ == "__main__":
    main()
