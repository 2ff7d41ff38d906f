# -*- test-case-name: tests.creds.test_summary -*-
"""What a credentials object holds, in plain values, for people and monitors.

:func:`summarize` describes a loaded ``tls-creds-x509`` or
``tls-creds-anon`` object: its settings, the generation in force, and
for each certificate its file, role, subject and issuer (in the form
authz rules match), serial, SHA-256 fingerprint, subjectAltNames,
validity and days left, and for each CRL its issuer, next update and
number of revoked certificates.  Services (the monitor) show these
without looking inside a certificate themselves.

This module knows nothing about VNC or the monitor's formats.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from creds import dn
from creds.tlscreds import TLSCreds

__all__ = ["CertificateSummary", "CRLSummary", "CredentialsSummary", "summarize",
           "describe_certificate"]


@dataclass(frozen=True)
class CertificateSummary:
    #: ``ca``, ``server``, ``client`` or ``intermediate``.
    role: str
    path: str
    subject: str
    issuer: str
    serial: str
    fingerprint_sha256: str
    #: ``DNS:host``, ``IP:addr``, ``email:...``, ``URI:...``.
    subject_alt_names: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    #: Whole days until ``not_after`` (negative once expired).
    days_left: int


@dataclass(frozen=True)
class CRLSummary:
    path: str
    issuer: str
    last_update: datetime.datetime
    next_update: datetime.datetime | None
    revoked: int


@dataclass(frozen=True)
class CredentialsSummary:
    id: str
    qom_type: str
    endpoint: str
    directory: str | None
    verify_peer: bool
    priority: str | None
    #: 1 when created, one more for every successful reload.
    generation: int
    certificates: tuple[CertificateSummary, ...]
    crls: tuple[CRLSummary, ...]
    #: The ``dh-params.pem`` in use, or None for the built-in RFC 7919 group.
    dh_params: str | None


def _name(cert: x509.Certificate, issuer: bool = False) -> str:
    try:
        return dn.issuer_dn(cert) if issuer else dn.certificate_dn(cert)
    except dn.DNError:
        name = cert.issuer if issuer else cert.subject
        return name.rfc4514_string()


def _alt_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    out = []
    for name in san:
        if isinstance(name, x509.DNSName):
            out.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            out.append(f"IP:{name.value}")
        elif isinstance(name, x509.RFC822Name):
            out.append(f"email:{name.value}")
        elif isinstance(name, x509.UniformResourceIdentifier):
            out.append(f"URI:{name.value}")
        else:
            out.append(type(name).__name__)
    return tuple(out)


def describe_certificate(cert: x509.Certificate, role: str, path: str,
                         now: datetime.datetime) -> CertificateSummary:
    """One certificate as :class:`CertificateSummary` (``now`` is timezone-aware)."""
    not_after = cert.not_valid_after_utc
    return CertificateSummary(
        role=role, path=path, subject=_name(cert), issuer=_name(cert, issuer=True),
        serial=format(cert.serial_number, "x"),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        subject_alt_names=_alt_names(cert), not_before=cert.not_valid_before_utc,
        not_after=not_after, days_left=(not_after - now).days)


def summarize(creds: TLSCreds, now: datetime.datetime) -> CredentialsSummary:
    """Describe ``creds`` as loaded now (the generation in force)."""
    loaded = creds.loaded
    material: Any = loaded.material
    paths = dict(getattr(material, "paths", {}))
    certificates: list[CertificateSummary] = []
    for cert in getattr(material, "ca_certs", ()):
        certificates.append(describe_certificate(cert, "ca", paths.get("ca", ""), now))
    chain = getattr(material, "chain", ())
    for index, cert in enumerate(chain):
        role = creds.endpoint.value if index == 0 else "intermediate"
        certificates.append(describe_certificate(cert, role, paths.get("cert", ""), now))
    crls = tuple(
        CRLSummary(path=paths.get("crl", ""), issuer=crl.issuer.rfc4514_string(),
                   last_update=crl.last_update_utc, next_update=crl.next_update_utc,
                   revoked=len(crl))
        for crl in getattr(material, "crls", ()))
    dh_pem = getattr(material, "dh_params_pem", None)
    return CredentialsSummary(
        id=creds.id, qom_type=creds.qom_type, endpoint=creds.endpoint.value,
        directory=creds.directory, verify_peer=creds.verify_peer, priority=creds.priority,
        generation=loaded.generation, certificates=tuple(certificates), crls=crls,
        dh_params=paths.get("dh") if dh_pem is not None else None)
