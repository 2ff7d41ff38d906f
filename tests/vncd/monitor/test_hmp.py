"""HMP: command lines parsed and run as QEMU's human monitor does, and its line discipline."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.vncd.monitor.fakes import display
from tests.vncd.monitor.test_control import MonitorTestCase
from vncd.monitor.hmp import PROMPT, HMPConnection, HMPInterpreter, PasswordPrompt
from vncd.monitor.limits import MonitorLimits


class InterpreterTests(MonitorTestCase):

    def setUp(self) -> None:
        super().setUp()
        self.hmp = HMPInterpreter(self.monitor)

    def run_line(self, line: str) -> str:
        results = []
        self.hmp.run(line).addBoth(results.append)
        self.assertEqual(len(results), 1)
        return results[0]

    def test_parse_errors(self):
        """Unknown commands, missing and extra arguments get QEMU's lines."""
        self.assertEqual(self.run_line("bogus x"), "unknown command: 'bogus'\n")
        self.assertEqual(self.run_line("set_password"), 'set_password: string expected\n'
                         'Try "help set_password" for more information\n')
        self.assertEqual(self.run_line("object_del a b"),
                         "object_del: extraneous characters at the end of line\n"
                         'Try "help object_del" for more information\n')
        self.assertEqual(self.run_line('acl_show "unterminated'),
                         'acl_show: unterminated string\n'
                         'Try "help acl_show" for more information\n')
        self.assertEqual(self.run_line(""), "")

    def test_help(self):
        """help lists every command; help CMD and help info answer for one."""
        self.assertIn("set_password protocol password [-d display] [action-if-connected]"
                      " -- set vnc password\n", self.run_line("help"))
        self.assertEqual(self.run_line("help object_del"),
                         "object_del id -- destroy QOM object\n")
        self.assertIn("info vnc  -- show the vnc server status\n", self.run_line("help info"))
        self.assertEqual(self.run_line("? nope"), "unknown command: 'nope'\n")

    def test_info(self):
        """info vnc prints QEMU's text; info version vncd's version."""
        self.serve(display(password=True))
        self.assertEqual(self.run_line("info vnc"),
                         "default:\n  Server: 127.0.0.1:5901 (ipv4)\n    Auth: vnc (Sub: none)\n")
        self.assertEqual(self.run_line("info version"), "0.1.0 (vncd)\n")
        self.assertEqual(self.run_line("info nope"), "unknown command: 'info nope'\n")

    def test_objects(self):
        """object_add takes -object's syntax; errors print as 'Error: ...'."""
        self.assertEqual(self.run_line("object_add secret,id=s5,data=x"), "")
        self.assertEqual(self.run_line("object_add secret,id=s5,data=x"),
                         "Error: attempt to add duplicate property 's5' to object"
                         " (type 'container')\n")
        self.assertEqual(self.run_line("object_del s5"), "")
        self.assertEqual(self.run_line("object_del s5"), "Error: object 's5' not found\n")
        self.assertTrue(self.run_line("object_add nope,id=x").startswith("Error: "))

    def test_passwords(self):
        """change vnc password, set_password with -d, expire_password."""
        d = display(password=True)
        other = display("two", password=True)
        self.serve(d, other)
        self.assertEqual(self.run_line("change vnc password abc"), "")
        self.assertEqual(d.server.security.password, b"abc")
        self.assertEqual(self.run_line('set_password vnc "two words" -d two keep'), "")
        self.assertEqual(other.server.security.password, b"two words")
        self.assertEqual(self.run_line("expire_password vnc +10 -d two"), "")
        self.assertEqual(other.server.security.password_expires, self.now + 10)
        self.assertEqual(self.run_line("change vnc passwd xyz"), "")
        self.assertEqual(d.server.security.password, b"xyz")
        self.assertEqual(self.run_line("change vnc bogus"), "Expected 'password' after 'vnc'\n")
        self.assertEqual(self.run_line("change ide0 /x.iso"), "Error: Device 'ide0' not found\n")
        self.assertTrue(self.run_line("set_password vnc \"\"").startswith(
            "Error: Could not set password: the VNC password is empty"))

    def test_password_prompt(self):
        """change vnc password without a password asks for one."""
        d = display(password=True)
        self.serve(d)
        failure = self.run_line("change vnc password")
        failure.trap(PasswordPrompt)
        results = []
        failure.value.then("secret").addCallback(results.append)
        self.assertEqual(results, [""])
        self.assertEqual(d.server.security.password, b"secret")

    def test_acl(self):
        """The legacy acl_* commands edit an authz-list as QEMU 4.0-5.2 did."""
        self.registry.create("authz-list", {"id": "vnc.x509dname", "policy": "deny"})
        run = self.run_line
        self.assertEqual(run("acl_show vnc.x509dname"), "policy: deny\n")
        self.assertEqual(run("acl_add vnc.x509dname CN=alice allow"),
                         "acl: added rule at position 1\n")
        self.assertEqual(run("acl_add vnc.x509dname CN=* deny"),
                         "acl: added rule at position 2\n")
        self.assertEqual(run("acl_add vnc.x509dname CN=bob allow 1"),
                         "acl: added rule at position 1\n")
        self.assertEqual(run("acl_show vnc.x509dname"),
                         "policy: deny\n1: allow CN=bob\n2: allow CN=alice\n3: deny CN=*\n")
        acl = self.registry.get("vnc.x509dname")
        self.assertTrue(acl.is_allowed("CN=alice"))
        self.assertFalse(acl.is_allowed("CN=carol"))
        self.assertEqual([r.format for r in acl.rules()], ["exact", "exact", "glob"])
        self.assertEqual(run("acl_remove vnc.x509dname CN=alice"),
                         "acl: removed rule at position 2\n")
        self.assertEqual(run("acl_remove vnc.x509dname CN=alice"), "acl: no matching acl entry\n")
        self.assertEqual(run("acl_policy vnc.x509dname allow"), "acl: policy set to 'allow'\n")
        self.assertEqual(run("acl_policy vnc.x509dname maybe"),
                         "acl: unknown policy 'maybe', expected 'deny' or 'allow'\n")
        self.assertEqual(run("acl_add vnc.x509dname x maybe"),
                         "acl: unknown policy 'maybe', expected 'deny' or 'allow'\n")
        self.assertEqual(run("acl_add vnc.x509dname x allow 0"), "acl: unable to add acl entry\n")
        self.assertEqual(run("acl_reset vnc.x509dname"), "acl: removed all rules\n")
        self.assertEqual(run("acl_show vnc.x509dname"), "policy: deny\n")
        self.assertEqual(run("acl_show nope"), "acl: unknown list 'nope'\n")

    def test_quit(self):
        """quit prints nothing and asks vncd to stop."""
        self.assertEqual(self.run_line("q"), "")
        self.assertTrue(self.monitor.quitting)


class ConnectionTests(TestCase):

    def test_banner_and_prompt(self):
        """A banner, the (qemu) prompt, CR LF line ends."""
        conn = HMPConnection("vncd 0.1.0 monitor")
        self.assertEqual(conn.data_to_send(), b"vncd 0.1.0 monitor\r\n" + PROMPT.encode())

    def test_lines(self):
        """Lines run one at a time; CR LF and LF both end a line."""
        conn = HMPConnection("b")
        conn.data_to_send()
        conn.receive_data(b"info vnc\r\nhelp\npart")
        self.assertEqual(conn.next_line(), ("info vnc", None))
        self.assertIsNone(conn.next_line())
        conn.finished("out\n")
        self.assertEqual(conn.data_to_send(), b"out\r\n(qemu) ")
        self.assertEqual(conn.next_line(), ("help", None))
        self.assertEqual(conn.pending, 1)

    def test_password_prompt(self):
        """After a password prompt the next line is the answer, not a command."""
        conn = HMPConnection("b")
        conn.data_to_send()
        conn.receive_data(b"change vnc password\n")
        conn.next_line()
        then = object()
        conn.prompt_password(then)
        self.assertEqual(conn.data_to_send(), b"Password: ")
        conn.receive_data(b"s3cret\n")
        self.assertEqual(conn.next_line(), ("s3cret", then))

    def test_long_lines(self):
        """A line over the limit is refused and dropped, without holding it."""
        conn = HMPConnection("b", limits=MonitorLimits(max_hmp_line=16))
        conn.data_to_send()
        conn.receive_data(b"x" * 40)
        self.assertLessEqual(len(conn._buffer), 16)
        conn.receive_data(b"\ninfo vnc\n")
        self.assertEqual(conn.next_line(), ("info vnc", None))
        self.assertIn(b"longer than 16 characters", conn.data_to_send())
