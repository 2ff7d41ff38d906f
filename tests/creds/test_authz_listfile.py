"""Tests for creds.authz.AuthzListFile: the authorization list kept in a JSON file.

QEMU's test-authz-listfile cases (the authz-list rules, read from a file
with refresh off), the errors QEMU words, the size and shape limits, and
vncd's refresh: a stat check at most once per interval of the registry's
(injected) clock, a changed file re-read, an invalid one reported once
while the previous rules stay in force.
"""

from __future__ import annotations

import datetime
import json
import os

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from creds import authz
from creds.authz import AuthzList, AuthzListFile, AuthzSimple, QAuthZ, Rule
from creds.objects import ObjectError, ObjectRegistry
from tests.creds.test_authz import json_values

COMPLEX = {
    "policy": "deny",
    "rules": [
        {"match": "fred", "policy": "allow", "format": "exact"},
        {"match": "bob", "policy": "allow", "format": "exact"},
        {"match": "dan", "policy": "deny", "format": "exact"},
        {"match": "dan*", "policy": "allow", "format": "glob"},
    ],
}


class FakeClock:
    """A registry clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)


def write(path: str, content, *, mtime_ns: int | None = None) -> None:
    """Write ``content`` (JSON-encoded unless bytes or str) in place, optionally setting mtime."""
    if isinstance(content, (dict, list)):
        content = json.dumps(content)
    if isinstance(content, str):
        content = content.encode("utf-8")
    with open(path, "wb") as f:
        f.write(content)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


class ListFileCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "authz.json")
        self.clock = FakeClock()
        self.registry = ObjectRegistry(clock=self.clock)
        for cls in (AuthzSimple, AuthzList, AuthzListFile):
            self.registry.register_type(cls)

    def create(self, qom_type="authz-listfile", **props) -> AuthzListFile:
        return self.registry.create(qom_type, {"id": "auth0", **props})

    def assertCreateError(self, message, **props) -> ObjectError:
        e = self.assertRaises(ObjectError, self.create, **props)
        self.assertEqual(str(e), message)
        self.assertNotIn("auth0", self.registry)
        return e


class QemuCaseTests(ListFileCase):
    """QEMU's test-authz-listfile: the authz-list cases, from a file, refresh off."""

    def load(self, content) -> AuthzListFile:
        write(self.path, content)
        return self.create(filename=self.path, refresh="off")

    def test_default_deny(self):
        """An empty rule list with policy deny denies."""
        self.assertFalse(self.load({"policy": "deny"}).is_allowed("fred"))

    def test_default_allow(self):
        """An empty rule list with policy allow allows."""
        self.assertTrue(self.load({"policy": "allow"}).is_allowed("fred"))

    def test_explicit_deny(self):
        """A deny rule overrides an allow default."""
        auth = self.load({"policy": "allow", "rules": [{"match": "fred", "policy": "deny"}]})
        self.assertFalse(auth.is_allowed("fred"))

    def test_explicit_allow(self):
        """An allow rule overrides a deny default."""
        auth = self.load({"policy": "deny", "rules": [{"match": "fred", "policy": "allow"}]})
        self.assertTrue(auth.is_allowed("fred"))

    def test_complex(self):
        """Exact and glob rules from the file are checked in order."""
        auth = self.load(COMPLEX)
        self.assertIsInstance(auth, QAuthZ)
        self.assertTrue(auth.is_allowed("fred"))
        self.assertTrue(auth.is_allowed("bob"))
        self.assertFalse(auth.is_allowed("dan"))
        self.assertTrue(auth.is_allowed("danb"))
        self.assertEqual(auth.rules()[3], Rule("dan*", "allow", "glob"))
        self.assertEqual(auth.policy, "deny")

    def test_policy_defaults_to_deny(self):
        """A file without policy denies what no rule allows."""
        self.assertFalse(self.load({}).is_allowed("fred"))


class SpellingTests(ListFileCase):
    """Both names QEMU uses for the type."""

    def test_both_spellings(self):
        """authz-listfile and authz-list-file create the same kind of object."""
        write(self.path, COMPLEX)
        for qom_type in ("authz-listfile", "authz-list-file"):
            auth = self.registry.create(qom_type, {"id": qom_type, "filename": self.path})
            self.assertIsInstance(auth, AuthzListFile)
            self.assertTrue(auth.is_allowed("danb"))


class ErrorTests(ListFileCase):
    """Faults found when the object is created, naming the file."""

    def test_filename_not_provided(self):
        """A missing or empty filename gives QEMU's message."""
        self.assertCreateError("filename not provided")
        self.assertCreateError("filename not provided", filename="")

    def test_unreadable(self):
        """A missing file, a directory and a FIFO are unreadable, with the reason."""
        missing = os.path.join(self.dir, "nope.json")
        e = self.assertCreateError(f"Unable to read '{missing}': No such file or directory",
                                   filename=missing)
        self.assertEqual(e.path, missing)
        self.assertCreateError(f"Unable to read '{self.dir}': Is a directory",
                               filename=self.dir)
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        self.assertCreateError(f"Unable to read '{fifo}': Is a named pipe (FIFO), not a"
                               " regular file", filename=fifo)

    def test_not_an_object(self):
        """JSON that is not an object gives QEMU's message."""
        for content in ([COMPLEX], "\"text\"", "3", "null"):
            write(self.path, content)
            self.assertCreateError(f"File '{self.path}' must contain a JSON object",
                                   filename=self.path)

    def test_bad_json(self):
        """Malformed JSON is refused naming the file and the place."""
        write(self.path, '{"policy": "deny",\n "rules": [}')
        self.assertCreateError(f"JSON parse error in '{self.path}': Expecting value"
                               f" (line 2, column 12)", filename=self.path)
        write(self.path, "")
        self.assertCreateError(f"JSON parse error in '{self.path}': Expecting value"
                               f" (line 1, column 1)", filename=self.path)
        write(self.path, '{"policy": NaN}')
        self.assertCreateError(f"JSON parse error in '{self.path}': 'NaN' is not valid JSON",
                               filename=self.path)
        write(self.path, "[" * 100000 + "]" * 100000)
        self.assertCreateError(f"JSON parse error in '{self.path}': nested too deeply",
                               filename=self.path)

    def test_not_utf8(self):
        """A file that is not UTF-8 is refused naming the offending byte."""
        write(self.path, b'{"policy": "deny", "rules": [{"match": "caf\xe9"}]}')
        self.assertCreateError(f"Unable to read '{self.path}': not UTF-8 text (byte 43)",
                               filename=self.path)

    def test_bad_rules(self):
        """Bad list content is refused naming the file, the rule index and the field."""
        prefix = f"Invalid authorization list in '{self.path}': "
        cases = [
            ({"rules": [{"match": "a", "policy": "allow"}, {"match": "b", "policy": "alow"}]},
             "Parameter 'rules[1].policy' does not accept value 'alow'"),
            ({"rules": [{"match": "a"}]}, "Parameter 'rules[0].policy' is missing"),
            ({"rules": {"match": "a"}}, "Invalid parameter 'rules.match'"),
            ({"rules": None}, "Invalid parameter type for 'rules', expected: array"),
            ({"policy": "maybe"}, "Parameter 'policy' does not accept value 'maybe'"),
            ({"policy": 1}, "Invalid parameter type for 'policy', expected: string"),
            ({"frob": 1}, "Invalid parameter 'frob'"),
            ({"id": "x"}, "Invalid parameter 'id'"),
        ]
        for content, message in cases:
            write(self.path, content)
            e = self.assertCreateError(prefix + message, filename=self.path)
            self.assertEqual(e.path, self.path)

    def test_size_limit(self):
        """A file over MAX_LIST_FILE_SIZE is refused without being parsed."""
        write(self.path, b" " * (authz.MAX_LIST_FILE_SIZE + 1))
        self.assertCreateError(f"Unable to read '{self.path}': the file is"
                               f" {authz.MAX_LIST_FILE_SIZE + 1} bytes; the limit is"
                               f" {authz.MAX_LIST_FILE_SIZE}", filename=self.path)
        write(self.path, b"{}" + b" " * (authz.MAX_LIST_FILE_SIZE - 2))
        self.create(filename=self.path)

    def test_relative_path_with_refresh(self):
        """refresh=on needs a directory part in the name, as in QEMU; refresh=off does not."""
        name = "authz-relative.json"
        write(name, COMPLEX)
        self.addCleanup(os.remove, name)
        self.assertCreateError("Filename must be an absolute path (hint: with refresh=on,"
                               " give the list file with its directory)", filename=name)
        self.assertCreateError("Filename must be an absolute path (hint: with refresh=on,"
                               " give the list file with its directory)",
                               filename="./" + name, refresh="on")
        self.assertTrue(self.create(filename=name, refresh="off").is_allowed("fred"))

    def test_relative_missing_file_read_first(self):
        """As in QEMU, an unreadable file is reported before the path rule."""
        self.assertCreateError("Unable to read 'nope.json': No such file or directory",
                               filename="nope.json")


class RefreshTests(ListFileCase):
    """refresh=on: stat at most once per interval; reload changes; keep rules on faults."""

    def setUp(self) -> None:
        super().setUp()
        write(self.path, {"policy": "deny", "rules": [{"match": "fred", "policy": "allow"}]},
              mtime_ns=1_000_000_000_000_000_000)
        self.auth = self.create(filename=self.path)

    def change(self, content, step: int = 1) -> None:
        """Rewrite the file with a later modification time."""
        mtime = os.stat(self.path).st_mtime_ns + step * 1_000_000_000
        write(self.path, content, mtime_ns=mtime)

    def test_change_is_picked_up_after_the_interval(self):
        """A changed file governs decisions once the refresh interval has passed."""
        self.change({"policy": "deny", "rules": [{"match": "bob", "policy": "allow"}]})
        self.assertTrue(self.auth.is_allowed("fred"))
        self.clock.advance(authz.REFRESH_INTERVAL.total_seconds() / 2)
        self.assertTrue(self.auth.is_allowed("fred"))
        self.clock.advance(authz.REFRESH_INTERVAL.total_seconds() / 2)
        self.assertFalse(self.auth.is_allowed("fred"))
        self.assertTrue(self.auth.is_allowed("bob"))
        self.assertEqual(self.registry.warnings, [])

    def test_replaced_file_is_picked_up(self):
        """A file replaced by rename (a new inode) is re-read."""
        other = os.path.join(self.dir, "new.json")
        write(other, {"policy": "allow"})
        os.rename(other, self.path)
        self.clock.advance(1)
        self.assertTrue(self.auth.is_allowed("anyone"))

    def test_unchanged_file_is_not_reread(self):
        """Same size, time and inode: the content is not read again."""
        before = os.stat(self.path)
        text = json.dumps({"policy": "deny", "rules": [{"match": "bob!", "policy": "allow"}]})
        self.assertEqual(len(text), before.st_size)
        write(self.path, text, mtime_ns=before.st_mtime_ns)
        self.clock.advance(5)
        self.assertTrue(self.auth.is_allowed("fred"))
        self.assertFalse(self.auth.is_allowed("bob!"))
        write(self.path, text, mtime_ns=before.st_mtime_ns + 1)
        self.clock.advance(5)
        self.assertFalse(self.auth.is_allowed("fred"))
        self.assertTrue(self.auth.is_allowed("bob!"))

    def test_invalid_file_keeps_rules_and_warns_once(self):
        """An invalid new file leaves the old rules in force and is reported once."""
        self.change('{"policy": "deny", "rules": [')
        for _ in range(3):
            self.clock.advance(2)
            self.assertTrue(self.auth.is_allowed("fred"))
            self.assertFalse(self.auth.is_allowed("bob"))
        self.assertEqual(self.registry.warnings, [
            f"authz-listfile 'auth0': JSON parse error in '{self.path}': Expecting value"
            f" (line 1, column 30); keeping the rules loaded before"])
        self.change({"policy": "allow"}, step=2)
        self.clock.advance(2)
        self.assertTrue(self.auth.is_allowed("bob"))
        self.assertEqual(len(self.registry.warnings), 1)
        self.change({"rules": [{"match": "x", "policy": "sometimes"}]}, step=3)
        self.clock.advance(2)
        self.assertTrue(self.auth.is_allowed("bob"))
        self.assertEqual(len(self.registry.warnings), 2)
        self.assertIn("Parameter 'rules[0].policy' does not accept value 'sometimes'",
                      self.registry.warnings[1])

    def test_deleted_file_keeps_rules(self):
        """A vanished file keeps the rules, warns once, and is re-read when it returns."""
        os.remove(self.path)
        self.clock.advance(2)
        self.assertTrue(self.auth.is_allowed("fred"))
        self.clock.advance(2)
        self.assertTrue(self.auth.is_allowed("fred"))
        self.assertEqual(self.registry.warnings, [
            f"authz-listfile 'auth0': Unable to read '{self.path}': No such file or directory;"
            f" keeping the rules loaded before"])
        write(self.path, {"policy": "allow", "rules": [{"match": "fred", "policy": "deny"}]})
        self.clock.advance(2)
        self.assertFalse(self.auth.is_allowed("fred"))
        self.assertTrue(self.auth.is_allowed("bob"))

    def test_clock_going_back_checks(self):
        """A clock that steps backwards does not postpone the next check."""
        self.change({"policy": "allow"})
        self.clock.advance(-3600)
        self.assertTrue(self.auth.is_allowed("bob"))

    def test_refresh_off_never_rereads(self):
        """With refresh=off a changed file is ignored."""
        write(self.path, {"policy": "deny"})
        still = self.registry.create("authz-listfile", {
            "id": "still", "filename": self.path, "refresh": "no"})
        self.change({"policy": "allow"})
        self.clock.advance(60)
        self.assertFalse(still.is_allowed("bob"))
        self.assertTrue(self.auth.is_allowed("bob"))


class GarbageTests(ListFileCase):
    """Garbage list files give ObjectError and nothing else."""

    @given(st.binary(max_size=300))
    def test_garbage_bytes(self, data):
        """Any bytes either load as a list or raise ObjectError."""
        self.check(data)

    @given(json_values)
    def test_garbage_json(self, value):
        """Any JSON document either loads as a list or raises ObjectError."""
        self.check(json.dumps(value))

    @given(st.dictionaries(st.sampled_from(["policy", "rules", "frob"]), json_values,
                           max_size=3))
    def test_garbage_objects(self, value):
        """Any JSON object with list-like keys either loads or raises ObjectError."""
        self.check(json.dumps(value))

    def check(self, content) -> None:
        write(self.path, content)
        registry = ObjectRegistry(clock=self.clock)
        registry.register_type(AuthzListFile)
        try:
            auth = registry.create("authz-listfile", {"id": "a", "filename": self.path})
        except ObjectError as e:
            self.assertEqual(e.path, self.path)
            return
        self.assertIn(auth.is_allowed("fred"), (True, False))
