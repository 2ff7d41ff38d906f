"""Tests for the embedding API: the documented example runs and serves over TLS."""

import os
import re
import sys

import numpy as np
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

import creds
from compat.config import ListenAddress
from compat.errors import OptionError
from tests import certgen
from tests.tools import ROOT, free_display, require_tool
from tests.vncd import realclients
from tests.vncd.realclients import GvncPki
from vncd import api
from vncd.client import ClientOptions, connect, fetch_framebuffer
from vncd.service import StartupError


def documented_example() -> str:
    """The embedding example: README.md's when it has one, else vncd.api's docstring's."""
    readme = os.path.join(ROOT, "README.md")
    with open(readme, encoding="utf-8") as f:
        for block in re.findall(r"```python\n(.*?)```", f.read(), re.S):
            if "from vncd.api import" in block:
                return block
    lines = api.__doc__.split("it)::\n\n", 1)[1].split("\n\n")
    code = []
    for paragraph in lines:
        if paragraph and not paragraph.startswith("    "):
            break
        code.append(paragraph)
    return "\n".join(line[4:] for line in "\n\n".join(code).splitlines()) + "\n"


def expected_picture() -> np.ndarray:
    """What the example draws: blue, with a yellow bar."""
    rgb = np.zeros((240, 320, 3), dtype=np.uint8)
    rgb[..., 2] = 160
    rgb[100:140, 40:280] = (255, 200, 0)
    return rgb


class ExampleTests(SynchronousTestCase):
    def test_example_serves_over_tls(self):
        """The documented program serves its screen with x509 TLS; gvnccapture, trusting
        the CA, captures exactly what it draws."""
        require_tool("gvnccapture")
        pki = GvncPki.borrow(self)
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        ca = certgen.ca("embedding CA")
        server = certgen.server(ca, "localhost", dns=["localhost"], ips=["127.0.0.1"])
        creds_dir = certgen.write_dir(os.path.join(base, "creds"), ca=[ca], server=server)
        pki.install(ca=ca.pem())
        script = os.path.join(base, "example.py")
        with open(script, "w") as f:
            f.write(documented_example())
        display = free_display()
        realclients.start_server(self, [sys.executable, script, creds_dir, f":{display}"],
                                 [5900 + display], name="embedding example")
        out = os.path.join(base, "capture.png")
        run = realclients.gvnccapture("127.0.0.1", display, out)
        self.assertTrue(run.ok, f"gvnccapture failed ({run.status}): {run.output}")
        realclients.assert_same_pixels(self, realclients.read_png(out), expected_picture(),
                                       "gvnccapture of the embedding example")

    def test_example_is_complete(self):
        """The example imports what it uses and starts the reactor itself."""
        example = documented_example()
        compile(example, "example", "exec")
        self.assertIn("registry.create(\"tls-creds-x509\"", example)
        self.assertIn("reactor.run()", example)


class ServeTests(TestCase):
    timeout = 60

    def screen(self):
        screen = api.ArrayScreen(64, 48, name="api test")
        screen.framebuffer[..., 0] = np.arange(64, dtype=np.uint8)[None, :] * 4
        screen.damage()
        return screen

    async def fetch(self, display, options=ClientOptions()):
        client = await connect(reactor, ListenAddress("tcp", "127.0.0.1", 5900 + display),
                               options, timeout=10)
        try:
            return await fetch_framebuffer(client)
        finally:
            client.transport.loseConnection()

    async def test_plain(self):
        """serve() with a plain -vnc string serves the screen to vncd's client; the screen
        learns the plain address, and separately the security offered there."""
        screen = self.screen()
        display = free_display()
        service = api.serve(screen, f"127.0.0.1:{display}", reactor=reactor)
        self.addCleanup(service.stop)
        got = await self.fetch(display)
        self.assertTrue(np.array_equal(got[..., :3], screen.framebuffer[..., :3]))
        self.assertEqual(screen.listen_addresses, [f"127.0.0.1:{5900 + display}"])
        self.assertEqual([str(a) for a in screen.served_addresses],
                         [f"127.0.0.1:{5900 + display} (no authentication)"])

    async def test_legacy_tls_option(self):
        """A legacy tls,x509=DIR option creates its credentials object and serves X509None."""
        base = os.path.abspath(self.mktemp())
        ca = certgen.ca("api CA")
        server = certgen.server(ca, "localhost", dns=["localhost"], ips=["127.0.0.1"])
        server_dir = certgen.write_dir(os.path.join(base, "server"), ca=[ca], server=server)
        client_dir = certgen.write_dir(os.path.join(base, "client"), ca=[ca])
        registry = creds.new_registry()
        display = free_display()
        service = api.serve(self.screen(), [f"127.0.0.1:{display},tls,x509={server_dir}"],
                            registry=registry, reactor=reactor)
        self.addCleanup(service.stop)
        self.assertIn("tlsvncdefault", registry)
        client_creds = registry.create("tls-creds-x509", {
            "id": "client", "endpoint": "client", "dir": client_dir})
        got = await self.fetch(display, ClientOptions(tls_creds=client_creds,
                                                      hostname="127.0.0.1"))
        self.assertEqual(got[0, 10, 0], 40)

    async def test_typed_display(self):
        """serve() takes a DisplayConfig built by the program, next to an option string."""
        screen = self.screen()
        first = free_display()
        second = free_display()
        while second == first:
            second = free_display()
        typed = api.DisplayConfig(id="typed", source="embedding",
                                  listen=(ListenAddress("tcp", "127.0.0.1", 5900 + first),))
        service = api.serve(screen, [typed, f"127.0.0.1:{second}"], reactor=reactor)
        self.addCleanup(service.stop)
        self.assertEqual([d.config.id for d in service.displays], ["typed", "default"])
        got = await self.fetch(first)
        self.assertTrue(np.array_equal(got[..., :3], screen.framebuffer[..., :3]))
        got = await self.fetch(second)
        self.assertTrue(np.array_equal(got[..., :3], screen.framebuffer[..., :3]))

    def test_errors(self):
        """Option and start-up errors carry the vncd command's messages."""
        with self.assertRaises(OptionError) as cm:
            api.serve(self.screen(), "127.0.0.1:1,bogus=1", reactor=reactor)
        self.assertIn("bogus", str(cm.exception))
        with self.assertRaises(StartupError) as cm:
            api.serve(self.screen(), "127.0.0.1:1,tls-creds=nothere", reactor=reactor)
        self.assertIn("nothere", str(cm.exception))
