"""The manual pages and ``vncd -h`` describe every option that exists.

The lists come from the code (the command-line options, the ``-vnc``
keys, the ``-chardev`` and ``-mon`` keys, the monitor's commands and
events, every object type and its properties, the screen kinds), so a
new option or command without documentation fails here.
"""

from __future__ import annotations

import io
import os
import re
import subprocess

from twisted.trial.unittest import SynchronousTestCase

import creds
from compat.cmdline import OPTIONS, SCREEN_KINDS
from compat.monitor import CHARDEV_KEYS, MON_KEYS, SUPPORTED_BACKENDS
from compat.vnc import VNC_KEYS
from tests.tools import ROOT, require_tool
from vncd.cli import main

MANUAL = os.path.join(ROOT, "man", "vncd.8")
CAPTURE_MANUAL = os.path.join(ROOT, "man", "vncd-capture.1")


def manual_text(path: str) -> str:
    """The page's words with roff escapes for '-' undone (``\\-vnc`` -> ``-vnc``)."""
    with open(path, encoding="utf-8") as f:
        return f.read().replace("\\-", "-")


def vncd_output(*argv: str) -> str:
    out = io.StringIO()
    status = main(list(argv), stdout=out, stderr=io.StringIO())
    assert status == 0, argv
    return out.getvalue()


class ManualTests(SynchronousTestCase):
    def test_options_documented(self):
        """Every command-line option is in the manual and in vncd -h."""
        page, help_text = manual_text(MANUAL), vncd_output("-h")
        for name in OPTIONS:
            self.assertRegex(page, rf"(?<![\w-])-{re.escape(name)}(?![\w-])", name)
            self.assertRegex(help_text, rf"(?<![\w-])-{re.escape(name)}(?![\w-])", name)

    def test_vnc_keys_documented(self):
        """Every -vnc key is in the manual and in vncd -vnc help."""
        page, help_text = manual_text(MANUAL), vncd_output("-vnc", "help")
        for name in VNC_KEYS:
            if name == "vnc":          # the implied first field: the display address
                continue
            self.assertRegex(page, rf"(?<![\w-]){re.escape(name)}(?![\w-])", name)
            self.assertIn(f"{name}=", help_text, name)

    def test_monitor_keys_documented(self):
        """The -chardev keys and backends vncd takes and the -mon keys are in manual and help."""
        page = manual_text(MANUAL)
        section = page.split('.SH "MONITOR OPTIONS"', 1)[1].split(".SH ", 1)[0]
        section = re.sub(r"\\f[RBIP]", "", section)      # font changes inside words
        chardev_help = vncd_output("-chardev", "socket,help")
        for key in CHARDEV_KEYS.values():
            self.assertIn(f"{key.name}=<", chardev_help, key.name)
            if key.supported and key.name != "backend":
                self.assertRegex(section, rf"(?<![\w-]){re.escape(key.name)}=", key.name)
        backends = vncd_output("-chardev", "help")
        for name in SUPPORTED_BACKENDS:
            self.assertIn(f"-chardev {name}", section, name)
            self.assertIn(name, backends, name)
        mon_help = vncd_output("-mon", "m0,help")
        for name, _, _ in MON_KEYS:
            self.assertRegex(section, rf"(?<![\w-]){re.escape(name)}=", name)
            self.assertIn(f"{name}=<", mon_help, name)

    def test_monitor_commands_documented(self):
        """Every QMP command, HMP command and info subcommand, and every event vncd sends,
        is in the manual."""
        from vncd.monitor.control import COMMANDS
        from vncd.monitor.hmp import HMP_COMMANDS, INFO_COMMANDS

        page = manual_text(MANUAL).replace("\\_", "_")
        names = [*COMMANDS, "qmp_capabilities", *HMP_COMMANDS, *INFO_COMMANDS,
                 "VNC_CONNECTED", "VNC_INITIALIZED", "VNC_DISCONNECTED", "SHUTDOWN"]
        for name in names:
            self.assertRegex(page, rf"(?<![\w-]){re.escape(name)}(?![\w-])", name)

    def test_object_types_and_properties_documented(self):
        """Every object type and each of its properties is in the manual and in -object help."""
        page = manual_text(MANUAL)
        listing = vncd_output("-object", "help")
        for cls in creds.OBJECT_TYPES:
            for name in (cls.qom_type, *cls.aliases):
                self.assertIn(name, page, name)
                self.assertIn(name, listing, name)
            props_help = vncd_output("-object", f"{cls.qom_type},help")
            for prop in cls.props:
                self.assertRegex(page, rf"(?<![\w-]){re.escape(prop.name)}(?![\w-])",
                                 f"{cls.qom_type}.{prop.name}")
                if not prop.read_only:     # read-only ones cannot be given on the command line
                    self.assertIn(prop.name, props_help, f"{cls.qom_type}.{prop.name}")

    def test_screen_kinds_documented(self):
        """Every -screen kind is in the manual and in vncd -h."""
        page, help_text = manual_text(MANUAL), vncd_output("-h")
        for kind in SCREEN_KINDS:
            self.assertIn(kind, page)
            self.assertIn(kind, help_text)

    def test_capture_options_documented(self):
        """Every vncd-capture option is in its manual page."""
        from vncd.capture import _parser

        page = manual_text(CAPTURE_MANUAL)
        for action in _parser()._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    self.assertIn(flag, page, flag)

    def test_pages_are_clean_roff(self):
        """groff reads both pages without a warning."""
        groff = require_tool("groff")
        for path in (MANUAL, CAPTURE_MANUAL):
            result = subprocess.run([groff, "-man", "-t", "-ww", "-z", path],
                                    capture_output=True, text=True, timeout=60)
            self.assertEqual((result.returncode, result.stderr), (0, ""), path)
