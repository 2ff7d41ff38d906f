"""OpenSSL's certificate verification error codes (``X509_V_ERR_*``) by name.

The numbers are OpenSSL's stable ABI (``include/openssl/x509_vfy.h``);
only the codes vncd judges, ignores or explains are listed.  The verify
callback in :mod:`creds.engine` records them and :mod:`creds.session`
turns them into QEMU's verdicts.
"""

from __future__ import annotations

import enum

__all__ = ["VerifyCode"]


class VerifyCode(enum.IntEnum):
    """An OpenSSL verify error, comparable with the plain ``int`` OpenSSL reports."""

    UNABLE_TO_GET_ISSUER_CERT = 2
    UNABLE_TO_GET_CRL = 3
    UNABLE_TO_DECRYPT_CERT_SIGNATURE = 4
    UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY = 6
    CERT_SIGNATURE_FAILURE = 7
    CRL_SIGNATURE_FAILURE = 8
    CERT_NOT_YET_VALID = 9
    CERT_HAS_EXPIRED = 10
    CRL_NOT_YET_VALID = 11
    CRL_HAS_EXPIRED = 12
    DEPTH_ZERO_SELF_SIGNED_CERT = 18
    SELF_SIGNED_CERT_IN_CHAIN = 19
    UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
    UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
    CERT_REVOKED = 23
    INVALID_CA = 24
    PATH_LENGTH_EXCEEDED = 25
    INVALID_PURPOSE = 26
    CERT_UNTRUSTED = 27
    CERT_REJECTED = 28
    KEYUSAGE_NO_CERTSIGN = 32
    UNABLE_TO_GET_CRL_ISSUER = 33
    KEYUSAGE_NO_CRL_SIGN = 35
    EE_KEY_TOO_SMALL = 66
    CA_KEY_TOO_SMALL = 67
    CA_MD_TOO_WEAK = 68


#: Codes about a CRL (their hints name ``ca-crl.pem`` rather than the CA file).
CRL_CODES = frozenset({
    VerifyCode.CRL_SIGNATURE_FAILURE, VerifyCode.CRL_NOT_YET_VALID,
    VerifyCode.CRL_HAS_EXPIRED, VerifyCode.CERT_REVOKED,
})
