"""Tests for compat.monitor: -chardev, -mon, -qmp, -qmp-pretty and -monitor.

The expected messages are QEMU 7.2's, as it prints them for the same
options (tests.compat.test_monitor_qemu runs QEMU on a selection of them).
"""

from __future__ import annotations

import dataclasses
import os
import shlex

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import creds
from compat.cmdline import format_translation, parse_command_line
from compat.config import ChardevConfig, Invocation, ListenAddress, MonitorConfig
from compat.errors import HelpRequest, OptionError
from compat.monitor import (
    CHARDEV_KEYS, MAX_CHARDEVS, MAX_MONITORS, MAX_PORT, QEMU_BACKENDS, QEMU_LABEL_LENGTH,
    check_chardev, check_monitor, check_monitors, format_monitor_options, parse_chardev,
)
from compat.objects import ID_MESSAGE
from tests.compat.helpers import server_dir


def parse(*argv, warnings=None):
    return parse_command_line(list(argv), registry=creds.new_registry(),
                              warn=None if warnings is None else warnings.append)


def unix(path):
    return ListenAddress("unix", path)


def tcp(host, port):
    return ListenAddress("tcp", host, port)


def sourceless(invocation: Invocation) -> tuple[list, list]:
    """The chardevs and monitors without their option text (which a translation rewrites)."""
    return ([dataclasses.replace(c, source="") for c in invocation.chardevs],
            [dataclasses.replace(m, source="") for m in invocation.monitors])


def roundtrip(invocation: Invocation) -> Invocation:
    line = format_translation(invocation, registry=creds.new_registry())
    return parse(*shlex.split(line)[1:])


class AcceptedTests(SynchronousTestCase):
    """What each accepted form becomes."""

    #: (argv, chardevs, monitors); sources are checked separately.
    TABLE = [
        (["-qmp", "unix:/run/q,server=on,wait=off"],
         [ChardevConfig("compat_monitor0", "socket", "", unix("/run/q"), server=True,
                        wait=False, generated=True)],
         [MonitorConfig("compat_monitor0", "control", id="compat_monitor0", option="qmp")]),
        (["-qmp", "tcp:127.0.0.1:4444,server,nowait"],
         [ChardevConfig("compat_monitor0", "socket", "", tcp("127.0.0.1", 4444), server=True,
                        wait=False, generated=True)],
         [MonitorConfig("compat_monitor0", "control", id="compat_monitor0", option="qmp")]),
        (["-qmp-pretty", "tcp::4444,server=on", "-monitor", "unix:/h,,x,server=on,nodelay"],
         [ChardevConfig("compat_monitor0", "socket", "", tcp("", 4444), server=True,
                        generated=True),
          ChardevConfig("compat_monitor1", "socket", "", unix("/h,x"), server=True,
                        nodelay=True, generated=True)],
         [MonitorConfig("compat_monitor0", "control", True, id="compat_monitor0",
                        option="qmp-pretty"),
          MonitorConfig("compat_monitor1", "readline", id="compat_monitor1",
                        option="monitor")]),
        (["-monitor", "stdio"],
         [ChardevConfig("compat_monitor0", "stdio", "", generated=True)],
         [MonitorConfig("compat_monitor0", "readline", id="compat_monitor0",
                        option="monitor")]),
        (["-monitor", "none"], [], []),
        (["-qmp", "unix:path=/q,server=on,id=ignored"],
         [ChardevConfig("compat_monitor0", "socket", "", unix("/q"), server=True,
                        generated=True)],
         [MonitorConfig("compat_monitor0", "control", id="compat_monitor0", option="qmp")]),
        (["-chardev", "socket,id=m0,host=::1,port=4444,server=on,wait=off,to=4450,ipv6=on,"
          "ipv4=off,tls-creds=t,tls-authz=a", "-mon", "m0,mode=control,pretty=on,id=qmp"],
         [ChardevConfig("m0", "socket", "", tcp("::1", 4444), server=True, wait=False,
                        to=4450, ipv4=False, ipv6=True, tls_creds="t", tls_authz="a")],
         [MonitorConfig("m0", "control", True, id="qmp")]),
        (["-chardev", "stdio,id=s", "-mon", "chardev=s"],
         [ChardevConfig("s", "stdio", "")],
         [MonitorConfig("s", "readline")]),
        (["-chardev", "backend=socket,path=/p,server=yes,id=c,id=ignored,path=/q",
          "-qmp", "chardev:c"],
         [ChardevConfig("c", "socket", "", unix("/q"), server=True)],
         [MonitorConfig("c", "control", id="c", option="qmp")]),
        (["-qmp", "chardev:c", "-qmp", "unix:/q,server=on", "-mon", "c",
          "-monitor", "chardev:d"],
         [ChardevConfig("compat_monitor1", "socket", "", unix("/q"), server=True,
                        generated=True)],
         [MonitorConfig("c", "control", id="c", option="qmp"),
          MonitorConfig("compat_monitor1", "control", id="compat_monitor1", option="qmp"),
          MonitorConfig("c", "readline"),
          MonitorConfig("d", "readline", id="d", option="monitor")]),
        (["-chardev", "socket,id=z,host=,port=0,server=on"],
         [ChardevConfig("z", "socket", "", tcp("", 0), server=True)], []),
    ]

    def test_forms(self):
        """Each form gives QEMU's chardev, id, defaults and monitor mode."""
        for argv, chardevs, monitors in self.TABLE:
            self.assertEqual(sourceless(parse(*argv)), (chardevs, monitors), argv)

    def test_compat_host_port(self):
        """tcp:HOST:PORT is split as QEMU's sscanf splits it; after a long port all is ignored."""
        invocation = parse("-qmp", "tcp:a,b:4444,server=on")
        self.assertEqual(invocation.chardevs[0].address, tcp("a,b", 4444))
        with self.assertRaises(OptionError) as caught:
            parse("-qmp", "tcp:h:" + "1" * 33 + ",server=on")
        self.assertIn("server=off", caught.exception.message)

    def test_sources(self):
        """Each chardev and monitor keeps the option as typed; ADDR's chardev its option's."""
        invocation = parse("--qmp", "unix:/q,server", "-chardev", "stdio,id=s", "-mon", "s")
        self.assertEqual([c.source for c in invocation.chardevs],
                         ["--qmp unix:/q,server", "-chardev stdio,id=s"])
        self.assertEqual([m.source for m in invocation.monitors],
                         ["--qmp unix:/q,server", "-mon s"])

    def test_warnings(self):
        """-chardev and -mon warn of short-form booleans; ADDR does not (QEMU 7.2)."""
        seen = []
        parse("-chardev", "socket,id=c,path=/c,server,nowait", "-mon", "c,pretty=off",
              "-qmp", "unix:/q,server,nowait", warnings=seen)
        self.assertEqual(seen, [
            "-chardev socket,id=c,path=/c,server,nowait: warning: short-form boolean option"
            " 'server' deprecated\nPlease use server=on instead",
            "-chardev socket,id=c,path=/c,server,nowait: warning: short-form boolean option"
            " 'nowait' deprecated\nPlease use wait=off instead",
        ])

    def test_unix_ignores_tcp_keys(self):
        """port, to, ipv4 and ipv6 on a UNIX socket are dropped with a warning each."""
        seen = []
        invocation = parse("-chardev", "socket,id=c,path=/c,server=on,port=1,to=5,ipv4=on,"
                           "ipv6=off", warnings=seen)
        self.assertEqual(invocation.chardevs[0],
                         ChardevConfig("c", "socket", invocation.chardevs[0].source, unix("/c"),
                                       server=True))
        self.assertEqual([line.split(": warning: ")[1] for line in seen],
                         [f"'{k}' has no effect on a UNIX socket (path=); ignored"
                          for k in ("port", "to", "ipv4", "ipv6")])


class RefusedTests(SynchronousTestCase):
    """Every refusal while parsing, with QEMU's words where QEMU has them."""

    #: (argv, option as reported, message)
    TABLE = [
        # -qmp/-monitor ADDR
        (["-qmp", "none"], "-qmp none", "'none' is not a valid char driver"),
        (["-qmp-pretty", ""], "-qmp-pretty ", "'' is not a valid char driver"),
        (["-monitor", "nonexyz"], "-monitor nonexyz", "'nonexyz' is not a valid char driver"),
        (["-qmp", "help"], "-qmp help", "'help' is not a valid char driver"),
        (["-qmp", "pty:/x"], "-qmp pty:/x", "'pty:/x' is not a valid char driver"),
        (["-qmp", "tcp:localhost"], "-qmp tcp:localhost", "parse error: tcp:localhost"),
        (["-qmp", "tcp:,server=on"], "-qmp tcp:,server=on", "parse error: tcp:,server=on"),
        (["-qmp", "tcp:" + "h" * 65 + ":1"], "-qmp tcp:" + "h" * 65 + ":1",
         "parse error: tcp:" + "h" * 65 + ":1"),
        (["-qmp", "unix:/q,server=on,frob=1"], "-qmp unix:/q,server=on,frob=1",
         "Invalid parameter 'frob'"),
        (["-qmp", "tcp:h:1,server=on,help"], "-qmp tcp:h:1,server=on,help",
         "Invalid parameter 'help'"),
        (["-qmp", "unix:/q,server=maybe"], "-qmp unix:/q,server=maybe",
         "Parameter 'server' expects 'on' or 'off'"),
        (["-qmp", "unix:/q"], "-qmp unix:/q",
         "vncd's monitor sockets only listen; connecting out (server=off, QEMU's default)"
         " is not supported"),
        (["-qmp", "unix:/q,wait=off"], "-qmp unix:/q,wait=off",
         "'wait' option is incompatible with socket in client connect mode"),
        (["-qmp", "unix:"], "-qmp unix:", "the socket has no address"),
        (["-qmp", "unix:,server=on"], "-qmp unix:,server=on", "the UNIX socket path is empty"),
        (["-qmp", "tcp:h:1,server=on,path=/x"], "-qmp tcp:h:1,server=on,path=/x",
         "None or one of 'path', 'fd' or 'host' option required."),
        (["-qmp", "tcp:127.0.0.1:abc,server=on"], "-qmp tcp:127.0.0.1:abc,server=on",
         "port 'abc' is not a number from 0 to 65535"),
        (["-qmp", "tcp:127.0.0.1:99999,server=on"], "-qmp tcp:127.0.0.1:99999,server=on",
         "port '99999' is not a number from 0 to 65535"),
        (["-qmp", "tcp:[::1]:4444,server=on"], "-qmp tcp:[::1]:4444,server=on",
         "port ':1]:4444' is not a number from 0 to 65535"),
        (["-qmp", "unix:/q,server=on,tls-creds=t"], "-qmp unix:/q,server=on,tls-creds=t",
         "'tls_creds' option is incompatible with 'unix' address type"),
        (["-qmp", "stdio", "-monitor", "stdio"], "-monitor stdio",
         "cannot use stdio by multiple character devices"),
        (["-qmp", "chardev:"], "-qmp chardev:", ID_MESSAGE),
        (["-qmp", "chardev:1x"], "-qmp chardev:1x", ID_MESSAGE),
        (["-qmp", "chardev:m0", "-qmp-pretty", "chardev:m0"], "-qmp-pretty chardev:m0",
         "Duplicate ID 'm0' for mon"),
        (["-qmp", "stdio", "-qmp", "chardev:compat_monitor0"], "-qmp chardev:compat_monitor0",
         "Duplicate ID 'compat_monitor0' for mon"),
        (["-mon", "c,id=compat_monitor0", "-qmp", "stdio"], "-qmp stdio",
         "Duplicate ID 'compat_monitor0' for mon"),
        (["-chardev", "stdio,id=compat_monitor0", "-qmp", "unix:/q,server=on"],
         "-qmp unix:/q,server=on", "Duplicate ID 'compat_monitor0' for chardev"),
        (["-qmp", "unix:/q,server=on", "-chardev", "stdio,id=compat_monitor0"],
         "-chardev stdio,id=compat_monitor0", "Duplicate ID 'compat_monitor0' for chardev"),
        # ADDR forms and backends QEMU has, refused by vncd
        (["-qmp", "mon:stdio"], "-qmp mon:stdio", "'mon:' is not supported by vncd"),
        (["-monitor", "pty"], "-monitor pty", "'pty' is not supported by vncd"),
        (["-qmp", "null"], "-qmp null", "'null' is not supported by vncd"),
        (["-qmp", "vc:80Cx24C"], "-qmp vc:80Cx24C", "'vc' is not supported by vncd"),
        (["-qmp", "file:/tmp/out"], "-qmp file:/tmp/out", "'file:' is not supported by vncd"),
        (["-qmp", "pipe:/tmp/p"], "-qmp pipe:/tmp/p", "'pipe:' is not supported by vncd"),
        (["-qmp", "udp:127.0.0.1:1"], "-qmp udp:127.0.0.1:1", "'udp:' is not supported by vncd"),
        (["-qmp", "telnet:127.0.0.1:1,server=on"], "-qmp telnet:127.0.0.1:1,server=on",
         "'telnet:' is not supported by vncd"),
        (["-qmp", "websocket:127.0.0.1:1,server=on"], "-qmp websocket:127.0.0.1:1,server=on",
         "'websocket:' is not supported by vncd"),
        (["-qmp", "/dev/ttyS0"], "-qmp /dev/ttyS0", "'/dev/' is not supported by vncd"),
        (["-qmp", "COM1"], "-qmp COM1", "'COM' is not supported by vncd"),
        # -chardev
        (["-chardev", ""], "-chardev ", "chardev: no id specified"),
        (["-chardev", "socket,path=/p,server=on"], "-chardev socket,path=/p,server=on",
         "chardev: no id specified"),
        (["-chardev", "id=c"], "-chardev id=c", 'chardev: "c" missing backend'),
        (["-chardev", "frob,id=c"], "-chardev frob,id=c",
         "'frob' is not a valid char driver name"),
        (["-chardev", "socket,id=1x"], "-chardev socket,id=1x", ID_MESSAGE),
        (["-chardev", "socket,id="], "-chardev socket,id=", ID_MESSAGE),
        (["-chardev", "stdio,id=c", "-chardev", "stdio,id=c"], "-chardev stdio,id=c",
         "Duplicate ID 'c' for chardev"),
        (["-chardev", "socket,id=c,frob=1"], "-chardev socket,id=c,frob=1",
         "Invalid parameter 'frob'"),
        (["-chardev", "socket,id=c,reconnect-ms=1"], "-chardev socket,id=c,reconnect-ms=1",
         "Invalid parameter 'reconnect-ms'"),
        (["-chardev", "socket,id=c,to=abc"], "-chardev socket,id=c,to=abc",
         "Parameter 'to' expects a number"),
        (["-chardev", "socket,id=c,mux=1"], "-chardev socket,id=c,mux=1",
         "Parameter 'mux' expects 'on' or 'off'"),
        (["-chardev", "socket,id=c"], "-chardev socket,id=c", "the socket has no address"),
        (["-chardev", "socket,id=c,server=on,wait=off"], "-chardev socket,id=c,server=on,wait=off",
         "the socket has no address"),
        (["-chardev", "socket,id=c,host=127.0.0.1"], "-chardev socket,id=c,host=127.0.0.1",
         "chardev: socket: no port given"),
        (["-chardev", "socket,id=c,path=/p,host=h,port=1,server=on"],
         "-chardev socket,id=c,path=/p,host=h,port=1,server=on",
         "None or one of 'path', 'fd' or 'host' option required."),
        (["-chardev", "socket,id=c,host=h,port=1,server=on,tls-authz=a"],
         "-chardev socket,id=c,host=h,port=1,server=on,tls-authz=a",
         "'tls_authz' option requires 'tls_creds' option"),
        (["-chardev", "socket,id=c,path=/p,server=on,tls-creds=t,tls-authz=a"],
         "-chardev socket,id=c,path=/p,server=on,tls-creds=t,tls-authz=a",
         "'tls_creds' option is incompatible with 'unix' address type"),
        (["-chardev", "socket,id=c,path=/p,server=off"], "-chardev socket,id=c,path=/p,server=off",
         "vncd's monitor sockets only listen; connecting out (server=off, QEMU's default)"
         " is not supported"),
        (["-chardev", "socket,id=c,path=/p,server=on,wait=off,server=off"],
         "-chardev socket,id=c,path=/p,server=on,wait=off,server=off",
         "'wait' option is incompatible with socket in client connect mode"),
        (["-chardev", "socket,id=c,host=h,port=4452,server=on,to=4440"],
         "-chardev socket,id=c,host=h,port=4452,server=on,to=4440",
         "Parameter 'to' expects a number from 4452 to 65535"),
        (["-chardev", "socket,id=c,host=h,port=1,server=on,to=70000"],
         "-chardev socket,id=c,host=h,port=1,server=on,to=70000",
         "Parameter 'to' expects a number from 1 to 65535"),
        (["-chardev", "socket,id=c,host=h,port=-1,server=on"],
         "-chardev socket,id=c,host=h,port=-1,server=on",
         "port '-1' is not a number from 0 to 65535"),
        (["-chardev", "socket,id=c,host=h,port=,server=on"],
         "-chardev socket,id=c,host=h,port=,server=on",
         "port '' is not a number from 0 to 65535"),
        (["-chardev", "socket,id=c,path=/p,server=on,delay=off,nodelay=on"],
         "-chardev socket,id=c,path=/p,server=on,delay=off,nodelay=on",
         "'delay' and 'nodelay' are mutually exclusive"),
        (["-qmp", "unix:/a=b,server=on"], "-qmp unix:/a=b,server=on", "Invalid parameter '/a'"),
        (["-chardev", "stdio,id=a", "-chardev", "stdio,id=b"], "-chardev stdio,id=b",
         "cannot use stdio by multiple character devices"),
        # keys and backends QEMU has, refused by vncd
        (["-chardev", "file,id=c,path=/x"], "-chardev file,id=c,path=/x",
         "the 'file' chardev backend is not supported by vncd"),
        (["-chardev", "ringbuf,id=c"], "-chardev ringbuf,id=c",
         "the 'ringbuf' chardev backend is not supported by vncd"),
        (["-chardev", "stdio,id=c,signal=off"], "-chardev stdio,id=c,signal=off",
         "Parameter 'signal' is not supported by vncd"),
        (["-chardev", "stdio,id=c,path=/x"], "-chardev stdio,id=c,path=/x",
         "Parameter 'path' is not supported by vncd"),
        (["-chardev", "socket,id=c,path=/x,server=on,size=abc"],
         "-chardev socket,id=c,path=/x,server=on,size=abc",
         "Parameter 'size' is not supported by vncd"),
        (["-qmp", "unix:/q,server=on,backend=stdio"], "-qmp unix:/q,server=on,backend=stdio",
         "Parameter 'path' is not supported by vncd"),
        # -mon
        (["-mon", ""], "-mon ", "Parameter 'chardev' is missing"),
        (["-mon", "mode=control"], "-mon mode=control", "Parameter 'chardev' is missing"),
        (["-mon", "c,mode=bogus"], "-mon c,mode=bogus",
         "Parameter 'mode' does not accept value 'bogus'"),
        (["-mon", "mode=bogus"], "-mon mode=bogus",
         "Parameter 'mode' does not accept value 'bogus'"),
        (["-mon", "c,frob=1"], "-mon c,frob=1", "Invalid parameter 'frob'"),
        (["-mon", "c,default=on"], "-mon c,default=on", "Invalid parameter 'default'"),
        (["-mon", "c,pretty=1"], "-mon c,pretty=1", "Parameter 'pretty' expects 'on' or 'off'"),
        (["-mon", "c,id=1x"], "-mon c,id=1x", ID_MESSAGE),
        (["-mon", "c,id=x", "-mon", "d,id=x"], "-mon d,id=x", "Duplicate ID 'x' for mon"),
    ]

    def test_refusals(self):
        """Every malformed or unsupported monitor option is refused with its message."""
        for argv, option, message in self.TABLE:
            with self.assertRaises(OptionError, msg=argv) as caught:
                parse(*argv)
            self.assertEqual((caught.exception.option, caught.exception.message),
                             (option, message), argv)

    def test_unsupported_keys_named(self):
        """Each key QEMU knows and vncd does not take is refused by name, naming those it takes."""
        for key in CHARDEV_KEYS.values():
            if key.supported:
                continue
            value = {"bool": "on", "number": "1"}.get(key.kind, "x")
            with self.assertRaises(OptionError, msg=key.name) as caught:
                parse("-chardev", f"socket,id=c,host=h,port=1,server=on,{key.name}={value}")
            self.assertEqual(caught.exception.message,
                             f"Parameter '{key.name}' is not supported by vncd")
            self.assertIn("tls-creds", caught.exception.hint)

    def test_unsupported_backends_named(self):
        """Every backend QEMU has and vncd does not is refused by name."""
        for name in sorted(QEMU_BACKENDS - {"socket", "stdio"}):
            with self.assertRaises(OptionError, msg=name) as caught:
                parse("-chardev", f"{name},id=c")
            self.assertEqual(caught.exception.message,
                             f"the '{name}' chardev backend is not supported by vncd")

    def test_limits(self):
        """More than MAX_CHARDEVS chardevs or MAX_MONITORS monitors are refused."""
        argv = []
        for n in range(MAX_CHARDEVS + 1):
            argv += ["-chardev", f"socket,id=c{n},path=/c{n},server=on"]
        with self.assertRaises(OptionError) as caught:
            parse(*argv)
        self.assertEqual(caught.exception.message,
                         f"too many chardevs (at most {MAX_CHARDEVS})")
        argv = []
        for n in range(MAX_MONITORS + 1):
            argv += ["-mon", "c"]
        with self.assertRaises(OptionError) as caught:
            parse(*argv)
        self.assertEqual(caught.exception.message,
                         f"too many monitors (at most {MAX_MONITORS})")
        argv = []
        for n in range(MAX_CHARDEVS + 1):
            argv += ["-qmp", f"unix:/q{n},server=on"]
        with self.assertRaises(OptionError) as caught:
            parse(*argv)
        self.assertIn("too many", caught.exception.message)

    def test_order(self):
        """Options are read in command-line order: the first faulty one is reported."""
        with self.assertRaises(OptionError) as caught:
            parse("-mon", "c,frob=1", "-qmp", "none")
        self.assertEqual(caught.exception.option, "-mon c,frob=1")
        with self.assertRaises(OptionError) as caught:
            parse("-qmp", "none", "-vnc", ":1,frob=on")
        self.assertEqual(caught.exception.option, "-qmp none")


class HelpTests(SynchronousTestCase):
    """-chardev help, -chardev BACKEND,help and -mon ...,help."""

    def test_chardev_help(self):
        """-chardev help (or backend=help) lists the backends vncd serves."""
        for arg in ("help", "?", "help,id=c", "socket,id=c,backend=help"):
            with self.assertRaises(HelpRequest, msg=arg) as caught:
                parse("-chardev", arg)
            self.assertEqual(caught.exception.text,
                             "Available chardev backend types:\n  socket\n  stdio\n")

    def test_chardev_key_help(self):
        """-chardev socket,help lists every key QEMU knows, each with its type."""
        with self.assertRaises(HelpRequest) as caught:
            parse("-chardev", "socket,id=c,path=/p,help")
        text = caught.exception.text
        self.assertTrue(text.startswith("chardev options:\n"))
        for key in CHARDEV_KEYS.values():
            self.assertIn(f"  {key.name}=<", text)
        self.assertIn("  server=<bool (on/off)> - ", text)
        self.assertIn("  reconnect=<num> - QEMU: client reconnect delay; not supported", text)

    def test_mon_help(self):
        """-mon ...,help lists the keys; -mon help names a chardev called help, as in QEMU."""
        with self.assertRaises(HelpRequest) as caught:
            parse("-mon", "c,help")
        self.assertIn("  mode=<str> - ", caught.exception.text)
        self.assertEqual(parse("-mon", "help").monitors[0].chardev, "help")


class CheckTests(SynchronousTestCase):
    """check_monitors: the checks QEMU makes once the objects exist."""

    def setUp(self):
        self.registry = creds.new_registry()
        self.x509_dir = server_dir(os.path.abspath(self.mktemp()))

    def create(self, qom_type, **props):
        self.registry.create(qom_type, props)

    def check(self, *argv):
        """Parse ``argv`` and check it; returns the warnings."""
        seen = []
        check_monitors(parse(*argv), self.registry, warn=seen.append)
        return seen

    def refused(self, *argv):
        with self.assertRaises(OptionError, msg=argv) as caught:
            self.check(*argv)
        return caught.exception

    def test_accepted(self):
        """Server credentials of either kind, and a present authz object, pass without warnings."""
        self.create("tls-creds-anon", id="anon", endpoint="server")
        self.create("tls-creds-x509", id="x509", endpoint="server", dir=self.x509_dir)
        self.create("authz-simple", id="authz", identity="CN=bob")
        self.assertEqual(self.check(
            "-qmp", "tcp:127.0.0.1:1,server=on,tls-creds=anon",
            "-chardev", "socket,id=c,host=127.0.0.1,port=2,server=on,tls-creds=x509,"
            "tls-authz=authz", "-mon", "c"), [])

    def test_creds_faults(self):
        """Missing, wrong-type and client credentials get QEMU's messages at the chardev."""
        self.create("tls-creds-anon", id="client")
        self.create("secret", id="sec", data="x")
        for creds_id, message in [
            ("nope", "No TLS credentials with id 'nope'"),
            ("sec", "Object with id 'sec' is not TLS credentials"),
            ("client", "Expected TLS credentials for a server endpoint"),
        ]:
            chardev = f"socket,id=c,host=h,port=1,server=on,tls-creds={creds_id}"
            err = self.refused("-mon", "c", "-chardev", chardev)
            self.assertEqual((err.option, err.message), (f"-chardev {chardev}", message))

    def test_unused_chardev_checked_and_warned(self):
        """A chardev no monitor uses is still checked, and a warning says it is not opened."""
        err = self.refused("-chardev", "socket,id=c,host=h,port=1,server=on,tls-creds=nope")
        self.assertEqual(err.message, "No TLS credentials with id 'nope'")
        self.assertEqual(self.check("-chardev", "stdio,id=s"), [
            "-chardev stdio,id=s: warning: chardev 's' is not used by any monitor;"
            " vncd does not open it"])

    def test_authz_that_cannot_take_effect(self):
        """tls-authz with anonymous or verify-peer=off credentials is refused, as for -vnc."""
        self.create("tls-creds-anon", id="anon", endpoint="server")
        self.create("tls-creds-x509", id="off", endpoint="server", dir=self.x509_dir,
                    **{"verify-peer": "off"})
        self.create("authz-simple", id="authz", identity="CN=bob")
        err = self.refused("-qmp", "tcp:h:1,server=on,tls-creds=anon,tls-authz=authz")
        self.assertEqual(err.message, "'tls-authz' cannot take effect: TLS credentials 'anon'"
                         " are anonymous, so clients present no certificate to authorise")
        err = self.refused("-qmp", "tcp:h:1,server=on,tls-creds=off,tls-authz=authz")
        self.assertEqual(err.message, "'tls-authz' cannot take effect: TLS credentials 'off'"
                         " have verify-peer=off, so client certificates are not checked")

    def test_authz_warnings(self):
        """A missing or non-authz tls-authz object is accepted with a warning, as for -vnc."""
        self.create("tls-creds-x509", id="x509", endpoint="server", dir=self.x509_dir)
        self.create("secret", id="sec", data="x")
        arg = "tcp:h:1,server=on,tls-creds=x509,tls-authz="
        self.assertEqual(self.check("-qmp", arg + "nope"), [
            f"-qmp {arg}nope: warning: no object with id 'nope' exists (tls-authz); every"
            " client is refused until it is created"])
        self.assertEqual(self.check("-qmp", arg + "sec"), [
            f"-qmp {arg}sec: warning: Object 'sec' is not a QAuthZ subclass (tls-authz);"
            " every client is refused"])

    def test_monitor_faults(self):
        """A missing chardev, a chardev in use and pretty HMP get QEMU's messages, at the -mon."""
        cases = [
            (["-mon", "chardev=missing"], "-mon chardev=missing", 'chardev "missing" not found'),
            (["-mon", "help"], "-mon help", 'chardev "help" not found'),
            (["-qmp", "chardev:nope"], "-qmp chardev:nope", 'chardev "nope" not found'),
            (["-chardev", "stdio,id=s", "-mon", "s", "-mon", "s,mode=control"],
             "-mon s,mode=control", "Device 's' is in use"),
            (["-qmp", "stdio", "-mon", "compat_monitor0"], "-mon compat_monitor0",
             "Device 'compat_monitor0' is in use"),
            (["-chardev", "stdio,id=s", "-mon", "s,pretty=on"], "-mon s,pretty=on",
             "'pretty' is not compatible with HMP monitors"),
            (["-mon", "missing,pretty=on"], "-mon missing,pretty=on",
             'chardev "missing" not found'),
        ]
        for argv, option, message in cases:
            err = self.refused(*argv)
            self.assertEqual((err.option, err.message), (option, message), argv)

    def test_order(self):
        """Every chardev is checked before any monitor, as QEMU opens them first."""
        err = self.refused("-mon", "missing", "-chardev",
                           "socket,id=c,host=h,port=1,server=on,tls-creds=nope")
        self.assertEqual(err.message, "No TLS credentials with id 'nope'")

    def test_long_chardev_label(self):
        """-qmp chardev:ID looks up the first 31 characters of ID, and the hint says so."""
        long_id = "a" * (QEMU_LABEL_LENGTH + 9)
        err = self.refused("-chardev", f"stdio,id={long_id}", "-qmp", f"chardev:{long_id}")
        self.assertEqual(err.message, f'chardev "{long_id[:QEMU_LABEL_LENGTH]}" not found')
        self.assertIn("-mon", err.hint)
        self.assertEqual(self.check("-chardev", f"stdio,id={long_id}",
                                    "-mon", f"chardev={long_id}"), [])

    def test_check_monitor_alone(self):
        """check_monitor checks one monitor with its chardev's objects, without the others."""
        invocation = parse("-chardev", "socket,id=c,host=h,port=1,server=on,tls-creds=nope",
                           "-mon", "c", "-mon", "c")
        with self.assertRaises(OptionError) as caught:
            check_monitor(invocation.monitors[0], invocation, self.registry)
        self.assertEqual(caught.exception.message, "No TLS credentials with id 'nope'")
        with self.assertRaises(OptionError) as caught:
            check_monitor(invocation.monitors[1], invocation, self.registry)
        self.assertEqual(caught.exception.message, "Device 'c' is in use")
        self.assertIsNone(check_chardev(parse("-chardev", "stdio,id=s").chardevs[0],
                                        self.registry))


class TranslationTests(SynchronousTestCase):
    """-print-translation writes monitors and chardevs back so that they parse the same."""

    #: (argv, the printed options)
    TABLE = [
        (["-qmp", "unix:/q,server,nowait"], "-qmp unix:/q,server=on,wait=off"),
        (["-qmp", "unix:path=/a=b,,c,server=on"], "-qmp unix:path=/a=b,,c,server=on,wait=on"),
        (["-qmp", "unix:/p,server=on,delay=off"], "-qmp unix:/p,server=on,wait=on,nodelay=on"),
        (["-qmp-pretty", "tcp::44,server=on,ipv4=yes,to=50,nodelay"],
         "-qmp-pretty tcp::44,server=on,wait=on,to=50,ipv4=on,nodelay=on"),
        (["-monitor", "tcp:127.0.0.1:44,server=on,host=::1"],
         "-monitor tcp::44,host=::1,server=on,wait=on"),
        (["-monitor", "none", "-monitor", "stdio"], "-monitor stdio"),
        (["-chardev", "socket,id=c,host=h,port=1,server,tls-creds=t,tls-authz=a",
          "-mon", "c,mode=control,pretty=on,id=m"],
         "-chardev socket,id=c,host=h,port=1,server=on,wait=on,tls-creds=t,tls-authz=a"
         " -mon c,mode=control,pretty=on,id=m"),
        (["-mon", "c", "-chardev", "stdio,id=c"], "-chardev stdio,id=c -mon c,mode=readline"),
        (["-qmp", "chardev:c", "-qmp", "unix:/q,server=on", "-chardev", "stdio,id=c"],
         "-qmp chardev:c -qmp unix:/q,server=on,wait=on -chardev stdio,id=c"),
        (["-qmp", "stdio", "-chardev", "socket,id=c,path=/c,server=on", "-mon", "c"],
         "-qmp stdio -chardev socket,id=c,path=/c,server=on,wait=on -mon c,mode=readline"),
    ]

    def test_printed(self):
        """Each option is printed in its own form with its values written out, keeping the ids."""
        for argv, printed in self.TABLE:
            line = format_translation(parse(*argv), registry=creds.new_registry())
            self.assertEqual(line, "vncd " + printed, argv)

    def test_roundtrip_table(self):
        """Every accepted form parses back from its translation to the same chardevs, monitors."""
        for argv, _, _ in AcceptedTests.TABLE:
            invocation = parse(*argv)
            again = roundtrip(invocation)
            self.assertEqual(sourceless(again), sourceless(invocation), argv)
            self.assertEqual(roundtrip(again), again)

    def test_inconsistent_invocation(self):
        """A generated chardev without its monitor (built by hand) is written as -chardev."""
        invocation = Invocation(chardevs=[ChardevConfig("compat_monitor0", "stdio", "",
                                                        generated=True)])
        self.assertEqual(format_monitor_options(invocation),
                         ["-chardev", "stdio,id=compat_monitor0"])


#: Option words and fragments that hit the monitor parsers' corners.
FRAGMENTS = st.sampled_from([
    "unix:", "tcp:", "tcp::", "stdio", "chardev:", "none", "socket", "server", "nowait",
    "id=c", "path=/p", "host=h", "port=1", "port=", "to=9", "ipv4=on", "tls-creds=t",
    "tls-authz=a", "mode=control", "pretty", ",", ",,", "=", ":", "help", "mon:", "backend=",
    "c", "wait=off", "server=off", "compat_monitor0",
])
OPTION_NAMES = st.sampled_from(["-qmp", "-qmp-pretty", "-monitor", "-chardev", "-mon"])
ARGUMENTS = st.lists(FRAGMENTS | st.text(max_size=8), max_size=8).map("".join)


@st.composite
def sockets(draw, chardev_id, generated):
    """A valid listening socket chardev."""
    if draw(st.booleans()):
        return ChardevConfig(chardev_id, "socket", "", unix(draw(st.text(min_size=1))),
                             server=True, wait=draw(st.booleans()),
                             nodelay=draw(st.booleans()), generated=generated)
    port = draw(st.integers(0, MAX_PORT))
    return ChardevConfig(
        chardev_id, "socket", "", tcp(draw(st.text(max_size=70)), port), server=True,
        wait=draw(st.booleans()), to=draw(st.none() | st.integers(port, MAX_PORT)),
        ipv4=draw(st.none() | st.booleans()), ipv6=draw(st.none() | st.booleans()),
        nodelay=draw(st.booleans()), tls_creds=draw(st.none() | st.just("t")),
        tls_authz=None, generated=generated)


@st.composite
def invocations(draw):
    """Chardevs and monitors as the parser makes them (ids in QEMU's scheme)."""
    invocation = Invocation()
    compat = 0          # -qmp/-qmp-pretty/-monitor options so far
    for n in range(draw(st.integers(0, 4))):
        form = draw(st.sampled_from(["addr", "chardev:", "-mon"]))
        option = draw(st.sampled_from(["qmp", "qmp-pretty", "monitor"]))
        mode = "readline" if option == "monitor" else "control"
        if form == "addr":
            chardev = draw(sockets(f"compat_monitor{compat}", True))
            monitor = MonitorConfig(chardev.id, mode, option == "qmp-pretty", id=chardev.id,
                                    option=option)
        else:
            chardev = draw(sockets(f"c{n}", False))
            if form == "chardev:":
                monitor = MonitorConfig(chardev.id, mode, option == "qmp-pretty",
                                        id=chardev.id, option=option)
            else:
                monitor = MonitorConfig(chardev.id, draw(st.sampled_from(["readline",
                                                                          "control"])),
                                        id=draw(st.none() | st.just(f"m{n}")))
        compat += monitor.option != "mon"
        invocation.chardevs.append(chardev)
        invocation.monitors.append(monitor)
    return invocation


class PropertyTests(SynchronousTestCase):
    """Garbage never escapes as anything but OptionError or HelpRequest; valid data round-trips."""

    @given(st.lists(st.tuples(OPTION_NAMES, ARGUMENTS), max_size=6))
    @settings(max_examples=300)
    def test_garbage(self, options):
        """Any monitor options are parsed, checked and translated, or refused with OptionError."""
        argv = [word for pair in options for word in pair]
        try:
            invocation = parse(*argv, warnings=[])
            check_monitors(invocation, creds.new_registry(), warn=lambda line: None)
            format_translation(invocation, registry=creds.new_registry())
        except (OptionError, HelpRequest):
            pass

    @given(st.text(max_size=64))
    def test_garbage_tcp_address(self, text):
        """Any tcp: address is split or refused, never crashes."""
        try:
            parse("-qmp", "tcp:" + text)
        except OptionError:
            pass

    @given(invocations())
    @settings(max_examples=200)
    def test_roundtrip(self, invocation):
        """A translation parses back to the same chardevs and monitors."""
        self.assertEqual(sourceless(roundtrip(invocation)), sourceless(invocation))

    def test_parse_chardev_alone(self):
        """parse_chardev needs only the chardevs made before it."""
        chardev = parse_chardev("socket,id=c,path=/p,server=on", chardevs=[])
        self.assertEqual(chardev.source, "-chardev socket,id=c,path=/p,server=on")
