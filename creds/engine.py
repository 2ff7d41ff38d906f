"""The TLS engine: one pyOpenSSL ``SSL.Context`` per generation of loaded credentials.

:func:`build_context` turns a credentials object (its kind, endpoint and
priority) and the material its loader checked (:mod:`creds.material`)
into a fully configured, never-again-mutated ``OpenSSL.SSL.Context``.
The credentials classes (:mod:`creds.x509`, :mod:`creds.anon`) call it;
this module imports none of them.
Everything that can be decided once per credentials generation is decided
here, so creating a session (:mod:`creds.session`) costs one
``Connection`` and nothing else.

The policy mirrors QEMU's use of GnuTLS:

* x509 servers with ``verify-peer=on`` *request* a client certificate but
  never let the TLS layer abort the handshake over it; x509 clients likewise
  never abort over the server's certificate.  With ``verify-peer=off`` a
  server does not ask at all: QEMU (GnuTLS) always asks, and browsers then
  abandon wss connections (ERR_SSL_CLIENT_AUTH_CERT_NEEDED; noVNC issue
  1144), although the answer would never be looked at.  What OpenSSL found while verifying the peer is
  recorded per connection in a :class:`VerifyRecord` and judged later by
  ``TLSSession.check_credentials()``, which applies ``verify-peer``, the
  clock, authz and the hostname (QEMU's ``check_credentials`` semantics).
* Any certificate in ``ca-cert.pem`` is a trust anchor (partial chains are
  accepted, as GnuTLS does); CRLs from ``ca-crl.pem`` are checked for every
  certificate of the chain they cover.  As with GnuTLS, a CRL signed by a
  CA whose keyUsage lacks cRLSign, or outside its thisUpdate/nextUpdate
  window, still revokes what it lists: OpenSSL reports those conditions
  and the session ignores them (forged CRLs never get here; the loader
  drops them).
* Anonymous credentials offer only anonymous (ADH / AECDH) suites, TLS 1.2
  at most, and never a cipher without encryption.
* Renegotiation, session tickets, the session cache and compression are off.

This module knows nothing about VNC, sockets or the command line, and it is
the only module (with :mod:`creds.session`) that talks to pyOpenSSL.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

from cryptography import x509
from OpenSSL import SSL, crypto

from creds import _openssl_config
from creds.material import AnonMaterial, Endpoint, X509Material
from creds.objects import ObjectError
from creds.priority import TLSPolicy, parse_priority

__all__ = [
    "build_context",
    "VerifyRecord",
    "VerifyProblem",
    "BUILTIN_DH_PATH",
    "MAX_VERIFY_DEPTH",
]

#: RFC 7919 ffdhe2048, used for DHE / ADH when the credentials directory has
#: no ``dh-params.pem`` (what GnuTLS >= 3.6 negotiates by itself).
BUILTIN_DH_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                               "data", "ffdhe2048.pem")

#: Longest peer chain OpenSSL will try to build (leaf + intermediates +
#: anchor).  Real deployments use 2-4; GnuTLS' own default limit is 16, and
#: a bounded depth bounds the work an unauthenticated peer can cause.
MAX_VERIFY_DEPTH = 16

#: Appended to every cipher list, whatever the priority policy says: no
#: cipher without encryption (``AECDH-NULL-SHA``, ``NULL-SHA256``) can ever
#: be offered.  The policy already excludes them; this is the engine's own
#: guarantee.
_NEVER_NULL = "!eNULL:!NULL"

_VERSIONS = {"TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION}

#: Options set on every context: no renegotiation (a peer-driven CPU and
#: state-machine risk VNC never needs), no tickets and no compression (CRIME).
_OPTIONS = SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION


# -- per-connection verification record -------------------------------------


@dataclass(frozen=True)
class VerifyProblem:
    """One complaint OpenSSL raised while verifying the peer's chain."""

    depth: int
    errno: int
    #: The certificate OpenSSL was looking at (``None`` if it gave none).
    cert: x509.Certificate | None


@dataclass
class VerifyRecord:
    """What OpenSSL found while verifying one connection's peer.

    The engine's verify callback appends to :attr:`problems` and always
    lets the handshake continue; the session judges the record afterwards.
    """

    problems: list[VerifyProblem] = field(default_factory=list)


def _verify_callback(conn: SSL.Connection, cert: crypto.X509, errno: int,
                     depth: int, ok: int) -> bool:
    """Record OpenSSL's verdict on one chain element; never abort the handshake."""
    record = conn.get_app_data()
    if isinstance(record, VerifyRecord) and errno:
        record.problems.append(
            VerifyProblem(depth, errno, cert.to_cryptography() if cert else None))
    return True


# -- context construction ---------------------------------------------------


def build_context(creds: Any, material: X509Material | AnonMaterial, *,
                  warn: Callable[[str], None] | None = None) -> SSL.Context:
    """A fully configured ``SSL.Context`` for ``creds`` with ``material``.

    ``warn`` receives the warnings (priority tokens that cannot be
    honoured, session tickets that cannot be turned off); by default the
    registry of ``creds`` does.

    Raises :class:`ObjectError` when the material cannot be used (the
    certificate and key do not match, unreadable DH parameters, a priority
    that leaves no usable cipher).
    """
    endpoint = creds.endpoint
    server = endpoint is Endpoint.SERVER
    if warn is None:
        registry = getattr(creds, "registry", None)
        warn = registry.warn if registry is not None else _ignore
    policy = parse_priority(creds.priority, anon=creds.kind == "anon")
    _report_notes(creds, policy, warn)
    if server and creds.kind == "x509":
        _warn_if_tickets(warn)
    if creds.kind == "anon":
        if not isinstance(material, AnonMaterial):
            raise TypeError(f"anon credentials need AnonMaterial, got {type(material).__name__}")
    elif creds.kind == "x509":
        if not isinstance(material, X509Material):
            raise TypeError(f"x509 credentials need X509Material, got {type(material).__name__}")
    else:
        raise ValueError(f"unknown credentials kind {creds.kind!r}")

    ctx = SSL.Context(SSL.TLS_SERVER_METHOD if server else SSL.TLS_CLIENT_METHOD)
    ctx.set_options(_OPTIONS | (SSL.OP_CIPHER_SERVER_PREFERENCE
                                if server and policy.server_preference else 0))
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    # Free each connection's read and write buffers (about 34 KiB with
    # TLS 1.3's record size) while it is idle: most VNC clients are.
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    _set_versions(ctx, creds, policy)
    _set_ciphers(ctx, creds, policy)
    if server:
        _set_dh(ctx, material)
    if isinstance(material, X509Material):
        _set_x509(ctx, server, material)
        if server and not creds.verify_peer:
            ctx.set_verify(SSL.VERIFY_NONE)
    else:
        ctx.set_verify(SSL.VERIFY_NONE)
    _check_ciphers(ctx, creds)
    return ctx


_tickets_warned = False


def _ignore(message: str) -> None:
    """Where warnings go for credentials outside any registry."""


def _warn_if_tickets(warn: Callable[[str], None]) -> None:
    """Say once per process when TLS 1.3 session tickets could not be turned off."""
    global _tickets_warned
    if _openssl_config.STATUS != "too-late" or _tickets_warned:
        return
    _tickets_warned = True
    warn("TLS 1.3 session tickets cannot be turned off: OpenSSL was initialised"
         " before the creds package was imported (import creds first); some"
         " viewers, such as TigerVNC 1.12, stall on them")


def _report_notes(creds: Any, policy: TLSPolicy, warn: Callable[[str], None]) -> None:
    """Pass the priority tokens vncd accepts but cannot honour to ``warn``."""
    for note in policy.notes:
        warn(f"object '{creds.id}': priority {policy.priority}: {note}")


def _set_versions(ctx: SSL.Context, creds: Any, policy: TLSPolicy) -> None:
    max_v = _VERSIONS[policy.max_version]
    if creds.kind == "anon":
        # TLS 1.3 has no anonymous key exchange: never offer it (the policy
        # says so too; the engine guarantees it on its own).
        max_v = min(max_v, SSL.TLS1_2_VERSION)
    ctx.set_min_proto_version(_VERSIONS[policy.min_version])
    ctx.set_max_proto_version(max_v)


def _set_ciphers(ctx: SSL.Context, creds: Any, policy: TLSPolicy) -> None:
    try:
        ctx.set_cipher_list(f"{policy.cipher_list}:{_NEVER_NULL}".encode("ascii"))
        # Anonymous contexts list no TLS 1.3 suite at all (none could be used).
        ctx.set_tls13_ciphersuites(
            b"" if creds.kind == "anon" else policy.tls13_ciphersuites.encode("ascii"))
    except SSL.Error as e:
        raise ObjectError(
            f"Unable to set TLS session priority {policy.priority}: {_openssl_reason(e)}",
            hint="this OpenSSL build offers none of the cipher suites the priority selects",
            check="priority") from None


def _check_ciphers(ctx: SSL.Context, creds: Any) -> None:
    """Assert the engine's cipher guarantees on a real connection (this freezes the context)."""
    names = SSL.Connection(ctx, None).get_cipher_list()
    if any("NULL" in n.split("-") for n in names):
        raise AssertionError(f"a NULL cipher reached the cipher list: {names}")
    if creds.kind == "anon" and not any(n.startswith("ADH-") for n in names):
        raise AssertionError(f"an anonymous context without ADH suites: {names}")


def _set_dh(ctx: SSL.Context, material: X509Material | AnonMaterial) -> None:
    """Load finite-field DH parameters (for DHE and ADH suites)."""
    pem = material.dh_params_pem
    if pem is None:
        ctx.load_tmp_dh(BUILTIN_DH_PATH)
        return
    where = material.paths.get("dh", "dh-params.pem")
    # pyOpenSSL loads DH parameters only from a file.  They are public values.
    with tempfile.NamedTemporaryFile(prefix="vncd-dh-", suffix=".pem") as f:
        f.write(pem)
        f.flush()
        try:
            ctx.load_tmp_dh(f.name)
        except SSL.Error as e:
            raise ObjectError(f"Unable to load DH parameters from {where}: "
                              f"{_openssl_reason(e)}",
                              path=where, check="dh-params") from None


def _set_x509(ctx: SSL.Context, server: bool, material: X509Material) -> None:
    paths = material.paths
    if material.chain:
        leaf, *intermediates = material.chain
        try:
            ctx.use_certificate(leaf)
            for cert in intermediates:
                ctx.add_extra_chain_cert(cert)
        except SSL.Error as e:
            # OpenSSL's security level refuses a key too small ("ee key too
            # small": a P-192 key, RSA below 2048 bits) or a weak digest.
            cert_path = paths.get("cert", "")
            raise ObjectError(
                f"Cannot load certificate '{cert_path}': {_openssl_reason(e)}",
                hint="OpenSSL refuses this certificate at its security level; use an RSA"
                     " key of at least 2048 bits or an ECDSA key on P-256 or larger,"
                     " signed with SHA-256 or better",
                path=cert_path, check="cert-refused") from None
        try:
            # use_privatekey() already compares the key with the certificate;
            # check_privatekey() states the requirement explicitly.
            ctx.use_privatekey(material.key)
            ctx.check_privatekey()
        except SSL.Error:
            cert_path = paths.get("cert", "")
            raise ObjectError(
                f"Cannot load certificate '{cert_path}' & key '{paths.get('key', '')}': "
                "The certificate and the given key do not match.",
                hint="the key file must hold the private key of the first certificate "
                     "in the certificate file",
                path=cert_path, check="key-mismatch") from None
    elif server:
        raise ObjectError(
            f"Missing server cert '{paths.get('cert', '')}' & key '{paths.get('key', '')}'",
            check="missing-identity")

    store = ctx.get_cert_store()
    flags = crypto.X509StoreFlags.PARTIAL_CHAIN
    for ca in material.ca_certs:
        store.add_cert(crypto.X509.from_cryptography(ca))
        if server:
            # Sent in the CertificateRequest: GnuTLS clients pick their
            # certificate by these names.
            ctx.add_client_ca(ca)
    if server and material.crls:
        for crl in material.crls:
            store.add_crl(crl)
        flags |= crypto.X509StoreFlags.CRL_CHECK | crypto.X509StoreFlags.CRL_CHECK_ALL
    store.set_flags(flags)
    ctx.set_verify_depth(MAX_VERIFY_DEPTH)
    # VERIFY_PEER on a server sends a CertificateRequest; without
    # FAIL_IF_NO_PEER_CERT a client without certificate still completes
    # the handshake, and check_credentials decides (QEMU semantics).
    ctx.set_verify(SSL.VERIFY_PEER, _verify_callback)


def _openssl_reason(error: SSL.Error) -> str:
    """The reason text of a pyOpenSSL error (``"no shared cipher"``), or its str()."""
    for item in error.args[0] if error.args and isinstance(error.args[0], list) else ():
        if isinstance(item, tuple) and item and item[-1]:
            return str(item[-1])
    return str(error) or type(error).__name__

