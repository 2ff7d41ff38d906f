"""Tests for compat.vnc: the -vnc vocabulary, QEMU's defaults, checks and messages."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import creds
from compat.config import ListenAddress
from compat.errors import HelpRequest, OptionError
from compat.objects import ID_MESSAGE
from compat.vnc import (
    MAX_CONNECTIONS, MAX_DISPLAY_NUMBER, MAX_KEY_DELAY_MS, SASL_MESSAGE, VNC_KEYS,
    auto_id, check_display, parse_vnc,
)
from creds.objects import Prop
from creds.tlscreds import BASE_PROPS, TLSCreds
from tests.compat.helpers import client_dir, server_dir


#: vncd's message for a -vnc option without an address.
NO_ADDRESS = "no listen address: give [HOST]:N, [IPV6]:N, unix:PATH, or none"


def vnc(arg, used=(), warnings=None):
    display, objects = parse_vnc(arg, used_ids=list(used),
                                 warn=None if warnings is None else warnings.append)
    return display


def tcp(host, port):
    return ListenAddress("tcp", host, port)


class AddressTests(SynchronousTestCase):
    """Listen and websocket addresses, as QEMU's vnc_display_get_address reads them."""

    #: (argument, listen addresses, websocket addresses)
    TABLE = [
        (":1", (tcp("", 5901),), ()),
        ("127.0.0.1:91", (tcp("127.0.0.1", 5991),), ()),
        ("[::1]:2", (tcp("::1", 5902),), ()),
        ("::1:2", (tcp("::1", 5902),), ()),
        ("localhost:0", (tcp("localhost", 5900),), ()),
        ("127.0.0.1:+91", (tcp("127.0.0.1", 5991),), ()),
        ("127.0.0.1:091", (tcp("127.0.0.1", 5991),), ()),
        (f":{MAX_DISPLAY_NUMBER}", (tcp("", 65535),), ()),
        ("unix:/tmp/s,,x", (ListenAddress("unix", "/tmp/s,x"),), ()),
        ("none", (), ()),
        ("none,websocket=on", (), ()),
        (":1,vnc=127.0.0.1:2", (tcp("", 5901), tcp("127.0.0.1", 5902)), ()),
        (":1,vnc=none", (), ()),
        ("127.0.0.1:5500,reverse=on", (tcp("127.0.0.1", 5500),), ()),
        ("127.0.0.1:91,websocket=on", (tcp("127.0.0.1", 5991),), (tcp("127.0.0.1", 5791),)),
        ("127.0.0.1:91,websocket", (tcp("127.0.0.1", 5991),), (tcp("127.0.0.1", 5791),)),
        (":91,websocket=on", (tcp("", 5991),), (tcp("", 5791),)),
        ("127.0.0.1:91,websocket=5799", (tcp("127.0.0.1", 5991),), (tcp("127.0.0.1", 5799),)),
        ("127.0.0.1:91,websocket=:5799", (tcp("127.0.0.1", 5991),), (tcp("127.0.0.1", 5799),)),
        ("127.0.0.1:91,websocket=localhost:5799", (tcp("127.0.0.1", 5991),),
         (tcp("localhost", 5799),)),
        ("127.0.0.1:91,websocket=[::1]:5799", (tcp("127.0.0.1", 5991),), (tcp("::1", 5799),)),
        ("127.0.0.1:91,websocket=127.0.0.1:5799,websocket=127.0.0.1:5798",
         (tcp("127.0.0.1", 5991),), (tcp("127.0.0.1", 5799), tcp("127.0.0.1", 5798))),
        ("unix:/tmp/s,websocket=on", (ListenAddress("unix", "/tmp/s"),), (tcp("", 5700),)),
    ]

    def test_table(self):
        """Each address form gives QEMU's listeners (websocket host inherited as QEMU does)."""
        for arg, listen, websocket in self.TABLE:
            display = vnc(arg)
            self.assertEqual((display.listen, display.websocket), (listen, websocket), arg)

    #: (argument, QEMU 7.2's message)
    ERRORS = [
        ("127.0.0.1", "no vnc port specified"),
        ("127.0.0.1,share=foo", "no vnc port specified"),
        ("127.0.0.1:", "vnc port cannot be empty"),
        ("127.0.0.1:abc", "can't convert to a number: abc"),
        ("127.0.0.1:-5", "can't convert to a number: -5"),
        ("127.0.0.1:0x10", "can't convert to a number: 0x10"),
        ("127.0.0.1:99999", "port 99999 out of range"),
        (":65000", "port 65000 out of range"),
        (":1,vnc=none", None),
        ("127.0.0.1:70000,vnc=127.0.0.1:92", "port 70000 out of range"),
        ("unix:/tmp/x,to=5", "Port range not support with UNIX socket"),
        ("127.0.0.1:91,vnc=127.0.0.1:92,websocket=on", "explicit websocket port is required"),
        ("unix:/tmp/q,websocket=unix:/tmp/w", "UNIX sockets not supported with websock"),
        ("127.0.0.1:91,websocket=abc", "can't convert to a number: abc"),
        ("127.0.0.1:91,websocket=70000", "port 70000 out of range"),
        # QEMU 7.2 runs these without listening anywhere and without a word
        # (tests.compat.test_qemu_compare); vncd refuses them.
        ("", NO_ADDRESS),
        ("share=foo", NO_ADDRESS),
        ("password=on,websocket=5700", NO_ADDRESS),
    ]

    def test_errors(self):
        """Each bad address gets QEMU's message (vncd's where QEMU has none), located at
        the -vnc option."""
        for arg, message in self.ERRORS:
            if message is None:
                vnc(arg)
                continue
            with self.assertRaises(OptionError, msg=arg) as caught:
                vnc(arg)
            self.assertEqual(caught.exception.message, message, arg)
            self.assertEqual(caught.exception.option, f"-vnc {arg}")


CONNECTIONS_RANGE = f"Parameter 'connections' expects a number from 1 to {MAX_CONNECTIONS}"


class KeyTests(SynchronousTestCase):
    """Keys, value types, defaults and vncd's ranges."""

    def test_defaults(self):
        """A bare display has QEMU's defaults."""
        d = vnc(":1")
        self.assertEqual(
            (d.id, d.source, d.to, d.ipv4, d.ipv6, d.tls_creds, d.tls_authz, d.password,
             d.password_secret, d.share, d.connections, d.reverse, d.lossy, d.non_adaptive,
             d.key_delay_ms, d.sasl, d.sasl_authz, d.ignored),
            ("default", "-vnc :1", None, None, None, None, None, False, None,
             "allow-exclusive", 32, False, False, False, 10, False, None, ()),
        )

    def test_values(self):
        """Every modern key lands in its DisplayConfig field."""
        d = vnc(":1,to=5,ipv4=on,ipv6=off,tls-creds=t,tls-authz=a,password=yes,"
                "share=force-shared,connections=0x10,lossy=true,non-adaptive=y,"
                "key-delay-ms=010,id=main")
        self.assertEqual(
            (d.id, d.to, d.ipv4, d.ipv6, d.tls_creds, d.tls_authz, d.password, d.share,
             d.connections, d.lossy, d.non_adaptive, d.key_delay_ms),
            ("main", 5, True, False, "t", "a", True, "force-shared", 16, True, True, 8),
        )
        d = vnc(":1,password-secret=s,sasl=off,reverse=no")
        self.assertEqual((d.password, d.password_secret, d.sasl, d.reverse),
                         (False, "s", False, False))

    def test_last_value_wins(self):
        """A repeated single-valued key takes its last value."""
        self.assertEqual(vnc(":1,share=ignore,share=force-shared").share, "force-shared")

    def test_numbers(self):
        """Numbers are read as QEMU reads them: sign, hex, octal, leading space."""
        for text, value in [("+5", 5), (" 5", 5), ("010", 8), ("0X1f", 31), ("0", None)]:
            self.assertEqual(vnc(f":1,to={text}").to, value, text)

    def test_to_zero_means_unset(self):
        """to=0 is no range at all, as in QEMU."""
        self.assertIsNone(vnc(":1,to=0").to)

    #: (argument, message)
    ERRORS = [
        (":1,frob=on", "Invalid parameter 'frob'"),
        ("unix:/tmp/a=b", "Invalid parameter 'unix:/tmp/a'"),
        (":1,=5", "Invalid parameter ''"),
        (":1,password=maybe", "Parameter 'password' expects 'on' or 'off'"),
        (":1,connections=abc", "Parameter 'connections' expects a number"),
        (":1,connections=", "Parameter 'connections' expects a number"),
        (":1,connections=5 ", "Parameter 'connections' expects a number"),
        (":1,connections=08", "Parameter 'connections' expects a number"),
        (":1,connections=99999999999999999999",
         "Value '99999999999999999999' is too large for parameter 'connections'"),
        (":1,to=abc", "Parameter 'to' expects a number"),
        (":1,key-delay-ms=x", "Parameter 'key-delay-ms' expects a number"),
        (":1,head=x", "Parameter 'head' expects a number"),
        (":1,lock-key-sync=maybe", "Parameter 'lock-key-sync' expects 'on' or 'off'"),
        (":1,id=1x", ID_MESSAGE),
        (":1,id=1x,frob", ID_MESSAGE),
        (":1,password=on,password-secret=x",
         "'password' flag is redundant with 'password-secret'"),
        (":1,password=off,password-secret=x",
         "'password' flag is redundant with 'password-secret'"),
        (":1,non-adaptive", "Invalid parameter 'n-adaptive'"),
        (":1,connections=0", CONNECTIONS_RANGE),
        (":1,connections=-1", CONNECTIONS_RANGE),
        (f":1,connections={MAX_CONNECTIONS + 1}", CONNECTIONS_RANGE),
        (":1,key-delay-ms=-3",
         f"Parameter 'key-delay-ms' expects a number from 0 to {MAX_KEY_DELAY_MS}"),
        (f":1,to={MAX_DISPLAY_NUMBER + 1}",
         f"Parameter 'to' expects a number from 0 to {MAX_DISPLAY_NUMBER}"),
    ]

    def test_errors(self):
        """Each bad key or value gets QEMU's message (or vncd's, for ranges)."""
        for arg, message in self.ERRORS:
            with self.assertRaises(OptionError, msg=arg) as caught:
                vnc(arg)
            self.assertEqual(caught.exception.message, message, arg)

    def test_short_form_no_hint(self):
        """'non-adaptive' as a flag is QEMU's n-adaptive=off; vncd's hint explains it."""
        with self.assertRaises(OptionError) as caught:
            vnc(":1,non-adaptive")
        self.assertIn("non-adaptive=on", caught.exception.hint)

    def test_error_stops_before_later_warnings(self):
        """An invalid key stops parsing: short-form flags after it do not warn (QEMU order)."""
        seen = []
        self.assertRaises(OptionError, vnc, ":1,lossy,frob,reverse", warnings=seen)
        self.assertEqual([w.split("\n")[0] for w in seen],
                         ["short-form boolean option 'lossy' deprecated",
                          "short-form boolean option 'frob' deprecated"])

    def test_qemu_only_keys(self):
        """QEMU-only keys are accepted, listed in ignored, and warned about once each."""
        seen = []
        d = vnc(":1,audiodev=snd0,power-control=on,head=1,display=vga,lock-key-sync=off,"
                "audiodev=snd1", warnings=seen)
        self.assertEqual(d.ignored,
                         ("audiodev", "power-control", "head", "display", "lock-key-sync"))
        self.assertEqual(seen[0], "'audiodev' has no effect in vncd (it only applies to QEMU);"
                                  " ignored")
        self.assertEqual(len(seen), 5)

    def test_help(self):
        """-vnc help and a help element list every key."""
        for arg in ("help", ":1,help", "?"):
            with self.assertRaises(HelpRequest) as caught:
                vnc(arg)
            for key in VNC_KEYS:
                self.assertIn(f"  {key}=<", caught.exception.text)


class IdTests(SynchronousTestCase):
    """Display ids: explicit, automatic (QEMU's vnc_auto_assign_id), unique."""

    def test_auto(self):
        """Automatic ids are default, vnc2, vnc3 ..., skipping ids in use."""
        self.assertEqual(auto_id([]), "default")
        self.assertEqual(auto_id(["default"]), "vnc2")
        self.assertEqual(auto_id(["default", "vnc2", "vnc3"]), "vnc4")
        self.assertEqual(auto_id(["vnc2"]), "default")
        self.assertEqual(auto_id(["default", "vnc3"]), "vnc2")

    def test_parse_assigns(self):
        """A display without id= gets the next automatic id."""
        self.assertEqual(vnc(":1", used=["default"]).id, "vnc2")
        self.assertEqual(vnc(":1,id=x", used=["default"]).id, "x")

    def test_duplicate(self):
        """An id already used is QEMU's duplicate error."""
        with self.assertRaises(OptionError) as caught:
            vnc(":2,id=default", used=["default"])
        self.assertEqual(caught.exception.message, "Duplicate ID 'default' for vnc")


class PskCreds(TLSCreds):
    """A TLS credentials type vncd's -vnc cannot use (QEMU's tls-creds-psk)."""

    qom_type = "tls-creds-psk"
    kind = "psk"
    props = BASE_PROPS + (Prop("username"),)

    def complete(self) -> None:
        """Nothing to load: only the type matters to the display check."""


class CheckDisplayTests(SynchronousTestCase):
    """check_display: the object-dependent checks of vnc_display_open, in QEMU's order."""

    def setUp(self):
        self.registry = creds.new_registry()
        self.registry.register_type(PskCreds)
        make = self.registry.create
        make("secret", {"id": "sec0", "data": "password"})
        make("secret", {"id": "bin", "data": "/w==", "format": "base64"})
        make("tls-creds-anon", {"id": "anon", "endpoint": "server"})
        make("tls-creds-anon", {"id": "anonc"})
        make("tls-creds-x509", {"id": "x509", "endpoint": "server",
                                "dir": server_dir(self.mktemp())})
        make("tls-creds-x509", {"id": "x509nv", "endpoint": "server", "verify-peer": "off",
                                "dir": server_dir(self.mktemp())})
        make("tls-creds-x509", {"id": "x509c", "dir": client_dir(self.mktemp())})
        make("tls-creds-psk", {"id": "psk", "endpoint": "server"})
        make("authz-simple", {"id": "authz0", "identity": "CN=bob"})

    def check(self, arg):
        warnings = []
        check_display(vnc(arg), self.registry, warn=warnings.append)
        return warnings

    #: (argument, QEMU's message); the first fault in QEMU's order wins.
    ERRORS = [
        (":1,password-secret=nope", "No secret with id 'nope'"),
        (":1,password-secret=anon", "Object with id 'anon' is not a secret"),
        (":1,password-secret=bin", "Data from secret bin is not valid UTF-8"),
        (":1,sasl=on", SASL_MESSAGE),
        (":1,tls-creds=nope", "No TLS credentials with id 'nope'"),
        (":1,tls-creds=", "No TLS credentials with id ''"),
        (":1,tls-creds=sec0", "Object with id 'sec0' is not TLS credentials"),
        (":1,tls-creds=anonc", "Expected TLS credentials for a server endpoint"),
        (":1,tls-creds=x509c", "Expected TLS credentials for a server endpoint"),
        (":1,tls-authz=authz0", "'tls-authz' provided but TLS is not enabled"),
        (":1,tls-authz=", "'tls-authz' provided but TLS is not enabled"),
        (":1,sasl-authz=authz0", "'sasl-authz' provided but SASL auth is not enabled"),
        (":1,share=foo", "unknown vnc share= option"),
        ("none,share=foo", "unknown vnc share= option"),
        (":1,tls-creds=psk", "Unsupported TLS cred type tls-creds-psk"),
        (":1,reverse=on,websocket=5700", "Cannot use websockets in reverse mode"),
        (":1,reverse=on,vnc=:2", "Expected a single address in reverse mode"),
        # order: each row has two faults; QEMU reports the first in its order
        (":1,share=foo,tls-creds=nope,password-secret=nope", "No secret with id 'nope'"),
        (":1,share=foo,tls-creds=nope,sasl=on", SASL_MESSAGE),
        (":1,share=foo,tls-authz=a,sasl-authz=b", "'tls-authz' provided but TLS is not enabled"),
        (":1,share=foo,sasl-authz=b", "'sasl-authz' provided but SASL auth is not enabled"),
        (":1,share=foo,tls-creds=psk", "unknown vnc share= option"),
        (":1,reverse=on,websocket=5700,share=foo", "unknown vnc share= option"),
    ]

    def test_errors(self):
        """Each fault gets QEMU's message, and the first in QEMU's order is reported."""
        for arg, message in self.ERRORS:
            with self.assertRaises(OptionError, msg=arg) as caught:
                self.check(arg)
            self.assertEqual(caught.exception.message, message, arg)
            self.assertEqual(caught.exception.option, f"-vnc {arg}")

    def test_accepted(self):
        """Valid combinations pass without warnings."""
        for arg in (":1", ":1,tls-creds=anon", ":1,tls-creds=x509,tls-authz=authz0",
                    ":1,tls-creds=x509nv", "none,password=on", ":1,password-secret=sec0",
                    ":1,tls-creds=x509,password-secret=sec0,share=ignore",
                    "none,reverse=on", "127.0.0.1:5500,reverse=on", ":1,sasl=off"):
            self.assertEqual(self.check(arg), [], arg)

    def test_authz_without_effect_not_warned(self):
        """tls-authz with credentials that never check clients is left to the service."""
        for creds_id in ("anon", "x509nv"):
            self.assertEqual(self.check(f":1,tls-creds={creds_id},tls-authz=nope"), [])

    def test_authz_missing(self):
        """A tls-authz naming no object, or a non-authz object, warns that all are refused."""
        [warning] = self.check(":1,tls-creds=x509,tls-authz=nope")
        self.assertEqual(warning, "-vnc :1,tls-creds=x509,tls-authz=nope: warning: no object"
                                  " with id 'nope' exists (tls-authz); every client is refused"
                                  " until it is created")
        self.assertIn("Object 'sec0' is not a QAuthZ subclass",
                      self.check(":1,tls-creds=x509,tls-authz=sec0")[0])


    def test_refuses_everyone(self):
        """A password display without a password and an empty deny list warn at start-up,
        naming the monitor command that lets clients in."""
        [warning] = self.check(":1,password=on")
        self.assertIn("no password is set", warning)
        self.assertIn("set_password vnc PASSWORD", warning)
        self.assertIn("change-vnc-password", warning)
        self.registry.create("authz-list", {"id": "vnc.x509dname", "policy": "deny"})
        [warning] = self.check(":1,tls-creds=x509,tls-authz=vnc.x509dname")
        self.assertEqual(warning, "-vnc :1,tls-creds=x509,tls-authz=vnc.x509dname: warning: the"
                                  " list 'vnc.x509dname' (tls-authz) is empty with policy deny:"
                                  " every client is refused until the monitor changes it (HMP:"
                                  " acl_add vnc.x509dname 'CN=name,O=org' allow, or acl_policy"
                                  " vnc.x509dname allow)")
        self.registry.get("vnc.x509dname").append("CN=bob", "allow")
        self.assertEqual(self.check(":1,tls-creds=x509,tls-authz=vnc.x509dname"), [])

    def test_misspelt_key(self):
        """A misspelt key gets 'did you mean'; an unrelated one does not."""
        with self.assertRaises(OptionError) as caught:
            vnc(":1,pasword=on")
        self.assertEqual(str(caught.exception),
                         "-vnc :1,pasword=on: Invalid parameter 'pasword'"
                         " (hint: did you mean 'password'?)")
        with self.assertRaises(OptionError) as caught:
            vnc(":1,frobnicate=on")
        self.assertIsNone(caught.exception.hint)


class PropertyTests(SynchronousTestCase):
    """Garbage -vnc arguments never raise anything but OptionError or HelpRequest."""

    @given(st.text(max_size=200))
    def test_garbage(self, arg):
        """Random text is parsed or refused with OptionError."""
        try:
            vnc(arg, warnings=[])
        except (OptionError, HelpRequest):
            pass

    @given(st.lists(st.tuples(st.sampled_from(sorted(VNC_KEYS)),
                              st.sampled_from(["on", "off", "", "1", "-1", ":1", "unix:/x",
                                               "none", "[::1]:5", "x", "0x10", "5700"])),
                    max_size=8))
    def test_random_keys(self, items):
        """Random combinations of real keys and plausible values never crash."""
        arg = ",".join(f"{k}={v}" for k, v in items)
        try:
            vnc(arg, warnings=[])
        except OptionError:
            pass
