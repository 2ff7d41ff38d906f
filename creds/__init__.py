"""creds: TLS credential objects, certificate checks, secrets, authorization
and the transport-independent TLS session API.

Knows nothing about VNC, the command line or sockets.  Everything a network
service needs is reachable from here:

* :func:`new_registry` -- an :class:`~creds.objects.ObjectRegistry` with
  every object type (``secret``, ``tls-creds-x509``, ``tls-creds-anon``,
  ``authz-simple``, ``authz-list``, ``authz-listfile``) registered.
* :class:`~creds.session.TLSSession` -- bytes in, bytes out TLS.
"""

from __future__ import annotations

from creds import _openssl_config

_openssl_config.apply()

from creds.objects import ObjectError, ObjectRegistry, UserCreatable
from creds.tlscreds import Endpoint, TLSCreds

__all__ = [
    "ObjectError", "ObjectRegistry", "UserCreatable", "Endpoint", "TLSCreds",
    "new_registry", "OBJECT_TYPES",
]


def _object_types():
    from creds.anon import TLSCredsAnon
    from creds.authz import AuthzList, AuthzListFile, AuthzSimple
    from creds.secret import Secret
    from creds.x509 import TLSCredsX509

    return (Secret, TLSCredsX509, TLSCredsAnon, AuthzSimple, AuthzList, AuthzListFile)


def new_registry(**kwargs) -> ObjectRegistry:
    """A registry with every creds object type registered.

    Keyword arguments (``clock``, ``warn``) go to :class:`ObjectRegistry`.
    """
    registry = ObjectRegistry(**kwargs)
    for cls in _object_types():
        registry.register_type(cls)
    return registry


def __getattr__(name):
    if name == "OBJECT_TYPES":
        return _object_types()
    raise AttributeError(name)
