"""Tests for the object registry (creds.objects)."""

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from creds.objects import ObjectError, ObjectRegistry, Prop, UserCreatable, parse_bool


class Thing(UserCreatable):
    qom_type = "thing"
    aliases = ("old-thing",)
    props = (
        Prop("colour", "enum", default="red", choices=("red", "green")),
        Prop("flag", "bool", default=True),
        Prop("name", "str", required=True),
        Prop("count", "int", default=0),
        Prop("state", "str", read_only=True),
    )
    completed = 0

    def complete(self, **load_options):
        if self.get("colour") == "green":
            self.warn(f"thing {self.id} is green")
        if self.get("name") == "broken":
            raise ObjectError("Thing cannot be broken")
        Thing.completed += 1


def registry():
    r = ObjectRegistry()
    r.register_type(Thing)
    return r


class RegistryTests(SynchronousTestCase):
    def test_create_and_get(self):
        """An object is created with coerced properties and found by id."""
        r = registry()
        obj = r.create("thing", {"id": "t0", "name": "x", "flag": "no", "count": "12"})
        self.assertIs(r.get("t0"), obj)
        self.assertEqual(obj.get("flag"), False)
        self.assertEqual(obj.get("count"), 12)
        self.assertEqual(obj.get("colour"), "red")
        self.assertEqual(obj.user_values(), {"flag": False, "name": "x", "count": 12})

    def test_alias(self):
        """A type is reachable under each of its spellings."""
        r = registry()
        self.assertIsInstance(r.create("old-thing", {"id": "a", "name": "x"}), Thing)

    def assertObjectError(self, message, qom_type, props, r=None):
        r = r or registry()
        e = self.assertRaises(ObjectError, r.create, qom_type, props)
        self.assertEqual(str(e), message)

    def test_errors_in_qemu_wording(self):
        """Each kind of bad input gets QEMU's message."""
        self.assertObjectError("Parameter 'qom-type' does not accept value 'nope'", "nope", {"id": "a"})
        self.assertObjectError("Parameter 'id' is missing", "thing", {"name": "x"})
        self.assertObjectError("Invalid parameter 'frob'", "thing", {"id": "a", "name": "x", "frob": "1"})
        self.assertObjectError("Parameter 'colour' does not accept value 'sideways'", "thing",
                               {"id": "a", "name": "x", "colour": "sideways"})
        self.assertObjectError("Parameter 'flag' expects 'on' or 'off'", "thing",
                               {"id": "a", "name": "x", "flag": "maybe"})
        self.assertObjectError("Parameter 'name' is missing", "thing", {"id": "a"})
        self.assertObjectError("Parameter 'count' expects an integer", "thing",
                               {"id": "a", "name": "x", "count": "ten"})
        self.assertObjectError("Property 'thing.state' is not writable", "thing",
                               {"id": "a", "name": "x", "state": "on"})
        e = self.assertRaises(ObjectError, registry().create, "thing", {"id": "1x", "name": "x"})
        self.assertIn("Parameter 'id' expects an identifier", str(e))

    def test_duplicate_id(self):
        """A second object with the same id is refused."""
        r = registry()
        r.create("thing", {"id": "tls0", "name": "x"})
        self.assertObjectError("Duplicate ID 'tls0' for object", "thing", {"id": "tls0", "name": "y"}, r)

    def test_failed_complete_is_not_added(self):
        """An object whose complete() fails does not enter the registry."""
        r = registry()
        self.assertObjectError("Thing cannot be broken", "thing", {"id": "a", "name": "broken"}, r)
        self.assertNotIn("a", r)
        r.create("thing", {"id": "a", "name": "fine"})

    def test_warnings_wait_for_the_registry(self):
        """Warnings from complete() reach the registry when the object is added, or
        before create() raises; those of a prepared object that is never added, never."""
        r = registry()
        obj = r.prepare("thing", {"id": "a", "name": "x", "colour": "green"})
        self.assertEqual(r.warnings, [])
        r.add(obj)
        self.assertEqual(r.warnings, ["thing a is green"])
        obj.warn("later")
        self.assertEqual(r.warnings, ["thing a is green", "later"])
        self.assertObjectError("Thing cannot be broken", "thing",
                               {"id": "b", "name": "broken", "colour": "green"}, r)
        self.assertEqual(r.warnings[-1], "thing b is green")
        self.assertRaises(ObjectError, r.prepare, "thing",
                          {"id": "c", "name": "broken", "colour": "green"})
        self.assertEqual(len(r.warnings), 3)

    def test_in_use_cannot_be_deleted(self):
        """An object held by services cannot be deleted until every hold is released;
        the message names the holders."""
        r = registry()
        r.create("thing", {"id": "a", "name": "x"})
        r.hold("a", "vnc default")
        r.hold("a", "vnc default")
        r.hold("a", "monitor")
        e = self.assertRaises(ObjectError, r.delete, "a")
        self.assertEqual(e.message, "object 'a' is in use, can not be deleted"
                                    " (held by monitor, vnc default)")
        self.assertEqual(r.get("a").users, ["monitor", "vnc default"])
        r.release("a", "monitor")
        r.release("a", "vnc default")
        self.assertRaises(ObjectError, r.delete, "a")
        r.release("a", "vnc default")
        r.release("a", "never held")
        r.delete("a")
        self.assertNotIn("a", r)
        e = self.assertRaises(ObjectError, r.delete, "a")
        self.assertEqual(str(e), "object 'a' not found")

    def test_bool_spellings(self):
        """Booleans accept on/off/yes/no/true/false and JSON booleans."""
        for s in ("on", "yes", "true", True):
            self.assertIs(parse_bool("x", s), True)
        for s in ("off", "no", "false", False):
            self.assertIs(parse_bool("x", s), False)

    def test_hint_in_str(self):
        """An error's hint follows its QEMU message."""
        e = ObjectError("The thing failed", hint="fix it")
        self.assertEqual(e.message, "The thing failed")
        self.assertEqual(str(e), "The thing failed (hint: fix it)")

    @given(st.dictionaries(st.text(max_size=12), st.one_of(st.text(max_size=20), st.booleans(),
                                                           st.integers(), st.none())))
    def test_garbage_props(self, props):
        """Arbitrary property dictionaries raise nothing but ObjectError."""
        r = registry()
        try:
            r.create("thing", props)
        except ObjectError:
            pass
