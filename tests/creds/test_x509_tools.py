"""Certificates made by the real tools administrators use (GnuTLS certtool, openssl).

Two promises are checked here: directories built the way QEMU's
documentation says (certtool templates) load in vncd, and every hint
vncd prints names a template keyword or openssl setting that really fixes
the fault -- the test applies the hint's advice and the directory loads.
"""

from __future__ import annotations

import datetime
import os
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from creds.objects import ObjectError
from tests.creds.test_x509_catalogue import registry
from tests.tools import require_tool

#: Longest one certtool/openssl run may take (they take milliseconds with EC keys).
TOOL_TIMEOUT = 30.0


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=TOOL_TIMEOUT,
                   stdin=subprocess.DEVNULL)


def now_clock():
    """The wall clock: the tools stamp their certificates with the real time."""
    return lambda: datetime.datetime.now(datetime.timezone.utc)


class CerttoolTests(SynchronousTestCase):
    """Directories made with certtool templates, as QEMU's TLS documentation shows."""

    def setUp(self) -> None:
        self.certtool = require_tool("certtool")
        self.d = os.path.abspath(self.mktemp())
        os.makedirs(self.d)

    def path(self, name: str) -> str:
        return os.path.join(self.d, name)

    def template(self, name: str, *lines: str) -> str:
        with open(self.path(name), "w") as f:
            f.write("\n".join(lines) + "\n")
        return self.path(name)

    def key(self, name: str, *extra: str) -> str:
        if not any(a.startswith("--key-type") for a in extra):
            extra = ("--key-type=ecdsa", *extra)
        run(self.certtool, "--generate-privkey", *extra, "--outfile", self.path(name))
        os.chmod(self.path(name), 0o600)
        return self.path(name)

    def make_ca(self, *lines: str) -> None:
        self.key("ca-key.pem")
        run(self.certtool, "--generate-self-signed", "--load-privkey", self.path("ca-key.pem"),
            "--template", self.template("ca.info", "cn = vncd test CA", *lines),
            "--outfile", self.path("ca-cert.pem"))

    def make_leaf(self, role: str, *lines: str, key_args: tuple[str, ...] = ()) -> None:
        self.key(f"{role}-key.pem", *key_args)
        password = [a for a in key_args if a.startswith("--password")]
        run(self.certtool, "--generate-certificate",
            "--load-ca-certificate", self.path("ca-cert.pem"),
            "--load-ca-privkey", self.path("ca-key.pem"),
            "--load-privkey", self.path(f"{role}-key.pem"), *password,
            "--template", self.template(f"{role}.info", *lines),
            "--outfile", self.path(f"{role}-cert.pem"))

    def create(self, endpoint: str = "server", **props):
        r = registry(clock=now_clock())
        for sid, data in props.pop("secrets", {}).items():
            r.create("secret", {"id": sid, "data": data})
        return r.create("tls-creds-x509", {"id": "t0", "dir": self.d, "endpoint": endpoint,
                                           **props})

    SERVER = ("organization = vncd", "cn = localhost", "dns_name = localhost",
              "ip_address = 127.0.0.1", "tls_www_server", "encryption_key", "signing_key")
    CLIENT = ("country = GB", "organization = vncd", "cn = client.example.com",
              "tls_www_client", "encryption_key", "signing_key")

    def test_documented_server(self) -> None:
        """QEMU's documented CA and server templates give a directory that loads."""
        self.make_ca("ca", "cert_signing_key")
        self.make_leaf("server", *self.SERVER)
        run(self.certtool, "--generate-dh-params", "--sec-param", "medium",
            "--outfile", self.path("dh-params.pem"))
        obj = self.create()
        self.assertIsNotNone(obj.material.dh_params_pem)

    def test_documented_client(self) -> None:
        """QEMU's documented client template gives a client directory that loads."""
        self.make_ca("ca", "cert_signing_key")
        self.make_leaf("client", *self.CLIENT)
        self.assertEqual(len(self.create("client").material.chain), 1)

    def test_encrypted_key(self) -> None:
        """A PKCS#8 key encrypted by certtool is decrypted with the passwordid secret."""
        self.make_ca("ca", "cert_signing_key")
        self.make_leaf("server", *self.SERVER, key_args=("--pkcs8", "--password=s3cret"))
        self.create(passwordid="pw", secrets={"pw": "s3cret"})

    def test_hints_fix_the_ca(self) -> None:
        """The CA hints name certtool's "ca" and "cert_signing_key" keywords, which fix it."""
        self.make_ca("cert_signing_key")
        self.make_leaf("server", *self.SERVER)
        e = self.assertRaises(ObjectError, self.create)
        self.assertIn("basic constraints", e.message)
        self.assertIn('certtool template "ca"', e.hint)
        self.make_ca("ca", "cert_signing_key")
        self.make_leaf("server", *self.SERVER)
        self.create()

    def test_hints_fix_the_key_usage(self) -> None:
        """A server certificate without "signing_key" gets a hint naming it, which fixes it."""
        self.make_ca("ca", "cert_signing_key")
        self.make_leaf("server", "cn = localhost", "tls_www_server", "encryption_key",
                       key_args=("--key-type=rsa", "--bits=2048"))
        e = self.assertRaises(ObjectError, self.create)
        self.assertIn("usage does not permit digital signature", e.message)
        self.assertIn('"signing_key"', e.hint)
        self.make_leaf("server", "cn = localhost", "tls_www_server", "encryption_key",
                       "signing_key")
        self.create()


class OpensslTests(SynchronousTestCase):
    """Directories made with openssl, using the settings vncd's hints name."""

    def setUp(self) -> None:
        self.openssl = require_tool("openssl")
        self.d = os.path.abspath(self.mktemp())
        os.makedirs(self.d)

    def path(self, name: str) -> str:
        return os.path.join(self.d, name)

    def make(self, ca_ext: list[str], server_ext: list[str]) -> None:
        run(self.openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.path("ca-key.pem"),
            "-out", self.path("ca-cert.pem"), "-days", "5", "-subj", "/CN=vncd openssl CA",
            *[arg for ext in ca_ext for arg in ("-addext", ext)])
        run(self.openssl, "req", "-new", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.path("server-key.pem"),
            "-out", self.path("server.csr"), "-subj", "/CN=localhost")
        with open(self.path("ext.cnf"), "w") as f:
            f.write("\n".join(server_ext) + "\n")
        run(self.openssl, "x509", "-req", "-in", self.path("server.csr"),
            "-CA", self.path("ca-cert.pem"), "-CAkey", self.path("ca-key.pem"),
            "-CAcreateserial", "-days", "2", "-sha256", "-extfile", self.path("ext.cnf"),
            "-out", self.path("server-cert.pem"))
        os.chmod(self.path("server-key.pem"), 0o600)

    def create(self):
        return registry(clock=now_clock()).create(
            "tls-creds-x509", {"id": "t0", "dir": self.d, "endpoint": "server"})

    def test_hint_settings_load(self) -> None:
        """The openssl settings named in the hints produce a directory that loads."""
        self.make(["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"],
                  ["basicConstraints=critical,CA:FALSE",
                   "keyUsage=critical,digitalSignature,keyEncipherment",
                   "extendedKeyUsage=serverAuth"])
        self.create()

    def test_hint_fixes_key_usage(self) -> None:
        """A CA whose critical keyUsage lacks keyCertSign gets the setting that fixes it."""
        self.make(["basicConstraints=critical,CA:TRUE", "keyUsage=critical,cRLSign"],
                  ["extendedKeyUsage=serverAuth"])
        e = self.assertRaises(ObjectError, self.create)
        self.assertIn("usage does not permit certificate signing", e.message)
        self.assertIn("keyUsage=critical,keyCertSign,cRLSign", e.hint)
        self.make(["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"],
                  ["extendedKeyUsage=serverAuth"])
        self.create()

    def test_hint_fixes_the_purpose(self) -> None:
        """A critical extendedKeyUsage without serverAuth gets the setting that fixes it."""
        ca = ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"]
        self.make(ca, ["extendedKeyUsage=critical,clientAuth"])
        e = self.assertRaises(ObjectError, self.create)
        self.assertIn("purpose does not allow use with a TLS server", e.message)
        self.assertIn("extendedKeyUsage=serverAuth", e.hint)
        self.make(ca, ["extendedKeyUsage=critical,serverAuth"])
        self.create()
