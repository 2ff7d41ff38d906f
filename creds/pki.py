"""A small PKI for ``tls-creds-x509`` directories: what ``vncd-certs`` does.

* :func:`create` writes a CA able to sign CRLs, a server certificate with
  DNS and IP subjectAltNames and client certificates with chosen
  distinguished names, in QEMU's file layout (``ca-cert.pem``,
  ``server-cert.pem``, ``server-key.pem``, ``client-cert.pem``,
  ``client-key.pem``; keys mode 0600) plus the CA's key ``ca-key.pem``,
  which ``tls-creds-x509`` never reads.  Every result is loaded with the
  credentials objects' own checks before the call returns.
* :func:`revoke` adds a certificate to ``ca-crl.pem`` (made or updated).
* :func:`check` runs the checks of the credentials objects one by one,
  collecting every verdict instead of stopping at the first failure, then
  loads the directory as a ``tls-creds-x509`` object (the verdict vncd
  itself would give).
* :func:`show` describes every certificate and CRL in the directory.
* :func:`install_copies` copies credential files into another layout
  (``vncd-certs gtk-vnc`` uses it).

This module and :mod:`creds.x509` are the only users of certificate
writing in vncd; the command line lives in :mod:`vncd.certs`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from creds import sanity
from creds.dn import DNError, certificate_dn, issuer_dn, name_dn
from creds.objects import ObjectError
from creds.pem import (
    FileReadError, PEMError, credential_path, load_dh_params_file, parse_certificates,
    parse_crls, parse_private_key, read_file,
)
from creds import x509 as x509creds

__all__ = [
    "PKIError", "Check", "create", "revoke", "check", "show", "install_copies", "parse_dn",
    "MAX_NAMES", "MAX_CLIENTS", "CLIENTS_DIR", "MAX_DN_LENGTH", "MAX_DAYS", "DEFAULT_DAYS", "CA_DAYS", "CRL_DAYS",
    "DEFAULT_DNS", "DEFAULT_IPS", "DEFAULT_CLIENT_DN", "CA_KEY", "MAX_COPIES",
]

#: Most subjectAltNames (DNS names plus addresses) one server certificate gets.
MAX_NAMES = 64
#: Most client certificates one ``create`` makes.
MAX_CLIENTS = 100
#: Where ``create`` puts the client credentials directories after the first.
CLIENTS_DIR = "clients"
#: Longest distinguished name accepted on the command line (characters).
MAX_DN_LENGTH = 1024
#: Longest validity, in days, of any certificate made here.
MAX_DAYS = 3650
#: Validity of the server and client certificates unless told otherwise.
DEFAULT_DAYS = 365
#: Validity of the CA: leaves issued later must not outlive it.
CA_DAYS = MAX_DAYS
#: nextUpdate of a CRL written by :func:`revoke` unless told otherwise.
CRL_DAYS = 30
#: Names the server certificate carries unless told otherwise.
DEFAULT_DNS = ("localhost",)
DEFAULT_IPS = ("127.0.0.1", "::1")
DEFAULT_CLIENT_DN = "O=vncd,CN=vncd client"
DEFAULT_CA_DN = "O=vncd,CN=vncd CA"
#: The CA's private key inside the directory (not a QEMU file).
CA_KEY = "ca-key.pem"
#: RSA keys: every QEMU release and every VNC client takes them.
KEY_BITS = 2048

_CREATED = (x509creds.CA_CERT, CA_KEY, x509creds.SERVER_CERT, x509creds.SERVER_KEY,
            x509creds.CLIENT_CERT, x509creds.CLIENT_KEY)

#: DN attribute names accepted by :func:`parse_dn` (GnuTLS' spelling first).
_DN_ATTRIBUTES = {
    "C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME, "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME,
    "EMAIL": NameOID.EMAIL_ADDRESS, "emailAddress": NameOID.EMAIL_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT, "UID": NameOID.USER_ID,
    "serialNumber": NameOID.SERIAL_NUMBER, "title": NameOID.TITLE,
    "street": NameOID.STREET_ADDRESS,
}
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


class PKIError(Exception):
    """A request :mod:`creds.pki` cannot carry out; the text says why and names the file."""


# -- helpers ---------------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def parse_dn(text: str) -> x509.Name:
    """A name from ``C=GB,O=ACME,CN=alice`` (certificate order, as authz identities
    are written; ``\\,`` for a comma inside a value)."""
    if not text or len(text) > MAX_DN_LENGTH:
        raise PKIError(f"distinguished name must have 1 to {MAX_DN_LENGTH} characters")
    rdns = []
    for part in _UNESCAPED_COMMA.split(text):
        key, sep, value = part.partition("=")
        key = key.strip()
        value = value.replace("\\,", ",")
        if not sep or not value:
            raise PKIError(f"distinguished name {text!r}: {part!r} is not ATTRIBUTE=VALUE")
        oid = _DN_ATTRIBUTES.get(key)
        if oid is None:
            raise PKIError(f"distinguished name {text!r}: unknown attribute {key!r} "
                           f"(known: {', '.join(sorted(_DN_ATTRIBUTES))})")
        try:
            rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(oid, value)]))
        except ValueError as e:
            raise PKIError(f"distinguished name {text!r}: {key}={value!r}: {e}") from None
    return x509.Name(rdns)


def _general_names(dns: Sequence[str], ips: Sequence[str]) -> list[x509.GeneralName]:
    if len(dns) + len(ips) > MAX_NAMES:
        raise PKIError(f"at most {MAX_NAMES} DNS names and IP addresses per certificate")
    names: list[x509.GeneralName] = []
    for name in dns:
        if not name or len(name) > 253 or not re.fullmatch(r"[A-Za-z0-9*._-]+", name):
            raise PKIError(f"--dns {name!r}: not a DNS name")
        names.append(x509.DNSName(name))
    for address in ips:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address.strip("[]"))))
        except ValueError:
            raise PKIError(f"--ip {address!r}: not an IPv4 or IPv6 address") from None
    if not names:
        raise PKIError("the server certificate needs at least one DNS name or IP address")
    return list(dict.fromkeys(names))


def _usage(**on: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment",
                           "data_encipherment", "key_agreement", "key_cert_sign",
                           "crl_sign", "encipher_only", "decipher_only"), False)
    return x509.KeyUsage(**{**flags, **on})


def _issue(subject: x509.Name, key, *, issuer: x509.Certificate | None, issuer_key,
           now: datetime.datetime, days: int, ca: bool = False, purpose=None,
           alt_names: Sequence[x509.GeneralName] = ()) -> x509.Certificate:
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.subject if issuer is not None else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(_usage(key_cert_sign=True, crl_sign=True) if ca else
                              _usage(digital_signature=True, key_encipherment=True),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    if purpose is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=True)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(alt_names)),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def _pem(item) -> bytes:
    return item.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: str, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` (never wider in between)."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_certs(path: str) -> tuple[x509.Certificate, ...]:
    try:
        return parse_certificates(read_file(path))
    except FileReadError as e:
        raise PKIError(str(e)) from None
    except PEMError as e:
        raise PKIError(f"{path}: {e.detail}") from None


def _read_key(path: str):
    try:
        return parse_private_key(read_file(path), None)
    except FileReadError as e:
        raise PKIError(str(e)) from None
    except PEMError as e:
        raise PKIError(f"{path}: {e.detail}") from None


def _public(item) -> bytes:
    return item.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def _dn(cert: x509.Certificate) -> str:
    try:
        return certificate_dn(cert)
    except DNError:
        return cert.subject.rfc4514_string()


def _check_days(days: int, what: str) -> None:
    if not 1 <= days <= MAX_DAYS:
        raise PKIError(f"{what} must be between 1 and {MAX_DAYS} days, not {days}")


# -- create ---------------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    directory: str
    files: tuple[str, ...]
    #: The first client's distinguished name (``client-cert.pem``).
    client_dn: str
    alt_names: tuple[str, ...]
    #: Every client: (distinguished name, client credentials directory).
    clients: tuple[tuple[str, str], ...] = ()


def _client_dirs(directory: str, names: Sequence[x509.Name]) -> list[str]:
    """Where each client's files go: ``directory`` for the first, then
    ``directory/clients/<common name>`` (made unique) for the others."""
    out = [directory]
    used: set[str] = set()
    for index, name in enumerate(names[1:], 2):
        cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", str(cns[-1].value)).strip("._") if cns else ""
        label = label[:64] or f"client-{index}"
        base, n = label, 2
        while label in used:
            label, n = f"{base}-{n}", n + 1
        used.add(label)
        out.append(os.path.join(directory, CLIENTS_DIR, label))
    return out


def create(directory: str, *, dns: Sequence[str] = DEFAULT_DNS,
           ips: Sequence[str] = DEFAULT_IPS,
           client_dn: str | Sequence[str] = DEFAULT_CLIENT_DN,
           ca_dn: str = DEFAULT_CA_DN, days: int = DEFAULT_DAYS, force: bool = False,
           now: datetime.datetime | None = None) -> Created:
    """Make a CA, a server and client certificates in ``directory`` (QEMU's layout).

    ``client_dn`` is one distinguished name or several: the first client
    gets ``client-cert.pem``/``client-key.pem`` in ``directory``, each
    further one a client credentials directory of its own under
    ``directory/clients/`` (named after its common name).  Refuses to
    replace existing files unless ``force``.  The result is loaded as
    server and as client credentials, with every check, before this
    returns (raises :class:`PKIError` otherwise).
    """
    now = now or _now()
    _check_days(days, "--days")
    alt_names = _general_names(dns, ips)
    client_dns = [client_dn] if isinstance(client_dn, str) else list(client_dn)
    if not 1 <= len(client_dns) <= MAX_CLIENTS:
        raise PKIError(f"give 1 to {MAX_CLIENTS} client distinguished names")
    client_names, ca_name = [parse_dn(d) for d in client_dns], parse_dn(ca_dn)
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise PKIError(f"{directory} exists and is not a directory")
    targets = _client_dirs(directory, client_names)
    existing = [n for n in _CREATED + (x509creds.CA_CRL,)
                if os.path.lexists(os.path.join(directory, n))]
    existing += [os.path.relpath(t, directory) for t in targets[1:] if os.path.lexists(t)]
    if existing and not force:
        raise PKIError(f"{directory} already holds {', '.join(existing)}; "
                       "use --force to replace them (old certificates stop working)")
    os.makedirs(directory, mode=0o755, exist_ok=True)

    ca_key = _new_key()
    ca_cert = _issue(ca_name, ca_key, issuer=None, issuer_key=ca_key, now=now,
                     days=CA_DAYS, ca=True)
    first = alt_names[0]
    server_cn = str(first.value)
    server_key = _new_key()
    server_cert = _issue(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vncd"),
                                    x509.NameAttribute(NameOID.COMMON_NAME, server_cn)]),
                         server_key, issuer=ca_cert, issuer_key=ca_key, now=now, days=days,
                         purpose=ExtendedKeyUsageOID.SERVER_AUTH, alt_names=alt_names)
    clients = []
    for name in client_names:
        key = _new_key()
        clients.append((_issue(name, key, issuer=ca_cert, issuer_key=ca_key, now=now,
                               days=days, purpose=ExtendedKeyUsageOID.CLIENT_AUTH), key))

    def path(name: str) -> str:
        return os.path.join(directory, name)

    _write(path(CA_KEY), _key_pem(ca_key), 0o600)
    _write(path(x509creds.CA_CERT), _pem(ca_cert), 0o644)
    _write(path(x509creds.SERVER_KEY), _key_pem(server_key), 0o600)
    _write(path(x509creds.SERVER_CERT), _pem(server_cert), 0o644)
    for target, (cert, key) in zip(targets, clients):
        os.makedirs(target, mode=0o755, exist_ok=True)
        if target != directory:
            _write(os.path.join(target, x509creds.CA_CERT), _pem(ca_cert), 0o644)
        _write(os.path.join(target, x509creds.CLIENT_KEY), _key_pem(key), 0o600)
        _write(os.path.join(target, x509creds.CLIENT_CERT), _pem(cert), 0o644)
    if os.path.lexists(path(x509creds.CA_CRL)):
        os.unlink(path(x509creds.CA_CRL))  # signed by the CA just replaced
    for where, server in [(directory, True)] + [(t, False) for t in targets]:
        try:
            x509creds.load_x509_material(directory=where, server=server,
                                         sanity_check=True, get_password=lambda: None,
                                         now=now)
        except ObjectError as e:
            raise PKIError(f"the new files fail vncd's checks: {e}") from None
    return Created(directory=directory, files=tuple(path(n) for n in _CREATED),
                   client_dn=certificate_dn(clients[0][0]),
                   alt_names=tuple(str(n.value) for n in alt_names),
                   clients=tuple((certificate_dn(c), t) for t, (c, _) in zip(targets, clients)))


# -- revoke ---------------------------------------------------------------------


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (x509.ExtensionNotFound, ValueError):
        return 0


def revoke(directory: str, cert_path: str, *, ca_key_path: str | None = None,
           crl_days: int = CRL_DAYS, now: datetime.datetime | None = None) -> bool:
    """Add the certificate in ``cert_path`` to ``directory/ca-crl.pem``.

    The CA is the first certificate of ``ca-cert.pem``; its key is
    ``ca_key_path`` (default ``directory/ca-key.pem``).  Entries of an
    existing CRL from the same CA are kept and its number goes up; CRLs
    of other issuers in the file are kept as they are.  Returns False when
    the certificate was already revoked (the CRL is renewed anyway).
    """
    now = now or _now()
    _check_days(crl_days, "--crl-days")
    ca_cert = _read_certs(os.path.join(directory, x509creds.CA_CERT))[0]
    ca_key_path = ca_key_path or os.path.join(directory, CA_KEY)
    ca_key = _read_key(ca_key_path)
    if _public(ca_key) != _public(ca_cert):
        raise PKIError(f"{ca_key_path} is not the key of the CA in "
                       f"{os.path.join(directory, x509creds.CA_CERT)} ('{_dn(ca_cert)}')")
    target = _read_certs(cert_path)[0]
    try:
        target.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise PKIError(f"{cert_path} ('{_dn(target)}') was not issued by the CA "
                       f"'{_dn(ca_cert)}'; only its own certificates can be revoked") from None

    crl_path = os.path.join(directory, x509creds.CA_CRL)
    ours: list[x509.CertificateRevocationList] = []
    others: list[x509.CertificateRevocationList] = []
    if os.path.lexists(crl_path):
        try:
            crls = parse_crls(read_file(crl_path))
        except FileReadError as e:
            raise PKIError(str(e)) from None
        except PEMError as e:
            raise PKIError(f"{crl_path}: {e.detail}") from None
        for crl in crls:
            mine = crl.issuer == ca_cert.subject and crl.is_signature_valid(ca_key.public_key())
            (ours if mine else others).append(crl)
    entries: dict[int, x509.RevokedCertificate] = {}
    for crl in ours:
        for entry in crl:
            entries.setdefault(entry.serial_number, entry)
    fresh = target.serial_number not in entries
    if fresh:
        entries[target.serial_number] = (x509.RevokedCertificateBuilder()
                                         .serial_number(target.serial_number)
                                         .revocation_date(now).build())
    number = max((_crl_number(c) for c in ours), default=0) + 1
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now - datetime.timedelta(minutes=5))
               .next_update(now + datetime.timedelta(days=crl_days))
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    for entry in entries.values():
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ca_key, hashes.SHA256())
    _write(crl_path, b"".join(_pem(c) for c in [crl, *others]), 0o644)
    return fresh


# -- check ----------------------------------------------------------------------


def _valid(cert: x509.Certificate, now: datetime.datetime) -> str:
    return sanity.validity_text(cert, now).removeprefix("is ")


@dataclass(frozen=True)
class Check:
    """One check and its verdict: ``ok``, ``warning``, ``failed`` or ``skipped``."""

    name: str
    verdict: str
    detail: str = ""
    hint: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict == "failed"


class _Run:
    """Runs checks one after another, recording each verdict."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def step(self, name: str, action: Callable[[], object], ok: str = "") -> object | None:
        try:
            result = action()
        except ObjectError as e:
            self.checks.append(Check(name, "failed", e.message, e.hint or ""))
            return None
        self.checks.append(Check(name, "ok", ok))
        return result if result is not None else True

    def warn(self, name: str, messages: Sequence[str]) -> None:
        for message in messages:
            self.checks.append(Check(name, "warning", message))

    def skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, "skipped", why))


def check(directory: str, endpoint: str, *, now: datetime.datetime | None = None,
          password: bytes | None = None) -> list[Check]:
    """Every check a ``tls-creds-x509`` object of ``endpoint`` makes on ``directory``.

    The same functions the object runs, one by one, so that each verdict
    is reported; the last check loads the directory as the object does
    (with ``sanity-check=on``), which is the verdict vncd would give.
    """
    if endpoint not in ("server", "client"):
        raise PKIError(f"--endpoint must be 'server' or 'client', not {endpoint!r}")
    now = now or _now()
    server = endpoint == "server"
    role = endpoint
    run = _Run()
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.lexists(directory) else "does not exist"
        run.checks.append(Check("directory", "failed", f"{directory} {what}",
                                f"vncd-certs create {directory} makes one"))
        return run.checks

    def lookup(name: str, required: bool) -> str | None:
        found: list[str | None] = [None]

        def find() -> None:
            found[0] = credential_path(directory, name, required)
        run.step(f"file {name}", find, "present")
        if run.checks[-1].verdict == "ok" and found[0] is None:
            run.checks[-1] = Check(f"file {name}", "ok", "absent (optional)")
        return found[0]

    ca_path = lookup(x509creds.CA_CERT, True)
    if server:
        crl_path = lookup(x509creds.CA_CRL, False)
        cert_path = lookup(x509creds.SERVER_CERT, True)
        key_path = lookup(x509creds.SERVER_KEY, True)
        dh_path = lookup(x509creds.DH_PARAMS, False)
    else:
        crl_path = dh_path = None
        cert_path = lookup(x509creds.CLIENT_CERT, False)
        key_path = lookup(x509creds.CLIENT_KEY, False)
        if bool(cert_path) != bool(key_path):
            run.warn("client identity", [
                f"{cert_path or key_path} is ignored because "
                f"{x509creds.CLIENT_KEY if cert_path else x509creds.CLIENT_CERT} is "
                "missing; no client certificate will be sent"])
            cert_path = key_path = None

    ca_certs: tuple = ()
    if ca_path is not None:
        ca_certs = run.step("CA certificate list", lambda: x509creds._trust_list(ca_path),
                            "") or ()
        if ca_certs:
            run.checks[-1] = Check("CA certificate list", "ok",
                                   f"{len(ca_certs)} certificate(s) in {ca_path}")
        for cert in ca_certs:
            run.step(f"CA certificate '{_dn(cert)}'",
                     lambda c=cert: sanity.check_certificate(c, ca_path, server=server,
                                                             is_ca=True, now=now),
                     _valid(cert, now))
    chain: tuple = ()
    if cert_path is not None:
        chain = run.step(f"{role} certificate file",
                         lambda: x509creds._own_certs_for_sanity(cert_path, role)) or ()
        for depth, cert in enumerate(chain):
            run.step(f"{role} certificate '{_dn(cert)}'" if depth == 0
                     else f"intermediate certificate '{_dn(cert)}'",
                     lambda c=cert, d=depth: sanity.check_certificate(
                         c, cert_path, server=server, is_ca=d > 0, now=now),
                     _valid(cert, now))
        if chain and ca_certs:
            run.step(f"{role} certificate verified against {x509creds.CA_CERT}",
                     lambda: sanity.check_chain(ca_certs=ca_certs, ca_path=ca_path,
                                                chain=chain, chain_path=cert_path))
        elif chain:
            run.skip(f"{role} certificate verified against {x509creds.CA_CERT}",
                     "no usable CA certificate")
    key = None
    if not chain and cert_path is not None and key_path is not None:
        run.skip(f"{role} private key", "no readable certificate to match it with")
    if chain and key_path is not None:
        pair = f"Cannot load certificate '{cert_path}' & key '{key_path}'"
        key = run.step(f"{role} private key",
                       lambda: x509creds._private_key(key_path, password, pair,
                                                      parse_private_key))
        if key is not None:
            run.step(f"{role} key matches the certificate",
                     lambda: x509creds.check_key_match(chain, key, cert_path, key_path))
        run.warn(f"{role} private key permissions",
                 x509creds._key_permission_warnings(key_path))
    if crl_path is not None:
        crls = run.step("CRL file", lambda: x509creds._crls(crl_path))
        if crls:
            signed = run.step("CRL signatures", lambda: sanity.usable_crls(
                crls=crls, crl_path=crl_path, ca_certs=ca_certs, ca_path=ca_path or ""))
            usable, notes = signed if signed is not None else ((), [])
            run.warn("CRL", notes)
            if chain and signed is not None:
                run.step(f"{role} certificate not revoked",
                         lambda: sanity.check_revocation(chain=chain, chain_path=cert_path,
                                                         crls=usable, crl_path=crl_path,
                                                         ca_certs=ca_certs))
            run.warn("CRL", sanity.crl_warnings(crls=crls, crl_path=crl_path,
                                                ca_certs=ca_certs, ca_path=ca_path or "",
                                                now=now))
    if dh_path is not None:
        run.step("DH parameters", lambda: load_dh_params_file(dh_path))
    run.warn("expiry", sanity.expiry_warnings(
        [(c, cert_path) for c in chain] + [(c, ca_path) for c in ca_certs], now))

    def load() -> None:
        import creds  # the registry with every object type

        registry = creds.new_registry(clock=lambda: now)
        values = {"id": "check", "dir": directory, "endpoint": endpoint}
        if password is not None:
            registry.create("secret", {"id": "checkpw", "data": password.decode("utf-8")})
            values["passwordid"] = "checkpw"
        registry.create("tls-creds-x509", values)
    run.step("tls-creds-x509 object loads", load,
             f"-object tls-creds-x509,id=ID,dir={directory},endpoint={endpoint}")
    return run.checks


# -- show -----------------------------------------------------------------------


def _fingerprint(item) -> str:
    return item.fingerprint(hashes.SHA256()).hex(":").upper()


def _alt_names(cert: x509.Certificate) -> str:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return "none"
    return ", ".join(f"{'IP' if isinstance(n, x509.IPAddress) else 'DNS'}:{n.value}"
                     if isinstance(n, (x509.IPAddress, x509.DNSName)) else str(n.value)
                     for n in san) or "none"


def _issuer(cert: x509.Certificate) -> str:
    try:
        return issuer_dn(cert)
    except DNError:
        return cert.issuer.rfc4514_string()


def _name(name: x509.Name) -> str:
    try:
        return name_dn(name.public_bytes())
    except DNError:
        return name.rfc4514_string()


def _days_left(when: datetime.datetime, now: datetime.datetime) -> str:
    seconds = (when - now).total_seconds()
    if seconds < 0:
        return f"expired {int(-seconds // 86400)} day(s) ago"
    return f"{int(seconds // 86400)} day(s) left"


def show(directory: str, *, now: datetime.datetime | None = None) -> list[str]:
    """Lines describing every certificate and CRL in ``directory``."""
    now = now or _now()
    if not os.path.isdir(directory):
        raise PKIError(f"{directory} is not a directory")
    lines: list[str] = []
    for name in (x509creds.CA_CERT, x509creds.SERVER_CERT, x509creds.CLIENT_CERT):
        path = os.path.join(directory, name)
        if not os.path.lexists(path):
            continue
        try:
            certs = _read_certs(path)
        except PKIError as e:
            lines += [f"{name}: unreadable: {e}", ""]
            continue
        for index, cert in enumerate(certs, 1):
            lines += [
                f"{name}" + (f" (certificate {index})" if len(certs) > 1 else "") + ":",
                f"  subject:     {_dn(cert)}",
                f"  issuer:      {_issuer(cert)}",
                f"  altnames:    {_alt_names(cert)}",
                f"  serial:      {cert.serial_number:x}",
                f"  sha256:      {_fingerprint(cert)}",
                f"  valid:       {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC "
                f"({_days_left(cert.not_valid_after_utc, now)})",
                "",
            ]
    crl_path = os.path.join(directory, x509creds.CA_CRL)
    if os.path.lexists(crl_path):
        try:
            crls = parse_crls(read_file(crl_path))
        except (FileReadError, PEMError) as e:
            lines += [f"{x509creds.CA_CRL}: unreadable: {getattr(e, 'detail', e)}", ""]
            crls = ()
        for index, crl in enumerate(crls, 1):
            nxt = crl.next_update_utc
            serials = ", ".join(f"{r.serial_number:x}" for r in crl) or "none"
            lines += [
                f"{x509creds.CA_CRL}" + (f" (CRL {index})" if len(crls) > 1 else "") + ":",
                f"  issuer:      {_name(crl.issuer)}",
                f"  updated:     {crl.last_update_utc:%Y-%m-%d %H:%M} UTC",
                "  next update: " + (f"{nxt:%Y-%m-%d %H:%M} UTC ({_days_left(nxt, now)})"
                                     if nxt else "none"),
                f"  revoked:     {serials}",
                "",
            ]
    if not lines:
        raise PKIError(f"{directory} holds none of {x509creds.CA_CERT}, "
                       f"{x509creds.SERVER_CERT}, {x509creds.CLIENT_CERT}, {x509creds.CA_CRL}")
    return lines[:-1]


# -- installing copies ---------------------------------------------------------------


#: Most files :func:`install_copies` copies in one call.
MAX_COPIES = 64


def install_copies(plan: Sequence[tuple[str, str, int]], *, force: bool = False) -> list[str]:
    """Copy files, each ``(source, target, mode)``, all or none.

    Sources are read as credential files are (regular files only, size
    limit); a target that exists with other content is replaced only
    with ``force``.  Parent directories are made (``private`` ones 0700),
    each target is written atomically with ``mode``.  Returns the targets.
    """
    if len(plan) > MAX_COPIES:
        raise PKIError(f"more than {MAX_COPIES} files to copy")
    contents = []
    for source, target, mode in plan:
        try:
            data = read_file(source)
        except FileReadError as e:
            raise PKIError(str(e)) from None
        if os.path.lexists(target) and not force:
            try:
                same = read_file(target) == data
            except FileReadError:
                same = False
            if not same:
                raise PKIError(f"{target} exists with other content; use --force to "
                               "replace it")
        contents.append((data, target, mode))
    written = []
    for data, target, mode in contents:
        parent = os.path.dirname(target)
        os.makedirs(parent, mode=0o700 if parent.endswith("private") else 0o755,
                    exist_ok=True)
        _write(target, data, mode)
        written.append(target)
    return written
