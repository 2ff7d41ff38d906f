"""Loaded credential material: what a credentials object read from its files.

These immutable records are the hand-over between the loaders
(:mod:`creds.x509`, :mod:`creds.anon`) and the TLS engine
(:mod:`creds.engine`); :class:`Endpoint` lives here so that neither side
imports the other.  Everything in them has already passed the loader's
checks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping

from cryptography import x509

__all__ = ["Endpoint", "X509Material", "AnonMaterial"]


class Endpoint(enum.Enum):
    """Which side of the TLS connection credentials are for."""

    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True)
class X509Material:
    #: Every certificate in ``ca-cert.pem`` (trust anchors for the peer).
    ca_certs: tuple[x509.Certificate, ...]
    #: CRLs from ``ca-crl.pem`` (server endpoint only, as QEMU); may be empty.
    crls: tuple[x509.CertificateRevocationList, ...]
    #: Our own certificate file: leaf first, then any intermediates; empty
    #: for a client endpoint without a certificate.
    chain: tuple[x509.Certificate, ...]
    #: The decrypted private key matching ``chain[0]`` (``None`` when no chain).
    key: Any
    #: Content of ``dh-params.pem`` (server), or ``None`` for the built-in group.
    dh_params_pem: bytes | None
    #: File paths by role (``ca``, ``crl``, ``cert``, ``key``, ``dh``) for messages.
    paths: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AnonMaterial:
    #: Content of ``dh-params.pem`` from ``dir`` (server), or ``None`` for the built-in group.
    dh_params_pem: bytes | None
    paths: Mapping[str, str] = field(default_factory=dict)
