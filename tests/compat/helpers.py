"""Shared helpers for the compat tests: certificate directories and parsing shortcuts."""

from __future__ import annotations

import datetime

from tests import certgen

__all__ = ["server_dir", "client_dir", "client_identity", "VALIDITY"]

#: Long enough that no "expires soon" warning appears, short-lived all the same.
VALIDITY = datetime.timedelta(days=90)


def _root() -> certgen.Issued:
    return certgen.ca("vncd test CA", not_after=VALIDITY)


def server_dir(path: str, root: certgen.Issued | None = None) -> str:
    """A server credentials directory QEMU 7.2 and vncd both accept without warnings."""
    root = root or _root()
    srv = certgen.server(root, "localhost", dns=["localhost"], ips=["127.0.0.1"],
                         not_after=VALIDITY)
    return certgen.write_dir(path, ca=[root], server=srv)


def client_identity(path: str, root: certgen.Issued, cn: str) -> tuple[str, str]:
    """A client certificate ``CN=<cn>`` (no other RDN) and its key: two PEM paths."""
    cli = certgen.client(root, cn, country=None, not_after=VALIDITY)
    certgen.write_dir(path, client=cli)
    return f"{path}/client-cert.pem", f"{path}/client-key.pem"


def client_dir(path: str) -> str:
    """A client credentials directory (for client-endpoint objects)."""
    root = _root()
    cli = certgen.client(root, "vncd test client", not_after=VALIDITY)
    return certgen.write_dir(path, ca=[root], client=cli)
