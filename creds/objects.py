"""User-creatable objects: a registry keyed by id, with typed properties.

This is vncd's counterpart of QEMU's QOM ``-object`` machinery.  A type
declares its properties (name, kind, default); the registry coerces the
values the user gave (strings from ``key=value`` lists or native JSON
values), rejects unknown properties and bad values with QEMU's wording,
then calls the object's :meth:`UserCreatable.complete` hook, which loads
and checks whatever the object stands for.  An object that fails to
complete is never added.  Creation can be split in two
(:meth:`ObjectRegistry.prepare` anywhere, :meth:`ObjectRegistry.add` on
the registry's own thread) so that a server loads new objects without
pausing.

This module knows nothing about TLS, VNC or the command line.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

__all__ = [
    "ObjectError",
    "spelling_hint",
    "Prop",
    "UserCreatable",
    "ObjectRegistry",
    "parse_bool",
    "ID_PATTERN",
]


def spelling_hint(name: str, known: Sequence[str]) -> str | None:
    """``did you mean 'verify-peer'?`` for a misspelt ``name`` among ``known``, or None."""
    import difflib

    if not isinstance(name, str):
        return None
    spelled = name.replace("_", "-").lower()
    if spelled != name and spelled in known:
        return f"did you mean '{spelled}'?"
    close = difflib.get_close_matches(spelled, list(known), n=1, cutoff=0.75)
    return f"did you mean '{close[0]}'?" if close else None


class ObjectError(Exception):
    """An error meant for the administrator.

    ``message`` is the text in QEMU's wording (where QEMU has one);
    ``hint`` is vncd's short advice on how to fix it.  ``str()`` gives
    both.  ``path`` names the file involved, when there is one, and
    ``check`` is a short machine-readable name of the failed check.
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        path: str | None = None,
        check: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.path = path
        self.check = check

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


#: Identifiers: letters, digits, '-', '.', '_', starting with a letter (QEMU's rule).
ID_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9._-]*\Z")

#: Longest object id accepted; QEMU has no limit, but an id is a name, not data.
MAX_ID_LENGTH = 128

_TRUE = frozenset({"on", "yes", "true", "y"})
_FALSE = frozenset({"off", "no", "false", "n"})


def parse_bool(name: str, value: object) -> bool:
    """Coerce a user-supplied boolean (``on/off/yes/no/true/false`` or a JSON bool)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
    raise ObjectError(f"Parameter '{name}' expects 'on' or 'off'")


@dataclass(frozen=True)
class Prop:
    """One property of an object type.

    ``kind`` is one of ``str``, ``bool``, ``enum``, ``int``, ``json``
    (a structured value only the JSON syntax can carry, such as authz-list
    rules).  ``secret`` properties are never echoed back (not in errors,
    not in ``-print-translation`` unless asked, never in logs).
    """

    name: str
    kind: str = "str"
    default: Any = None
    choices: tuple[str, ...] = ()
    required: bool = False
    read_only: bool = False
    secret: bool = False
    help: str = ""

    def coerce(self, value: object) -> Any:
        if self.kind == "bool":
            return parse_bool(self.name, value)
        if self.kind == "enum":
            if not isinstance(value, str):
                raise ObjectError(
                    f"Invalid parameter type for '{self.name}', expected: string"
                )
            if value not in self.choices:
                raise ObjectError(
                    f"Parameter '{self.name}' does not accept value '{value}'"
                )
            return value
        if self.kind == "int":
            if isinstance(value, bool):
                raise ObjectError(f"Parameter '{self.name}' expects an integer")
            if isinstance(value, int):
                return value
            if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value):
                return int(value)
            raise ObjectError(f"Parameter '{self.name}' expects an integer")
        if self.kind == "str":
            if isinstance(value, str):
                return value
            raise ObjectError(
                f"Invalid parameter type for '{self.name}', expected: string"
            )
        if self.kind == "json":
            return value
        raise AssertionError(f"unknown property kind {self.kind!r}")


class UserCreatable:
    """Base class of every object type the registry can create.

    Subclasses set ``qom_type`` (the name users type), optionally
    ``aliases`` (other accepted spellings), and ``props``.  They override
    :meth:`complete` to load and check; it raises :class:`ObjectError`.
    """

    qom_type: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    props: ClassVar[tuple[Prop, ...]] = ()

    def __init__(
        self, registry: "ObjectRegistry", obj_id: str, values: Mapping[str, Any]
    ) -> None:
        self.registry = registry
        self.id = obj_id
        self._values = dict(values)
        #: Who holds the object (a service's description) and how many times.
        self._users: dict[str, int] = {}
        #: Warnings raised before the registry holds the object (``None``
        #: once it does): the registry reports them when it adds the object.
        self._held_warnings: list[str] | None = []

    # -- properties -------------------------------------------------------

    @classmethod
    def prop_spec(cls, name: str) -> Prop | None:
        for p in cls.props:
            if p.name == name:
                return p
        return None

    def get(self, name: str) -> Any:
        """The value of property ``name``: what the user set, else the default."""
        if name in self._values:
            return self._values[name]
        spec = self.prop_spec(name)
        if spec is None:
            raise KeyError(name)
        return spec.default

    def is_set(self, name: str) -> bool:
        return name in self._values

    def user_values(self) -> dict[str, Any]:
        """The properties the user set, in declaration order."""
        return {p.name: self._values[p.name] for p in self.props if p.name in self._values}

    # -- lifecycle --------------------------------------------------------

    def complete(self, **load_options: Any) -> None:
        """Load and check; raise :class:`ObjectError` on any fault.

        Runs before the object is registered, possibly off the caller's
        thread (:meth:`ObjectRegistry.prepare`): it may read other
        registered objects but changes nothing outside this object, and
        reports warnings through :meth:`warn`.  ``load_options`` are
        passed on from :meth:`ObjectRegistry.prepare`; a type ignores
        those it has no use for (``key_loader``: see
        :class:`creds.tlscreds.TLSCreds`).
        """

    def warn(self, message: str) -> None:
        """Report a warning about this object (never containing secret data).

        Until the registry holds the object the warning waits; the
        registry reports it when it adds the object.
        """
        if self._held_warnings is not None:
            self._held_warnings.append(message)
        else:
            self.registry.warn(message)

    def unparent(self) -> None:
        """Called when the object is deleted; release what it holds."""

    @property
    def in_use(self) -> bool:
        return bool(self._users)

    @property
    def users(self) -> list[str]:
        """Descriptions of whatever holds the object (it cannot be deleted meanwhile)."""
        return sorted(self._users)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.qom_type} id={self.id!r}>"


class ObjectRegistry:
    """Objects keyed by id, created in order, each completed before it is added.

    ``clock`` returns the current time as an aware UTC datetime; every
    time-dependent check asks it, so tests never depend on the wall clock.
    ``warn`` receives one-line warnings (expiring certificates, loose key
    file permissions, deprecated spellings).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime.datetime] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self._types: dict[str, type[UserCreatable]] = {}
        self._objects: dict[str, UserCreatable] = {}
        self.clock = clock or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self.warnings: list[str] = []
        self._warn = warn

    # -- types ------------------------------------------------------------

    def register_type(self, cls: type[UserCreatable]) -> None:
        for name in (cls.qom_type, *cls.aliases):
            if name in self._types:
                raise ValueError(f"object type {name!r} registered twice")
            self._types[name] = cls

    def type_names(self) -> list[str]:
        return sorted(self._types)

    def type_for(self, qom_type: str) -> type[UserCreatable]:
        try:
            return self._types[qom_type]
        except KeyError:
            raise ObjectError(
                f"Parameter 'qom-type' does not accept value '{qom_type}'"
            ) from None

    # -- warnings ---------------------------------------------------------

    def warn(self, message: str) -> None:
        """Report a warning (never containing secret data)."""
        self.warnings.append(message)
        if self._warn is not None:
            self._warn(message)

    # -- objects ----------------------------------------------------------

    def check(
        self,
        qom_type: str,
        props: Mapping[str, Any],
        *,
        unknown_message: str = "Invalid parameter '{}'",
    ) -> tuple[type[UserCreatable], str, dict[str, Any]]:
        """Everything :meth:`create` checks before loading, without loading.

        Returns ``(cls, id, coerced values)``.  Properties are visited as
        QEMU's visitor does: the declared ones in declaration order (a
        missing required one fails at its place), then any the type does
        not know, which fail with ``unknown_message`` (QEMU words it
        ``Invalid parameter '{}'`` for key=value lists and ``Parameter '{}'
        is unexpected`` for JSON).
        """
        cls = self.type_for(qom_type)
        props = dict(props)
        if "id" not in props:
            raise ObjectError("Parameter 'id' is missing")
        obj_id = props.pop("id")
        if not isinstance(obj_id, str):
            raise ObjectError("Invalid parameter type for 'id', expected: string")
        if len(obj_id) > MAX_ID_LENGTH or not ID_PATTERN.match(obj_id):
            raise ObjectError(
                "Parameter 'id' expects an identifier (identifiers consist of"
                " letters, digits, '-', '.', '_', starting with a letter)"
            )
        declared = {p.name for p in cls.props}
        order = [p.name for p in cls.props if p.name in props or p.required]
        order += [name for name in props if name not in declared]
        values: dict[str, Any] = {}
        for name in order:
            spec = cls.prop_spec(name)
            if spec is None:
                raise ObjectError(unknown_message.format(name),
                                  hint=spelling_hint(name, [p.name for p in cls.props
                                                            if not p.read_only]))
            if name not in props:
                typo = next((given for given in props if given not in declared
                             and spelling_hint(given, [name])), None)
                raise ObjectError(f"Parameter '{name}' is missing",
                                  hint=f"'{typo}' was given: did you mean '{name}'?"
                                  if typo else None)
            if spec.read_only:
                raise ObjectError(f"Property '{cls.qom_type}.{name}' is not writable")
            values[name] = spec.coerce(props[name])
        return cls, obj_id, values

    def create(self, qom_type: str, props: Mapping[str, Any]) -> UserCreatable:
        """Create, complete and add an object (:meth:`prepare`, then :meth:`add`).

        ``props`` holds ``id`` and the type's properties, as strings or
        JSON values.  Raises :class:`ObjectError` in QEMU's wording; the
        warnings raised before a failure are reported all the same.
        """
        obj = self._new(qom_type, props)
        try:
            obj.complete()
        finally:
            self._report_held(obj)
        return self.add(obj)

    def prepare(self, qom_type: str, props: Mapping[str, Any],
                **load_options: Any) -> UserCreatable:
        """A created and completed object, not yet registered.

        The expensive, side-effect-free half of :meth:`create`: safe to
        run off the thread that owns the registry (it reads registered
        objects, e.g. a secret a credentials object names, and changes
        nothing).  ``load_options`` go to the object's
        :meth:`~UserCreatable.complete`.  Its warnings wait for
        :meth:`add`.  Raises :class:`ObjectError`.
        """
        obj = self._new(qom_type, props)
        obj.complete(**load_options)
        return obj

    def add(self, obj: UserCreatable) -> UserCreatable:
        """Register an object from :meth:`prepare` and report its warnings.

        The id is checked again: another object may have taken it since.
        """
        if obj.registry is not self:
            raise ValueError(f"object {obj.id!r} was prepared by another registry")
        if obj.id in self._objects:
            raise ObjectError(f"Duplicate ID '{obj.id}' for object")
        self._objects[obj.id] = obj
        self._report_held(obj)
        return obj

    def _new(self, qom_type: str, props: Mapping[str, Any]) -> UserCreatable:
        cls, obj_id, values = self.check(qom_type, props)
        if obj_id in self._objects:
            raise ObjectError(f"Duplicate ID '{obj_id}' for object")
        return cls(self, obj_id, values)

    def _report_held(self, obj: UserCreatable) -> None:
        held, obj._held_warnings = obj._held_warnings, None
        for message in held or ():
            self.warn(message)

    def get(self, obj_id: str) -> UserCreatable | None:
        return self._objects.get(obj_id)

    def __contains__(self, obj_id: object) -> bool:
        return obj_id in self._objects

    def __iter__(self) -> Iterator[UserCreatable]:
        return iter(list(self._objects.values()))

    def __len__(self) -> int:
        return len(self._objects)

    def hold(self, obj_id: str, user: str) -> UserCreatable:
        """Mark an object as used by ``user``; it can no longer be deleted.

        ``user`` describes the holder for messages (``VNC display
        'default'``); holds are counted, so two holders with the same
        description each release their own.
        """
        obj = self._objects.get(obj_id)
        if obj is None:
            raise ObjectError(f"object '{obj_id}' not found")
        obj._users[user] = obj._users.get(user, 0) + 1
        return obj

    def release(self, obj_id: str, user: str) -> None:
        obj = self._objects.get(obj_id)
        if obj is None or user not in obj._users:
            return
        obj._users[user] -= 1
        if not obj._users[user]:
            del obj._users[user]

    def delete(self, obj_id: str) -> None:
        obj = self._objects.get(obj_id)
        if obj is None:
            raise ObjectError(f"object '{obj_id}' not found")
        if obj.in_use:
            raise ObjectError(f"object '{obj_id}' is in use, can not be deleted"
                              f" (held by {', '.join(obj.users)})",
                              hint="stop what holds it first; vncd never lets a service"
                                   " keep using a deleted object")
        del self._objects[obj_id]
        obj.unparent()
