"""Process-wide OpenSSL configuration that pyOpenSSL cannot set per context.

OpenSSL reads its configuration file once, when the first TLS context of
the process is created.  vncd needs one setting from there:
``NumTickets = 0`` (no TLS 1.3 session tickets, which pyOpenSSL offers no
call for).  :func:`apply` points ``OPENSSL_CONF`` at vncd's file
(``creds/data/openssl.cnf``) just long enough to create that first
context, then restores the environment so child processes are unaffected.

An administrator's own ``OPENSSL_CONF`` wins: then nothing is changed
(add ``NumTickets = 0`` to its ``system_default`` section to get the same
effect).  pyOpenSSL initialises OpenSSL when it is imported, so if
anything imported it before ``creds`` the setting cannot take effect any
more: :data:`STATUS` says which case applies and the engine warns once.
"""

from __future__ import annotations

import os

import sys

__all__ = ["apply", "CONFIG_PATH", "STATUS"]

CONFIG_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "openssl.cnf")


#: ``applied``, ``administrator`` (OPENSSL_CONF was set), ``too-late``
#: (OpenSSL was initialised before creds was imported) or ``not-run``.
STATUS = "not-run"


def apply() -> bool:
    """Load vncd's OpenSSL configuration if nobody configured OpenSSL; True if applied."""
    global STATUS
    if os.environ.get("OPENSSL_CONF"):
        STATUS = "administrator"
        return False
    if "OpenSSL.SSL" in sys.modules:
        STATUS = "too-late"
        return False
    os.environ["OPENSSL_CONF"] = CONFIG_PATH
    try:
        from OpenSSL import SSL

        SSL.Context(SSL.TLS_METHOD)
    finally:
        os.environ.pop("OPENSSL_CONF", None)
    STATUS = "applied"
    return True
