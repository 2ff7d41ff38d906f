"""The certificate matrix: credential directories and what loading each one gives.

:data:`CASES` is QEMU's own test catalogue (``test-crypto-tlscredsx509``,
adapted to 7.2: leaves carry digitalSignature|keyEncipherment) plus chains,
CRLs, key formats, encrypted keys, damaged files and missing files.  Each
case says what vncd answers: ``None`` (the object loads) or the exact
message.  :class:`CatalogueTests` creates every case as a real
``tls-creds-x509`` object (loader, sanity checks and TLS engine);
``test_qemu_verdicts`` runs QEMU 7.2 on the same directories.

Certificates are generated once per test process; their validity windows
are relative to :data:`T0`, which is also the clock vncd is given, so the
verdicts do not depend on when the tests run.
"""

from __future__ import annotations

import datetime
import functools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU
from twisted.trial.unittest import SynchronousTestCase

import creds
from creds.objects import ObjectError, ObjectRegistry
from tests import certgen

__all__ = ["T0", "CASES", "Case", "PKI", "pki", "write_case", "registry", "tls_props",
           "sha1_signed"]

#: The time every certificate's validity is relative to, and vncd's clock.
T0 = certgen.now()
H = datetime.timedelta(hours=1)

SRV, CLI, ANY = EKU.SERVER_AUTH, EKU.CLIENT_AUTH, EKU.ANY_EXTENDED_KEY_USAGE
DS_KE = {"digital_signature", "key_encipherment"}


def registry(**kwargs) -> ObjectRegistry:
    """vncd's registry (every creds type), with the clock fixed at :data:`T0` by default."""
    return creds.new_registry(clock=kwargs.pop("clock", lambda: T0), **kwargs)


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


_SHA256_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")
_SHA1_RSA = bytes.fromhex("300d06092a864886f70d0101050500")


def sha1_signed(issued: certgen.Issued, issuer: certgen.Issued) -> certgen.Issued:
    """``issued`` re-signed by ``issuer``'s RSA key with SHA-1.

    ``cryptography`` refuses to build SHA-1 certificates, but GnuTLS'
    "insecure algorithm" verdict needs one: swap the algorithm identifier
    (same length) in the to-be-signed part and sign it by hand.
    """
    tbs = issued.cert.tbs_certificate_bytes
    assert tbs.count(_SHA256_RSA) == 1
    tbs = tbs.replace(_SHA256_RSA, _SHA1_RSA)
    signature = issuer.key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    bits = b"\x00" + signature
    body = tbs + _SHA1_RSA + b"\x03" + _der_length(len(bits)) + bits
    der = b"\x30" + _der_length(len(body)) + body
    return certgen.Issued(cert=x509.load_der_x509_certificate(der), key=issued.key,
                          issuer=issuer)


class PKI:
    """Every certificate the catalogue uses (QEMU's names where QEMU has them)."""

    def __init__(self) -> None:
        ca = functools.partial(certgen.ca, at=T0)
        leaf_srv = functools.partial(certgen.server, at=T0)
        leaf_cli = functools.partial(certgen.client, at=T0)
        self.cacert = ca("qemu CA")
        self.cacert1 = ca("qemu CA 1", key_usage=None)
        self.cacert2 = ca("qemu CA 2", basic_constraints=(True, False), key_usage=None)
        self.cacert3 = ca("qemu CA 3", key_usage=({"key_cert_sign"}, True))
        self.cacert4 = ca("qemu CA 4", key_usage=({"digital_signature"}, False))
        self.cacert5 = ca("qemu CA 5", basic_constraints=None, key_usage=None)
        self.cacert6 = ca("qemu CA 6", key_usage=({"digital_signature"}, True))
        self.cacertexp = ca("qemu", not_before=-2 * H, not_after=-H)
        self.cacertnew = ca("qemu", not_before=H, not_after=2 * H)
        self.root = ca("qemu root")
        self.other_root = ca("some other random CA")
        self.level1a = ca("qemu level 1a", issuer=self.root)
        self.level1b = ca("qemu level 1b", issuer=self.root)
        self.level1c_invalid = ca("qemu level 1c invalid", issuer=self.root,
                                  not_before=360 * H, not_after=400 * H)
        self.level2a = ca("qemu level 2a", issuer=self.level1a)
        self.level1_nobc = ca("qemu level 1 no bc", issuer=self.root,
                              basic_constraints=None)
        self.level1_nocs = ca("qemu level 1 no cs", issuer=self.root,
                              key_usage=({"digital_signature"}, False))

        self.servercert = leaf_srv(self.cacert, "qemu.org")
        self.clientcert = leaf_cli(self.cacert, "qemu")
        for n in range(1, 7):
            setattr(self, f"servercert{n}",
                    leaf_srv(getattr(self, f"cacert{n}"), "qemu.org"))
        server_variants = {
            7: (None, None), 8: (({"digital_signature", "key_encipherment",
                                   "key_cert_sign"}, True), None),
            9: (({"key_cert_sign"}, False), None), 10: (None, ([SRV], True)),
            11: (None, ([SRV], False)), 12: (None, ([CLI, SRV], True)),
            13: (None, ([CLI, SRV], False)), 14: (({"key_cert_sign"}, True), None),
            15: (None, ([CLI], True)), 16: ((set(), True), None),
        }
        for n, (ku, eku) in server_variants.items():
            setattr(self, f"servercert{n}",
                    leaf_srv(self.cacert, "qemu", key_usage=ku, ext_key_usage=eku))
        client_variants = {
            1: (None, None), 2: (({"digital_signature", "key_encipherment",
                                   "key_cert_sign"}, True), None),
            3: (({"key_cert_sign"}, False), None), 4: (None, ([CLI], True)),
            5: (None, ([CLI], False)), 6: (None, ([CLI, SRV], True)),
            7: (None, ([CLI, SRV], False)), 8: (({"key_cert_sign"}, True), None),
            9: (None, ([SRV], True)), 10: ((set(), True), None),
        }
        for n, (ku, eku) in client_variants.items():
            setattr(self, f"clientcert{n}",
                    leaf_cli(self.cacert, "qemu", key_usage=ku, ext_key_usage=eku))
        self.servercertexp = leaf_srv(self.cacertexp, "qemu.org")
        self.servercertexp1 = leaf_srv(self.cacert, "qemu", not_after=-H, not_before=-2 * H)
        self.clientcertexp1 = leaf_cli(self.cacert, "qemu", not_after=-H, not_before=-2 * H)
        self.servercertnew = leaf_srv(self.cacertnew, "qemu.org")
        self.servercertnew1 = leaf_srv(self.cacert, "qemu", not_before=H, not_after=2 * H)
        self.clientcertnew1 = leaf_cli(self.cacert, "qemu", not_before=H, not_after=2 * H)
        self.servercertlevel3a = leaf_srv(self.level2a, "qemu.org")
        self.clientcertlevel2b = leaf_cli(self.level1b, "qemu client level 2b")
        self.server_nobc_int = leaf_srv(self.level1_nobc, "qemu.org")
        self.server_nocs_int = leaf_srv(self.level1_nocs, "qemu.org")

        self.server_ec = leaf_srv(self.cacert, "qemu.org", key_kind="ec", key_size=256,
                                  key_usage=({"digital_signature"}, True))
        self.server_ec384 = leaf_srv(self.cacert, "qemu.org", key_kind="ec", key_size=384,
                                     key_usage=({"digital_signature"}, True))
        self.server_ds_only = leaf_srv(self.cacert, "qemu.org",
                                       key_usage=({"digital_signature"}, True))
        self.server_is_ca = leaf_srv(self.cacert, "qemu.org",
                                     basic_constraints=(True, False))
        self.server_eku_any = leaf_srv(self.cacert, "qemu.org", ext_key_usage=([ANY], True))
        self.server_eku_codesign = leaf_srv(self.cacert, "qemu.org",
                                            ext_key_usage=([EKU.CODE_SIGNING], True))
        self.server_eku_codesign_nc = leaf_srv(self.cacert, "qemu.org",
                                               ext_key_usage=([EKU.CODE_SIGNING], False))
        # Generated apart from certgen's key cache, so no certificate uses it.
        self.wrong_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.server_sha1 = sha1_signed(leaf_srv(self.cacert, "qemu.org"), self.cacert)
        sha1_root = ca("qemu sha1 root")
        self.sha1_root = sha1_signed(sha1_root, sha1_root)
        self.server_under_sha1_root = leaf_srv(self.sha1_root, "qemu.org")
        self.bundle16 = [ca(f"qemu bundle CA {n}") for n in range(16)]
        self.revoked_server = leaf_srv(self.cacert, "qemu.org")
        self.crl_revoking = certgen.crl(self.cacert, [self.revoked_server], at=T0)
        self.crl_empty = certgen.crl(self.cacert, at=T0)
        self.crl_other = certgen.crl(self.other_root, at=T0)


@functools.lru_cache(maxsize=1)
def pki() -> PKI:
    return PKI()


# -- cases -----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One credentials directory and the verdict vncd gives for it."""

    name: str
    endpoint: str
    #: Keyword arguments for :func:`tests.certgen.write_dir`, from the PKI.
    files: Callable[[PKI], Mapping[str, Any]]
    #: vncd's message (``{d}`` is the directory), or ``None``: the object loads.
    error: str | None
    #: Changes made after the files are written (damage, removal).
    tweak: Callable[[PKI, str], None] | None = None
    #: Extra object properties; ``{d}`` is the directory, ``None`` omits ``dir``.
    props: Mapping[str, str | None] = field(default_factory=dict)
    #: Secrets created before the credentials: id -> data.
    secrets: Mapping[str, str] = field(default_factory=dict)


def _write(d: str, name: str, data: bytes) -> None:
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def _replace(name: str, data: bytes) -> Callable[[PKI, str], None]:
    return lambda p, d: _write(d, name, data)


def _truncate(name: str) -> Callable[[PKI, str], None]:
    def tweak(p: PKI, d: str) -> None:
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()
        _write(d, name, data[: len(data) // 2])
    return tweak


def _remove(name: str) -> Callable[[PKI, str], None]:
    return lambda p, d: os.unlink(os.path.join(d, name))


def _make_dir(name: str) -> Callable[[PKI, str], None]:
    def tweak(p: PKI, d: str) -> None:
        path = os.path.join(d, name)
        if os.path.exists(path):
            os.unlink(path)
        os.mkdir(path)
    return tweak


def _bad_der_block(label: str) -> bytes:
    return (f"-----BEGIN {label}-----\nMAMCAQVqdW5r\n-----END {label}-----\n").encode()


def _srv(ca_attr: str, srv_attr: str) -> Callable[[PKI], Mapping[str, Any]]:
    return lambda p: {"ca": [getattr(p, ca_attr)], "server": getattr(p, srv_attr)}


def _cli(ca_attr: str, cli_attr: str) -> Callable[[PKI], Mapping[str, Any]]:
    return lambda p: {"ca": [getattr(p, ca_attr)], "client": getattr(p, cli_attr)}


OWN_SRV = "{d}/server-cert.pem"
OWN_CLI = "{d}/client-cert.pem"
CA_FILE = "{d}/ca-cert.pem"
PAIR = "Cannot load certificate '{d}/server-cert.pem' & key '{d}/server-key.pem'"


def _failed(reason: str, own: str = OWN_SRV, against: str = CA_FILE) -> str:
    return f"Our own certificate {own} failed validation against {against}: {reason}"


NOT_TRUSTED = "The certificate is not trusted"
UNKNOWN = "The certificate hasn't got a known issuer"

CASES: tuple[Case, ...] = (
    # QEMU's catalogue (tests/unit/test-crypto-tlscredsx509.c), 7.2 flavour.
    Case("perfectserver", "server", _srv("cacert", "servercert"), None),
    Case("perfectclient", "client", _cli("cacert", "clientcert"), None),
    Case("goodca1", "server", _srv("cacert1", "servercert1"), None),
    Case("goodca2", "server", _srv("cacert2", "servercert2"), None),
    Case("goodca3", "server", _srv("cacert3", "servercert3"), None),
    Case("badca1", "server", _srv("cacert4", "servercert4"), _failed(NOT_TRUSTED)),
    Case("badca2", "server", _srv("cacert5", "servercert5"),
         "The certificate {d}/ca-cert.pem is missing basic constraints for a CA"),
    Case("badca3", "server", _srv("cacert6", "servercert6"),
         "Certificate {d}/ca-cert.pem usage does not permit certificate signing"),
    *(Case(f"goodserver{n - 6}", "server", _srv("cacert", f"servercert{n}"), None)
      for n in range(7, 14)),
    Case("badserver1", "server", _srv("cacert", "servercert14"),
         "Certificate {d}/server-cert.pem usage does not permit digital signature"),
    Case("badserver2", "server", _srv("cacert", "servercert15"),
         "Certificate {d}/server-cert.pem purpose does not allow use with a TLS server"),
    Case("badserver3", "server", _srv("cacert", "servercert16"),
         "Certificate {d}/server-cert.pem usage does not permit digital signature"),
    *(Case(f"goodclient{n}", "client", _cli("cacert", f"clientcert{n}"), None)
      for n in range(1, 8)),
    Case("badclient1", "client", _cli("cacert", "clientcert8"),
         "Certificate {d}/client-cert.pem usage does not permit digital signature"),
    Case("badclient2", "client", _cli("cacert", "clientcert9"),
         "Certificate {d}/client-cert.pem purpose does not allow use with a TLS client"),
    Case("badclient3", "client", _cli("cacert", "clientcert10"),
         "Certificate {d}/client-cert.pem usage does not permit digital signature"),
    Case("expired1", "server", _srv("cacertexp", "servercertexp"),
         "The CA certificate {d}/ca-cert.pem has expired"),
    Case("expired2", "server", _srv("cacert", "servercertexp1"),
         "The server certificate {d}/server-cert.pem has expired"),
    Case("expired3", "client", _cli("cacert", "clientcertexp1"),
         "The client certificate {d}/client-cert.pem has expired"),
    Case("inactive1", "server", _srv("cacertnew", "servercertnew"),
         "The CA certificate {d}/ca-cert.pem is not yet active"),
    Case("inactive2", "server", _srv("cacert", "servercertnew1"),
         "The server certificate {d}/server-cert.pem is not yet active"),
    Case("inactive3", "client", _cli("cacert", "clientcertnew1"),
         "The client certificate {d}/client-cert.pem is not yet active"),
    Case("chain1", "server",
         lambda p: {"ca": [p.root, p.level1a, p.level1b, p.level2a],
                    "server": p.servercertlevel3a}, None),
    Case("chain2", "client",
         lambda p: {"ca": [p.root, p.level1a, p.level1b, p.level2a],
                    "client": p.clientcertlevel2b}, None),
    Case("certchainwithexpiredcert", "client",
         lambda p: {"ca": [p.root, p.level1a, p.level1b, p.level1c_invalid, p.level2a],
                    "client": p.clientcertlevel2b},
         "The CA certificate {d}/ca-cert.pem is not yet active"),
    Case("chainincomplete", "server",
         lambda p: {"ca": [p.root, p.level2a], "server": p.servercertlevel3a}, None),
    Case("serverchain", "server",
         lambda p: {"ca": [p.root], "server": [p.servercertlevel3a, p.level2a, p.level1a]},
         None),
    Case("multiplecaswithchain", "server",
         lambda p: {"ca": [p.other_root, p.root],
                    "server": [p.servercertlevel3a, p.level2a, p.level1a]}, None),
    Case("incompleteserverchain", "server",
         lambda p: {"ca": [p.root], "server": [p.servercertlevel3a, p.level2a]},
         _failed(UNKNOWN)),
    Case("unsortedserverchain", "server",
         lambda p: {"ca": [p.root], "server": [p.servercertlevel3a, p.level1a, p.level2a]},
         "Cert 'C=UK,CN=qemu level 1a' does not match issuer of cert 'C=UK,CN=qemu.org'"),
    Case("clientchain", "client",
         lambda p: {"ca": [p.root], "client": [p.clientcertlevel2b, p.level1b]}, None),
    Case("missingca", "server", lambda p: {"server": p.servercert1},
         "Unable to access credentials {d}/ca-cert.pem: No such file or directory"),
    Case("missingserver", "server", lambda p: {"ca": [p.cacert1]},
         "Unable to access credentials {d}/server-cert.pem: No such file or directory"),
    Case("missingclient", "client", lambda p: {"ca": [p.cacert1]}, None),

    # Files and directories.
    Case("missingkey", "server", _srv("cacert", "servercert"),
         "Unable to access credentials {d}/server-key.pem: No such file or directory",
         tweak=_remove("server-key.pem")),
    Case("nodir", "server", _srv("cacert", "servercert"), "Missing 'dir' property value",
         props={"dir": None}),
    Case("nosuchdir", "server", _srv("cacert", "servercert"),
         "Unable to access credentials {d}/nowhere/ca-cert.pem: No such file or directory",
         props={"dir": "{d}/nowhere"}),
    Case("trailingslash", "server", lambda p: {"server": p.servercert},
         "Unable to access credentials {d}//ca-cert.pem: No such file or directory",
         props={"dir": "{d}/"}),
    Case("clientcertonly", "client",
         lambda p: {"ca": [p.cacert], "client": p.clientcert, "write_key": False}, None),
    Case("clientkeyonly", "client", _cli("cacert", "clientcert"), None,
         tweak=_remove("client-cert.pem")),
    Case("clientcrlnotread", "client", _cli("cacert", "clientcert"), None,
         tweak=_replace("ca-crl.pem", b"garbage\n")),
    Case("clientdhnotread", "client", _cli("cacert", "clientcert"), None,
         tweak=_replace("dh-params.pem", b"garbage\n")),
    Case("cadirectory", "server", _srv("cacert", "servercert"),
         "Cannot load CA cert list {d}/ca-cert.pem: "
         "Error reading file “{d}/ca-cert.pem”: Is a directory",
         tweak=_make_dir("ca-cert.pem")),
    Case("certdirectory", "server", _srv("cacert", "servercert"),
         "Cannot load CA cert list {d}/server-cert.pem: "
         "Error reading file “{d}/server-cert.pem”: Is a directory",
         tweak=_make_dir("server-cert.pem")),
    Case("keydirectory", "server", _srv("cacert", "servercert"),
         PAIR + ": Error while reading file.", tweak=_make_dir("server-key.pem")),
    Case("crldirectory", "server", _srv("cacert", "servercert"),
         "Cannot load CRL '{d}/ca-crl.pem': Error while reading file.",
         tweak=_make_dir("ca-crl.pem")),
    Case("dhdirectory", "server", _srv("cacert", "servercert"),
         "Error reading file “{d}/dh-params.pem”: Is a directory",
         tweak=_make_dir("dh-params.pem")),

    # Certificate contents beyond QEMU's catalogue.
    Case("expiredbundle", "server",
         lambda p: {"ca": [p.cacert, p.cacertexp], "server": p.servercert},
         "The CA certificate {d}/ca-cert.pem has expired"),
    Case("leafincafile", "server",
         lambda p: {"ca": [p.cacert, p.servercert7], "server": p.servercert},
         "The certificate {d}/ca-cert.pem basic constraints do not show a CA"),
    Case("serverisca", "server", _srv("cacert", "server_is_ca"),
         "The certificate {d}/server-cert.pem basic constraints show a CA, "
         "but we need one for a server"),
    Case("clientisca", "client", lambda p: {"ca": [p.cacert], "client": p.server_is_ca},
         "The certificate {d}/client-cert.pem basic constraints show a CA, "
         "but we need one for a client"),
    Case("serveronclient", "client", lambda p: {"ca": [p.cacert], "client": p.servercert},
         "Certificate {d}/client-cert.pem purpose does not allow use with a TLS client"),
    Case("ekuany", "server", _srv("cacert", "server_eku_any"), None),
    Case("ekucodesigning", "server", _srv("cacert", "server_eku_codesign"),
         "Certificate {d}/server-cert.pem purpose does not allow use with a TLS server"),
    Case("ekucodesigningnc", "server", _srv("cacert", "server_eku_codesign_nc"), None),
    Case("dsonly", "server", _srv("cacert", "server_ds_only"), None),
    Case("intermediateonlyinca", "server",
         lambda p: {"ca": [p.level2a], "server": p.servercertlevel3a}, None),
    Case("intermediatenobc", "server",
         lambda p: {"ca": [p.root], "server": [p.server_nobc_int, p.level1_nobc]},
         "The certificate {d}/server-cert.pem is missing basic constraints for a CA"),
    Case("intermediatenocertsign", "server",
         lambda p: {"ca": [p.root, p.level1_nocs], "server": p.server_nocs_int},
         _failed(NOT_TRUSTED)),
    Case("sha1leaf", "server", _srv("cacert", "server_sha1"),
         _failed("The certificate uses an insecure algorithm")),
    Case("sha1root", "server", _srv("sha1_root", "server_under_sha1_root"), None),
    Case("bundle17", "server",
         lambda p: {"ca": [*p.bundle16, p.cacert], "server": p.servercert}, None),
    Case("revokedserver", "server",
         lambda p: {"ca": [p.cacert], "server": p.revoked_server, "crl": p.crl_revoking},
         _failed("The certificate has been revoked", against="{d}/ca-crl.pem")),
    Case("crlnotrevoking", "server",
         lambda p: {"ca": [p.cacert], "server": p.servercert, "crl": p.crl_revoking}, None),
    Case("crlother", "server",
         lambda p: {"ca": [p.cacert], "server": p.servercert, "crl": p.crl_other}, None),
    Case("ec", "server", _srv("cacert", "server_ec"), None),
    Case("ecsec1", "server", lambda p: {"ca": [p.cacert], "server": p.server_ec384,
                                        "key_format": "traditional"}, None),
    Case("rsatraditional", "server",
         lambda p: {"ca": [p.cacert], "server": p.servercert, "key_format": "traditional"},
         None),
    Case("keymismatch", "server", _srv("cacert", "servercert"),
         PAIR + ": The certificate and the given key do not match.",
         tweak=lambda p, d: _write(d, "server-key.pem", certgen.key_pem(p.wrong_key))),
    Case("keyfirstofmany", "server", _srv("cacert", "servercert"), None,
         tweak=lambda p, d: _write(d, "server-key.pem", p.servercert.key_pem()
                                   + certgen.key_pem(p.wrong_key))),
    Case("textaroundpem", "server", _srv("cacert", "servercert"), None,
         tweak=lambda p, d: _write(d, "server-cert.pem", b"Bag Attributes\n  x: y\n"
                                   + p.servercert.pem() + b"trailing text\n")),
    Case("crlf", "server", _srv("cacert", "servercert"), None,
         tweak=lambda p, d: _write(d, "ca-cert.pem", p.cacert.pem().replace(b"\n", b"\r\n"))),

    # Encrypted keys and secrets.
    Case("encryptednopassword", "server",
         lambda p: {"ca": [p.cacert], "server": p.servercert, "key_password": b"s3cret"},
         PAIR + ": Decryption has failed."),
    Case("encryptedright", "server",
         lambda p: {"ca": [p.cacert], "server": p.servercert, "key_password": b"s3cret"},
         None, props={"passwordid": "sec0"}, secrets={"sec0": "s3cret"}),
    Case("encryptedwrong", "server",
         lambda p: {"ca": [p.cacert], "server": p.servercert, "key_password": b"s3cret"},
         PAIR + ": Decryption has failed.", props={"passwordid": "sec0"},
         secrets={"sec0": "wrong"}),
    Case("encryptedtraditional", "server",
         lambda p: {"ca": [p.cacert], "server": p.servercert, "key_password": b"s3cret",
                    "key_format": "traditional"},
         None, props={"passwordid": "sec0"}, secrets={"sec0": "s3cret"}),
    Case("encryptedec", "server",
         lambda p: {"ca": [p.cacert], "server": p.server_ec, "key_password": b"s3cret"},
         None, props={"passwordid": "sec0"}, secrets={"sec0": "s3cret"}),
    Case("plainkeywithpassword", "server", _srv("cacert", "servercert"), None,
         props={"passwordid": "sec0"}, secrets={"sec0": "unused"}),
    Case("nosuchsecret", "server",
         lambda p: {"ca": [p.cacert], "server": p.servercert, "key_password": b"s3cret"},
         "No secret with id 'nosuch'", props={"passwordid": "nosuch"}),

    # Damaged files.
    Case("cagarbage", "server", _srv("cacert", "servercert"),
         "Unable to import CA certificate list {d}/ca-cert.pem",
         tweak=_replace("ca-cert.pem", b"hello\n")),
    Case("caempty", "server", _srv("cacert", "servercert"),
         "Unable to import CA certificate list {d}/ca-cert.pem",
         tweak=_replace("ca-cert.pem", b"")),
    Case("catruncated", "server", _srv("cacert", "servercert"),
         "Unable to import CA certificate list {d}/ca-cert.pem",
         tweak=_truncate("ca-cert.pem")),
    Case("certgarbage", "server", _srv("cacert", "servercert"),
         "Unable to import server certificate {d}/server-cert.pem: "
         "Base64 unexpected header error.", tweak=_replace("server-cert.pem", b"hello\n")),
    Case("certtruncated", "server", _srv("cacert", "servercert"),
         "Unable to import server certificate {d}/server-cert.pem: "
         "Base64 unexpected header error.", tweak=_truncate("server-cert.pem")),
    Case("certbadder", "server", _srv("cacert", "servercert"),
         "Unable to import server certificate {d}/server-cert.pem: "
         "ASN1 parser: Error in DER parsing.",
         tweak=_replace("server-cert.pem", _bad_der_block("CERTIFICATE"))),
    Case("clientcertgarbage", "client", _cli("cacert", "clientcert"),
         "Unable to import client certificate {d}/client-cert.pem: "
         "Base64 unexpected header error.", tweak=_replace("client-cert.pem", b"\0junk")),
    Case("keygarbage", "server", _srv("cacert", "servercert"),
         PAIR + ": The requested data were not available.",
         tweak=_replace("server-key.pem", b"hello\n")),
    Case("keytruncated", "server", _srv("cacert", "servercert"),
         PAIR + ": Base64 decoding error.", tweak=_truncate("server-key.pem")),
    Case("crlgarbage", "server", _srv("cacert", "servercert"),
         "Cannot load CRL '{d}/ca-crl.pem': Base64 decoding error.",
         tweak=_replace("ca-crl.pem", b"hello\n")),
    Case("dhgarbage", "server", _srv("cacert", "servercert"),
         "Unable to load DH parameters from {d}/dh-params.pem: "
         "Base64 unexpected header error.", tweak=_replace("dh-params.pem", b"hello\n")),
    Case("dhtruncated", "server", _srv("cacert", "servercert"),
         "Unable to load DH parameters from {d}/dh-params.pem: Base64 decoding error.",
         tweak=_truncate("dh-params.pem")),

    # sanity-check=off.
    Case("nosanitybadca1", "server", _srv("cacert4", "servercert4"), None,
         props={"sanity-check": "off"}),
    Case("nosanityexpired", "server", _srv("cacert", "servercertexp1"), None,
         props={"sanity-check": "off"}),
    Case("nosanitycertgarbage", "server", _srv("cacert", "servercert"),
         PAIR + ": Base64 decoding error.", props={"sanity-check": "off"},
         tweak=_replace("server-cert.pem", b"hello\n")),
    Case("nosanitycertbadbase64", "server", _srv("cacert", "servercert"),
         PAIR + ": Base64 unexpected header error.", props={"sanity-check": "off"},
         tweak=_replace("server-cert.pem", b"-----BEGIN CERTIFICATE-----\n!!!\n"
                                           b"-----END CERTIFICATE-----\n")),
    Case("nosanitycagarbage", "server", _srv("cacert", "servercert"),
         "Unable to import CA certificate list {d}/ca-cert.pem",
         props={"sanity-check": "off"}, tweak=_replace("ca-cert.pem", b"hello\n")),
    Case("nosanitycatruncated", "server", _srv("cacert", "servercert"),
         "Cannot load CA certificate '{d}/ca-cert.pem': Base64 unexpected header error.",
         props={"sanity-check": "off"}, tweak=_truncate("ca-cert.pem")),
    Case("nosanitysecretfirst", "server", _srv("cacert", "servercert"),
         "No secret with id 'nosuch'", props={"sanity-check": "off", "passwordid": "nosuch"},
         tweak=_replace("server-cert.pem", b"hello\n")),
    Case("nosanitymismatch", "server", _srv("cacert", "servercert"),
         PAIR + ": The certificate and the given key do not match.",
         props={"sanity-check": "off"},
         tweak=lambda p, d: _write(d, "server-key.pem", certgen.key_pem(p.wrong_key))),
)


def write_case(case: Case, directory: str) -> str:
    """Lay out ``case`` in ``directory``; server directories get ``dh-params.pem``."""
    p = pki()
    files = dict(case.files(p))
    if case.endpoint == "server":
        files.setdefault("dh", certgen.FFDHE2048_PEM)
    certgen.write_dir(directory, **files)
    if case.tweak is not None:
        case.tweak(p, directory)
    return directory


def tls_props(case: Case, directory: str) -> dict[str, str]:
    """The ``tls-creds-x509`` properties of ``case`` (without ``id``)."""
    props: dict[str, str] = {"endpoint": case.endpoint, "dir": directory}
    for name, value in case.props.items():
        if value is None:
            props.pop(name, None)
        else:
            props[name] = value.replace("{d}", directory)
    return props


def _case_test(case: Case):
    def test(self: SynchronousTestCase) -> None:
        d = write_case(case, os.path.abspath(self.mktemp()))
        r = registry()
        for secret_id, data in case.secrets.items():
            r.create("secret", {"id": secret_id, "data": data})
        props = {"id": "tls0", **tls_props(case, d)}
        if case.error is None:
            obj = r.create("tls-creds-x509", props)
            self.assertEqual(obj.loaded.generation, 1)
            self.assertIsNotNone(obj.loaded.context)
        else:
            e = self.assertRaises(ObjectError, r.create, "tls-creds-x509", props)
            self.assertEqual(e.message, case.error.replace("{d}", d))
            self.assertTrue(e.hint, f"no hint for {case.name}")
            self.assertNotIn(case.name, r)

    verdict = "loads" if case.error is None else "fails with its message and a hint"
    test.__doc__ = f"Credentials directory '{case.name}' ({case.endpoint}) {verdict}."
    test.__name__ = f"test_{case.name}"
    return test


class CatalogueTests(SynchronousTestCase):
    """vncd's verdict for every case of the catalogue, through object creation."""

    def test_cases_are_distinct(self) -> None:
        """Every case has its own name, and the catalogue holds both verdicts."""
        names = [c.name for c in CASES]
        self.assertEqual(len(names), len(set(names)))
        self.assertTrue(any(c.error is None for c in CASES))
        self.assertTrue(any(c.error is not None for c in CASES))


for _case in CASES:
    setattr(CatalogueTests, f"test_{_case.name}", _case_test(_case))
del _case
