"""Tests for compat.legacy: every legacy -vnc TLS form, as QEMU 2.5 ran it, and its translation."""

from __future__ import annotations

import shlex

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import creds
from compat import optstr
from compat.cmdline import format_translation, parse_command_line
from compat.errors import HelpRequest, OptionError
from compat.legacy import MUTUALLY_EXCLUSIVE, acl_id, creds_id
from compat.vnc import static_refusal

ANON = ("tls-creds-anon", {"id": "tlsvncdefault", "endpoint": "server"})


def x509(path, verify, display="default"):
    return ("tls-creds-x509", {"id": f"tlsvnc{display}", "dir": path, "endpoint": "server",
                               "verify-peer": "on" if verify else "off"})


def acl(display="default"):
    return ("authz-list", {"id": acl_id(display), "policy": "deny"})


def parse(*argv, warnings=None):
    return parse_command_line(list(argv), registry=creds.new_registry(),
                              warn=None if warnings is None else warnings.append)


def deprecations(warnings):
    return [w for w in warnings if "deprecated" in w and "short-form" not in w]


#: (-vnc argument, objects created, tls-creds, tls-authz): every legacy form and combination
FORMS = [
    (":1,tls", [ANON], "tlsvncdefault", None),
    (":1,tls=on", [ANON], "tlsvncdefault", None),
    (":1,tls=yes", [ANON], "tlsvncdefault", None),
    (":1,tls,x509=/etc/pki/vnc", [x509("/etc/pki/vnc", False)], "tlsvncdefault", None),
    (":1,tls,x509verify=/etc/pki/vnc", [x509("/etc/pki/vnc", True)], "tlsvncdefault", None),
    (":1,tls,x509=/a,x509verify=/b", [x509("/a", False)], "tlsvncdefault", None),
    (":1,x509verify=/b,tls,x509=/a", [x509("/a", False)], "tlsvncdefault", None),
    (":1,tls,x509verify=/a,,b", [x509("/a,b", True)], "tlsvncdefault", None),
    (":1,tls,x509verify=/a,x509verify=/b", [x509("/b", True)], "tlsvncdefault", None),
    (":1,x509=/etc/pki/vnc", [], None, None),
    (":1,x509verify=/etc/pki/vnc", [], None, None),
    (":1,tls=off,x509verify=/etc/pki/vnc", [], None, None),
    (":1,tls=off", [], None, None),
    (":1,tls,notls", [], None, None),
    (":1,acl", [acl()], None, None),
    (":1,acl=off", [], None, None),
    (":1,tls,acl", [ANON, acl()], "tlsvncdefault", "vnc.x509dname"),
    (":1,tls,x509verify=/d,acl", [x509("/d", True), acl()], "tlsvncdefault", "vnc.x509dname"),
    (":1,acl,tls,x509verify=/d", [x509("/d", True), acl()], "tlsvncdefault", "vnc.x509dname"),
    (":1,tls-creds=mine,acl", [acl()], "mine", "vnc.x509dname"),
    (":1,acl=off,tls-authz=mine", [], None, "mine"),
    (":1,id=main,tls,x509verify=/d,acl", [x509("/d", True, "main"), acl("main")],
     "tlsvncmain", "vnc.main.x509dname"),
    ("none,tls,x509verify=/d,acl", [], None, None),
    ("unix:/run/vnc.sock,tls,password=on", [ANON], "tlsvncdefault", None),
]


#: Legacy forms with SASL (-vnc argument, ids of the objects QEMU 2.5 created, sasl-authz).
SASL_FORMS = [
    (":1,acl,sasl", ["vnc.x509dname", "vnc.username"], "vnc.username"),
    (":1,tls,x509verify=/d,acl,sasl", ["tlsvncdefault", "vnc.x509dname", "vnc.username"],
     "vnc.username"),
    (":1,id=two,acl,sasl=on", ["vnc.two.x509dname", "vnc.two.username"], "vnc.two.username"),
    (":1,sasl", [], None),
]


class FormTests(SynchronousTestCase):
    """Each legacy form creates QEMU 2.5's objects, with its ids, and is used by its display."""

    def test_forms(self):
        """Every form in the table gives the expected objects and display settings."""
        for arg, objects, tls_creds, tls_authz in FORMS:
            invocation = parse("-vnc", arg)
            got = [(s.qom_type, dict(s.props)) for s in invocation.objects]
            self.assertEqual(got, objects, arg)
            for spec in invocation.objects:
                self.assertTrue(spec.generated, arg)
                self.assertEqual(spec.source, f"-vnc {arg}", arg)
            display = invocation.displays[0]
            self.assertEqual((display.tls_creds, display.tls_authz), (tls_creds, tls_authz), arg)

    def test_one_deprecation_per_use(self):
        """Each legacy use prints exactly one deprecation warning naming the replacement."""
        for arg, objects, tls_creds, tls_authz in FORMS:
            seen = []
            parse("-vnc", arg, warnings=seen)
            keys = {p.key for p in optstr.parse(arg, option="-vnc", implied_key="vnc")}
            uses = bool(keys & {"tls", "x509", "x509verify"}) + ("acl" in keys)
            if arg.startswith("none,"):
                uses = 1
            self.assertEqual(len(deprecations(seen)), uses, (arg, seen))
            for line in seen:
                self.assertTrue(line.startswith(f"-vnc {arg}: warning: "), line)

    def test_deprecation_text(self):
        """The warning spells out the modern command line, as in the design example."""
        seen = []
        parse("-vnc", ":1,tls,x509verify=/etc/pki/vnc", warnings=seen)
        self.assertEqual(deprecations(seen), [
            "-vnc :1,tls,x509verify=/etc/pki/vnc: warning: -vnc ...,tls,x509verify=/etc/pki/vnc"
            " is deprecated; use -object tls-creds-x509,id=tlsvncdefault,dir=/etc/pki/vnc,"
            "endpoint=server,verify-peer=on -vnc ...,tls-creds=tlsvncdefault"])

    def test_short_form_not_advised(self):
        """A bare legacy key gets only the legacy deprecation warning: QEMU 7.2's advice
        'Please use tls=on instead' is wrong, since QEMU 7.2 refuses tls=on and acl=on."""
        for key in ("tls", "acl"):
            seen = []
            parse("-vnc", f":1,{key}", warnings=seen)
            self.assertEqual(len(seen), 1, seen)
            self.assertIn(f"-vnc ...,{key} is deprecated", seen[0])
            self.assertNotIn("short-form", seen[0])

    def test_precedence_explained(self):
        """With both x509 and x509verify the warning says x509 wins."""
        seen = []
        parse("-vnc", ":1,tls,x509=/a,x509verify=/b", warnings=seen)
        self.assertIn("x509verify is ignored: x509 takes precedence", deprecations(seen)[0])

    def test_sasl_lists(self):
        """acl with sasl also makes QEMU 2.5's deny-by-default SASL user-name list."""
        for arg, ids, sasl_authz in SASL_FORMS:
            invocation = parse("-vnc", arg)
            self.assertEqual([s.props["id"] for s in invocation.objects], ids, arg)
            self.assertEqual(invocation.displays[0].sasl_authz, sasl_authz, arg)

    def test_sasl_not_translated(self):
        """-print-translation refuses a SASL display, saying why and what QEMU 2.5 made."""
        for arg, _, sasl_authz in SASL_FORMS:
            with self.assertRaises(OptionError) as caught:
                format_translation(parse("-vnc", arg), registry=creds.new_registry())
            text = str(caught.exception)
            self.assertIn("no equivalent vncd command line", text)
            self.assertIn("SASL auth is not supported by vncd", text)
            self.assertEqual(sasl_authz is not None, f"'{sasl_authz}' (sasl-authz)" in text,
                             text)

    def test_ignored_without_tls(self):
        """x509 without tls is ignored, and the warning says why and how to get TLS."""
        seen = []
        invocation = parse("-vnc", ":1,x509verify=/d", warnings=seen)
        self.assertIsNone(invocation.displays[0].tls_creds)
        text = deprecations(seen)[0]
        self.assertIn("ignored without 'tls'", text)
        self.assertIn("this display offers no TLS", text)
        self.assertIn("-object tls-creds-x509,id=tlsvncdefault,dir=/d,endpoint=server,"
                      "verify-peer=on", text)

    def test_acl_without_tls(self):
        """acl without TLS creates the list (as QEMU did) but uses it nowhere, and says so."""
        seen = []
        parse("-vnc", ":1,acl", warnings=seen)
        self.assertIn("created but not used", deprecations(seen)[0])

    def test_generated_ids_per_display(self):
        """Each display's objects get ids from its display id (default, vnc2 ...)."""
        invocation = parse("-vnc", ":1,tls,acl", "-vnc", ":2,tls,x509=/d,acl",
                           "-vnc", ":3,id=x,tls")
        self.assertEqual([s.props["id"] for s in invocation.objects],
                         ["tlsvncdefault", "vnc.x509dname", "tlsvncvnc2", "vnc.vnc2.x509dname",
                          "tlsvncx"])
        self.assertEqual(creds_id("vnc2"), "tlsvncvnc2")
        self.assertEqual(acl_id("default"), "vnc.x509dname")

    def test_generated_after_typed(self):
        """Generated objects come after every typed -object, as QEMU creates them later."""
        invocation = parse("-vnc", ":1,tls", "-object", "secret,id=s,data=x")
        self.assertEqual([s.props["id"] for s in invocation.objects], ["s", "tlsvncdefault"])

    ERRORS = [
        (":1,tls,tls-creds=t", MUTUALLY_EXCLUSIVE),
        (":1,tls=off,tls-creds=t", MUTUALLY_EXCLUSIVE),
        (":1,x509=/d,tls-creds=t", MUTUALLY_EXCLUSIVE),
        (":1,tls-creds=t,x509verify=/d", MUTUALLY_EXCLUSIVE),
        (":1,acl,tls-authz=a", "'acl' option is mutually exclusive with the 'tls-authz' option"),
        (":1,acl,sasl-authz=a",
         "'acl' option is mutually exclusive with the 'sasl-authz' option"),
        (":99999,tls,tls-creds=t", "port 99999 out of range"),
    ]

    def test_errors(self):
        """Conflicts with the modern keys are QEMU's errors (address errors come first)."""
        for arg, message in self.ERRORS:
            with self.assertRaises(OptionError, msg=arg) as caught:
                parse("-vnc", arg)
            self.assertEqual(caught.exception.message, message, arg)


class RoundTripTests(SynchronousTestCase):
    """-print-translation's line, fed back, gives the same objects and displays."""

    def round_trip(self, argv):
        first = parse(*argv)
        line = format_translation(first, registry=creds.new_registry())
        words = shlex.split(line)
        self.assertEqual(words[0], "vncd")
        seen = []
        second = parse(*words[1:], warnings=seen)
        return first, second, line, seen

    def assertSame(self, first, second, line):
        self.assertEqual([(s.qom_type, dict(s.props)) for s in first.objects],
                         [(s.qom_type, dict(s.props)) for s in second.objects], line)
        self.assertFalse(any(s.generated for s in second.objects), line)
        strip = [d.__class__(**{**d.__dict__, "source": ""}) for d in first.displays]
        again = [d.__class__(**{**d.__dict__, "source": ""}) for d in second.displays]
        self.assertEqual(strip, again, line)

    def test_every_form(self):
        """Every legacy form vncd can run round-trips, and the translation has no
        deprecated syntax; the others get no translation."""
        for arg, _, _, _ in FORMS:
            if static_refusal(parse("-vnc", arg).displays[0]) is not None:
                self.assertRaises(OptionError, self.round_trip, ["-vnc", arg])
                continue
            first, second, line, seen = self.round_trip(["-vnc", arg])
            self.assertSame(first, second, line)
            self.assertEqual(deprecations(seen), [], line)
            self.assertFalse([w for w in seen if "short-form" in w], line)

    def test_combined(self):
        """Several displays, typed objects, JSON objects, -screen and -pidfile round-trip."""
        argv = ["-object", "tls-creds-x509,id=mine,dir=/etc/pki/x,,y,endpoint=server",
                "-vnc", ":1,tls,x509verify=/etc/pki/vnc,acl,websocket,noreverse,share=ignore",
                "-object", '{"qom-type":"authz-list","id":"az","rules":'
                           '[{"match":"CN=*","policy":"allow","format":"glob"}]}',
                "-vnc", "127.0.0.1:2,tls-creds=mine,tls-authz=az,audiodev=snd0",
                "-vnc", "unix:/tmp/a b,tls,id=third",
                "-vnc", "vnc=a=b:3,tls",
                "-screen", "image,file=/tmp/a,,b.png", "-pidfile", "/tmp/vncd pid"]
        first, second, line, seen = self.round_trip(argv)
        self.assertSame(first, second, line)
        self.assertEqual((first.screen.kind, dict(first.screen.props), first.pidfile),
                         (second.screen.kind, dict(second.screen.props), second.pidfile))
        self.assertIn(" -vnc :1,websocket=on,reverse=off,share=ignore,tls-creds=tlsvncdefault,"
                      "tls-authz=vnc.x509dname ", line)

    def test_translation_line(self):
        """The printed line is exactly the modern command line, shell-quoted."""
        first = parse("-vnc", ":1,tls,x509verify=/etc/pki/my vnc,acl")
        self.assertEqual(
            format_translation(first, registry=creds.new_registry()),
            "vncd -object 'tls-creds-x509,id=tlsvncdefault,dir=/etc/pki/my vnc,"
            "endpoint=server,verify-peer=on' -object authz-list,id=vnc.x509dname,policy=deny"
            " -vnc :1,tls-creds=tlsvncdefault,tls-authz=vnc.x509dname")

    def test_secret_not_printed(self):
        """Secret values never appear in the translation; a warning says they were left out."""
        seen = []
        first = parse("-object", "secret,id=s,data=hunter2", "-vnc", ":1,password-secret=s")
        line = format_translation(first, registry=creds.new_registry(), warn=seen.append)
        self.assertNotIn("hunter2", line)
        self.assertIn("-object secret,id=s ", line)
        self.assertEqual(len(seen), 1)
        self.assertNotIn("hunter2", seen[0].split(":", 1)[1].split("warning:")[1])


#: Elements a random legacy -vnc option is built from.
ELEMENTS = st.sampled_from([
    "tls", "notls", "tls=on", "tls=off", "x509=/a", "x509=/b,,c", "x509verify=/v",
    "x509verify=", "acl", "acl=off", "noacl", "tls-creds=mine", "tls-authz=az",
    "password", "password-secret=s", "id=main", "share=ignore", "websocket=5700",
    "reverse=on", "vnc=127.0.0.1:4", "to=9", "audiodev=snd0", "sasl=off",
])


class RoundTripPropertyTests(SynchronousTestCase):
    """Random mixes of legacy and modern keys round-trip through -print-translation."""

    @given(st.sampled_from([":1", "127.0.0.1:2", "[::1]:3", "unix:/tmp/s", "none"]),
           st.lists(ELEMENTS, max_size=7))
    def test_random_legacy_lines(self, address, elements):
        """Whatever parses translates to a modern line giving the same objects and display."""
        arg = ",".join([address, *elements])
        try:
            first = parse("-vnc", arg, "-vnc", ":5,tls")
        except (OptionError, HelpRequest):
            return
        if static_refusal(first.displays[0]) is not None:
            self.assertRaises(OptionError, format_translation, first,
                              registry=creds.new_registry())
            return
        line = format_translation(first, registry=creds.new_registry())
        seen = []
        second = parse(*shlex.split(line)[1:], warnings=seen)
        self.assertEqual([(o.qom_type, dict(o.props)) for o in first.objects],
                         [(o.qom_type, dict(o.props)) for o in second.objects], line)
        self.assertEqual([{**d.__dict__, "source": ""} for d in first.displays],
                         [{**d.__dict__, "source": ""} for d in second.displays], line)
        self.assertEqual(deprecations(seen), [], line)
