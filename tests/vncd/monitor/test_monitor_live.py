"""Access control and credentials changed while vncd serves real x509 clients.

- Legacy ``-vnc :N,tls,x509verify=DIR,acl``: the list ``vnc.x509dname``
  starts empty with policy deny, so a valid client certificate is
  refused; ``acl_add`` over ``human-monitor-command`` (via ``qemu.qmp``)
  and over the HMP socket admits it; ``acl_policy``, ``acl_remove`` and
  ``acl_reset`` take effect for the next client (QEMU 3.1 removed these
  options, so vncd's own tests pin them).
- ``display-reload`` while 10 VeNCrypt x509 clients stay connected and
  keep receiving updates; a new client sees the new server certificate;
  broken files give the error and leave the last good credentials in
  force.
- ``object-add``/``object-del`` of the display's authz object take effect
  for the next client, as QEMU looks authz objects up per client.
"""

from __future__ import annotations

import os
import socket
import ssl

from cryptography import x509 as cx509
from twisted.trial.unittest import SynchronousTestCase

from tests import certgen
from tests.compat.helpers import VALIDITY, client_identity
from tests.vncd.monitor.peers import RawVNC, VNCRefused, short_dir, start_vncd, with_qmp

#: Seconds an HMP read may take.
HMP_TIMEOUT = 10.0

#: Clients kept connected across display-reload.
CLIENTS = 10

PROMPT = b"(qemu) "


class HMPSocket:
    """A line-at-a-time client of an HMP UNIX socket."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(HMP_TIMEOUT)
        self.sock.connect(path)
        self.banner = self._until_prompt()

    def _until_prompt(self) -> bytes:
        data = b""
        while not data.endswith(PROMPT):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(data)
            data += chunk
        return data[:-len(PROMPT)]

    def run(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        return self._until_prompt().decode()

    def close(self) -> None:
        self.sock.close()


def hmp_over_qmp(path: str, line: str) -> str:
    async def body(client):
        return await client.execute("human-monitor-command", {"command-line": line})
    return with_qmp(path, body)


class Identities:
    """A CA, a server directory, and client contexts for CN=bob and CN=eve."""

    def __init__(self, base: str) -> None:
        self.root = certgen.ca("live test CA", not_after=VALIDITY)
        self.dir = os.path.join(base, "x509")
        self.write_server(key_index=None)
        self.ca = os.path.join(self.dir, "ca-cert.pem")
        self.bob = client_identity(os.path.join(base, "bob"), self.root, "bob")
        self.eve = client_identity(os.path.join(base, "eve"), self.root, "eve")

    def write_server(self, key_index) -> certgen.Issued:
        server = certgen.server(self.root, "localhost", dns=["localhost"], ips=["127.0.0.1"],
                                not_after=VALIDITY, key_index=key_index)
        certgen.write_dir(self.dir, ca=[self.root], server=server)
        return server

    def context(self, identity) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(self.ca)
        context.load_cert_chain(*identity)
        return context


def admitted(port: int, context: ssl.SSLContext) -> bool:
    try:
        RawVNC(port, tls=context).close()
    except VNCRefused:
        return False
    return True


class LegacyAclTests(SynchronousTestCase):
    """``acl`` lists edited over the monitor."""

    def test_acl_edited_live(self):
        """acl_add admits a refused DN; acl_policy, acl_remove, acl_reset act on the next one."""
        base = short_dir(self)
        ids = Identities(base)
        hmp_path = os.path.join(base, "hmp.sock")
        vncd = start_vncd(self, base, vnc="127.0.0.1:{display},tls,x509verify=" + ids.dir
                          + ",acl", extra=("-monitor", f"unix:{hmp_path},server=on,wait=off"))
        bob, eve = ids.context(ids.bob), ids.context(ids.eve)
        self.assertFalse(admitted(vncd.port, bob))
        self.assertEqual(hmp_over_qmp(vncd.qmp_path, "acl_add vnc.x509dname CN=bob allow"),
                         "acl: added rule at position 1\r\n")
        self.assertTrue(admitted(vncd.port, bob))
        self.assertFalse(admitted(vncd.port, eve))

        hmp = HMPSocket(hmp_path)
        self.addCleanup(hmp.close)
        self.assertEqual(hmp.run("acl_add vnc.x509dname CN=e* allow"),
                         "acl: added rule at position 2\r\n")
        self.assertTrue(admitted(vncd.port, eve))
        shown = hmp.run("acl_show vnc.x509dname")
        self.assertIn("policy: deny", shown)
        self.assertIn("CN=bob", shown)
        self.assertEqual(hmp.run("acl_remove vnc.x509dname CN=bob"),
                         "acl: removed rule at position 1\r\n")
        self.assertFalse(admitted(vncd.port, bob))
        self.assertEqual(hmp.run("acl_policy vnc.x509dname allow"),
                         "acl: policy set to 'allow'\r\n")
        self.assertTrue(admitted(vncd.port, bob))
        self.assertEqual(hmp.run("acl_reset vnc.x509dname"), "acl: removed all rules\r\n")
        self.assertFalse(admitted(vncd.port, bob))
        self.assertFalse(admitted(vncd.port, eve))
        self.assertIn("acl: unknown list", hmp.run("acl_show nope"))


class ReloadTests(SynchronousTestCase):
    """display-reload and authz objects at run time, with clients connected."""

    def test_reload_with_clients(self):
        """Ten clients survive display-reload; new ones get the new certificate; bad files fail."""
        base = short_dir(self)
        ids = Identities(base)
        vncd = start_vncd(self, base, objects=(
            f"tls-creds-x509,id=tls0,endpoint=server,dir={ids.dir},verify-peer=on",),
            vnc="127.0.0.1:{display},tls-creds=tls0")
        bob = ids.context(ids.bob)
        clients = [RawVNC(vncd.port, tls=bob) for _ in range(CLIENTS)]
        for client in clients:
            self.addCleanup(client.close)
        old = clients[0].sock.getpeercert(binary_form=True)
        monitor = vncd.qmp()
        self.addCleanup(monitor.close)

        new = ids.write_server(key_index=7)
        self.assertEqual(monitor.execute("display-reload", {"type": "vnc", "tls-certs": True}),
                         {"return": {}})
        self.assertEqual([c.alive() for c in clients], [True] * CLIENTS)
        self.assertEqual(len(monitor.execute("query-vnc")["return"]["clients"]), CLIENTS)
        fresh = RawVNC(vncd.port, tls=bob)
        self.addCleanup(fresh.close)
        seen = fresh.sock.getpeercert(binary_form=True)
        self.assertNotEqual(seen, old)
        self.assertEqual(cx509.load_der_x509_certificate(seen), new.cert)

        with open(os.path.join(ids.dir, "server-cert.pem"), "wb") as f:
            f.write(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        reply = monitor.execute("display-reload", {"type": "vnc", "tls-certs": True})
        self.assertEqual(reply["error"]["class"], "GenericError")
        self.assertIn("server-cert.pem", reply["error"]["desc"])
        after = RawVNC(vncd.port, tls=bob)
        self.addCleanup(after.close)
        self.assertEqual(after.sock.getpeercert(binary_form=True), seen)
        self.assertEqual([c.alive() for c in clients], [True] * CLIENTS)

    def test_authz_added_and_deleted(self):
        """Deleting the display's authz object refuses the next client; adding it back admits."""
        base = short_dir(self)
        ids = Identities(base)
        vncd = start_vncd(self, base, objects=(
            f"tls-creds-x509,id=tls0,endpoint=server,dir={ids.dir},verify-peer=on",
            "authz-simple,id=authz0,identity=CN=bob"),
            vnc="127.0.0.1:{display},tls-creds=tls0,tls-authz=authz0")
        bob, eve = ids.context(ids.bob), ids.context(ids.eve)
        monitor = vncd.qmp()
        self.addCleanup(monitor.close)
        held = RawVNC(vncd.port, tls=bob)
        self.addCleanup(held.close)
        self.assertFalse(admitted(vncd.port, eve))
        self.assertEqual(monitor.execute("object-del", {"id": "authz0"}), {"return": {}})
        self.assertFalse(admitted(vncd.port, bob))
        self.assertTrue(held.alive())
        self.assertEqual(monitor.execute("object-add", {
            "qom-type": "authz-simple", "id": "authz0", "identity": "CN=eve"}), {"return": {}})
        self.assertTrue(admitted(vncd.port, eve))
        self.assertFalse(admitted(vncd.port, bob))
        monitor.execute("object-del", {"id": "authz0"})
        self.assertEqual(monitor.execute("object-add", {
            "qom-type": "authz-list", "id": "authz0", "policy": "allow",
            "rules": [{"match": "CN=eve", "policy": "deny"}]}), {"return": {}})
        self.assertTrue(admitted(vncd.port, bob))
        self.assertFalse(admitted(vncd.port, eve))
