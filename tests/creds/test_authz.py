"""Tests for creds.authz: authz-simple, authz-list and GLib-style globs.

The QEMU cases are those of ``tests/unit/test-authz-simple.c`` and
``test-authz-list.c``; authz-listfile has its own module
(``test_authz_listfile``).
"""

from __future__ import annotations

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

import creds
from creds import authz
from creds.authz import AuthzList, AuthzListFile, AuthzSimple, GlobPattern, QAuthZ, Rule
from creds.objects import ObjectError, ObjectRegistry


def registry() -> ObjectRegistry:
    r = ObjectRegistry()
    for cls in (AuthzSimple, AuthzList, AuthzListFile):
        r.register_type(cls)
    return r


def make_list(policy="deny", **props) -> AuthzList:
    return registry().create("authz-list", {"id": "auth0", "policy": policy, **props})


def assertObjectError(case, message, qom_type, props):
    e = case.assertRaises(ObjectError, registry().create, qom_type, {"id": "auth0", **props})
    case.assertEqual(str(e), message)
    return e


class SimpleTests(SynchronousTestCase):
    """authz-simple (QEMU test-authz-simple)."""

    def test_qemu_cases(self):
        """Only the exact identity is allowed: not a prefix, not an extension, not another."""
        auth = registry().create("authz-simple", {"id": "auth0", "identity": "cthulu"})
        self.assertIsInstance(auth, QAuthZ)
        self.assertFalse(auth.is_allowed("cthul"))
        self.assertTrue(auth.is_allowed("cthulu"))
        self.assertFalse(auth.is_allowed("cthuluu"))
        self.assertFalse(auth.is_allowed("fred"))

    def test_case_sensitive_and_literal(self):
        """Comparison is case-sensitive and treats glob characters literally."""
        auth = registry().create("authz-simple", {"id": "a", "identity": "C=UK,CN=qemu*"})
        self.assertFalse(auth.is_allowed("c=uk,cn=qemu*"))
        self.assertFalse(auth.is_allowed("C=UK,CN=qemu.org"))
        self.assertTrue(auth.is_allowed("C=UK,CN=qemu*"))

    def test_identity_required(self):
        """Without identity the object is refused with QEMU's message."""
        assertObjectError(self, "Parameter 'identity' is missing", "authz-simple", {})


class ListQemuTests(SynchronousTestCase):
    """authz-list: the cases of QEMU's test-authz-list."""

    def test_default_deny(self):
        """An empty list with policy deny denies."""
        self.assertFalse(make_list("deny").is_allowed("fred"))

    def test_default_allow(self):
        """An empty list with policy allow allows."""
        self.assertTrue(make_list("allow").is_allowed("fred"))

    def test_default_policy_is_deny(self):
        """Without a policy property the default policy is deny."""
        auth = registry().create("authz-list", {"id": "a"})
        self.assertEqual(auth.policy, "deny")
        self.assertFalse(auth.is_allowed("fred"))

    def test_explicit_deny(self):
        """A matching deny rule overrides an allow default."""
        auth = make_list("allow")
        auth.append("fred", "deny", "exact")
        self.assertFalse(auth.is_allowed("fred"))

    def test_explicit_allow(self):
        """A matching allow rule overrides a deny default."""
        auth = make_list("deny")
        auth.append("fred", "allow", "exact")
        self.assertTrue(auth.is_allowed("fred"))

    def check_complex(self, auth):
        self.assertTrue(auth.is_allowed("fred"))
        self.assertTrue(auth.is_allowed("bob"))
        self.assertFalse(auth.is_allowed("dan"))
        self.assertTrue(auth.is_allowed("danb"))

    def test_complex(self):
        """Exact and glob rules are checked in order, first match deciding."""
        auth = make_list("deny")
        auth.append("fred", "allow", "exact")
        auth.append("bob", "allow", "exact")
        auth.append("dan", "deny", "exact")
        auth.append("dan*", "allow", "glob")
        self.check_complex(auth)

    def test_complex_from_json(self):
        """The same rules given in the JSON form decide the same way."""
        self.check_complex(make_list("deny", rules=[
            {"match": "fred", "policy": "allow", "format": "exact"},
            {"match": "bob", "policy": "allow"},
            {"match": "dan", "policy": "deny", "format": "exact"},
            {"match": "dan*", "policy": "allow", "format": "glob"},
        ]))

    def test_complex_from_dotted_keys(self):
        """The same rules given as rules.N.field keys decide the same way."""
        self.check_complex(make_list("deny", **{
            "rules.0.match": "fred", "rules.0.policy": "allow",
            "rules.1.match": "bob", "rules.1.policy": "allow", "rules.1.format": "exact",
            "rules.2.match": "dan", "rules.2.policy": "deny",
            "rules.3.policy": "allow", "rules.3.format": "glob", "rules.3.match": "dan*",
        }))

    def test_add_remove(self):
        """Append, delete and insert return QEMU's indices and change the decision."""
        auth = make_list("allow")
        self.assertEqual(auth.append("fred", "allow", "exact"), 0)
        self.assertEqual(auth.append("bob", "allow", "exact"), 1)
        self.assertEqual(auth.append("dan", "deny", "exact"), 2)
        self.assertEqual(auth.append("frank", "deny", "exact"), 3)
        self.assertFalse(auth.is_allowed("dan"))
        self.assertEqual(auth.remove("dan"), 2)
        self.assertTrue(auth.is_allowed("dan"))
        self.assertEqual(auth.insert(2, "dan", "deny", "exact"), 2)
        self.assertFalse(auth.is_allowed("dan"))
        self.assertEqual([r.match for r in auth.rules()], ["fred", "bob", "dan", "frank"])


class ListTests(SynchronousTestCase):
    """authz-list beyond QEMU's own cases."""

    def test_first_match_wins(self):
        """Of two matching rules the earlier decides, whichever its policy."""
        deny_first = make_list("allow", rules=[
            {"match": "dan*", "policy": "deny", "format": "glob"},
            {"match": "dan", "policy": "allow"}])
        self.assertFalse(deny_first.is_allowed("dan"))
        allow_first = make_list("deny", rules=[
            {"match": "dan", "policy": "allow"},
            {"match": "dan*", "policy": "deny", "format": "glob"}])
        self.assertTrue(allow_first.is_allowed("dan"))
        self.assertFalse(allow_first.is_allowed("danny"))

    def test_exact_is_literal(self):
        """An exact rule matches its text literally, glob characters included."""
        auth = make_list("deny", rules=[{"match": "dan*", "policy": "allow"}])
        self.assertFalse(auth.is_allowed("danb"))
        self.assertTrue(auth.is_allowed("dan*"))

    def test_insert_indices(self):
        """Insert clamps beyond the end and at 0 goes first, as QEMU's list does."""
        auth = make_list("deny")
        self.assertEqual(auth.insert(5, "a", "allow"), 0)
        self.assertEqual(auth.insert(0, "b", "allow"), 0)
        self.assertEqual(auth.insert(9, "c", "allow"), 2)
        self.assertEqual(auth.insert(1, "d", "allow"), 1)
        self.assertEqual([r.match for r in auth.rules()], ["b", "d", "a", "c"])
        e = self.assertRaises(ObjectError, auth.insert, -1, "e", "allow")
        self.assertEqual(str(e), "Parameter 'index' expects a non-negative integer")

    def test_remove_first_of_duplicates_and_missing(self):
        """Remove deletes the first rule with that match; a missing match gives None."""
        auth = make_list("deny")
        auth.append("x", "allow")
        auth.append("y", "allow")
        auth.append("x", "deny", "glob")
        self.assertEqual(auth.remove("x"), 0)
        self.assertEqual(auth.rules(), (Rule("y", "allow"), Rule("x", "deny", "glob")))
        self.assertIsNone(auth.remove("nobody"))

    def test_set_policy(self):
        """The default policy can be changed at run time; bad values are refused."""
        auth = make_list("deny")
        auth.set_policy("allow")
        self.assertTrue(auth.is_allowed("anyone"))
        self.assertEqual(auth.policy, "allow")
        e = self.assertRaises(ObjectError, auth.set_policy, "perhaps")
        self.assertEqual(str(e), "Parameter 'policy' does not accept value 'perhaps'")

    def test_editing_validates(self):
        """Editing calls refuse bad policies, formats and matches."""
        auth = make_list("deny")
        for args, message in [
            (("x", "yes"), "Parameter 'policy' does not accept value 'yes'"),
            (("x", "allow", "regex"), "Parameter 'format' does not accept value 'regex'"),
            ((1, "allow"), "Invalid parameter type for 'match', expected: string"),
            (("x" * (authz.MAX_MATCH_LENGTH + 1), "allow"),
             f"Parameter 'match' is {authz.MAX_MATCH_LENGTH + 1} characters long;"
             f" the limit is {authz.MAX_MATCH_LENGTH}"),
        ]:
            e = self.assertRaises(ObjectError, auth.append, *args)
            self.assertEqual(str(e), message)
        self.assertEqual(auth.rules(), ())

    def test_rule_limit(self):
        """A list holds at most MAX_RULES rules, from JSON or by appending."""
        full = [{"match": str(i), "policy": "allow"} for i in range(authz.MAX_RULES)]
        auth = make_list("deny", rules=full)
        self.assertTrue(auth.is_allowed(str(authz.MAX_RULES - 1)))
        e = self.assertRaises(ObjectError, auth.append, "one-more", "allow")
        self.assertEqual(str(e), f"Parameter 'rules' has {authz.MAX_RULES + 1} rules;"
                                 f" the limit is {authz.MAX_RULES}")
        assertObjectError(self, f"Parameter 'rules' has {authz.MAX_RULES + 1} rules; the limit"
                                f" is {authz.MAX_RULES}", "authz-list",
                          {"rules": full + [{"match": "x", "policy": "deny"}]})

    def test_user_values(self):
        """The settings read back in JSON form, whichever syntax set them, edits included."""
        auth = make_list("allow", **{"rules.0.match": "fred", "rules.0.policy": "deny"})
        self.assertEqual(auth.user_values(), {"policy": "allow", "rules": [
            {"match": "fred", "policy": "deny", "format": "exact"}]})
        auth.remove("fred")
        auth.set_policy("deny")
        self.assertEqual(auth.user_values(), {"policy": "deny"})
        self.assertEqual(registry().create("authz-list", {"id": "b"}).user_values(), {})

    def test_index_mapping_form(self):
        """Rules grouped by index (the dotted form, nested) are accepted too."""
        auth = make_list("deny", rules={"1": {"match": "b", "policy": "deny"},
                                        "0": {"match": "a", "policy": "allow"}})
        self.assertEqual(auth.rules(), (Rule("a", "allow"), Rule("b", "deny")))

    def test_json_errors(self):
        """Bad JSON rules are refused naming the rule index and field, in QEMU's words."""
        cases = [
            ({"rules": [{"match": "x"}]}, "Parameter 'rules[0].policy' is missing"),
            ({"rules": [{"policy": "allow"}]}, "Parameter 'rules[0].match' is missing"),
            ({"rules": [{"match": 1, "policy": "allow"}]},
             "Invalid parameter type for 'rules[0].match', expected: string"),
            ({"rules": [{"match": "x", "policy": "allow", "frob": 1}]},
             "Parameter 'rules[0].frob' is unexpected"),
            ({"rules": "x"}, "Invalid parameter type for 'rules', expected: array"),
            ({"rules": None}, "Invalid parameter type for 'rules', expected: array"),
            ({"rules": [1]}, "Invalid parameter type for 'rules[0]', expected: object"),
            ({"rules": [{"match": "a", "policy": "allow"}, {"match": "x", "policy": "bogus"}]},
             "Parameter 'rules[1].policy' does not accept value 'bogus'"),
            ({"rules": [{"match": "x", "policy": "allow", "format": "regex"}]},
             "Parameter 'rules[0].format' does not accept value 'regex'"),
            ({"rules": [{"match": "x", "policy": True}]},
             "Invalid parameter type for 'rules[0].policy', expected: string"),
            ({"rules": [{"match": "x\0y", "policy": "allow"}]},
             "Parameter 'rules[0].match' contains a NUL character"),
            ({"policy": "maybe"}, "Parameter 'policy' does not accept value 'maybe'"),
        ]
        for props, message in cases:
            assertObjectError(self, message, "authz-list", props)

    def test_dotted_errors(self):
        """Bad dotted keys are refused naming the key as the user wrote it."""
        cases = [
            ({"rules.0.match": "x"}, "Parameter 'rules.0.policy' is missing"),
            ({"rules.0.policy": "allow"}, "Parameter 'rules.0.match' is missing"),
            ({"rules.1.match": "x", "rules.1.policy": "allow"}, "Parameter 'rules.0' is missing"),
            ({"rules.0.policy": "x"}, "Parameter 'rules.0.policy' does not accept value 'x'"),
            ({"rules.0.format": "re"}, "Parameter 'rules.0.format' does not accept value 're'"),
            ({"rules.0.frob": "x"}, "Invalid parameter 'rules.0.frob'"),
            ({"rules.01.match": "x"}, "Invalid parameter 'rules.01.match'"),
            ({"rules.x.match": "x"}, "Invalid parameter 'rules.x.match'"),
            ({"rules.4096.match": "x"},
             "Parameter 'rules.4096.match' is beyond the limit of 4096 rules"),
            ({"rules": [], "rules.0.match": "x", "rules.0.policy": "allow"},
             "Parameter 'rules' is given twice: as a list and as 'rules.0.match'"),
            ({"rules": {"0": {"match": "x"}}}, "Parameter 'rules.0.policy' is missing"),
            ({"rules": {"a": {}}}, "Invalid parameter 'rules.a'"),
            ({"rules": {"0": "x"}}, "Invalid parameter type for 'rules.0', expected: object"),
        ]
        for props, message in cases:
            assertObjectError(self, message, "authz-list", props)

    def test_registered_names(self):
        """new_registry() offers authz-simple, authz-list and both list-file spellings."""
        r = creds.new_registry()
        self.assertIs(r.type_for("authz-simple"), AuthzSimple)
        self.assertIs(r.type_for("authz-list"), AuthzList)
        self.assertIs(r.type_for("authz-listfile"), AuthzListFile)
        self.assertIs(r.type_for("authz-list-file"), AuthzListFile)


def reference_match(pattern: str, text: str) -> bool:
    """Textbook dynamic-programming glob matcher: the oracle for GlobPattern."""
    # reach[j]: the pattern prefix seen so far matches text[:j].
    reach = [True] + [False] * len(text)
    for p in pattern:
        if p == "*":
            for j in range(1, len(text) + 1):
                reach[j] = reach[j] or reach[j - 1]
        else:
            reach = [False] + [reach[j] and (p == "?" or p == text[j])
                               for j in range(len(text))]
    return reach[len(text)]


#: (pattern, identity, matches) -- GLib g_pattern_match_simple semantics.
GLOB_TABLE = [
    ("", "", True),
    ("", "a", False),
    ("*", "", True),
    ("*", "anything at all", True),
    ("**", "", True),
    ("?", "", False),
    ("?", "a", True),
    ("?", "ab", False),
    ("?", "é", True),
    ("??", "é", False),
    ("caf?", "café", True),
    ("caf?", "cafe\u0301", False),
    ("?", "\U0001F600", True),
    ("??", "日本", True),
    ("*本", "日本", True),
    ("a*b", "ab", True),
    ("a*b", "a", False),
    ("a*b", "axxxb", True),
    ("a*b", "axxxbc", False),
    ("a**b", "ab", True),
    ("a*b*c", "abc", True),
    ("a*b*c", "acb", False),
    ("a*b*c", "aXbXbXc", True),
    ("*a", "bbba", True),
    ("*a", "bbbab", False),
    ("a*", "a", True),
    ("*?", "", False),
    ("*?", "x", True),
    ("?*?", "x", False),
    ("?*?", "xy", True),
    ("*?*", "", False),
    ("a?c", "ac", False),
    ("a?c", "abc", True),
    ("a?b", "a\nb", True),
    ("a*b", "a\n\nb", True),
    ("A*", "a", False),
    ("[ab]", "a", False),
    ("[ab]", "[ab]", True),
    ("\\*", "\\anything", True),
    ("\\*", "*", False),
    ("a.c", "abc", False),
    ("a+", "aa", False),
    ("(x)|y", "(x)|y", True),
    ("^$", "^$", True),
    ("ab*ab", "ab", False),
    ("ab*ab", "abab", True),
    ("*ab*ab*", "xxabyyabzz", True),
    ("*ab*ab*", "xxabyybazz", False),
    ("*aa*aa*", "aaa", False),
    ("*aa*aa*", "aaaa", True),
    ("*a?*?a*", "aaa", False),
    ("a*a", "a", False),
    ("C=UK,CN=qemu*", "C=UK,CN=qemu", True),
    ("C=UK,CN=qemu*", "C=UK,CN=qemu.org", True),
    ("C=UK,CN=qemu*", "C=UK,O=x,CN=qemu", False),
    ("*,CN=laptop.example.org", "C=GB,O=Example,CN=laptop.example.org", True),
]


class GlobTests(SynchronousTestCase):
    """GLib g_pattern_match_simple semantics, without fnmatch and without backtracking."""

    def test_table(self):
        """Each table pattern matches exactly the identities it should."""
        for pattern, text, expected in GLOB_TABLE:
            self.assertEqual(GlobPattern(pattern).matches(text), expected, (pattern, text))
            self.assertEqual(reference_match(pattern, text), expected, (pattern, text))

    def test_glob_rules_use_it(self):
        """A glob rule in a list matches as the pattern does."""
        for pattern, text, expected in GLOB_TABLE:
            auth = make_list("deny", rules=[{"match": pattern, "policy": "allow",
                                             "format": "glob"}])
            self.assertEqual(auth.is_allowed(text), expected, (pattern, text))

    def test_adversarial_patterns_finish(self):
        """Patterns that make backtracking matchers explode are decided directly."""
        text = "a" * 4000
        self.assertFalse(GlobPattern("*a" * 2000 + "*b").matches(text))
        self.assertFalse(GlobPattern("*?" * 2000 + "?").matches("x" * 2000))
        self.assertTrue(GlobPattern("*a*a*a*a*a*a*a*a*a*a").matches(text))
        self.assertFalse(GlobPattern("*" + "a?" * 1000 + "b*").matches(text))

    def test_length_limit(self):
        """A pattern over MAX_MATCH_LENGTH is refused."""
        GlobPattern("*" * authz.MAX_MATCH_LENGTH)
        self.assertRaises(ValueError, GlobPattern, "*" * (authz.MAX_MATCH_LENGTH + 1))

    @given(st.text(alphabet="ab?*é", max_size=12), st.text(alphabet="abé*?", max_size=16))
    def test_agrees_with_reference(self, pattern, text):
        """GlobPattern decides every small pattern and text as the reference matcher does."""
        self.assertEqual(GlobPattern(pattern).matches(text), reference_match(pattern, text))

    @given(st.builds(
        lambda lead, runs, trail: "*" * lead + "*".join(runs) + "*" * trail,
        st.booleans(), st.lists(st.text(alphabet="a?", min_size=1, max_size=3),
                                min_size=1, max_size=4), st.booleans()),
        st.text(alphabet="a", max_size=10))
    def test_agrees_on_runs(self, pattern, text):
        """Runs of one letter against '?' and '*' (where pieces could overlap) agree too."""
        self.assertEqual(GlobPattern(pattern).matches(text), reference_match(pattern, text))

    @given(st.text(max_size=200), st.text(max_size=200))
    def test_garbage(self, pattern, text):
        """Any pattern and text give a boolean, never an exception."""
        self.assertIn(GlobPattern(pattern).matches(text), (True, False))


#: JSON values of every shape, for the garbage tests.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.sampled_from(["allow", "deny", "exact", "glob", "match"]),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(["match", "policy", "format", "frob", "0", "1"])
                      | st.text(max_size=5), children, max_size=5),
    max_leaves=30,
)


class GarbageTests(SynchronousTestCase):
    """Garbage rules give ObjectError and nothing else."""

    @given(json_values, st.sampled_from(["allow", "deny", None]))
    def test_garbage_rules(self, rules, policy):
        """Any JSON value as rules either makes a list or raises ObjectError."""
        props = {"id": "a", "rules": rules}
        if policy is not None:
            props["policy"] = policy
        try:
            auth = registry().create("authz-list", props)
        except ObjectError:
            return
        self.assertIn(auth.is_allowed("fred"), (True, False))

    @given(st.dictionaries(
        st.builds("rules.{}.{}".format,
                  st.sampled_from(["0", "1", "2", "01", "x", "4096", ""]),
                  st.sampled_from(["match", "policy", "format", "frob"])),
        st.sampled_from(["allow", "deny", "exact", "glob", "fred*", "", "?"]) | json_values,
        max_size=8))
    def test_garbage_dotted(self, keys):
        """Any mix of dotted keys either makes a list or raises ObjectError."""
        try:
            auth = registry().create("authz-list", {"id": "a", **keys})
        except ObjectError:
            return
        self.assertIn(auth.is_allowed("fred"), (True, False))
