"""Translation of the legacy ``-vnc`` TLS options into credential objects.

Before QEMU 2.5 the VNC server had its own TLS code, switched on with
``tls``, ``x509=DIR``, ``x509verify=DIR`` and ``acl``.  QEMU 2.5 to 3.0
kept those options working by creating credential objects behind the
scenes; QEMU 3.1 removed them (``acl`` went in 6.0).  vncd keeps old
command lines working exactly as QEMU 2.5 ran them:

=====================================  ==============================================
legacy                                 objects (id ``tlsvnc<display id>``)
=====================================  ==============================================
``tls``                                ``tls-creds-anon,endpoint=server``
``tls,x509=DIR``                       ``tls-creds-x509,dir=DIR,endpoint=server,verify-peer=off``
``tls,x509verify=DIR``                 ``tls-creds-x509,dir=DIR,endpoint=server,verify-peer=on``
``tls,x509=A,x509verify=B``            ``x509`` wins: dir A, verify-peer off
``x509=``/``x509verify=`` alone        nothing: no TLS (vncd warns)
any of them on a display ``none``      nothing (QEMU 2.5 ignored such a display)
``acl``                                ``authz-list,id=vnc.x509dname,policy=deny`` used
                                       as ``tls-authz`` (``vnc.<id>.x509dname`` for a
                                       display whose id is not ``default``)
``acl,sasl``                           also ``authz-list,id=vnc.username,policy=deny``
                                       used as ``sasl-authz`` (``vnc.<id>.username``)
=====================================  ==============================================

Any of ``tls``/``x509``/``x509verify`` together with ``tls-creds`` is
QEMU's mutual-exclusion error; ``acl`` with ``tls-authz`` (or
``sasl-authz``) likewise.  Each legacy use yields one deprecation warning
that spells out the modern replacement.

This module knows nothing about sockets and creates no objects itself: it
returns :class:`compat.config.ObjectSpec` records for the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from compat.config import ObjectSpec
from compat.errors import OptionError
from compat.objects import format_object
from compat.optstr import Param

__all__ = [
    "LEGACY_TLS_KEYS", "LEGACY_KEYS", "Translation", "translate",
    "creds_id", "acl_id", "sasl_acl_id", "MUTUALLY_EXCLUSIVE",
]

#: The pre-2.5 TLS switches, in the order QEMU names them.
LEGACY_TLS_KEYS = ("tls", "x509", "x509verify")

#: Every key that exists only for the legacy translation.
LEGACY_KEYS = (*LEGACY_TLS_KEYS, "acl")

#: QEMU 2.6 - 3.0's message for ``tls-creds`` combined with a legacy switch.
MUTUALLY_EXCLUSIVE = (
    "'tls-creds' parameter is mutually exclusive with 'tls', 'x509' and"
    " 'x509verify' parameters"
)


def creds_id(display_id: str) -> str:
    """The id QEMU 2.5 gave the credentials it created for a display."""
    return f"tlsvnc{display_id}"


def acl_id(display_id: str) -> str:
    """The id QEMU gave the x509 ACL (later authz-list) of a display."""
    if display_id == "default":
        return "vnc.x509dname"
    return f"vnc.{display_id}.x509dname"


def sasl_acl_id(display_id: str) -> str:
    """The id QEMU 2.5 gave the SASL user-name ACL of a display (``acl`` with ``sasl``)."""
    if display_id == "default":
        return "vnc.username"
    return f"vnc.{display_id}.username"


@dataclass
class Translation:
    """What the legacy keys of one ``-vnc`` option amount to."""

    #: Objects to create (after every ``-object``), in order.
    objects: list[ObjectSpec] = field(default_factory=list)
    #: ``tls-creds`` / ``tls-authz`` ids the display should use, if legacy
    #: keys decided them.
    tls_creds: str | None = None
    tls_authz: str | None = None
    sasl_authz: str | None = None
    #: Deprecation warnings, one per legacy use, without location.
    warnings: list[str] = field(default_factory=list)


def _as_bool(params: Sequence[Param]) -> bool:
    return params[-1].value in ("on", "yes", "true", "y")


def _typed(params: Sequence[Param]) -> str:
    return ",".join(p.raw for p in params)


def _creds_spec(display_id: str, source: str, path: str | None, verify: bool) -> ObjectSpec:
    if path is None:
        props = {"id": creds_id(display_id), "endpoint": "server"}
        return ObjectSpec("tls-creds-anon", props, source, generated=True)
    props = {
        "id": creds_id(display_id),
        "dir": path,
        "endpoint": "server",
        "verify-peer": "on" if verify else "off",
    }
    return ObjectSpec("tls-creds-x509", props, source, generated=True)


def translate(
    *,
    display_id: str,
    source: str,
    params: Sequence[Param],
    listening: bool = True,
) -> Translation:
    """Translate the legacy keys among ``params`` (every element, in order).

    For each key the last occurrence counts, as in QEMU.  ``listening``
    is false for a display without addresses (``none``): QEMU 2.5 looked
    no further at such a display, so its legacy keys do nothing.  Raises
    :class:`OptionError` for QEMU's mutual-exclusion errors.
    """
    by_key: dict[str, list[Param]] = {}
    for param in params:
        by_key.setdefault(param.key, []).append(param)
    result = Translation()
    legacy_params = [p for p in params if p.key in LEGACY_KEYS]
    if legacy_params and not listening:
        result.warnings.append(
            f"-vnc ...,{_typed(legacy_params)} is deprecated and has no effect on a"
            " display that does not listen (as in QEMU 2.5); remove it"
        )
        return result
    tls_params = [p for p in params if p.key in LEGACY_TLS_KEYS]
    if tls_params and "tls-creds" in by_key:
        raise OptionError(source, MUTUALLY_EXCLUSIVE)

    tls = "tls" in by_key and _as_bool(by_key["tls"])
    x509 = by_key["x509"][-1].value if "x509" in by_key else None
    x509verify = by_key["x509verify"][-1].value if "x509verify" in by_key else None
    path, verify = (x509, False) if x509 is not None else (x509verify, x509verify is not None)
    spec = _creds_spec(display_id, source, path, verify)
    typed = _typed(tls_params)
    if tls:
        result.objects.append(spec)
        result.tls_creds = creds_id(display_id)
        text = (
            f"-vnc ...,{typed} is deprecated; use -object {format_object(spec)}"
            f" -vnc ...,tls-creds={result.tls_creds}"
        )
        if x509 is not None and x509verify is not None:
            text += " (x509verify is ignored: x509 takes precedence, as in QEMU 2.5)"
        result.warnings.append(text)
    elif path is not None:
        result.warnings.append(
            f"-vnc ...,{typed} is deprecated and ignored without 'tls' (as in"
            f" QEMU 2.5): this display offers no TLS; to use these certificates,"
            f" use -object {format_object(spec)} -vnc ...,tls-creds={creds_id(display_id)}"
        )
    elif tls_params:
        result.warnings.append(f"-vnc ...,{typed} is deprecated and has no effect; remove it")

    if "acl" in by_key:
        result.warnings.append(_translate_acl(result, display_id, source, by_key))
    return result


def _translate_acl(
    result: Translation,
    display_id: str,
    source: str,
    params: Mapping[str, Sequence[Param]],
) -> str:
    typed = _typed(params["acl"])
    if not _as_bool(params["acl"]):
        return f"-vnc ...,{typed} is deprecated and has no effect; remove it"
    for other in ("tls-authz", "sasl-authz"):
        if other in params:
            raise OptionError(
                source, f"'acl' option is mutually exclusive with the '{other}' option"
            )
    authz_id = acl_id(display_id)
    spec = ObjectSpec(
        "authz-list", {"id": authz_id, "policy": "deny"}, source, generated=True
    )
    result.objects.append(spec)
    text = (
        f"-vnc ...,{typed} is deprecated; use -object {format_object(spec)}"
        f" -vnc ...,tls-authz={authz_id}"
    )
    if "sasl" in params and _as_bool(params["sasl"]):
        # QEMU 2.5 also made a deny-by-default list for SASL user names.
        sasl_spec = ObjectSpec("authz-list", {"id": sasl_acl_id(display_id), "policy": "deny"},
                               source, generated=True)
        result.objects.append(sasl_spec)
        result.sasl_authz = sasl_spec.props["id"]
        text += (f" and -object {format_object(sasl_spec)}"
                 f" -vnc ...,sasl-authz={result.sasl_authz}")
    if result.tls_creds is None and "tls-creds" not in params:
        return text + (
            f" (this display has no TLS, so '{authz_id}' is created but not used,"
            " as in QEMU)"
        )
    result.tls_authz = authz_id
    return text
