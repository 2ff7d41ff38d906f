"""Shared helpers for the compat tests: certificate directories and parsing shortcuts."""

from __future__ import annotations

import datetime

from tests import certgen

__all__ = ["server_dir", "client_dir", "VALIDITY"]

#: Long enough that no "expires soon" warning appears, short-lived all the same.
VALIDITY = datetime.timedelta(days=90)


def server_dir(path: str) -> str:
    """A server credentials directory QEMU 7.2 and vncd both accept without warnings."""
    root = certgen.ca("vncd test CA", not_after=VALIDITY)
    srv = certgen.server(root, "localhost", dns=["localhost"], ips=["127.0.0.1"],
                         not_after=VALIDITY)
    return certgen.write_dir(path, ca=[root], server=srv)


def client_dir(path: str) -> str:
    """A client credentials directory (for client-endpoint objects)."""
    root = certgen.ca("vncd test CA", not_after=VALIDITY)
    cli = certgen.client(root, "vncd test client", not_after=VALIDITY)
    return certgen.write_dir(path, ca=[root], client=cli)
