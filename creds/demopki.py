"""A throw-away PKI for trying vncd: ``python -m creds.demopki DIR [--hostname NAME]...``.

Writes a CA and a server and a client certificate in the layout of
``tls-creds-x509`` directories (QEMU's file names)::

    DIR/ca/ca-cert.pem, ca-key.pem          the CA (kept to reissue)
    DIR/server/ca-cert.pem, server-cert.pem, server-key.pem
    DIR/client/ca-cert.pem, client-cert.pem, client-key.pem

The server certificate names localhost, 127.0.0.1 and ::1 plus every
``--hostname``.  Running it again keeps whatever is still valid for at
least :data:`RENEW_BEFORE` (and, for the server, names every host asked
for) and reissues the rest, so the demo never starts with a warning.
Every result is loaded with vncd's own sanity checks before the command
succeeds.  It prints the client certificate's distinguished name, the
identity an ``authz-simple`` object would allow.

Not for production: the CA key sits next to the certificates.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from typing import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from creds.dn import certificate_dn
from creds.objects import ObjectError
from creds.pem import (
    FileReadError, PEMError, parse_certificates, parse_private_key, read_file,
)
from creds.sanity import EXPIRY_WARNING
from creds.x509 import load_x509_material

__all__ = ["ensure_pki", "main", "VALIDITY", "RENEW_BEFORE", "DEFAULT_HOSTNAMES"]

#: Lifetime of every demo certificate: long enough for a demo, short enough
#: that a forgotten demo key stops working by itself.
VALIDITY = datetime.timedelta(days=90)

#: Reissue what expires sooner than this: vncd warns from that point on.
RENEW_BEFORE = EXPIRY_WARNING

#: Names the server certificate always carries (the demo listens on loopback).
DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1", "::1")

#: RSA 2048 with digitalSignature + keyEncipherment works with every QEMU
#: release and every VNC client, which EC keys do not.
_KEY_BITS = 2048
_ORG = "vncd demo"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: x509.Name, key, issuer: x509.Certificate | None, issuer_key,
           now: datetime.datetime, *, ca: bool, purpose=None,
           hostnames: Sequence[str] = ()) -> x509.Certificate:
    usage = ({"key_cert_sign": True, "crl_sign": True} if ca
             else {"digital_signature": True, "key_encipherment": True})
    flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment",
                           "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                           "encipher_only", "decipher_only"), False)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.subject if issuer else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                              critical=True)
               .add_extension(x509.KeyUsage(**{**flags, **usage}), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    if purpose is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=True)
    if hostnames:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [_general_name(h) for h in hostnames]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _load(cert_path: str, key_path: str):
    """(certificate, key) from files, or None when missing or unreadable."""
    try:
        cert = parse_certificates(read_file(cert_path))[0]
        key = parse_private_key(read_file(key_path), None)
    except (FileReadError, PEMError):
        return None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, pub) != key.public_key().public_bytes(der, pub):
        return None
    return cert, key


def _still_good(cert: x509.Certificate, issuer: x509.Certificate,
                now: datetime.datetime, hostnames: Sequence[str] = ()) -> bool:
    if cert.not_valid_after_utc - now < RENEW_BEFORE or cert.not_valid_before_utc > now:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if hostnames:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        if not {_general_name(h) for h in hostnames} <= set(san):
            return False
    return True


def _write(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` atomically, only if it changed (re-runs leave files alone)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        if read_file(path) == data and (os.stat(path).st_mode & 0o777) == mode:
            return
    except (FileReadError, OSError):
        pass
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ensure_pki(directory: str, hostnames: Sequence[str] = (),
               now: datetime.datetime | None = None) -> tuple[str, list[str]]:
    """Create or refresh the demo PKI; returns (client DN, what was issued)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    names = list(dict.fromkeys([*DEFAULT_HOSTNAMES, *hostnames]))

    def path(*parts: str) -> str:
        return os.path.join(directory, *parts)

    issued: list[str] = []

    ca = _load(path("ca", "ca-cert.pem"), path("ca", "ca-key.pem"))
    if ca is None or not _still_good(ca[0], ca[0], now):
        key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
        ca = (_issue(_name("vncd demo CA"), key, None, key, now, ca=True), key)
        issued.append("CA")
    ca_cert, ca_key = ca
    _write(path("ca", "ca-key.pem"), _key_pem(ca_key), 0o600)

    leaves = {}
    for role, cn, purpose, wanted in (
            ("server", names[0], ExtendedKeyUsageOID.SERVER_AUTH, names),
            ("client", "vncd demo client", ExtendedKeyUsageOID.CLIENT_AUTH, ())):
        leaf = _load(path(role, f"{role}-cert.pem"), path(role, f"{role}-key.pem"))
        if leaf is None or not _still_good(leaf[0], ca_cert, now, wanted):
            key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
            leaf = (_issue(_name(cn), key, ca_cert, ca_key, now, ca=False, purpose=purpose,
                           hostnames=wanted), key)
            issued.append(role)
        leaves[role] = leaf
        _write(path(role, "ca-cert.pem"), _pem(ca_cert))
        _write(path(role, f"{role}-cert.pem"), _pem(leaf[0]))
        _write(path(role, f"{role}-key.pem"), _key_pem(leaf[1]), 0o600)

    _write(path("ca", "ca-cert.pem"), _pem(ca_cert))
    client_cert = leaves["client"][0]

    for role in ("server", "client"):
        load_x509_material(directory=path(role), server=role == "server", sanity_check=True,
                           get_password=lambda: None, now=now)
    return certificate_dn(client_cert), issued


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m creds.demopki",
        description="Write (or refresh) a demo CA, server and client certificate.")
    parser.add_argument("directory")
    parser.add_argument("--hostname", action="append", default=[],
                        help="another name or address for the server certificate")
    args = parser.parse_args(argv)
    try:
        dn, issued = ensure_pki(args.directory, args.hostname)
    except (ObjectError, OSError) as e:
        print(f"demopki: {e}", file=sys.stderr)
        return 1
    what = ", ".join(issued) if issued else "nothing (everything still valid)"
    print(f"demo PKI in {args.directory}: issued {what}")
    print(f"client certificate DN: {dn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
