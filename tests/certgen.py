"""Certificate generator for tests: any CA, intermediate, server or client
certificate a case needs, built with ``cryptography`` at test time.

Nothing here is committed key material: keys are generated per process
(and cached, because RSA generation is slow), certificates are fresh and
short-lived.  Every extension can be present or absent, critical or not;
validity windows can lie in the past or the future; keys can be RSA or EC
and can be written encrypted.

Typical use::

    root = certgen.ca("qemu CA")
    srv = certgen.server(root, "qemu.org", dns=["localhost"], ips=["127.0.0.1"])
    cli = certgen.client(root, "qemu")
    certgen.write_dir(d, ca=[root], server=srv)            # server creds dir
    certgen.write_dir(d2, ca=[root], client=cli)           # client creds dir

The defaults follow QEMU's test helpers (``TLS_ROOT_REQ_SIMPLE``,
``TLS_CERT_REQ_SIMPLE_SERVER/CLIENT``): subject ``C=UK,CN=<cn>``;
CA: basicConstraints critical CA, keyUsage critical keyCertSign|cRLSign;
leaves: basicConstraints critical non-CA, keyUsage critical
digitalSignature|keyEncipherment, extendedKeyUsage critical serverAuth or
clientAuth.  Validity defaults to one hour in the past until one day ahead.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "Issued", "UNSET", "key", "name", "make_cert", "ca", "intermediate",
    "server", "client", "crl", "write_dir", "write_pem", "key_pem",
    "FFDHE2048_PEM", "now",
]

UNSET = object()

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
ANY_EKU = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE

#: RFC 7919 ffdhe2048 group, PKCS#3 PEM (public constant, not a secret).
FFDHE2048_PEM = b"""-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""

_KEY_CACHE: dict[tuple[str, int, int], object] = {}


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def key(kind: str = "rsa", size: int = 2048, index: int = 0):
    """A private key from a per-process cache (``index`` picks distinct keys).

    ``kind`` is ``rsa`` (``size`` bits) or ``ec`` (``size`` 192, 256, 384 or 521).
    """
    cache_key = (kind, size, index)
    k = _KEY_CACHE.get(cache_key)
    if k is None:
        if kind == "rsa":
            k = rsa.generate_private_key(public_exponent=65537, key_size=size)
        elif kind == "ec":
            curve = {192: ec.SECP192R1(), 256: ec.SECP256R1(), 384: ec.SECP384R1(),
                     521: ec.SECP521R1()}[size]
            k = ec.generate_private_key(curve)
        else:
            raise ValueError(kind)
        _KEY_CACHE[cache_key] = k
    return k


def name(cn: str | None = None, country: str | None = "UK",
         extra: Sequence[tuple[x509.ObjectIdentifier, str]] = ()) -> x509.Name:
    """A subject name: ``C`` then ``CN`` (QEMU's helper order), then ``extra``."""
    attrs = []
    if country is not None:
        attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    for oid, value in extra:
        attrs.append(x509.NameAttribute(oid, value))
    if cn is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


@dataclass
class Issued:
    """A certificate with its private key (and the chain that issued it)."""

    cert: x509.Certificate
    key: object
    issuer: "Issued | None" = None

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, password: bytes | None = None, fmt: str = "pkcs8") -> bytes:
        return key_pem(self.key, password, fmt)

    def chain(self) -> list["Issued"]:
        """This certificate followed by its issuers up to (excluding) the root."""
        out: list[Issued] = [self]
        node = self.issuer
        while node is not None and node.issuer is not None:
            out.append(node)
            node = node.issuer
        return out

    @property
    def subject(self) -> x509.Name:
        return self.cert.subject


def key_pem(k, password: bytes | None = None, fmt: str = "pkcs8") -> bytes:
    """PEM of a private key; ``fmt`` is ``pkcs8`` or ``traditional`` (PKCS#1 / SEC1)."""
    enc = (serialization.BestAvailableEncryption(password) if password
           else serialization.NoEncryption())
    pf = (serialization.PrivateFormat.PKCS8 if fmt == "pkcs8"
          else serialization.PrivateFormat.TraditionalOpenSSL)
    return k.private_bytes(serialization.Encoding.PEM, pf, enc)


_KU_NAMES = ("digital_signature", "content_commitment", "key_encipherment",
             "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
             "encipher_only", "decipher_only")


def _key_usage(bits: Iterable[str]) -> x509.KeyUsage:
    bits = set(bits)
    unknown = bits - set(_KU_NAMES)
    if unknown:
        raise ValueError(f"unknown key usage bits {unknown}")
    kw = {n: (n in bits) for n in _KU_NAMES}
    if not kw["key_agreement"]:
        kw["encipher_only"] = kw["decipher_only"] = False
    return x509.KeyUsage(**kw)


def make_cert(
    subject: x509.Name,
    *,
    issuer: Issued | None = None,
    key_kind: str = "rsa",
    key_size: int = 2048,
    key_index: int | None = None,
    basic_constraints=UNSET,
    key_usage=UNSET,
    ext_key_usage=UNSET,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    emails: Sequence[str] = (),
    not_before: datetime.timedelta = datetime.timedelta(hours=-1),
    not_after: datetime.timedelta = datetime.timedelta(days=1),
    at: datetime.datetime | None = None,
    serial: int | None = None,
    hash_alg: hashes.HashAlgorithm | None = None,
    ski: bool = True,
    extra_extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> Issued:
    """Build one certificate.

    ``basic_constraints``: ``None`` (absent) or ``(is_ca, critical)`` or
    ``(is_ca, critical, path_len)``.  ``key_usage``: ``None`` or
    ``(bits, critical)`` with bit names as in ``cryptography``
    (``digital_signature``, ``key_cert_sign`` ...).  ``ext_key_usage``:
    ``None`` or ``(oids, critical)``.  ``UNSET`` leaves them absent too;
    the helpers below fill in QEMU-like defaults.  Validity is relative to
    ``at`` (default: now).
    """
    base = at or now()
    if key_index is None:
        key_index = len(_KEY_CACHE) % 6
    k = key(key_kind, key_size, key_index)
    signer_key = issuer.key if issuer is not None else k
    issuer_name = issuer.cert.subject if issuer is not None else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(k.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(base + not_before)
        .not_valid_after(base + not_after)
    )
    if basic_constraints not in (None, UNSET):
        is_ca, critical, *rest = basic_constraints
        path_len = rest[0] if rest else None
        builder = builder.add_extension(
            x509.BasicConstraints(ca=is_ca, path_length=path_len if is_ca else None),
            critical=critical)
    if key_usage not in (None, UNSET):
        bits, critical = key_usage
        builder = builder.add_extension(_key_usage(bits), critical=critical)
    if ext_key_usage not in (None, UNSET):
        oids, critical = ext_key_usage
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(oids)), critical=critical)
    san: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    san += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    san += [x509.RFC822Name(e) for e in emails]
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False)
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                critical=False)
    for ext, critical in extra_extensions:
        builder = builder.add_extension(ext, critical=critical)
    if hash_alg is None:
        hash_alg = hashes.SHA256()
    if isinstance(signer_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        cert = builder.sign(signer_key, hash_alg)
    else:
        cert = builder.sign(signer_key, None)
    return Issued(cert=cert, key=k, issuer=issuer)


def ca(cn: str = "qemu CA", *, issuer: Issued | None = None, country: str | None = "UK",
       subject: x509.Name | None = None, crl_sign: bool = True, **kw) -> Issued:
    """A CA certificate (root unless ``issuer`` is given).

    ``crl_sign=False`` leaves cRLSign out of the keyUsage, as QEMU's
    documented certtool template (``ca`` + ``cert_signing_key``) does.
    """
    kw.setdefault("basic_constraints", (True, True))
    kw.setdefault("key_usage", ({"key_cert_sign", "crl_sign"} if crl_sign
                                else {"key_cert_sign"}, True))
    kw.setdefault("ext_key_usage", None)
    return make_cert(subject or name(cn, country), issuer=issuer, **kw)


def intermediate(issuer: Issued, cn: str, **kw) -> Issued:
    return ca(cn, issuer=issuer, **kw)


def _leaf(issuer: Issued | None, cn: str, purpose, country, subject, kw) -> Issued:
    kw.setdefault("basic_constraints", (False, True))
    kw.setdefault("key_usage", ({"digital_signature", "key_encipherment"}, True))
    kw.setdefault("ext_key_usage", ([purpose], True))
    return make_cert(subject or name(cn, country), issuer=issuer, **kw)


def server(issuer: Issued | None, cn: str = "qemu.org", *, country: str | None = "UK",
           subject: x509.Name | None = None, **kw) -> Issued:
    """A TLS server certificate (serverAuth)."""
    return _leaf(issuer, cn, SERVER_AUTH, country, subject, kw)


def client(issuer: Issued | None, cn: str = "qemu", *, country: str | None = "UK",
           subject: x509.Name | None = None, **kw) -> Issued:
    """A TLS client certificate (clientAuth)."""
    return _leaf(issuer, cn, CLIENT_AUTH, country, subject, kw)


def crl(issuer: Issued, revoked: Sequence[Issued] = (), *,
        last_update: datetime.timedelta = datetime.timedelta(hours=-1),
        next_update: datetime.timedelta = datetime.timedelta(days=1),
        at: datetime.datetime | None = None) -> x509.CertificateRevocationList:
    """A CRL signed by ``issuer`` revoking ``revoked``."""
    base = at or now()
    b = (x509.CertificateRevocationListBuilder()
         .issuer_name(issuer.cert.subject)
         .last_update(base + last_update)
         .next_update(base + next_update))
    for r in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(r.cert.serial_number)
            .revocation_date(base + last_update)
            .build())
    return b.sign(issuer.key, hashes.SHA256())


def write_pem(path: str, *items, mode: int = 0o644) -> str:
    """Write certificates / CRLs / raw PEM bytes concatenated into ``path``."""
    chunks = []
    for it in items:
        if isinstance(it, Issued):
            chunks.append(it.pem())
        elif isinstance(it, x509.Certificate):
            chunks.append(it.public_bytes(serialization.Encoding.PEM))
        elif isinstance(it, x509.CertificateRevocationList):
            chunks.append(it.public_bytes(serialization.Encoding.PEM))
        elif isinstance(it, bytes):
            chunks.append(it)
        else:
            raise TypeError(type(it))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(b"".join(chunks))
    os.chmod(path, mode)
    return path


def write_dir(
    directory: str,
    *,
    ca: Sequence[Issued | x509.Certificate] | None = None,
    server: Issued | Sequence[Issued] | None = None,
    client: Issued | Sequence[Issued] | None = None,
    key_password: bytes | None = None,
    key_format: str = "pkcs8",
    crl: x509.CertificateRevocationList | None = None,
    dh: bytes | None = None,
    write_key: bool = True,
) -> str:
    """Lay out a credentials directory with QEMU's file names.

    ``server``/``client`` may be a single certificate or a chain (leaf
    first); the key written is the leaf's.  Keys are mode 0600.
    """
    os.makedirs(directory, exist_ok=True)
    if ca is not None:
        write_pem(os.path.join(directory, "ca-cert.pem"), *ca)
    for role, ident in (("server", server), ("client", client)):
        if ident is None:
            continue
        chain = [ident] if isinstance(ident, Issued) else list(ident)
        write_pem(os.path.join(directory, f"{role}-cert.pem"), *chain)
        if write_key:
            write_pem(os.path.join(directory, f"{role}-key.pem"),
                      chain[0].key_pem(key_password, key_format), mode=0o600)
    if crl is not None:
        write_pem(os.path.join(directory, "ca-crl.pem"), crl)
    if dh is not None:
        write_pem(os.path.join(directory, "dh-params.pem"), dh)
    return directory
