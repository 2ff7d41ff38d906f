"""QEMU's mapping from (credentials, password, SASL) to the offered security."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from vncd.rfb.security import (
    AUTH_TABLE, CREDS_KINDS, EMPTY_PASSWORD, SecurityConfig, SecurityType, VeNCryptSubtype,
    auth_for,
)


class AuthTableTests(SynchronousTestCase):

    def test_qemu_mapping(self):
        """Every row matches QEMU 7.2's vnc_display_setup_auth (numbers and query-vnc names)."""
        expected = {
            (None, False, False): (1, None, "none"),
            (None, True, False): (2, None, "vnc"),
            (None, False, True): (20, None, "sasl"),
            (None, True, True): (2, None, "vnc"),
            ("anon", False, False): (19, 257, "vencrypt+tls+none"),
            ("anon", True, False): (19, 258, "vencrypt+tls+vnc"),
            ("anon", False, True): (19, 264, "vencrypt+tls+sasl"),
            ("anon", True, True): (19, 258, "vencrypt+tls+vnc"),
            ("x509", False, False): (19, 260, "vencrypt+x509+none"),
            ("x509", True, False): (19, 261, "vencrypt+x509+vnc"),
            ("x509", False, True): (19, 263, "vencrypt+x509+sasl"),
            ("x509", True, True): (19, 261, "vencrypt+x509+vnc"),
        }
        self.assertEqual(set(AUTH_TABLE), set(expected))
        for key, (stype, subtype, name) in expected.items():
            auth = auth_for(*key)
            self.assertEqual((auth.security_type, auth.subtype, auth.name),
                             (stype, subtype, name), key)

    def test_websocket_ignores_creds(self):
        """WebSocket listeners map as if there were no credentials (TLS is wss)."""
        for kind in CREDS_KINDS:
            self.assertEqual(auth_for(kind, True, websocket=True).security_type, SecurityType.VNC)
            self.assertEqual(auth_for(kind, False, websocket=True).security_type, SecurityType.NONE)

    def test_inner_and_labels(self):
        """Subtypes know their inner authentication and their usual spelling."""
        auth = auth_for("x509", True)
        self.assertIs(auth.inner, SecurityType.VNC)
        self.assertTrue(auth.uses_tls)
        self.assertEqual(auth.label, "VeNCrypt X509Vnc")
        self.assertEqual(VeNCryptSubtype.TLSNONE.label, "TLSNone")
        self.assertIs(auth_for(None, False).inner, SecurityType.NONE)
        self.assertFalse(auth_for(None, True).uses_tls)

    def test_unknown_kind(self):
        """An unknown credentials kind is a ValueError, not a silent None."""
        self.assertRaises(ValueError, auth_for, "psk", False)


class SecurityConfigTests(SynchronousTestCase):

    def test_sasl_is_refused(self):
        """vncd cannot complete SASL, so a SASL configuration cannot be built."""
        self.assertRaises(ValueError, SecurityConfig, auth_for(None, False, True))
        self.assertRaises(ValueError, SecurityConfig, auth_for("x509", False, True))

    def test_websocket_shares_the_password(self):
        """The WebSocket view of a display sees passwords set later on the display."""
        cfg = SecurityConfig(auth_for("x509", True), None)
        ws = cfg.for_websocket()
        self.assertEqual(ws.auth.name, "vnc")
        cfg.set_password(b"later")
        self.assertEqual(ws.password, b"later")
        ws.set_password(None)
        self.assertIsNone(cfg.password)

    def test_empty_password_refused(self):
        """An empty (or all-NUL) password is refused when built and when set at run time,
        with a message the monitor can show; the password in force stays."""
        for empty in (b"", b"\0", b"\0" * 8 + b"after the key"):
            e = self.assertRaises(ValueError, SecurityConfig, auth_for(None, True), empty)
            self.assertEqual(str(e), EMPTY_PASSWORD)
            cfg = SecurityConfig(auth_for("x509", True), b"secret")
            e = self.assertRaises(ValueError, cfg.set_password, empty)
            self.assertEqual(str(e), EMPTY_PASSWORD)
            self.assertEqual(cfg.password, b"secret")
            self.assertRaises(ValueError, cfg.for_websocket().set_password, empty)
        self.assertIn("anyone could log in", EMPTY_PASSWORD)

    def test_password_never_printed(self):
        """repr() says whether a password is set, never what it is."""
        cfg = SecurityConfig(auth_for(None, True), b"hunter2")
        self.assertNotIn("hunter2", repr(cfg))
        self.assertIn("set", repr(cfg))
        self.assertRaises(TypeError, cfg.set_password, "text")
