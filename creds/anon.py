"""The ``tls-creds-anon`` object: anonymous (unauthenticated) TLS credentials.

QEMU's ``-object tls-creds-anon,id=ID,endpoint=server|client[,dir=DIR]
[,priority=P]``.  A server reads ``dh-params.pem`` from ``dir`` when both
exist; otherwise the TLS engine uses the built-in RFC 7919 ffdhe2048
group (QEMU 7.2 generated fresh 2048-bit parameters instead).  Clients
read nothing.

Unlike QEMU, these credentials can be reloaded: a reload re-reads
``dh-params.pem`` and keeps the previous parameters if the new file is
bad.

This module knows nothing about TLS sessions or VNC.
"""

from __future__ import annotations

from typing import Callable

from creds import engine
from creds.material import AnonMaterial
from creds.objects import Prop
from creds.pem import credential_path, load_dh_params_file
from creds.tlscreds import BASE_PROPS, Endpoint, KeyLoader, TLSCreds

__all__ = ["TLSCredsAnon", "DH_PARAMS"]

DH_PARAMS = "dh-params.pem"


class TLSCredsAnon(TLSCreds):
    """``tls-creds-anon``: no certificates, anonymous Diffie-Hellman."""

    qom_type = "tls-creds-anon"
    kind = "anon"
    props = BASE_PROPS + (
        Prop("loaded", "bool", read_only=True,
             help="historic; credentials are always loaded on creation"),
    )

    def build_context(self, material: AnonMaterial, *, warn: Callable[[str], None]):
        """The engine's context for this object's material."""
        return engine.build_context(self, material, warn=warn)

    def load_material(self, *, warn: Callable[[str], None],
                      key_loader: KeyLoader | None) -> AnonMaterial:
        """Find and check ``dh-params.pem`` (server endpoint with ``dir`` only)."""
        if self.endpoint is not Endpoint.SERVER:
            return AnonMaterial(dh_params_pem=None)
        path = credential_path(self.directory, DH_PARAMS, False)
        if path is None:
            return AnonMaterial(dh_params_pem=None)
        return AnonMaterial(dh_params_pem=load_dh_params_file(path), paths={"dh": path})
