"""Tests for compat.objects: the two spellings of -object and QEMU's parse-time checks."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import creds
from compat.errors import HelpRequest, OptionError
from compat.objects import (
    ID_MESSAGE, MAX_JSON_DEPTH, format_object, mask_secrets, parse_object, secret_keys,
)


def parse(arg, warnings=None):
    return parse_object(arg, registry=creds.new_registry(),
                        warn=None if warnings is None else warnings.append)


class KeyValueTests(SynchronousTestCase):
    """-object TYPE,id=ID,prop=value,..."""

    def test_spec(self):
        """Type, id and properties become an ObjectSpec with the option as typed."""
        spec = parse("tls-creds-x509,id=tls0,dir=/etc/pki/a,,b,endpoint=server")
        self.assertEqual(spec.qom_type, "tls-creds-x509")
        self.assertEqual(dict(spec.props),
                         {"id": "tls0", "dir": "/etc/pki/a,b", "endpoint": "server"})
        self.assertEqual(spec.source, "-object tls-creds-x509,id=tls0,dir=/etc/pki/a,,b,"
                                      "endpoint=server")
        self.assertFalse(spec.generated)

    def test_double_dash_source(self):
        """The option name is kept as typed in the source."""
        spec = parse_object("secret,id=s,file=/x", registry=creds.new_registry(),
                            option="--object")
        self.assertEqual(spec.source, "--object secret,id=s,file=/x")

    def test_last_value_wins(self):
        """A repeated property takes its last value, as in QEMU."""
        spec = parse("tls-creds-anon,id=t,endpoint=server,endpoint=client")
        self.assertEqual(spec.props["endpoint"], "client")

    def test_first_id_wins(self):
        """A repeated id takes its first value, as in QEMU."""
        self.assertEqual(parse("tls-creds-anon,id=t,id=u").props["id"], "t")

    def test_explicit_qom_type_overrides(self):
        """qom-type= later in the list replaces the implied type (QEMU 7.2 does the same)."""
        self.assertEqual(parse("secret,qom-type=tls-creds-anon,id=t").qom_type,
                         "tls-creds-anon")

    def test_short_form_warning(self):
        """A short-form boolean warns with QEMU's text and means on."""
        seen = []
        spec = parse("tls-creds-x509,id=t,endpoint=server,nosanity-check", seen)
        self.assertEqual(spec.props["sanity-check"], "off")
        self.assertEqual(seen, ["short-form boolean option 'nosanity-check' deprecated\n"
                                "Please use sanity-check=off instead"])

    def test_dotted_authz_rules(self):
        """authz-list's rules.N.field keys (a vncd convenience) pass the parse-time check."""
        spec = parse("authz-list,id=a,rules.0.match=CN=bob,rules.0.policy=allow")
        self.assertEqual(spec.props["rules.0.match"], "CN=bob")

    #: (argument, QEMU 7.2's message) -- each checked against QEMU in test_qemu_compare
    ERRORS = [
        ("tls-creds-anon,id=t,endpoint=sideways",
         "Parameter 'endpoint' does not accept value 'sideways'"),
        ("tls-creds-anon,id=t,frob=1", "Invalid parameter 'frob'"),
        ("tls-creds-anon,frob,id=t", "Invalid parameter 'frob'"),
        ("tls-creds-anon,endpoint=server", "Parameter 'id' is missing"),
        ("id=x", "Parameter 'qom-type' is missing"),
        ("", "Parameter 'qom-type' is missing"),
        ("frob,id=x", "Parameter 'qom-type' does not accept value 'frob'"),
        ("tls-creds-anon,id=1x", ID_MESSAGE),
        ("tls-creds-anon,id=t,verify-peer=maybe", "Parameter 'verify-peer' expects 'on' or 'off'"),
        ("tls-creds-anon,id=t,endpoint", "Parameter 'endpoint' does not accept value 'on'"),
        ("tls-creds-anon,qom-type=secret,id=t,endpoint=server", "Invalid parameter 'endpoint'"),
        ("tls-creds-anon,id=t,endpoint=server,frob=1,id=1x", "Invalid parameter 'frob'"),
        ("secret,id=s,file=/x,loaded=on", "Property 'secret.loaded' is not writable"),
    ]

    def test_errors(self):
        """Each malformed argument gets QEMU's message, located at the option."""
        for arg, message in self.ERRORS:
            with self.assertRaises(OptionError, msg=arg) as caught:
                parse(arg)
            self.assertEqual(caught.exception.message, message, arg)
            self.assertEqual(caught.exception.option, f"-object {arg}")

    def test_spelling_hints(self):
        """Misspelt properties get 'did you mean'; a DN split at its commas gets the ',,' rule."""
        for arg, message, hint in [
            ("tls-creds-x509,id=t,dir=/d,verify_peer=on", "Invalid parameter 'verify_peer'",
             "did you mean 'verify-peer'?"),
            ("tls-creds-anon,id=t,endpont=server", "Invalid parameter 'endpont'",
             "did you mean 'endpoint'?"),
            ("authz-simple,id=a,identiy=CN=x", "Parameter 'identity' is missing",
             "'identiy' was given: did you mean 'identity'?"),
            ("authz-simple,id=a,identity=C=GB,O=ACME,CN=x", "Invalid parameter 'O'",
             "a comma inside a value is written ',,': identity=C=GB,,O=ACME,,CN=x"),
            ("tls-creds-anon,id=t,frobnicate=on", "Invalid parameter 'frobnicate'", None),
        ]:
            with self.assertRaises(OptionError, msg=arg) as caught:
                parse(arg)
            self.assertEqual((caught.exception.message, caught.exception.hint),
                             (message, hint), arg)
        spec = parse("authz-simple,id=a,identity=C=GB,,O=ACME,,CN=x")
        self.assertEqual(spec.props["identity"], "C=GB,O=ACME,CN=x")

    def test_help(self):
        """-object help lists every type; TYPE,help lists that type's properties."""
        with self.assertRaises(HelpRequest) as caught:
            parse("help")
        self.assertIn("  tls-creds-x509\n", caught.exception.text)
        self.assertIn("  authz-list\n", caught.exception.text)
        with self.assertRaises(HelpRequest) as caught:
            parse("tls-creds-x509,help")
        self.assertTrue(caught.exception.text.startswith("tls-creds-x509 options:\n"))
        self.assertIn("  verify-peer=<bool>", caught.exception.text)
        self.assertNotIn("loaded", caught.exception.text)


class SecretTests(SynchronousTestCase):
    """Secret values never appear in the option text used for messages."""

    def test_key_value(self):
        """data= is hidden in the source, escapes and all; other keys stay as typed."""
        spec = parse("secret,id=s,data=hun,,ter2,format=raw")
        self.assertEqual(spec.source, "-object secret,id=s,data=<hidden>,format=raw")
        self.assertEqual(spec.props["data"], "hun,ter2")

    def test_errors_hide_the_secret(self):
        """An error in an object carrying a secret does not echo it."""
        for arg in ("secret,id=s,data=hunter2,frob=1", "secrte,id=s,data=hunter2",
                    '{"qom-type":"secret","id":"s","data":"hunter2","frob":1}',
                    '{"qom-type":"secret","id":"s","data":"hunter2"',
                    '{"qom-type":"secret","id":"s","data":"hun\\"ter2"'):
            with self.assertRaises(OptionError) as caught:
                parse(arg)
            self.assertNotIn("hunter2", str(caught.exception), arg)
            self.assertNotIn("ter2", str(caught.exception), arg)
            self.assertIn("<hidden>", caught.exception.option, arg)

    def test_mask_secrets(self):
        """mask_secrets leaves text without secret keys untouched."""
        keys = secret_keys(creds.new_registry())
        self.assertIn("data", keys)
        self.assertEqual(mask_secrets("tls-creds-x509,id=t,dir=/d", keys),
                         "tls-creds-x509,id=t,dir=/d")
        self.assertEqual(mask_secrets("secret,id=s,nodata", keys), "secret,id=s,nodata")


class JsonTests(SynchronousTestCase):
    """-object '{"qom-type": ..., "id": ..., ...}'"""

    def test_spec(self):
        """JSON values are kept as JSON values; booleans may be JSON or strings."""
        for value in (True, "on"):
            arg = json.dumps({"qom-type": "tls-creds-anon", "id": "t",
                              "verify-peer": value, "endpoint": "server"})
            spec = parse(arg)
            self.assertEqual(dict(spec.props),
                             {"id": "t", "verify-peer": value, "endpoint": "server"})

    def test_structured_rules(self):
        """authz-list rules arrive as a JSON list."""
        rules = [{"match": "CN=bob", "policy": "allow", "format": "exact"}]
        spec = parse(json.dumps({"qom-type": "authz-list", "id": "a", "rules": rules}))
        self.assertEqual(spec.props["rules"], rules)

    ERRORS = [
        ('{"qom-type":"tls-creds-anon","id":"t","endpoint":"sideways"}',
         "Parameter 'endpoint' does not accept value 'sideways'"),
        ('{"qom-type":"tls-creds-anon","id":"t","endpoint":1}',
         "Invalid parameter type for 'endpoint', expected: string"),
        ('{"qom-type":"tls-creds-anon","id":"t","endpoint":"server","frob":1}',
         "Parameter 'frob' is unexpected"),
        ('{"qom-type":"tls-creds-anon","id":5}',
         "Invalid parameter type for 'id', expected: string"),
        ('{"qom-type":"tls-creds-anon"}', "Parameter 'id' is missing"),
        ('{"id":"t"}', "Parameter 'qom-type' is missing"),
        ('{"qom-type":7,"id":"t"}', "Invalid parameter type for 'qom-type', expected: string"),
        ('{"qom-type":"frob","id":"t"}', "Parameter 'qom-type' does not accept value 'frob'"),
        ('{"qom-type":"tls-creds-anon","id":"t"}x', "Expecting at most one JSON value"),
        ('{"qom-type":"secret","id":"t","id":"u","data":"x"}', "JSON parse error, duplicate key"),
        ('{"qom-type":"secret","id":"1t","data":"x"}', ID_MESSAGE),
    ]

    def test_errors(self):
        """Each malformed JSON object gets QEMU's message."""
        for arg, message in self.ERRORS:
            with self.assertRaises(OptionError, msg=arg) as caught:
                parse(arg)
            self.assertEqual(caught.exception.message, message, arg)

    def test_syntax_errors(self):
        """Broken JSON, non-finite numbers and deep nesting are JSON parse errors."""
        deep = '{"a":' + "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1) + "}"
        very_deep = '{"a":' + "[" * 30000 + "]" * 30000 + "}"
        for arg in ('{"qom-type":"secret"', '{"qom-type":NaN}', "{'qom-type':'secret'}",
                    deep, very_deep):
            with self.assertRaises(OptionError) as caught:
                parse(arg)
            self.assertTrue(caught.exception.message.startswith("JSON parse error, "),
                            caught.exception.message)


class FormatTests(SynchronousTestCase):
    """format_object writes an argument that parses back to the same spec."""

    def test_key_value_round_trip(self):
        """String-only objects use the key=value form and round-trip."""
        spec = parse("tls-creds-x509,id=t,dir=/a,,b=c,endpoint=server")
        text = format_object(spec)
        self.assertEqual(text, "tls-creds-x509,id=t,dir=/a,,b=c,endpoint=server")
        self.assertEqual(parse(text).props, spec.props)

    def test_json_round_trip(self):
        """Objects with JSON values use the JSON form and round-trip."""
        spec = parse('{"qom-type":"authz-list","id":"a","policy":"allow",'
                     '"rules":[{"match":"CN=*","policy":"deny","format":"glob"}]}')
        text = format_object(spec)
        self.assertTrue(text.startswith('{"qom-type":"authz-list","id":"a"'))
        self.assertEqual(parse(text).props, spec.props)

    def test_omit(self):
        """Omitted properties (secret values) are not written."""
        spec = parse("secret,id=s,data=hunter2")
        self.assertEqual(format_object(spec, omit=frozenset({"data"})), "secret,id=s")


class PropertyTests(SynchronousTestCase):
    """Garbage never escapes as anything but OptionError or HelpRequest."""

    @given(st.text(max_size=200))
    def test_garbage_text(self, arg):
        """Random text is parsed or refused with OptionError."""
        try:
            parse(arg, [])
        except (OptionError, HelpRequest):
            pass

    @given(st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=10),
        st.sampled_from(["tls-creds-x509", "tls-creds-anon", "secret", "authz-list",
                         "authz-simple", "frob"]))
    def test_garbage_json(self, value, qom_type):
        """Random JSON property values are accepted or refused with OptionError."""
        arg = json.dumps({"qom-type": qom_type, "id": "x", "p": value, "dir": value})
        try:
            parse(arg)
        except OptionError:
            pass
