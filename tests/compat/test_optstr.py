"""Tests for compat.optstr: QEMU's key=value option strings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from compat import optstr
from compat.errors import OptionError
from compat.optstr import Param


def pairs(text, implied="vnc"):
    return [(p.key, p.value) for p in optstr.parse(text, option="-x " + text, implied_key=implied)]


class ParseTests(SynchronousTestCase):
    """Splitting, escaping, the implied key and short-form booleans."""

    #: (option text, implied key, expected (key, value) pairs)
    TABLE = [
        ("", "vnc", []),
        (":1", "vnc", [("vnc", ":1")]),
        (":1,", "vnc", [("vnc", ":1")]),
        (":1,share=ignore", "vnc", [("vnc", ":1"), ("share", "ignore")]),
        ("vnc=:1,share=ignore", "vnc", [("vnc", ":1"), ("share", "ignore")]),
        (":1,,x,share=y", "vnc", [("vnc", ":1,x"), ("share", "y")]),
        ("a,,b=c", "vnc", [("vnc", "a,b=c")]),
        ("unix:/tmp/a=b", "vnc", [("unix:/tmp/a", "b")]),
        (",share=x", "vnc", [("vnc", ""), ("share", "x")]),
        ("x=/a,,b,,,y=1", None, [("x", "/a,b,"), ("y", "1")]),
        ("x=", None, [("x", "")]),
        ("x==", None, [("x", "=")]),
        ("tls", None, [("tls", "on")]),
        (":1,tls,noreverse", "vnc", [("vnc", ":1"), ("tls", "on"), ("reverse", "off")]),
        (":1,non-adaptive", "vnc", [("vnc", ":1"), ("n-adaptive", "off")]),
        ("tls-creds-x509,id=t,dir=/a,,b", "qom-type",
         [("qom-type", "tls-creds-x509"), ("id", "t"), ("dir", "/a,b")]),
    ]

    def test_table(self):
        """Every row of the table parses to the expected pairs."""
        for text, implied, expected in self.TABLE:
            self.assertEqual(pairs(text, implied), expected, text)

    def test_raw_keeps_typed_text(self):
        """Each element remembers how it was typed, escapes and short form included."""
        params = optstr.parse(":1,tls,x509=/a,,b,noacl", option="-vnc", implied_key="vnc")
        self.assertEqual([p.raw for p in params], [":1", "tls", "x509=/a,,b", "noacl"])
        self.assertEqual([p.flag for p in params], [False, True, False, True])

    def test_short_form_warning_text(self):
        """A short-form boolean prints QEMU 7.2's two-line deprecation warning."""
        seen = []
        optstr.parse(":1,tls,noreverse", option="-vnc", implied_key="vnc", warn=seen.append)
        self.assertEqual(seen, [
            "short-form boolean option 'tls' deprecated\nPlease use tls=on instead",
            "short-form boolean option 'noreverse' deprecated\nPlease use reverse=off instead",
        ])

    def test_no_warning_for_explicit_or_implied(self):
        """key=value elements and the implied first element never warn."""
        seen = []
        optstr.parse("tls,share=x", option="-vnc", implied_key="vnc", warn=seen.append)
        self.assertEqual(seen, [])

    def test_help_element(self):
        """A bare help or ? element is a help request, without a warning."""
        seen = []
        params = optstr.parse("tls-creds-x509,help", option="-object",
                              implied_key="qom-type", warn=seen.append)
        self.assertTrue(params[1].help)
        self.assertEqual(seen, [])
        self.assertFalse(Param("help", "off", "nohelp", flag=True).help)
        self.assertFalse(Param("help", "on", "help=on").help)
        self.assertTrue(optstr.is_help("?"))
        self.assertFalse(optstr.is_help("help,x"))

    def test_incremental(self):
        """Elements are yielded one by one, so later elements have not warned yet."""
        seen = []
        it = optstr.iter_params(":1,a,b", option="-vnc", implied_key="vnc", warn=seen.append)
        next(it)
        next(it)
        self.assertEqual(len(seen), 1)


class FindIdTests(SynchronousTestCase):
    """The id is found QEMU's way: a separate pass, first one wins."""

    def test_first_wins(self):
        """With two id= elements, the first is the id."""
        self.assertEqual(optstr.find_id(":1,id=a,id=b", option="-vnc"), "a")

    def test_absent(self):
        """No id= element: None."""
        self.assertIsNone(optstr.find_id(":1,share=x", option="-vnc"))

    def test_escaped(self):
        """An id value is unescaped like any value."""
        self.assertEqual(optstr.find_id("x,id=a,,b", option="-vnc"), "a,b")


class LimitTests(SynchronousTestCase):
    """Every input is bounded, and the bound is an OptionError naming the option."""

    def test_too_long(self):
        """Text over MAX_OPTION_LENGTH is refused."""
        text = "a" * (optstr.MAX_OPTION_LENGTH + 1)
        with self.assertRaises(OptionError) as caught:
            optstr.parse(text, option="-vnc x")
        self.assertIn("option is too long", caught.exception.message)
        self.assertEqual(caught.exception.option, "-vnc x")

    def test_longest_accepted(self):
        """Text of exactly MAX_OPTION_LENGTH is parsed."""
        text = "x=" + "a" * (optstr.MAX_OPTION_LENGTH - 2)
        self.assertEqual(len(optstr.parse(text, option="-vnc")), 1)

    def test_too_many_params(self):
        """More than MAX_PARAMS elements are refused."""
        text = ",".join(["a=1"] * (optstr.MAX_PARAMS + 1))
        with self.assertRaises(OptionError) as caught:
            optstr.parse(text, option="-vnc")
        self.assertEqual(
            caught.exception.message, f"too many parameters (at most {optstr.MAX_PARAMS})"
        )
        self.assertEqual(len(optstr.parse(text[4:], option="-vnc")), optstr.MAX_PARAMS)

    def test_empty_key(self):
        """An element with an empty name is QEMU's "Invalid parameter ''" (found by fuzzing:
        -screen kept it and -print-translation then failed to write it back)."""
        for text, implied in (("=5", None), ("no", None), (":1,=x", "vnc"),
                              ("a,b,,,c=1", "vnc"), ("pipe,path=-,abc,,O=x", "kind")):
            with self.assertRaises(OptionError) as caught:
                optstr.parse(text, option="-x " + text, implied_key=implied)
            self.assertEqual(caught.exception.message, "Invalid parameter ''", text)

    def test_long_key(self):
        """A key over MAX_KEY_LENGTH is refused without being echoed in full."""
        key = "k" * (optstr.MAX_KEY_LENGTH + 1)
        for text in (f"{key}=1", key):
            with self.assertRaises(OptionError) as caught:
                optstr.parse(text, option="-vnc")
            self.assertNotIn(key, str(caught.exception))


class FormatTests(SynchronousTestCase):
    """format_params writes what parse reads back."""

    def test_implied_form(self):
        """The first pair loses its key when it is the implied key and may."""
        self.assertEqual(
            optstr.format_params([("vnc", ":1"), ("share", "a,b")], implied_key="vnc"),
            ":1,share=a,,b",
        )

    def test_explicit_when_needed(self):
        """Empty, help-like or '='-bearing first values keep their key."""
        for value, text in [("", "vnc="), ("help", "vnc=help"), ("?", "vnc=?"),
                            ("a=b", "vnc=a=b"), ("a,b=c", "a,,b=c")]:
            self.assertEqual(optstr.format_params([("vnc", value)], implied_key="vnc"), text)

    def test_bad_key(self):
        """A key that cannot be written is a programming error (ValueError)."""
        for key in ("", "a,b", "a=b"):
            self.assertRaises(ValueError, optstr.format_params, [(key, "v")])


KEYS = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz-._:0123456789"), min_size=1,
               max_size=12)


class PropertyTests(SynchronousTestCase):
    """Properties over random input."""

    @given(st.lists(st.tuples(KEYS, st.text(max_size=30)), max_size=20),
           st.sampled_from([None, "vnc"]))
    def test_format_parse_round_trip(self, items, implied):
        """Random key/value lists survive format -> parse unchanged."""
        text = optstr.format_params(items, implied_key=implied)
        self.assertEqual(pairs(text, implied), items)

    @given(st.text(max_size=300), st.sampled_from([None, "vnc", "qom-type"]))
    def test_garbage(self, text, implied):
        """Any text parses or raises OptionError, nothing else."""
        try:
            optstr.parse(text, option="-vnc", implied_key=implied, warn=lambda w: None)
            optstr.find_id(text, option="-vnc")
        except OptionError:
            pass

    @given(st.text(alphabet=",=ano", max_size=60))
    def test_punctuation_garbage(self, text):
        """Dense commas, equals signs and 'no' prefixes never break the parser."""
        try:
            params = optstr.parse(text, option="-vnc", implied_key="vnc")
        except OptionError:
            return
        self.assertLessEqual(len(params), optstr.MAX_PARAMS)
