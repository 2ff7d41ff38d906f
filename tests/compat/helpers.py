"""Shared helpers for the compat tests: certificate directories and parsing shortcuts."""

from __future__ import annotations

from tests import certgen

__all__ = ["server_dir", "client_dir"]


def server_dir(path: str) -> str:
    """A server credentials directory QEMU 7.2 and vncd both accept."""
    root = certgen.ca("vncd test CA")
    srv = certgen.server(root, "localhost", dns=["localhost"], ips=["127.0.0.1"])
    return certgen.write_dir(path, ca=[root], server=srv)


def client_dir(path: str) -> str:
    """A client credentials directory (for client-endpoint objects)."""
    root = certgen.ca("vncd test CA")
    cli = certgen.client(root, "vncd test client")
    return certgen.write_dir(path, ca=[root], client=cli)
