"""Tests for compat.cmdline: the argv scanner, option order, -screen and the help text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import creds
from compat.cmdline import (
    MAX_DISPLAYS, MAX_OBJECTS, OPTIONS, SCREEN_KINDS, format_translation, parse_command_line,
    parse_screen,
)
from compat.errors import HelpRequest, OptionError
from compat.vnc import VNC_KEYS


def parse(*argv, warnings=None):
    return parse_command_line(list(argv), registry=creds.new_registry(),
                              warn=None if warnings is None else warnings.append,
                              version="9.9")


class ScannerTests(SynchronousTestCase):
    """Option names: -opt or --opt, exact, never abbreviated."""

    def test_both_dash_forms(self):
        """--vnc and --object are the same as -vnc and -object, and sources keep the form."""
        invocation = parse("--object", "secret,id=s,file=/x", "--vnc", ":1",
                           "--pidfile", "/p", "--print-translation")
        self.assertEqual(invocation.objects[0].source, "--object secret,id=s,file=/x")
        self.assertEqual(invocation.displays[0].source, "--vnc :1")
        self.assertEqual(invocation.pidfile, "/p")
        self.assertTrue(invocation.print_translation)

    #: (argv, option as reported, message)
    ERRORS = [
        (["-vn", ":1"], "-vn", "invalid option"),
        (["--vn", ":1"], "--vn", "invalid option"),
        (["-v", ":1"], "-v", "invalid option"),
        (["-obj", "secret,id=s,data=x"], "-obj", "invalid option"),
        (["-print"], "-print", "invalid option"),
        (["-pid", "/p"], "-pid", "invalid option"),
        (["-vers"], "-vers", "invalid option"),
        (["---vnc", ":1"], "---vnc", "invalid option"),
        (["-vnc=:1"], "-vnc=:1", "invalid option"),
        (["--vnc=:1"], "--vnc=:1", "invalid option"),
        (["-VNC", ":1"], "-VNC", "invalid option"),
        (["-qm", "unix:/x"], "-qm", "invalid option"),
        (["-mont", "x"], "-mont", "invalid option"),
        (["-vnc"], "-vnc", "requires an argument"),
        (["-vnc", ":1", "-object"], "-object", "requires an argument"),
        (["disk.img"], "disk.img", "unexpected argument (options start with '-')"),
        (["-"], "-", "unexpected argument (options start with '-')"),
        ([""], "", "unexpected argument (options start with '-')"),
    ]

    def test_errors(self):
        """Unknown, abbreviated or incomplete options are refused, named as typed."""
        for argv, option, message in self.ERRORS:
            with self.assertRaises(OptionError, msg=argv) as caught:
                parse(*argv)
            self.assertEqual((caught.exception.option, caught.exception.message),
                             (option, message), argv)

    def test_argument_may_look_like_an_option(self):
        """An option's argument is taken as is, even when it starts with a dash."""
        self.assertEqual(parse("-pidfile", "-vnc").pidfile, "-vnc")

    def test_help(self):
        """-h, -help and --help print the help text naming every option, type and key."""
        for word in ("-h", "-help", "--help", "--h"):
            with self.assertRaises(HelpRequest) as caught:
                parse("-vnc", ":1", word)
            text = caught.exception.text
            for name in OPTIONS:
                self.assertIn(f"-{name}", text)
            for qom_type in creds.new_registry().type_names():
                self.assertIn(qom_type, text)
            for key in VNC_KEYS:
                self.assertIn(key, text)
            for kind in SCREEN_KINDS:
                self.assertIn(kind, text)

    def test_version(self):
        """-version prints the version it is given."""
        with self.assertRaises(HelpRequest) as caught:
            parse("-version")
        self.assertEqual(caught.exception.text, "vncd version 9.9\n")

    def test_order(self):
        """Options are handled in command-line order: the first fault wins, as in QEMU."""
        with self.assertRaises(HelpRequest):
            parse("-h", "-vnc", ":1,frob=on")
        with self.assertRaises(OptionError) as caught:
            parse("-vnc", ":1,frob=on", "-h")
        self.assertEqual(caught.exception.message, "Invalid parameter 'frob'")
        with self.assertRaises(OptionError) as caught:
            parse("-object", "tls-creds-anon,id=t,endpoint=sideways", "-vnc", ":1,frob=on")
        self.assertEqual(caught.exception.option, "-object tls-creds-anon,id=t,endpoint=sideways")
        with self.assertRaises(OptionError) as caught:
            parse("-vnc", ":1,frob=on", "-object", "tls-creds-anon,id=t,endpoint=sideways")
        self.assertEqual(caught.exception.option, "-vnc :1,frob=on")

    def test_duplicate_object_id(self):
        """Two -object options with one id: QEMU's error at the second, before any creation."""
        with self.assertRaises(OptionError) as caught:
            parse("-object", "tls-creds-x509,id=t,dir=/nonexistent,endpoint=server",
                  "-object", "secret,id=t,file=/x")
        self.assertEqual((caught.exception.option, caught.exception.message),
                         ("-object secret,id=t,file=/x", "Duplicate ID 't' for object"))

    def test_display_ids(self):
        """Display ids are assigned across -vnc options like QEMU's."""
        invocation = parse("-vnc", ":1,id=vnc2", "-vnc", ":2", "-vnc", ":3")
        self.assertEqual([d.id for d in invocation.displays], ["vnc2", "default", "vnc3"])
        with self.assertRaises(OptionError) as caught:
            parse("-vnc", ":1", "-vnc", ":2,id=default")
        self.assertEqual(caught.exception.message, "Duplicate ID 'default' for vnc")

    def test_warnings(self):
        """Warnings carry the option as typed and are both reported and collected in order."""
        seen = []
        invocation = parse("-vnc", ":1,reverse", "-object",
                           "tls-creds-anon,id=t,endpoint=server,noverify-peer", warnings=seen)
        self.assertEqual(invocation.warnings, seen)
        self.assertEqual(seen, [
            "-vnc :1,reverse: warning: short-form boolean option 'reverse' deprecated\n"
            "Please use reverse=on instead",
            "-object tls-creds-anon,id=t,endpoint=server,noverify-peer: warning: short-form"
            " boolean option 'noverify-peer' deprecated\nPlease use verify-peer=off instead",
        ])

    def test_warnings_before_error(self):
        """Warnings found before an error are reported before it is raised."""
        seen = []
        self.assertRaises(OptionError, parse, "-vnc", ":1,tls,lossy", "-vnc", ":2,frob",
                          warnings=seen)
        # lossy's short-form warning, tls's legacy deprecation, frob's short-form warning.
        self.assertEqual(len(seen), 3, seen)

    def test_limits(self):
        """More than MAX_DISPLAYS displays or MAX_OBJECTS objects are refused."""
        argv = []
        for n in range(MAX_DISPLAYS + 1):
            argv += ["-vnc", f"none,id=d{n}"]
        with self.assertRaises(OptionError) as caught:
            parse(*argv)
        self.assertEqual(caught.exception.message,
                         f"too many displays (at most {MAX_DISPLAYS})")
        argv = []
        for n in range(MAX_OBJECTS + 1):
            argv += ["-object", f"authz-simple,id=a{n},identity=x"]
        with self.assertRaises(OptionError) as caught:
            parse(*argv)
        self.assertEqual(caught.exception.message, f"too many objects (at most {MAX_OBJECTS})")


class ScreenTests(SynchronousTestCase):
    """-screen KIND[,key=value...]"""

    def test_default(self):
        """Without -screen, the testcard is shown."""
        self.assertEqual(parse().screen.kind, "testcard")

    def test_kinds(self):
        """Each kind is accepted and its properties are kept as strings (last wins)."""
        screen = parse_screen("pipe,path=-,size=640x480,format=rgb24,size=800x600")
        self.assertEqual((screen.kind, dict(screen.props), screen.source),
                         ("pipe", {"path": "-", "format": "rgb24", "size": "800x600"},
                          "-screen pipe,path=-,size=640x480,format=rgb24,size=800x600"))
        self.assertEqual(parse_screen("kind=image,file=a,,b.png").props, {"file": "a,b.png"})
        self.assertEqual(parse_screen("testcard").kind, "testcard")

    def test_errors(self):
        """Unknown kinds, a missing kind and a second -screen are refused."""
        for arg, message in [("frob", "Parameter 'kind' does not accept value 'frob'"),
                             ("file=x.png", "Parameter 'kind' is missing"),
                             ("", "Parameter 'kind' is missing"),
                             # Found by fuzzing: the empty name was kept, and
                             # -print-translation could not write it back.
                             ("pipe,path=-,=x", "Invalid parameter ''"),
                             ("pipe,path=-,abc,,O=x", "Invalid parameter ''")]:
            with self.assertRaises(OptionError) as caught:
                parse_screen(arg)
            self.assertEqual(caught.exception.message, message)
        with self.assertRaises(OptionError) as caught:
            parse("-screen", "testcard", "-screen", "image,file=a.png")
        self.assertEqual(caught.exception.message, "-screen may be given only once")

    def test_help(self):
        """-screen help lists the kinds."""
        with self.assertRaises(HelpRequest) as caught:
            parse("-screen", "help")
        for kind in SCREEN_KINDS:
            self.assertIn(kind, caught.exception.text)


class TranslationTests(SynchronousTestCase):
    """format_translation on modern command lines."""

    def test_modern_unchanged(self):
        """A modern command line translates to itself (short forms written out)."""
        invocation = parse("-object", "tls-creds-anon,id=t,endpoint=server",
                           "-vnc", "127.0.0.1:1,tls-creds=t,password", "-screen", "testcard")
        self.assertEqual(
            format_translation(invocation, registry=creds.new_registry()),
            "vncd -object tls-creds-anon,id=t,endpoint=server"
            " -vnc 127.0.0.1:1,tls-creds=t,password=on")

    def test_empty(self):
        """An empty command line translates to the bare command."""
        self.assertEqual(format_translation(parse(), registry=creds.new_registry()), "vncd")


WORDS = st.sampled_from(["-vnc", "--vnc", "-object", "-screen", "-pidfile", "-print-translation",
                         "-vn", ":1", "none", "tls", "secret,id=s,data=x", "-", "",
                         "tls-creds-anon,id=t", ":1,tls,x509=/d", "{", '{"qom-type":1}'])


class PropertyTests(SynchronousTestCase):
    """Random command lines never raise anything but OptionError or HelpRequest."""

    @given(st.lists(WORDS | st.text(max_size=20), max_size=8))
    def test_garbage_argv(self, argv):
        """Any argv is parsed or refused with the project's errors."""
        try:
            invocation = parse(*argv, warnings=[])
            format_translation(invocation, registry=creds.new_registry())
        except (OptionError, HelpRequest):
            pass
