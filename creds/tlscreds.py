"""The abstract TLS credentials object shared by tls-creds-x509 and tls-creds-anon.

A credentials object owns *loaded* credentials: the parsed files
(:attr:`TLSCreds.material`) and a TLS engine context built from them.
Both are replaced together, and only when a (re)load fully succeeds, so a
failed reload leaves the previous credentials in force.  Sessions take a
reference to the loaded credentials when they are created, so a reload
never changes a session already under way.

Network services use credentials only through :mod:`creds.session`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from creds.objects import ObjectError, Prop, UserCreatable

__all__ = ["Endpoint", "TLSCreds", "LoadedCreds"]


class Endpoint(enum.Enum):
    """Which side of the TLS connection the credentials are for."""

    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True)
class LoadedCreds:
    """One generation of loaded credentials: the material and the engine context."""

    material: Any
    context: Any
    generation: int


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
    """

    kind: ClassVar[str] = ""
    supports_reload: ClassVar[bool] = True

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

    def check_endpoint(self, endpoint: Endpoint) -> None:
        """Raise unless these credentials are for ``endpoint`` (QEMU's wording)."""
        if self.endpoint is not endpoint:
            raise ObjectError(
                f"Expected TLS credentials for a {endpoint.value} endpoint"
            )

    # -- loading ----------------------------------------------------------

    def load_material(self) -> Any:
        raise NotImplementedError

    def _build(self) -> LoadedCreds:
        from creds import engine

        material = self.load_material()
        context = engine.build_context(self, material)
        generation = 1 if self._loaded is None else self._loaded.generation + 1
        return LoadedCreds(material=material, context=context, generation=generation)

    def complete(self) -> None:
        self._loaded = self._build()

    def reload(self) -> None:
        """Re-read the files; on any error keep the current credentials and raise."""
        if not self.supports_reload:
            raise ObjectError(f"{self.qom_type} does not support reloading credentials")
        self._loaded = self._build()

    @property
    def loaded(self) -> LoadedCreds:
        if self._loaded is None:
            raise RuntimeError(f"credentials {self.id!r} are not loaded")
        return self._loaded

    @property
    def material(self) -> Any:
        return self.loaded.material
