"""TLS alerts that mean "I do not accept your certificate", in words for people.

Both ends use it: the server, when a client's alert says it refused the
server's certificate; the client (vncd-capture), when the server's alert
says it refused ours.  The keys are the alert descriptions as the TLS
session reports them (:attr:`creds.session.TLSSession.alert`, OpenSSL's
lower-case names).  Nothing here touches TLS itself.
"""

from __future__ import annotations

__all__ = ["CERTIFICATE_ALERTS", "certificate_alert_words"]

CERTIFICATE_ALERTS = {
    "unknown ca": "unknown CA",
    "bad certificate": "bad certificate",
    "certificate required": "a certificate is required",
    "certificate expired": "certificate expired",
    "certificate revoked": "certificate revoked",
    "certificate unknown": "certificate unknown",
    "unsupported certificate": "unsupported certificate",
    "access denied": "access denied",
    "decrypt error": "signature check failed",
}


def certificate_alert_words(alert: str | None) -> str | None:
    """The words for a certificate alert, or None for any other alert (or none)."""
    return CERTIFICATE_ALERTS.get(alert) if alert is not None else None
