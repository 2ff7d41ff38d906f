"""The abstract TLS credentials object shared by tls-creds-x509 and tls-creds-anon.

A credentials object owns *loaded* credentials: the parsed files
(:attr:`TLSCreds.material`) and a TLS engine context built from them.
Both are replaced together, and only when a (re)load fully succeeds, so a
failed reload leaves the previous credentials in force.  Sessions take a
reference to the loaded credentials when they are created, so a reload
never changes a session already under way.

A reload is two steps, so that a server can do the slow one elsewhere:
:meth:`TLSCreds.prepare_reload` reads and checks the files and builds the
context without touching the object (safe on any thread);
:meth:`TLSCreds.commit_reload` installs the result (on the thread that
serves).  Checking a private key is the slow part of loading and holds
the interpreter lock; a ``key_loader`` (:data:`KeyLoader`, e.g.
:func:`creds.keycheck.check_in_child`) can do it in another process.

Network services use credentials only through :mod:`creds.session`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from creds.material import Endpoint
from creds.objects import ObjectError, Prop, UserCreatable

__all__ = ["Endpoint", "TLSCreds", "LoadedCreds", "KeyLoader"]


@dataclass(frozen=True)
class LoadedCreds:
    """One generation of loaded credentials: the material and the engine context."""

    material: Any
    context: Any
    #: 1 for the credentials loaded on creation, one more for every reload
    #: committed; 0 while prepared by :meth:`TLSCreds.prepare_reload` and
    #: not yet committed.
    generation: int
    #: Warnings found while loading, reported when the reload is committed.
    warnings: tuple[str, ...] = ()


#: Parses and checks the private key in a key file's bytes, decrypting it
#: with the password (``None``: not encrypted), as
#: :func:`creds.pem.parse_private_key` does; raises
#: :class:`~creds.pem.PEMError`.
KeyLoader = Callable[[bytes, bytes | None], Any]


#: Properties every TLS credentials type has (QEMU's ``tls-creds`` base class).
BASE_PROPS: tuple[Prop, ...] = (
    Prop("endpoint", "enum", default="client", choices=("client", "server"),
         help="role of the service using the credentials"),
    Prop("verify-peer", "bool", default=True,
         help="require and check the peer's certificate (x509 only)"),
    Prop("dir", "str", help="directory holding the credential files"),
    Prop("priority", "str", help="GnuTLS-style priority string"),
)


class TLSCreds(UserCreatable):
    """Base of TLS credential objects.

    Subclasses set ``kind`` (``"x509"`` or ``"anon"``) and implement
    :meth:`load_material`, which reads and checks every file and returns
    an immutable material object, raising :class:`ObjectError`.
    :meth:`~creds.objects.UserCreatable.complete` (creation) and
    :meth:`reload` each load one generation; ``key_loader`` is the
    load option they take.
    """

    kind: ClassVar[str] = ""
    supports_reload: ClassVar[bool] = True
    #: True when the credentials are certificates (x509), False when anonymous.
    uses_certificates: ClassVar[bool] = False

    def __init__(self, registry, obj_id, values) -> None:
        super().__init__(registry, obj_id, values)
        self._loaded: LoadedCreds | None = None

    # -- configuration ----------------------------------------------------

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.get("endpoint"))

    @property
    def verify_peer(self) -> bool:
        return bool(self.get("verify-peer"))

    @property
    def priority(self) -> str | None:
        return self.get("priority")

    @property
    def directory(self) -> str | None:
        return self.get("dir")

    @property
    def checks_peer_certificates(self) -> bool:
        """True when the peer must present a certificate, which is checked
        (x509 with ``verify-peer=on``): the one place services ask."""
        return self.uses_certificates and self.verify_peer

    def authz_refusal(self) -> ObjectError | None:
        """Why an authz object (``tls-authz``) could not apply to these credentials'
        peers, or None when it can: anonymous peers present no certificate,
        and with ``verify-peer=off`` none is checked."""
        if not self.uses_certificates:
            return ObjectError(
                f"'tls-authz' cannot take effect: TLS credentials '{self.id}' are anonymous,"
                " so clients present no certificate to authorise",
                hint="use tls-creds-x509 with verify-peer=on, or drop tls-authz")
        if not self.verify_peer:
            return ObjectError(
                f"'tls-authz' cannot take effect: TLS credentials '{self.id}' have"
                " verify-peer=off, so client certificates are not checked",
                hint=f"set verify-peer=on on '{self.id}', or drop tls-authz")
        return None

    def check_endpoint(self, endpoint: Endpoint) -> None:
        """Raise unless these credentials are for ``endpoint`` (QEMU's wording)."""
        if self.endpoint is not endpoint:
            raise ObjectError(
                f"Expected TLS credentials for a {endpoint.value} endpoint"
            )

    # -- loading ----------------------------------------------------------

    def load_material(self, *, warn: Callable[[str], None],
                      key_loader: KeyLoader | None) -> Any:
        """Read and check every file; report warnings to ``warn``.

        ``key_loader`` replaces :func:`creds.pem.parse_private_key` for
        private keys (``None``: that function, here).  Changes nothing on
        the object.
        """
        raise NotImplementedError

    def build_context(self, material: Any, *, warn: Callable[[str], None]) -> Any:
        """The TLS context for ``material`` (from :meth:`load_material`).

        Each credentials class builds its own (with :mod:`creds.engine`),
        so that this base class needs no TLS library.  Raises
        :class:`ObjectError` when the material cannot be used.
        """
        raise NotImplementedError

    def _prepare(self, warn: Callable[[str], None], key_loader: KeyLoader | None) -> LoadedCreds:
        material = self.load_material(warn=warn, key_loader=key_loader)
        context = self.build_context(material, warn=warn)
        return LoadedCreds(material=material, context=context, generation=0)

    def complete(self, *, key_loader: KeyLoader | None = None, **load_options: Any) -> None:
        loaded = self._prepare(self.warn, key_loader)
        self._loaded = dataclasses.replace(loaded, generation=1)

    def prepare_reload(self, *, key_loader: KeyLoader | None = None) -> LoadedCreds:
        """Re-read and check the files into new credentials, without installing them.

        Safe on any thread: the object is not changed.  Raises
        :class:`ObjectError` as creation does.
        """
        if not self.supports_reload:
            raise ObjectError(f"{self.qom_type} does not support reloading credentials")
        warnings: list[str] = []
        loaded = self._prepare(warnings.append, key_loader)
        return dataclasses.replace(loaded, warnings=tuple(warnings))

    def commit_reload(self, loaded: LoadedCreds) -> None:
        """Install credentials from :meth:`prepare_reload` as the next generation.

        New sessions use them; sessions under way keep theirs.  The
        warnings found while loading are reported now.
        """
        if loaded.generation != 0:
            raise ValueError("these credentials were already committed")
        self._loaded = dataclasses.replace(loaded, generation=self.loaded.generation + 1,
                                           warnings=())
        for message in loaded.warnings:
            self.warn(message)

    def reload(self) -> None:
        """Re-read the files; on any error keep the current credentials and raise."""
        self.commit_reload(self.prepare_reload())

    @property
    def loaded(self) -> LoadedCreds:
        if self._loaded is None:
            raise RuntimeError(f"credentials {self.id!r} are not loaded")
        return self._loaded

    @property
    def material(self) -> Any:
        return self.loaded.material
