"""Process-wide OpenSSL configuration that pyOpenSSL cannot set per context.

OpenSSL reads its configuration file once, when the first TLS context of
the process is created.  vncd needs one setting from there:
``NumTickets = 0`` (no TLS 1.3 session tickets, which pyOpenSSL offers no
call for).  :func:`apply` points ``OPENSSL_CONF`` at vncd's file
(``creds/data/openssl.cnf``) just long enough to create that first
context, then restores the environment so child processes are unaffected.

An administrator's own ``OPENSSL_CONF`` wins: then nothing is changed
(add ``NumTickets = 0`` to its ``system_default`` section to get the same
effect).  If something in the process created a TLS context before
``creds`` was imported, the setting cannot take effect any more and
sessions at TLS 1.3 carry tickets.
"""

from __future__ import annotations

import os

__all__ = ["apply", "CONFIG_PATH"]

CONFIG_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "openssl.cnf")


def apply() -> bool:
    """Load vncd's OpenSSL configuration if nobody configured OpenSSL; True if applied."""
    if os.environ.get("OPENSSL_CONF"):
        return False
    os.environ["OPENSSL_CONF"] = CONFIG_PATH
    try:
        from OpenSSL import SSL

        SSL.Context(SSL.TLS_METHOD)
    finally:
        os.environ.pop("OPENSSL_CONF", None)
    return True
