# -*- test-case-name: tests.vncd.test_rfb_security -*-
"""Which RFB security a display offers, and the VNC password it checks.

QEMU offers exactly one security type per listener, derived from three
facts about the display: the kind of TLS credentials (none, ``anon`` or
``x509``), whether a VNC password is required, and whether SASL is on.
:data:`AUTH_TABLE` is that derivation as data, one row per combination,
with QEMU's numbers and the name ``query-vnc`` reports; :func:`auth_for`
looks a configuration up in it.  WebSocket listeners never use VeNCrypt:
their TLS, if any, wraps the whole WebSocket connection, so they use the
row for "no credentials".

:class:`SecurityConfig` is the per-display security state the RFB
connection consults: the offered :class:`Auth` and the VNC password,
which can be changed at run time (the monitor's ``change-vnc-password``).

This module knows nothing about certificates, sockets or Twisted.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Callable

from vncd.rfb.vncauth import is_empty_password

__all__ = [
    "SecurityType", "VeNCryptSubtype", "Auth", "AUTH_TABLE", "auth_for",
    "SecurityConfig", "CREDS_KINDS", "EMPTY_PASSWORD",
]

#: Why an empty VNC password is refused (the monitor shows it as is).
EMPTY_PASSWORD = ("the VNC password is empty (or only NUL bytes, which VNC treats as"
                  " empty): anyone could log in")


class SecurityType(enum.IntEnum):
    """RFB security type numbers (rfbproto; QEMU ``ui/vnc.h``)."""

    INVALID = 0
    NONE = 1
    VNC = 2
    VENCRYPT = 19
    SASL = 20


class VeNCryptSubtype(enum.IntEnum):
    """VeNCrypt subtype numbers, SASL ones as QEMU and gtk-vnc number them."""

    PLAIN = 256
    TLSNONE = 257
    TLSVNC = 258
    TLSPLAIN = 259
    X509NONE = 260
    X509VNC = 261
    X509PLAIN = 262
    X509SASL = 263
    TLSSASL = 264

    @property
    def label(self) -> str:
        """The conventional spelling (``X509None``, ``TLSVnc`` ...)."""
        return _SUBTYPE_LABELS[self]


_SUBTYPE_LABELS = {
    VeNCryptSubtype.PLAIN: "Plain",
    VeNCryptSubtype.TLSNONE: "TLSNone",
    VeNCryptSubtype.TLSVNC: "TLSVnc",
    VeNCryptSubtype.TLSPLAIN: "TLSPlain",
    VeNCryptSubtype.X509NONE: "X509None",
    VeNCryptSubtype.X509VNC: "X509Vnc",
    VeNCryptSubtype.X509PLAIN: "X509Plain",
    VeNCryptSubtype.X509SASL: "X509SASL",
    VeNCryptSubtype.TLSSASL: "TLSSASL",
}

#: Security type names as vncd shows them (testcard, logs).
SECURITY_LABELS = {
    SecurityType.NONE: "None",
    SecurityType.VNC: "VncAuth",
    SecurityType.VENCRYPT: "VeNCrypt",
    SecurityType.SASL: "SASL",
}

#: Credential kinds a display can have: no TLS, anonymous TLS, x509 TLS.
CREDS_KINDS = (None, "anon", "x509")


@dataclass(frozen=True)
class Auth:
    """What one listener offers: a security type, a VeNCrypt subtype or None.

    ``name`` is the string QEMU's ``query-vnc`` reports for it.
    """

    security_type: SecurityType
    subtype: VeNCryptSubtype | None
    name: str

    @property
    def uses_tls(self) -> bool:
        """True when the client must do a VeNCrypt TLS handshake."""
        return self.security_type is SecurityType.VENCRYPT

    @property
    def inner(self) -> SecurityType:
        """The authentication that runs after TLS (or instead of it)."""
        if self.subtype is None:
            return self.security_type
        return _INNER[self.subtype]

    @property
    def label(self) -> str:
        """``None``, ``VncAuth``, ``VeNCrypt X509Vnc`` ... for people."""
        text = SECURITY_LABELS[self.security_type]
        if self.subtype is not None:
            text += " " + self.subtype.label
        return text


_INNER = {
    VeNCryptSubtype.TLSNONE: SecurityType.NONE,
    VeNCryptSubtype.X509NONE: SecurityType.NONE,
    VeNCryptSubtype.TLSVNC: SecurityType.VNC,
    VeNCryptSubtype.X509VNC: SecurityType.VNC,
    VeNCryptSubtype.TLSSASL: SecurityType.SASL,
    VeNCryptSubtype.X509SASL: SecurityType.SASL,
}

_S = SecurityType
_V = VeNCryptSubtype

#: (creds kind, password, sasl) -> what QEMU 7.2 offers on a plain (non
#: WebSocket) listener, from ``vnc_display_setup_auth``.  A password wins
#: over SASL when both are set.
AUTH_TABLE: dict[tuple[str | None, bool, bool], Auth] = {
    (None, False, False): Auth(_S.NONE, None, "none"),
    (None, True, False): Auth(_S.VNC, None, "vnc"),
    (None, True, True): Auth(_S.VNC, None, "vnc"),
    (None, False, True): Auth(_S.SASL, None, "sasl"),
    ("anon", False, False): Auth(_S.VENCRYPT, _V.TLSNONE, "vencrypt+tls+none"),
    ("anon", True, False): Auth(_S.VENCRYPT, _V.TLSVNC, "vencrypt+tls+vnc"),
    ("anon", True, True): Auth(_S.VENCRYPT, _V.TLSVNC, "vencrypt+tls+vnc"),
    ("anon", False, True): Auth(_S.VENCRYPT, _V.TLSSASL, "vencrypt+tls+sasl"),
    ("x509", False, False): Auth(_S.VENCRYPT, _V.X509NONE, "vencrypt+x509+none"),
    ("x509", True, False): Auth(_S.VENCRYPT, _V.X509VNC, "vencrypt+x509+vnc"),
    ("x509", True, True): Auth(_S.VENCRYPT, _V.X509VNC, "vencrypt+x509+vnc"),
    ("x509", False, True): Auth(_S.VENCRYPT, _V.X509SASL, "vencrypt+x509+sasl"),
}


def auth_for(creds_kind: str | None, password: bool, sasl: bool = False, *,
             websocket: bool = False) -> Auth:
    """The security a listener offers (QEMU's mapping; see :data:`AUTH_TABLE`).

    ``creds_kind`` is ``None``, ``"anon"`` or ``"x509"``.  WebSocket
    listeners map as if there were no credentials (their TLS is wss).
    """
    if creds_kind not in CREDS_KINDS:
        raise ValueError(f"unknown credentials kind {creds_kind!r}")
    if websocket:
        creds_kind = None
    return AUTH_TABLE[(creds_kind, bool(password), bool(sasl))]


class SecurityConfig:
    """The security one listener enforces: the offered auth and the password.

    ``password`` is the VNC password (bytes; only the first 8 count, as
    in every VNC implementation) or ``None`` when none is set, in which
    case every VNC-authentication attempt fails -- QEMU's behaviour for
    ``password=on`` without a password.  An empty password is refused
    with :class:`ValueError` (:data:`EMPTY_PASSWORD`): QEMU 7.2 accepts
    one and then admits anyone.  :meth:`set_password` changes the password
    for connections that authenticate afterwards.  Listeners of one
    display share the password through :meth:`for_websocket`.
    """

    def __init__(self, auth: Auth, password: bytes | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        if auth.inner is SecurityType.SASL:
            raise ValueError("vncd does not implement SASL authentication")
        _check_password(password)
        self.auth = auth
        self._password = _PasswordBox(password)
        self._clock = clock

    @classmethod
    def _sharing(cls, auth: Auth, box: "_PasswordBox",
                 clock: Callable[[], float]) -> "SecurityConfig":
        cfg = cls.__new__(cls)
        cfg.auth = auth
        cfg._password = box
        cfg._clock = clock
        return cfg

    def for_websocket(self) -> "SecurityConfig":
        """The same display's security for a WebSocket listener (no VeNCrypt)."""
        ws_auth = auth_for(None, self.auth.inner is SecurityType.VNC)
        return SecurityConfig._sharing(ws_auth, self._password, self._clock)

    @property
    def uses_password(self) -> bool:
        """True when clients must prove the VNC password (directly or inside TLS)."""
        return self.auth.inner is SecurityType.VNC

    @property
    def password(self) -> bytes | None:
        return self._password.value

    def set_password(self, password: bytes | None) -> None:
        """Set (bytes) or clear (``None``) the VNC password at run time.

        An empty password raises :class:`ValueError` with a message for
        the person who asked and leaves the password as it was.
        """
        _check_password(password)
        self._password.value = password

    @property
    def password_expires(self) -> float | None:
        """When the password stops working (UNIX time), or None for never."""
        return self._password.expires

    def expire_password(self, when: float | None) -> None:
        """Make the password stop working at ``when`` (UNIX time; None: never).

        QEMU's ``expire_password``: an expired password refuses every
        login until a new password or expiry time is set; connected
        clients stay.
        """
        self._password.expires = when

    def password_expired(self) -> bool:
        """True once the expiry time has passed."""
        expires = self._password.expires
        return expires is not None and self._clock() >= expires

    def __repr__(self) -> str:
        state = "set" if self._password.value is not None else "unset"
        return f"<SecurityConfig {self.auth.name} password {state}>"


def _check_password(password: bytes | None) -> None:
    if password is None:
        return
    if not isinstance(password, bytes):
        raise TypeError("the VNC password must be bytes")
    if is_empty_password(password):
        raise ValueError(EMPTY_PASSWORD)


class _PasswordBox:
    """Holder shared by every listener of one display (never printed)."""

    __slots__ = ("value", "expires")

    def __init__(self, value: bytes | None) -> None:
        self.value = value
        self.expires: float | None = None

    def __repr__(self) -> str:
        return "<password>"
