"""QEMU's certificate sanity checks, run when x509 credentials are (re)loaded.

These checks look only at our *own* files, before any peer connects, so
that a misconfiguration stops start-up with a message naming the file and
the fault (QEMU 7.2's exact text) followed by a short hint at the fix.

The rules, as in QEMU 7.2 (``crypto/tlscredsx509.c``):

* every certificate of ``ca-cert.pem`` must be valid now, carry
  basicConstraints CA:TRUE, and (if its keyUsage is critical) allow
  certificate signing;
* our own certificate must be valid now, must not be a CA, and must allow
  digital signature (if keyUsage is critical) and the endpoint's TLS role
  (if extendedKeyUsage is critical);
* our own certificate must verify against ``ca-cert.pem`` the way GnuTLS
  verifies it: every CA-file certificate is a trust anchor, an issuer whose
  keyUsage lacks keyCertSign (even non-critically) is not trusted, and an
  MD5 or SHA-1 signature is an insecure algorithm.

Beyond QEMU 7.2: intermediates may follow the leaf in the certificate file
(each is checked as a CA and must certify the one before it, as in QEMU
10.2); our own certificate revoked by our own CRL is refused; certificates
that expire within :data:`EXPIRY_WARNING` and CRLs that cannot serve their
purpose give warnings.  Debian's QEMU 7.2 no longer requires
keyEncipherment (RFC 8813), and neither does vncd.

Functions take ``cryptography`` objects and ``now`` (from the registry's
clock) and raise :class:`~creds.objects.ObjectError`.  This module reads no
files and knows nothing about TLS sessions or VNC.
"""

from __future__ import annotations

import datetime
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from creds.dn import DNError, certificate_dn
from creds.objects import ObjectError

__all__ = [
    "EXPIRY_WARNING", "check_certificate", "check_chain", "validity_text", "check_configuration", "check_revocation",
    "crl_warnings", "usable_crls", "CRL_SIGN_FIX", "expiry_warnings", "verify_status",
    "NOT_TRUSTED", "UNKNOWN_ISSUER", "REVOKED", "INSECURE",
]

#: Certificates expiring sooner than this give a warning at every (re)load:
#: long enough to renew without hurry, short enough not to nag after renewal.
EXPIRY_WARNING = datetime.timedelta(days=30)

#: Signature hashes GnuTLS refuses for certificate signatures.
_INSECURE_HASHES = (hashes.MD5, hashes.SHA1)

#: GnuTLS verification status flags and the reason text QEMU shows for each,
#: in QEMU's order of precedence (a later flag's text wins).
NOT_TRUSTED = "The certificate is not trusted"
UNKNOWN_ISSUER = "The certificate hasn't got a known issuer"
REVOKED = "The certificate has been revoked"
INSECURE = "The certificate uses an insecure algorithm"
_PRECEDENCE = (NOT_TRUSTED, UNKNOWN_ISSUER, REVOKED, INSECURE)

_HINTS = {
    "ca-expired": "renew the CA certificate (certtool --generate-self-signed with "
                  "'expiration_days'; openssl req -x509 -days N) and reissue what it signed",
    "expired": "issue a new certificate (certtool template 'expiration_days'; "
               "openssl x509 -req -days N)",
    "not-yet-active": "check the system clock, or reissue the certificate with an "
                      "earlier start date",
    "leaf-is-ca": "reissue it without the CA flag (certtool: no \"ca\" in the template; "
                  "openssl: basicConstraints=critical,CA:FALSE)",
    "ca-not-ca": "a CA certificate needs certtool template \"ca\" "
                 "(openssl: basicConstraints=critical,CA:TRUE)",
    "ca-signing": "a CA certificate needs certtool template \"ca\" + \"cert_signing_key\" "
                  "(openssl: keyUsage=critical,keyCertSign,cRLSign)",
    "signature": "add certtool template \"signing_key\" (openssl: keyUsage=critical,"
                 "digitalSignature,keyEncipherment), or make keyUsage non-critical",
    "server-purpose": "add certtool template \"tls_www_server\" "
                      "(openssl: extendedKeyUsage=serverAuth)",
    "client-purpose": "add certtool template \"tls_www_client\" "
                      "(openssl: extendedKeyUsage=clientAuth)",
    NOT_TRUSTED: "the issuing CA must be allowed to sign certificates (certtool "
                 "\"cert_signing_key\"; openssl: keyUsage=keyCertSign) and must have "
                 "signed this certificate",
    UNKNOWN_ISSUER: "put the CA that signed it into ca-cert.pem, or its intermediate "
                    "certificates after it in the certificate file",
    REVOKED: "issue a new certificate, or take this one off the CRL",
    INSECURE: "reissue it with a SHA-256 signature (certtool --hash SHA256; openssl -sha256)",
    "order": "list the certificate file leaf first, then each issuer in turn "
             "(intermediate certificates only; the root belongs in ca-cert.pem)",
}


def _dn(cert: x509.Certificate) -> str:
    """The subject as GnuTLS prints it (RFC 4514 text if GnuTLS could not print it)."""
    try:
        return certificate_dn(cert)
    except DNError:
        return cert.subject.rfc4514_string()


def _fail(message: str, hint_key: str, path: str, check: str) -> ObjectError:
    return ObjectError(message, hint=_HINTS[hint_key], path=path, check=check)


# -- per-certificate checks ------------------------------------------------


def _extension(cert: x509.Certificate, ext_type, path: str, what: str):
    try:
        return cert.extensions.get_extension_for_class(ext_type)
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        raise ObjectError(f"Unable to query certificate {path} {what}: "
                          "ASN1 parser: Error in DER parsing.",
                          hint="the certificate is damaged; reissue it",
                          path=path, check="extension") from None


def check_times(cert: x509.Certificate, path: str, *, role: str,
                now: datetime.datetime) -> None:
    """Validity period; ``role`` is ``CA``, ``server`` or ``client``."""
    if cert.not_valid_after_utc < now:
        raise ObjectError(
            f"The {role} certificate {path} has expired",
            hint=f"'{_dn(cert)}' {validity_text(cert, now)}; "
                 + _HINTS["ca-expired" if role == "CA" else "expired"],
            path=path, check="expired")
    if cert.not_valid_before_utc > now:
        raise ObjectError(
            f"The {role} certificate {path} is not yet active",
            hint=f"'{_dn(cert)}' {validity_text(cert, now)}; " + _HINTS["not-yet-active"],
            path=path, check="not-yet-active")


def validity_text(cert: x509.Certificate, now: datetime.datetime) -> str:
    """``expired on A (valid from B), it is now C`` or its not-yet-valid twin:
    the dates an administrator needs when a certificate is out of its window."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now > end:
        return f"expired on {_date(end)} (valid from {_date(start)}); it is now {_date(now)}"
    if now < start:
        return (f"is valid from {_date(start)} (until {_date(end)}); "
                f"it is now {_date(now)}")
    return f"is valid from {_date(start)} until {_date(end)}"


def check_certificate(cert: x509.Certificate, path: str, *, server: bool, is_ca: bool,
                      now: datetime.datetime) -> None:
    """QEMU's per-certificate checks, in QEMU's order; the first failure is raised."""
    role = "server" if server else "client"
    check_times(cert, path, role="CA" if is_ca else role, now=now)

    bc = _extension(cert, x509.BasicConstraints, path, "basic constraints")
    if bc is not None and bc.value.ca and not is_ca:
        raise _fail(f"The certificate {path} basic constraints show a CA, "
                    f"but we need one for a {role}", "leaf-is-ca", path, "basic-constraints")
    if bc is not None and not bc.value.ca and is_ca:
        raise _fail(f"The certificate {path} basic constraints do not show a CA",
                    "ca-not-ca", path, "basic-constraints")
    if bc is None and is_ca:
        raise _fail(f"The certificate {path} is missing basic constraints for a CA",
                    "ca-not-ca", path, "basic-constraints")

    ku = _extension(cert, x509.KeyUsage, path, "key usage")
    if ku is not None and ku.critical:
        if is_ca and not ku.value.key_cert_sign:
            raise _fail(f"Certificate {path} usage does not permit certificate signing",
                        "ca-signing", path, "key-usage")
        if not is_ca and not ku.value.digital_signature:
            raise _fail(f"Certificate {path} usage does not permit digital signature",
                        "signature", path, "key-usage")

    if is_ca:
        return
    eku = _extension(cert, x509.ExtendedKeyUsage, path, "key purpose")
    if eku is None or not eku.critical:
        return
    purposes = set(eku.value)
    if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in purposes:
        return
    wanted = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    if wanted not in purposes:
        raise _fail(f"Certificate {path} purpose does not allow use with a TLS {role}",
                    f"{role}-purpose", path, "key-purpose")


# -- chain verification (GnuTLS semantics) ---------------------------------


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key made ``cert``'s signature (any hash, even weak ones)."""
    key = issuer.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes,
                       cert.signature_algorithm_parameters, cert.signature_hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes,
                       cert.signature_algorithm_parameters)
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except Exception:  # InvalidSignature, unsupported or mismatched algorithms
        return False
    return True


def _insecure_signature(cert: x509.Certificate) -> bool:
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:  # an algorithm cryptography does not know
        return True
    return isinstance(algorithm, _INSECURE_HASHES)


def _issuer_flags(cert: x509.Certificate, issuer: x509.Certificate, below: int) -> set[str]:
    """GnuTLS's complaints about ``issuer`` signing ``cert`` (``below``: CAs under it)."""
    flags: set[str] = set()
    try:
        bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        flags.add(NOT_TRUSTED)
    elif bc.path_length is not None and below > bc.path_length:
        flags.add(NOT_TRUSTED)
    try:
        ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.key_cert_sign:
            flags.add(NOT_TRUSTED)
    except x509.ExtensionNotFound:
        pass
    if not _signed_by(cert, issuer):
        flags.add(NOT_TRUSTED)
    if _insecure_signature(cert):
        flags |= {NOT_TRUSTED, INSECURE}
    return flags


def _find_anchor(cert: x509.Certificate,
                 anchors: Sequence[x509.Certificate]) -> x509.Certificate | None:
    named = [a for a in anchors if a.subject == cert.issuer]
    for candidate in named:
        if _signed_by(cert, candidate):
            return candidate
    return named[0] if named else None


def verify_status(chain: Sequence[x509.Certificate],
                  anchors: Sequence[x509.Certificate]) -> set[str]:
    """The GnuTLS status flags for ``chain`` (leaf first) against ``anchors``.

    As ``gnutls_x509_crt_list_verify`` with no flags: every anchor is
    trusted as it is (its own signature, times and constraints are not
    examined), a certificate equal to an anchor is trusted, and the walk
    stops at the first certificate whose issuer is an anchor.  Certificates
    after the leaf are intermediates the walk may pass through; their
    order has been checked by :func:`check_configuration`.
    """
    anchor_der = {a.public_bytes(Encoding.DER) for a in anchors}
    flags: set[str] = set()
    for depth, cert in enumerate(chain):
        if cert.public_bytes(Encoding.DER) in anchor_der:
            return flags
        anchor = _find_anchor(cert, anchors)
        if anchor is not None:
            return flags | _issuer_flags(cert, anchor, depth)
        if depth + 1 < len(chain):
            flags |= _issuer_flags(cert, chain[depth + 1], depth)
            continue
        return flags | {NOT_TRUSTED, UNKNOWN_ISSUER}
    return flags


def _reason(flags: Iterable[str]) -> str:
    reason = "Invalid certificate"
    for flag in _PRECEDENCE:
        if flag in flags:
            reason = flag
    return reason


# -- whole configuration ---------------------------------------------------


def check_configuration(*, server: bool, ca_certs: Sequence[x509.Certificate],
                        ca_path: str, chain: Sequence[x509.Certificate],
                        chain_path: str | None, now: datetime.datetime) -> None:
    """All sanity checks on the CA file and our own certificate file.

    Order as QEMU 7.2: our leaf, (vncd: the intermediates after it), every
    CA certificate, (vncd: the order of the chain), then verification of
    our certificate against the CA list.  ``chain`` is empty when there is
    no own certificate (a client without one) and ``ca_certs`` when the CA
    file is not readable: QEMU then skips what needs them.
    """
    if chain:
        check_certificate(chain[0], chain_path, server=server, is_ca=False, now=now)
        for cert in chain[1:]:
            check_certificate(cert, chain_path, server=server, is_ca=True, now=now)
    for cert in ca_certs:
        check_certificate(cert, ca_path, server=server, is_ca=True, now=now)
    check_chain(ca_certs=ca_certs, ca_path=ca_path, chain=chain, chain_path=chain_path)


def check_chain(*, ca_certs: Sequence[x509.Certificate], ca_path: str,
                chain: Sequence[x509.Certificate], chain_path: str | None) -> None:
    """The order of our certificate file and its verification against the CA list
    (the last part of :func:`check_configuration`)."""
    if not chain:
        return
    for cert, issuer in zip(chain, chain[1:]):
        if issuer.subject != cert.issuer or not _signed_by(cert, issuer):
            raise ObjectError(
                f"Cert '{_dn(issuer)}' does not match issuer "
                f"of cert '{_dn(cert)}'",
                hint=_HINTS["order"], path=chain_path, check="chain-order")
    if not ca_certs:
        return  # QEMU verifies only when it could read the CA file
    flags = verify_status(chain, ca_certs)
    if flags:
        reason = _reason(flags)
        raise ObjectError(
            f"Our own certificate {chain_path} failed validation against {ca_path}: "
            f"{reason}", hint=_HINTS.get(reason),
            path=chain_path, check="verify")


def _issuer_of(cert: x509.Certificate, candidates: Sequence[x509.Certificate]):
    for candidate in candidates:
        if candidate.subject == cert.issuer and _signed_by(cert, candidate):
            return candidate
    return None


def _crl_signer(crl: x509.CertificateRevocationList,
                candidates: Sequence[x509.Certificate]) -> x509.Certificate | None:
    for candidate in candidates:
        if candidate.subject != crl.issuer:
            continue
        try:
            if crl.is_signature_valid(candidate.public_key()):
                return candidate
        except Exception:  # key type the CRL cannot be checked with
            continue
    return None


def check_revocation(*, chain: Sequence[x509.Certificate], chain_path: str,
                     crls: Sequence[x509.CertificateRevocationList], crl_path: str,
                     ca_certs: Sequence[x509.Certificate]) -> None:
    """Refuse our own certificate (or an intermediate) revoked by our own CRL.

    QEMU 7.2 starts with such a certificate; every peer that checks
    revocation would then refuse us.  Only CRLs whose signature verifies
    with the revoked certificate's issuer count.
    """
    issuers = list(chain[1:]) + list(ca_certs)
    for cert in chain:
        issuer = _issuer_of(cert, issuers)
        for crl in crls:
            if issuer is None or crl.issuer != cert.issuer:
                continue
            if _crl_signer(crl, [issuer]) is None:
                continue
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise ObjectError(
                    f"Our own certificate {chain_path} failed validation against "
                    f"{crl_path}: {REVOKED}", hint=_HINTS[REVOKED], path=chain_path,
                    check="revoked")


def crl_warnings(*, crls: Sequence[x509.CertificateRevocationList], crl_path: str,
                 ca_certs: Sequence[x509.Certificate], ca_path: str,
                 now: datetime.datetime) -> list[str]:
    """Warnings for CRLs that will not work as intended when peers are checked."""
    out = []
    for number, crl in enumerate(crls, 1):
        which = _which_crl(crl_path, number, len(crls))
        if not any(c.subject == crl.issuer for c in ca_certs):
            out.append(f"{which} is not signed by any certificate in {ca_path}; "
                       "it cannot revoke anything and peers may be refused")
        next_update = crl.next_update_utc
        if next_update is not None and next_update < now:
            out.append(f"{which} expired on {_date(next_update)}; its entries still "
                       "apply (as in QEMU 7.2) but revocations made since are missing: "
                       "renew it")
    return out


#: How to give a CA the key usage that lets it sign CRLs.
CRL_SIGN_FIX = ("reissue the CA with CRL signing allowed (certtool: add crl_signing_key "
                "to the CA template; openssl: keyUsage=critical,keyCertSign,cRLSign)")


def usable_crls(*, crls: Sequence[x509.CertificateRevocationList], crl_path: str,
                ca_certs: Sequence[x509.Certificate], ca_path: str,
                ) -> tuple[tuple[x509.CertificateRevocationList, ...], list[str]]:
    """The CRLs peers are checked against, and warnings about the others.

    Run whatever ``sanity-check`` says.  A CRL that names a CA of the CA
    file as its issuer but whose signature no such CA verifies is forged
    or damaged: :class:`ObjectError` naming the file (leaving it out would
    admit the certificates it lists, which QEMU 7.2 -- checking no CRL
    signature -- refuses; applying it would trust a forgery).  A CRL signed by
    a CA whose keyUsage lacks cRLSign (QEMU's documented certtool template)
    is kept, as GnuTLS keeps it, with a warning: strict TLS software
    refuses every peer with such a CRL.
    """
    kept = []
    warnings = []
    for number, crl in enumerate(crls, 1):
        which = _which_crl(crl_path, number, len(crls))
        named = [c for c in ca_certs if c.subject == crl.issuer]
        if not named:
            kept.append(crl)  # for an issuer the peers send (checked by OpenSSL)
            continue
        signer = _crl_signer(crl, named)
        if signer is None:
            raise ObjectError(
                f"{which} claims to be issued by '{_dn(named[0])}' in {ca_path}, but its "
                "signature does not verify with that CA's key",
                hint="the CRL is damaged or was not made with this CA's key; make it again"
                     " with the CA's key (vncd-certs revoke) or remove it",
                path=crl_path, check="crl-signature")
        kept.append(crl)
        if not _may_sign_crls(signer):
            warnings.append(
                f"The CA '{_dn(signer)}' in {ca_path} signs {which[4:]} but its keyUsage "
                "does not include cRLSign (CRL signing); vncd applies the CRL as QEMU 7.2 "
                f"does, but OpenSSL-based peers and tools reject it: {CRL_SIGN_FIX}")
    return tuple(kept), warnings


def _which_crl(crl_path: str, number: int, count: int) -> str:
    return f"The CRL {crl_path}" + (f" (CRL {number})" if count > 1 else "")


def _may_sign_crls(cert: x509.Certificate) -> bool:
    """False when the certificate's keyUsage exists and leaves out cRLSign."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    except ValueError:  # a keyUsage cryptography cannot parse: not ours to judge here
        return True
    return bool(usage.crl_sign)


def expiry_warnings(certs: Iterable[tuple[x509.Certificate, str]],
                    now: datetime.datetime) -> list[str]:
    """One warning per certificate that expires within :data:`EXPIRY_WARNING`."""
    out = []
    for cert, path in certs:
        expires = cert.not_valid_after_utc
        if now <= expires < now + EXPIRY_WARNING:
            days = (expires - now).days
            left = ("less than a day" if days == 0
                    else f"{days} day" + ("" if days == 1 else "s"))
            out.append(f"The certificate {path} ({_dn(cert)}) "
                       f"expires on {_date(expires)}, in {left}; renew it soon")
    return out


def _date(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
