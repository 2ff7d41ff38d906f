# -*- test-case-name: tests.creds.test_authz -*-
"""Authorization objects: may this identity connect?

QEMU's QAuthZ family, as user-creatable objects: ``authz-simple`` (one
identity), ``authz-list`` (ordered allow/deny rules with exact or glob
matching) and ``authz-listfile`` (the same list kept in a JSON file,
re-read when the file changes).  A network service holds the id of one of
these objects and asks :meth:`QAuthZ.is_allowed` with the peer's identity
-- for TLS, the client certificate's distinguished name.

This module knows nothing about TLS, certificates, sockets or VNC: an
identity is just a string.  It does no I/O except that ``authz-listfile``
reads its file when created and, with ``refresh=on``, checks the file's
status at most once per :data:`REFRESH_INTERVAL` when asked for a decision
(no threads, no reactor, no file watches).
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Mapping

from creds.objects import ObjectError, Prop, UserCreatable
from creds.pem import FileReadError, read_regular_file

__all__ = [
    "QAuthZ",
    "AuthzSimple",
    "AuthzList",
    "AuthzListFile",
    "Rule",
    "GlobPattern",
    "parse_rules",
    "POLICIES",
    "FORMATS",
    "MAX_MATCH_LENGTH",
    "MAX_RULES",
    "MAX_LIST_FILE_SIZE",
    "REFRESH_INTERVAL",
]

#: Longest ``match`` string of a rule (exact or glob).  Identities are
#: distinguished names or user names; RFC 5280 bounds each common DN
#: attribute at 64 to 200 characters, so even a DN with a dozen attributes
#: stays under 2 KiB.  The bound also keeps one glob check cheap.
MAX_MATCH_LENGTH = 4096

#: Most rules in one list.  Lists are written by hand or by a provisioning
#: script; every connection walks the list, so a bound keeps that walk
#: (and the memory of a list file) small.
MAX_RULES = 4096

#: Largest authz list file read.  The maximum number of rules with
#: realistic DNs (about 150 bytes each with the JSON around them) fits in
#: well under 1 MiB; a bigger file is a mistake, not a list.
MAX_LIST_FILE_SIZE = 1024 * 1024

#: How often ``refresh=on`` looks at the list file.  Short enough that an
#: edited file governs the next connection a second later; long enough
#: that a burst of connections costs one ``stat()``, not one each.
REFRESH_INTERVAL = datetime.timedelta(seconds=1)

#: QEMU's ``QAuthZListPolicy`` values.
POLICIES = ("deny", "allow")
#: QEMU's ``QAuthZListFormat`` values.
FORMATS = ("exact", "glob")

_RULE_FIELDS = ("match", "policy", "format")


# -- glob matching ------------------------------------------------------------


class _Piece:
    """A fixed-length run of a glob pattern between two ``*``: literals and ``?``."""

    __slots__ = ("text", "_regex")

    def __init__(self, text: str) -> None:
        self.text = text
        # A run with '?' becomes a regular expression of fixed length (no
        # repetition, no alternation), so searching it stays linear in the
        # text for a given pattern; plain runs use str.find.
        self._regex = (
            re.compile("".join("." if c == "?" else re.escape(c) for c in text), re.DOTALL)
            if "?" in text else None
        )

    def __len__(self) -> int:
        return len(self.text)

    def match_at(self, s: str, pos: int) -> bool:
        if self._regex is None:
            return s.startswith(self.text, pos)
        return self._regex.match(s, pos) is not None

    def find(self, s: str, start: int, end: int) -> int:
        """Leftmost position in ``s[start:end]`` where the whole run matches, or -1."""
        if self._regex is None:
            return s.find(self.text, start, end)
        found = self._regex.search(s, start, end)
        return -1 if found is None else found.start()


class GlobPattern:
    """A GLib ``g_pattern_match_simple`` pattern, compiled once.

    ``*`` matches any sequence of characters, the empty one included;
    ``?`` matches exactly one character (one Unicode code point, as GLib
    matches one UTF-8 character); everything else matches itself.  There
    are no character classes and no escapes (unlike :mod:`fnmatch`).

    Matching splits the pattern at ``*`` into fixed-length runs and places
    each run at its leftmost possible position, which is exact for this
    pattern language and costs at most O(len(pattern) x len(text)): no
    backtracking, whatever the pattern.
    """

    __slots__ = ("pattern", "_pieces")

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_MATCH_LENGTH:
            raise ValueError(f"glob pattern longer than {MAX_MATCH_LENGTH} characters")
        self.pattern = pattern
        self._pieces = tuple(_Piece(run) for run in pattern.split("*"))

    def matches(self, text: str) -> bool:
        pieces = self._pieces
        if len(pieces) == 1:
            return len(text) == len(pieces[0]) and pieces[0].match_at(text, 0)
        head, *middle, tail = pieces
        end = len(text) - len(tail)
        if end < len(head):
            return False
        if not (head.match_at(text, 0) and tail.match_at(text, end)):
            return False
        pos = len(head)
        for piece in middle:
            if not len(piece):
                continue
            found = piece.find(text, pos, end)
            if found < 0:
                return False
            pos = found + len(piece)
        return True

    def __repr__(self) -> str:
        return f"GlobPattern({self.pattern!r})"


# -- rules ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One ``authz-list`` rule: if ``match`` matches, the answer is ``policy``."""

    match: str
    policy: str
    format: str = "exact"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"rule policy {self.policy!r} not in {POLICIES}")
        if self.format not in FORMATS:
            raise ValueError(f"rule format {self.format!r} not in {FORMATS}")
        glob = GlobPattern(self.match) if self.format == "glob" else None
        object.__setattr__(self, "_glob", glob)

    def matches(self, identity: str) -> bool:
        if self._glob is None:
            return identity == self.match
        return self._glob.matches(identity)

    def to_json(self) -> dict[str, str]:
        """The rule as QEMU's JSON syntax writes it."""
        return {"match": self.match, "policy": self.policy, "format": self.format}


def _check_match(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ObjectError(f"Invalid parameter type for '{where}', expected: string")
    if len(value) > MAX_MATCH_LENGTH:
        raise ObjectError(
            f"Parameter '{where}' is {len(value)} characters long; the limit is"
            f" {MAX_MATCH_LENGTH}"
        )
    if "\0" in value:
        raise ObjectError(f"Parameter '{where}' contains a NUL character")
    return value


def _check_choice(value: object, where: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise ObjectError(f"Invalid parameter type for '{where}', expected: string")
    if value not in choices:
        raise ObjectError(f"Parameter '{where}' does not accept value '{_show(value)}'")
    return value


def _show(text: str) -> str:
    """A user-supplied string fit for a one-line message (bounded, escaped)."""
    shown = text if len(text) <= 80 else text[:77] + "..."
    return shown if shown.isprintable() else shown.encode("unicode_escape").decode("ascii")


def _rule(fields: Mapping[str, Any], where: str) -> Rule:
    """Build a rule from its fields; ``where`` names it in errors (``rules[0]``, ``rules.0``)."""
    for key in fields:
        if key not in _RULE_FIELDS:
            shown = _show(key) if isinstance(key, str) else repr(key)
            raise ObjectError(f"Parameter '{where}.{shown}' is unexpected")
    for key in ("match", "policy"):
        if key not in fields:
            raise ObjectError(f"Parameter '{where}.{key}' is missing")
    match = _check_match(fields["match"], f"{where}.match")
    policy = _check_choice(fields["policy"], f"{where}.policy", POLICIES)
    fmt = "exact"
    if "format" in fields:
        fmt = _check_choice(fields["format"], f"{where}.format", FORMATS)
    return Rule(match, policy, fmt)


def _check_count(count: int, name: str) -> None:
    if count > MAX_RULES:
        raise ObjectError(f"Parameter '{name}' has {count} rules; the limit is {MAX_RULES}")


def parse_rules(value: object, name: str = "rules") -> tuple[Rule, ...]:
    """Coerce a ``rules`` value: a JSON list of rule objects, or an index mapping.

    The JSON form (``-object '{"qom-type": "authz-list", "rules": [...]}'``
    or a list file) gives a list; errors name ``rules[N].field`` as QEMU's
    JSON input does.  A command-line layer that groups the dotted keys of
    the ``key=value`` form (``rules.0.match=fred``) may hand a mapping from
    decimal index strings to field mappings instead; errors then name
    ``rules.N.field``, as the user wrote them.
    """
    if isinstance(value, list):
        _check_count(len(value), name)
        rules = []
        for index, item in enumerate(value):
            where = f"{name}[{index}]"
            if not isinstance(item, dict):
                raise ObjectError(f"Invalid parameter type for '{where}', expected: object")
            rules.append(_rule(item, where))
        return tuple(rules)
    if isinstance(value, Mapping):
        return _rules_from_indices(value, name)
    raise ObjectError(f"Invalid parameter type for '{name}', expected: array")


_INDEX = re.compile(r"(?:0|[1-9][0-9]{0,8})\Z")


def _rules_from_indices(value: Mapping[Any, Any], name: str) -> tuple[Rule, ...]:
    _check_count(len(value), name)
    by_index: dict[int, Mapping[str, Any]] = {}
    for key, fields in value.items():
        if not isinstance(key, str) or not _INDEX.match(key):
            shown = _show(key) if isinstance(key, str) else repr(key)
            raise ObjectError(f"Invalid parameter '{name}.{shown}'")
        if not isinstance(fields, Mapping):
            raise ObjectError(f"Invalid parameter type for '{name}.{key}', expected: object")
        by_index[int(key)] = fields
    rules = []
    for index in range(len(by_index)):
        if index not in by_index:
            raise ObjectError(f"Parameter '{name}.{index}' is missing")
        rules.append(_rule(by_index[index], f"{name}.{index}"))
    return tuple(rules)


@dataclass(frozen=True)
class _RulesProp(Prop):
    """The ``rules`` property: validated into a tuple of :class:`Rule`."""

    def coerce(self, value: object) -> tuple[Rule, ...]:
        return parse_rules(value, self.name)


#: ``rules.N.field`` keys of the ``key=value`` form.
_DOTTED_RULE_KEY = re.compile(r"rules\.(0|[1-9][0-9]{0,8})\.(match|policy|format)\Z")


@dataclass(frozen=True)
class _DottedRuleProp(Prop):
    """One ``rules.N.field`` key; checked here, assembled by :class:`AuthzList`."""

    def coerce(self, value: object) -> Any:
        index, key = _DOTTED_RULE_KEY.match(self.name).groups()
        if int(index) >= MAX_RULES:
            raise ObjectError(
                f"Parameter '{self.name}' is beyond the limit of {MAX_RULES} rules"
            )
        if key == "match":
            return _check_match(value, self.name)
        return _check_choice(value, self.name, POLICIES if key == "policy" else FORMATS)


class _RuleList:
    """An ordered rule list with a default policy: QEMU's ``QAuthZList`` logic."""

    def __init__(self, policy: str, rules: Iterable[Rule]) -> None:
        self.policy = policy
        self.rules = list(rules)

    def is_allowed(self, identity: str) -> bool:
        for rule in self.rules:
            if rule.matches(identity):
                return rule.policy == "allow"
        return self.policy == "allow"


# -- object types -------------------------------------------------------------


class QAuthZ(UserCreatable):
    """Base of the authorization object types.

    A service given an authz object id looks it up, checks
    ``isinstance(obj, QAuthZ)`` (QEMU: ``Object '%s' is not a QAuthZ
    subclass``) and asks :meth:`is_allowed`.
    """

    def is_allowed(self, identity: str) -> bool:
        """True if ``identity`` may proceed; :class:`ObjectError` only on a real fault."""
        raise NotImplementedError


class AuthzSimple(QAuthZ):
    """``authz-simple``: exactly one identity is allowed (exact, case-sensitive)."""

    qom_type = "authz-simple"
    props = (
        Prop("identity", "str", required=True,
             help="the only identity allowed, compared exactly"),
    )

    def is_allowed(self, identity: str) -> bool:
        return identity == self.get("identity")


class AuthzList(QAuthZ):
    """``authz-list``: ordered rules, first match wins, else the default policy.

    Rules come from the ``rules`` property (a JSON list) or, as a vncd
    convenience that QEMU 7.2 refuses (``Invalid parameter
    'rules.0.match'``), from ``rules.N.match``/``rules.N.policy``/
    ``rules.N.format`` keys of the ``key=value`` form.

    The editing methods mirror QEMU's C API (``qauthz_list_append_rule``,
    ``_insert_rule``, ``_delete_rule``) and its indices, for the monitor.
    """

    qom_type = "authz-list"
    props = (
        Prop("policy", "enum", default="deny", choices=POLICIES,
             help="answer when no rule matches"),
        _RulesProp("rules", "json", default=(),
                   help="list of {match, policy, format=exact|glob}"),
    )

    def __init__(self, registry, obj_id, values) -> None:
        super().__init__(registry, obj_id, values)
        self._list = _RuleList(self.get("policy"), ())

    @classmethod
    def prop_spec(cls, name: str) -> Prop | None:
        spec = super().prop_spec(name)
        if spec is None and _DOTTED_RULE_KEY.match(name):
            return _DottedRuleProp(name, "str")
        return spec

    def complete(self, **load_options) -> None:
        dotted = {k: v for k, v in self._values.items() if _DOTTED_RULE_KEY.match(k)}
        if dotted:
            if self.is_set("rules"):
                first = min(dotted, key=_dotted_order)
                raise ObjectError(
                    f"Parameter 'rules' is given twice: as a list and as '{first}'"
                )
            grouped: dict[str, dict[str, Any]] = {}
            for key in sorted(dotted, key=_dotted_order):
                _, index, field_name = key.split(".")
                grouped.setdefault(index, {})[field_name] = dotted[key]
            rules = _rules_from_indices(grouped, "rules")
        else:
            rules = self.get("rules")
        self._list = _RuleList(self.get("policy"), rules)

    # -- decisions --------------------------------------------------------

    def is_allowed(self, identity: str) -> bool:
        return self._list.is_allowed(identity)

    # -- inspection and editing -------------------------------------------

    @property
    def policy(self) -> str:
        """The default policy."""
        return self._list.policy

    def rules(self) -> tuple[Rule, ...]:
        """The rules, in the order they are checked."""
        return tuple(self._list.rules)

    def set_policy(self, policy: str) -> None:
        """Change the default policy (``allow`` or ``deny``)."""
        self._list.policy = _check_choice(policy, "policy", POLICIES)

    def _new_rule(self, match: str, policy: str, format: str) -> Rule:
        _check_count(len(self._list.rules) + 1, "rules")
        return Rule(
            _check_match(match, "match"),
            _check_choice(policy, "policy", POLICIES),
            _check_choice(format, "format", FORMATS),
        )

    def append(self, match: str, policy: str, format: str = "exact") -> int:
        """Add a rule at the end; return its index."""
        self._list.rules.append(self._new_rule(match, policy, format))
        return len(self._list.rules) - 1

    def insert(self, index: int, match: str, policy: str, format: str = "exact") -> int:
        """Add a rule before position ``index`` (at the end if beyond); return its index."""
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ObjectError("Parameter 'index' expects a non-negative integer")
        rule = self._new_rule(match, policy, format)
        index = min(index, len(self._list.rules))
        self._list.rules.insert(index, rule)
        return index

    def remove(self, match: str) -> int | None:
        """Delete the first rule whose ``match`` is ``match``; its index, or None."""
        for index, rule in enumerate(self._list.rules):
            if rule.match == match:
                del self._list.rules[index]
                return index
        return None

    def user_values(self) -> dict[str, Any]:
        """The current settings in JSON form (rules from either syntax, edits included)."""
        values: dict[str, Any] = {}
        if self.is_set("policy") or self._list.policy != self.prop_spec("policy").default:
            values["policy"] = self._list.policy
        if self._list.rules:
            values["rules"] = [rule.to_json() for rule in self._list.rules]
        return values


def _dotted_order(key: str) -> tuple[int, int]:
    _, index, field_name = key.split(".")
    return int(index), _RULE_FIELDS.index(field_name)


class AuthzListFile(QAuthZ):
    """``authz-listfile`` (also ``authz-list-file``): an ``authz-list`` kept in a file.

    The file holds a JSON object with the ``authz-list`` properties,
    ``{"policy": "deny", "rules": [...]}``.  With ``refresh=on`` (the
    default) the file's status (modification time, size, inode) is checked
    at most once per :data:`REFRESH_INTERVAL` of the registry's clock when a
    decision is asked for, and a changed file is re-read.

    Unlike QEMU, which denies everyone while its re-read file is invalid,
    vncd keeps the rules it had and reports the fault once through the
    registry's warnings.  QEMU documents ``authz-listfile`` but registers
    ``authz-list-file``, so since QEMU 6.0 neither name can be created from
    the command line there; vncd accepts both.
    """

    qom_type = "authz-listfile"
    aliases = ("authz-list-file",)
    props = (
        Prop("filename", "str", help="JSON file holding policy and rules"),
        Prop("refresh", "bool", default=True, help="re-read the file when it changes"),
    )

    #: Keys a list file may hold (the ``authz-list`` properties).
    _FILE_KEYS: ClassVar[tuple[str, ...]] = ("policy", "rules")

    def __init__(self, registry, obj_id, values) -> None:
        super().__init__(registry, obj_id, values)
        self._list = _RuleList("deny", ())
        #: Status signature of the file the current rules came from.
        self._loaded_signature: tuple[int, ...] | None = None
        #: Signature of a changed file that failed to load (already reported).
        self._failed_signature: tuple[int, ...] | None = None
        self._last_check: datetime.datetime | None = None

    @property
    def filename(self) -> str:
        return self.get("filename")

    def complete(self, **load_options) -> None:
        if not self.get("filename"):
            raise ObjectError("filename not provided")
        self._list, self._loaded_signature = self._load()
        if self.get("refresh") and os.path.dirname(self.filename) in ("", "."):
            raise ObjectError(
                "Filename must be an absolute path",
                hint="with refresh=on, give the list file with its directory",
                path=self.filename,
            )
        self._last_check = self.registry.clock()

    # -- loading ----------------------------------------------------------

    def _read(self) -> tuple[bytes, tuple[int, ...]]:
        try:
            data, st = read_regular_file(self.filename, MAX_LIST_FILE_SIZE)
        except FileReadError as e:
            raise self._unreadable(e.reason) from None
        return data, _signature(st)

    def _unreadable(self, reason: str) -> ObjectError:
        return ObjectError(f"Unable to read '{self.filename}': {reason}",
                           path=self.filename, check="read")

    def _load(self) -> tuple[_RuleList, tuple[int, ...]]:
        data, signature = self._read()
        name = self.filename
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self._unreadable(f"not UTF-8 text (byte {e.start})") from None
        try:
            content = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as e:
            raise ObjectError(
                f"JSON parse error in '{name}': {e.msg} (line {e.lineno}, column {e.colno})",
                path=name, check="json",
            ) from None
        except (ValueError, RecursionError) as e:
            reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
            raise ObjectError(f"JSON parse error in '{name}': {reason}",
                              path=name, check="json") from None
        if not isinstance(content, dict):
            raise ObjectError(f"File '{name}' must contain a JSON object",
                              path=name, check="json")
        try:
            for key in content:
                if key not in self._FILE_KEYS:
                    raise ObjectError(f"Invalid parameter '{_show(key)}'")
            policy = "deny"
            if "policy" in content:
                policy = _check_choice(content["policy"], "policy", POLICIES)
            rules = parse_rules(content.get("rules", []))
        except ObjectError as e:
            raise ObjectError(f"Invalid authorization list in '{name}': {e.message}",
                              path=name, check="rules") from None
        return _RuleList(policy, rules), signature

    # -- refresh ----------------------------------------------------------

    def _refresh(self) -> None:
        now = self.registry.clock()
        if self._last_check is not None:
            elapsed = now - self._last_check
            if datetime.timedelta(0) <= elapsed < REFRESH_INTERVAL:
                return
        self._last_check = now
        try:
            signature = _signature(os.stat(self.filename))
        except OSError as e:
            signature = (-1, e.errno or errno.EIO)
        if signature == self._loaded_signature:
            self._failed_signature = None
            return
        if signature == self._failed_signature:
            return
        try:
            self._list, self._loaded_signature = self._load()
            self._failed_signature = None
        except ObjectError as e:
            self._failed_signature = signature
            self.registry.warn(
                f"{self.qom_type} '{self.id}': {e.message}; keeping the rules loaded before"
            )

    def is_allowed(self, identity: str) -> bool:
        if self.get("refresh"):
            self._refresh()
        return self._list.is_allowed(identity)

    @property
    def policy(self) -> str:
        return self._list.policy

    def rules(self) -> tuple[Rule, ...]:
        """The rules currently in force, in the order they are checked."""
        return tuple(self._list.rules)


def _signature(st: os.stat_result) -> tuple[int, ...]:
    """What tells a changed file from an unchanged one without reading it."""
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"'{name}' is not valid JSON")
