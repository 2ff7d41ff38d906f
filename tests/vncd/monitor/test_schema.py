"""Declared QMP arguments, checked with QEMU's words."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from vncd.monitor.schema import Arg, QMPError, check_arguments

DECLARED = (Arg("protocol", "enum", choices=("vnc", "spice")), Arg("password"),
            Arg("tls-certs", "bool", optional=True), Arg("count", "int", optional=True))


class CheckTests(TestCase):

    def test_good(self):
        """Declared members come back under Python names; absent optional ones are None."""
        self.assertEqual(check_arguments({"protocol": "vnc", "password": "x", "tls-certs": True},
                                         DECLARED),
                         {"protocol": "vnc", "password": "x", "tls_certs": True, "count": None})

    def test_errors(self):
        """Missing, mistyped, unknown-value and unexpected members, in QEMU's order and words."""
        cases = [
            ({}, "Parameter 'protocol' is missing"),
            ({"protocol": 1, "password": "x"},
             "Invalid parameter type for 'protocol', expected: string"),
            ({"protocol": "rdp", "password": "x"},
             "Parameter 'protocol' does not accept value 'rdp'"),
            ({"protocol": "vnc"}, "Parameter 'password' is missing"),
            ({"protocol": "vnc", "password": "x", "tls-certs": "yes"},
             "Invalid parameter type for 'tls-certs', expected: boolean"),
            ({"protocol": "vnc", "password": "x", "count": True},
             "Invalid parameter type for 'count', expected: integer"),
            ({"protocol": "vnc", "password": "x", "extra": 1}, "Parameter 'extra' is unexpected"),
        ]
        for arguments, desc in cases:
            e = self.assertRaises(QMPError, check_arguments, arguments, DECLARED)
            self.assertEqual((e.error_class, e.desc), ("GenericError", desc))

    def test_rest(self):
        """With rest=True undeclared members are handed back untouched."""
        out = check_arguments({"qom-type": "secret", "id": "s", "data": "x"},
                              (Arg("qom-type"), Arg("id")), rest=True)
        self.assertEqual(out["_rest"], {"data": "x"})
