"""The ``tls-creds-x509`` object: certificate credentials from a directory.

QEMU's ``-object tls-creds-x509,id=ID,dir=DIR,endpoint=server|client
[,verify-peer=on|off][,sanity-check=on|off][,passwordid=SECRET]
[,priority=P]``.  The directory holds files with QEMU's names:

============== ======================= ==================================
file           server endpoint         client endpoint
============== ======================= ==================================
ca-cert.pem    required                required
ca-crl.pem     optional                not looked at
server-cert.pem required               --
server-key.pem required                --
client-cert.pem --                     optional, used with client-key.pem
client-key.pem --                      optional, used with client-cert.pem
dh-params.pem  optional                not looked at
============== ======================= ==================================

Loading follows QEMU 7.2 step by step, so that the first fault found is
the one QEMU would report, in QEMU's words: look up every file; run the
sanity checks (:mod:`creds.sanity`) unless ``sanity-check=off``; load the
trust list; load the certificate and its key (decrypted with the
``passwordid`` secret); load the CRL; load DH parameters.

Where vncd differs (its manual lists each case): the certificate file may
carry intermediate certificates after the leaf, which are checked and sent
to peers; a CA file without any certificate is refused even with
``sanity-check=off``; the CA file may hold up to :data:`creds.pem.MAX_CERTS`
certificates (QEMU 7.2 silently used the first 16); our own certificate
revoked by our own CRL is refused; loose key file permissions, a lone
client certificate or key, certificates close to expiry and unusable CRLs
give warnings.

This module knows nothing about TLS sessions or VNC; it reads files and
hands :class:`~creds.material.X509Material` to the TLS engine.
"""

from __future__ import annotations

import datetime
import os
import stat
from typing import Callable

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from creds import engine, sanity
from creds.material import X509Material
from creds.objects import ObjectError, Prop
from creds.pem import (
    READ_ERROR, Fault, FileReadError, NotRegularFileError, PEMError, credential_path,
    gnutls_reason, load_dh_params_file, parse_certificates, parse_crls, parse_private_key,
    read_file,
)
from creds.secret import lookup_secret
from creds.tlscreds import BASE_PROPS, Endpoint, KeyLoader, TLSCreds

__all__ = [
    "TLSCredsX509", "load_x509_material",
    "CA_CERT", "CA_CRL", "SERVER_CERT", "SERVER_KEY", "CLIENT_CERT", "CLIENT_KEY",
    "DH_PARAMS",
]

CA_CERT = "ca-cert.pem"
CA_CRL = "ca-crl.pem"
SERVER_CERT = "server-cert.pem"
SERVER_KEY = "server-key.pem"
CLIENT_CERT = "client-cert.pem"
CLIENT_KEY = "client-key.pem"
DH_PARAMS = "dh-params.pem"

#: Permission bits that make a private key readable by others than its owner.
_KEY_READABLE_BY_OTHERS = stat.S_IRGRP | stat.S_IROTH


def load_x509_material(
    *,
    directory: str | None,
    server: bool,
    sanity_check: bool,
    get_password: Callable[[], bytes | None],
    now: datetime.datetime,
    key_loader: KeyLoader = parse_private_key,
) -> tuple[X509Material, list[str]]:
    """Load and check a credentials directory as QEMU 7.2 does.

    ``get_password`` is called (only) when a key is about to be loaded, as
    QEMU looks the secret up at that point; ``key_loader`` parses and
    checks the key.  Returns the material and the warnings to report;
    raises :class:`ObjectError` with QEMU's message.
    """
    role = "server" if server else "client"
    ca_path = credential_path(directory, CA_CERT, True)
    crl_path = dh_path = None
    if server:
        crl_path = credential_path(directory, CA_CRL, False)
        cert_path = credential_path(directory, SERVER_CERT, True)
        key_path = credential_path(directory, SERVER_KEY, True)
        dh_path = credential_path(directory, DH_PARAMS, False)
    else:
        cert_path = credential_path(directory, CLIENT_CERT, False)
        key_path = credential_path(directory, CLIENT_KEY, False)
    identity = cert_path is not None and key_path is not None
    warnings: list[str] = []
    if not identity and (cert_path or key_path):
        present, absent = ((cert_path, CLIENT_KEY) if cert_path else (key_path, CLIENT_CERT))
        warnings.append(f"{present} is ignored because {absent} is missing; "
                        "no client certificate will be sent")

    # QEMU's sanity check skips a file it may not read (access(R_OK)); the
    # load that follows then fails on it with GnuTLS' message.
    chain: tuple = ()
    ca_certs: tuple = ()
    if sanity_check:
        if cert_path is not None and _readable(cert_path):
            chain = _own_certs_for_sanity(cert_path, role)
        if _readable(ca_path):
            ca_certs = _ca_certs_for_sanity(ca_path)
        sanity.check_configuration(server=server, ca_certs=ca_certs, ca_path=ca_path,
                                   chain=chain, chain_path=cert_path, now=now)
        warnings += sanity.expiry_warnings(
            [(c, cert_path) for c in chain] + [(c, ca_path) for c in ca_certs], now)
    if not ca_certs:
        ca_certs = _trust_list(ca_path)

    key = None
    if identity:
        pair = f"Cannot load certificate '{cert_path}' & key '{key_path}'"
        password = get_password()
        if not chain:
            chain = _own_certs_for_keypair(cert_path, pair)
        key = _private_key(key_path, password, pair, key_loader)
        check_key_match(chain, key, cert_path, key_path)
        warnings += _key_permission_warnings(key_path)
    else:
        chain = ()

    crls: tuple = ()
    if crl_path is not None:
        crls, crl_notes = sanity.usable_crls(crls=_crls(crl_path), crl_path=crl_path,
                                             ca_certs=ca_certs, ca_path=ca_path)
        warnings += crl_notes
        if sanity_check:
            if chain:
                sanity.check_revocation(chain=chain, chain_path=cert_path, crls=crls,
                                        crl_path=crl_path, ca_certs=ca_certs)
            warnings += sanity.crl_warnings(crls=crls, crl_path=crl_path, ca_certs=ca_certs,
                                            ca_path=ca_path, now=now)

    dh_pem = load_dh_params_file(dh_path) if dh_path is not None else None

    paths = {"ca": ca_path}
    for name, value in (("crl", crl_path), ("dh", dh_path)):
        if value is not None:
            paths[name] = value
    if identity:
        paths["cert"], paths["key"] = cert_path, key_path
    material = X509Material(ca_certs=ca_certs, crls=crls, chain=tuple(chain), key=key,
                            dh_params_pem=dh_pem, paths=paths)
    return material, warnings


# -- the steps -----------------------------------------------------------------


def _own_certs_for_sanity(path: str, role: str) -> tuple:
    try:
        data = read_file(path)
    except FileReadError as e:
        raise ObjectError(f"Cannot load CA cert list {path}: {e}", hint=_READ_HINT,
                          path=path, check="read") from None
    try:
        return parse_certificates(data)
    except PEMError as e:
        raise ObjectError(f"Unable to import {role} certificate {path}: "
                          f"{gnutls_reason(e, 'cert')}", hint=_pem_hint(e),
                          path=path, check="pem") from None


def _ca_certs_for_sanity(path: str) -> tuple:
    try:
        data = read_file(path)
    except FileReadError as e:
        raise ObjectError(f"Cannot load CA cert list {path}: {e}", hint=_READ_HINT,
                          path=path, check="read") from None
    try:
        return parse_certificates(data)
    except PEMError as e:
        raise ObjectError(f"Unable to import CA certificate list {path}",
                          hint=_pem_hint(e), path=path, check="pem") from None


def _readable(path: str) -> bool:
    return os.access(path, os.R_OK)


def _read(path: str, message: str) -> bytes:
    """The bytes of ``path``, or an ObjectError ``<message>: <read error>`` naming it.

    GnuTLS words every read failure alike (QEMU's message); a FIFO, device
    or socket, on which QEMU would block or read without end, is named as
    what it is.
    """
    try:
        if not _readable(path):
            raise FileReadError(READ_ERROR)
        return read_file(path)
    except NotRegularFileError as e:
        raise ObjectError(f"{message}: {e}", hint=_READ_HINT, path=path,
                          check="read") from None
    except FileReadError:
        raise ObjectError(f"{message}: {READ_ERROR}", hint=_READ_HINT,
                          path=path, check="read") from None


def _trust_list(path: str) -> tuple:
    """The CA file as the trust list, without sanity checks (QEMU's wording)."""
    data = _read(path, f"Cannot load CA certificate '{path}'")
    try:
        return parse_certificates(data)
    except PEMError as e:
        if e.kind is Fault.NO_BLOCK:
            # QEMU would run with an empty trust list, trusting nobody.
            raise ObjectError(f"Unable to import CA certificate list {path}",
                              hint=_pem_hint(e), path=path, check="pem") from None
        raise ObjectError(f"Cannot load CA certificate '{path}': "
                          f"{gnutls_reason(e, 'trust')}", hint=_pem_hint(e),
                          path=path, check="pem") from None


def _own_certs_for_keypair(path: str, pair: str) -> tuple:
    data = _read(path, pair)
    try:
        return parse_certificates(data)
    except PEMError as e:
        raise ObjectError(f"{pair}: {gnutls_reason(e, 'keypair-cert')}",
                          hint=_pem_hint(e), path=path, check="pem") from None


def _private_key(path: str, password: bytes | None, pair: str, key_loader: KeyLoader):
    data = _read(path, pair)
    try:
        return key_loader(data, password)
    except PEMError as e:
        hint = _pem_hint(e)
        if e.kind is Fault.DECRYPT:
            hint = (f"{e.detail}; set passwordid= to a secret holding the key's password "
                    "(a newline at the end of a secret file is part of the password)")
        raise ObjectError(f"{pair}: {gnutls_reason(e, 'key')}", hint=hint,
                          path=path, check="key") from None


def _crls(path: str) -> tuple:
    data = _read(path, f"Cannot load CRL '{path}'")
    try:
        return parse_crls(data)
    except PEMError as e:
        raise ObjectError(f"Cannot load CRL '{path}': {gnutls_reason(e, 'crl')}",
                          hint=_pem_hint(e), path=path, check="pem") from None


def check_key_match(chain: tuple, key, cert_path: str, key_path: str) -> None:
    """Raise unless ``key`` is the private key of ``chain[0]`` (QEMU's wording)."""
    if _public_der(key) != _public_der(chain[0]):
        raise ObjectError(
            f"Cannot load certificate '{cert_path}' & key '{key_path}': "
            "The certificate and the given key do not match.",
            hint=f"{key_path} must hold the private key of the first certificate "
                 f"in {cert_path}", path=key_path, check="key-mismatch")


def _key_permission_warnings(path: str) -> list[str]:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return []
    if mode & _KEY_READABLE_BY_OTHERS:
        return [f"Private key file {path} is readable by group or others "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"]
    return []


def _public_der(item) -> bytes:
    key = item.public_key()
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


_READ_HINT = ("make the file readable by the user running vncd "
              "(and check that it is a file, not a directory)")


def _pem_hint(e: PEMError) -> str:
    return f"{e.detail}; the file must hold PEM text ('-----BEGIN ...-----' blocks)"


# -- the object ------------------------------------------------------------


class TLSCredsX509(TLSCreds):
    """``tls-creds-x509``: certificate credentials (loaded on creation and reload)."""

    qom_type = "tls-creds-x509"
    kind = "x509"
    uses_certificates = True
    props = BASE_PROPS + (
        Prop("sanity-check", "bool", default=True,
             help="check the certificates when loading (QEMU's sanity checks)"),
        Prop("passwordid", "str", help="id of the secret with the private key's password"),
        Prop("loaded", "bool", read_only=True,
             help="historic; credentials are always loaded on creation"),
    )

    def build_context(self, material: X509Material, *, warn: Callable[[str], None]):
        """The engine's context for this object's material."""
        return engine.build_context(self, material, warn=warn)

    def load_material(self, *, warn: Callable[[str], None],
                      key_loader: KeyLoader | None) -> X509Material:
        """Read and check the directory; warnings go to ``warn``."""
        material, warnings = load_x509_material(
            directory=self.directory,
            server=self.endpoint is Endpoint.SERVER,
            sanity_check=bool(self.get("sanity-check")),
            get_password=self._password,
            now=self.registry.clock(),
            key_loader=key_loader or parse_private_key,
        )
        for message in warnings:
            warn(message)
        return material

    def _password(self) -> bytes | None:
        secret_id = self.get("passwordid")
        if secret_id is None:
            return None
        return lookup_secret(self.registry, secret_id).get_text().encode("utf-8")
