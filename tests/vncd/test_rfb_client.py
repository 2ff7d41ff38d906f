"""The sans-I/O client against the sans-I/O server, and against scripted servers."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from vncd.encoding import RAW, rect_header
from vncd.encoding import messages as enc_messages
from vncd.encoding import pseudo
from vncd.encoding.decode import DesktopNameChanged, RectDecoded, UpdateComplete
from vncd.pixels import DEFAULT_FORMAT, PixelFormat
from vncd.rfb import messages as m
from vncd.rfb.client import ClientConnection, ClientSecurity, SecurityNegotiationError
from vncd.rfb.errors import RemoteProtocolError
from vncd.rfb.events import (
    NEED_DATA, AuthenticationFailed, AuthenticationSucceeded, Refused, SecurityTypeChosen,
    ServerInitReceived, VersionAgreed,
)
from vncd.rfb.limits import Limits
from vncd.rfb.security import SecurityConfig, auth_for
from vncd.rfb.server import ServerConnection
from vncd.rfb.stack import RFBStack
from vncd.rfb.states import ClientState, ServerState
from vncd.rfb.testing import MemoryPeer, converse

PASSWORD = b"password"


def run(password_on=False, server_password=PASSWORD, client_password=None, max_minor=8,
        deny=None, kind=None, tls=None, shared=True):
    security = SecurityConfig(auth_for(kind, password_on),
                              server_password if password_on else None)
    server_conn = ServerConnection(security)
    if deny:
        server_conn.deny(deny)
    server = MemoryPeer(RFBStack(server_conn))
    client = MemoryPeer(RFBStack(ClientConnection(
        ClientSecurity(tls=tls, password=client_password), max_minor=max_minor, shared=shared)))
    converse(server, client)
    return server, client


class HandshakeTests(SynchronousTestCase):

    def test_every_version_and_security(self):
        """The client completes None and VNC authentication with 3.3, 3.7 and 3.8."""
        for minor in (3, 7, 8):
            for password_on in (False, True):
                server, client = run(password_on, client_password=PASSWORD, max_minor=minor)
                self.assertIsNone(client.error)
                self.assertEqual(client.events[0], VersionAgreed(minor))
                self.assertEqual(client.of_type(SecurityTypeChosen),
                                 [SecurityTypeChosen(2 if password_on else 1)])
                self.assertEqual(len(client.of_type(AuthenticationSucceeded)), 1)
                (init,) = client.of_type(ServerInitReceived)
                self.assertEqual((init.width, init.height, init.pixel_format, init.name),
                                 (64, 48, DEFAULT_FORMAT, "memory"))
                self.assertIs(client.stack.rfb.state, ClientState.RUNNING)
                self.assertIs(server.stack.rfb.state, ServerState.RUNNING)

    def test_shared_flag(self):
        """The ClientInit shared flag is what the client was told to send."""
        for shared in (True, False):
            server, client = run(shared=shared)
            (init,) = [e for e in server.events if type(e).__name__ == "ClientInitReceived"]
            self.assertIs(init.shared, shared)

    def test_wrong_password(self):
        """A wrong password ends in AuthenticationFailed with the server's reason (3.8)."""
        server, client = run(True, client_password=b"guessed")
        self.assertEqual(client.of_type(AuthenticationFailed),
                         [AuthenticationFailed("Authentication failed")])
        self.assertIs(client.stack.rfb.state, ClientState.CLOSED)
        server, client = run(True, client_password=b"guessed", max_minor=7)
        self.assertEqual(client.of_type(AuthenticationFailed),
                         [AuthenticationFailed("authentication failed")])

    def test_refusal_reason_reaches_the_client(self):
        """A refusal's reason is reported by the client, in 3.3 and 3.8 alike."""
        for minor in (3, 8):
            server, client = run(deny="throttled", max_minor=minor)
            self.assertEqual(client.of_type(Refused), [Refused("throttled")])

    def test_33_client_and_vencrypt(self):
        """A 3.3 client meeting a VeNCrypt-only server reports the server's reason."""
        server, client = run(kind="x509", max_minor=3)
        (refused,) = client.of_type(Refused)
        self.assertIn("3.7", refused.reason)

    def test_policy_errors(self):
        """The client says what is missing rather than failing obscurely."""
        cases = [
            (dict(password_on=True), "requires a VNC password"),
            (dict(kind="anon"), "requires VeNCrypt (TLS)"),
            (dict(tls="x509"), "TLS is required"),
        ]
        for kwargs, text in cases:
            server, client = run(**kwargs)
            self.assertIsInstance(client.error, SecurityNegotiationError)
            self.assertIn(text, client.error.reason)

    def test_server_versions(self):
        """A server announcing 3.889 is answered with 3.8; 4.0 is refused."""
        client = ClientConnection(ClientSecurity())
        client.receive_data(b"RFB 003.889\n")
        self.assertEqual(client.next_event(), VersionAgreed(8))
        self.assertEqual(client.data_to_send(), b"RFB 003.008\n")
        client = ClientConnection(ClientSecurity())
        client.receive_data(b"RFB 004.000\n")
        self.assertRaises(RemoteProtocolError, client.next_event)


def running_pair():
    server, client = run()
    server.stack.data_to_send()
    return server, client


class MessageTests(SynchronousTestCase):

    def test_framebuffer_update(self):
        """A Raw rectangle lands in the client's framebuffer; pseudo-encodings become events."""
        server, client = running_pair()
        rgbx = np.zeros((2, 3, 4), dtype=np.uint8)
        rgbx[..., 0] = 200
        rgbx[1, 2] = (1, 2, 3, 0)
        pixels = rgbx[..., 2::-1].copy()
        wire = np.concatenate([pixels, np.zeros((2, 3, 1), np.uint8)], axis=2).tobytes()
        update = (enc_messages.framebuffer_update(2) + rect_header(4, 5, 3, 2, RAW) + wire
                  + pseudo.desktop_name("renamed"))
        server.stack.send(update + enc_messages.bell() + enc_messages.server_cut_text(b"clip"))
        converse(server, client)
        self.assertIsNone(client.error)
        kinds = [type(e) for e in client.events[-5:]]
        self.assertEqual(kinds, [RectDecoded, DesktopNameChanged, UpdateComplete,
                                 m.Bell, m.ServerCutText])
        fb = client.stack.rfb.framebuffer.rgbx()
        self.assertEqual(fb[5:7, 4:7, :3].tolist(), rgbx[..., :3].tolist())
        self.assertEqual(client.events[-1], m.ServerCutText(b"clip"))

    def test_update_split_anywhere(self):
        """An update arriving a byte at a time decodes the same."""
        server, client = running_pair()
        update = (enc_messages.framebuffer_update(1) + rect_header(0, 0, 2, 1, RAW)
                  + bytes(range(8)) + enc_messages.bell())
        for i in range(len(update)):
            client.feed(update[i:i + 1])
        self.assertIsNone(client.error)
        self.assertEqual([type(e) for e in client.events[-3:]],
                         [RectDecoded, UpdateComplete, m.Bell])

    def test_set_pixel_format_reaches_server_and_decoder(self):
        """send(SetPixelFormat) goes to the server and switches the client's decoder."""
        server, client = running_pair()
        pf = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
        client.stack.rfb.send(m.SetPixelFormat(pf))
        client.stack.rfb.send(m.FramebufferUpdateRequest(False, 0, 0, 64, 48))
        converse(server, client)
        self.assertEqual(server.events[-2:], [m.SetPixelFormat(pf),
                                              m.FramebufferUpdateRequest(False, 0, 0, 64, 48)])
        self.assertEqual(client.stack.rfb.framebuffer.pf, pf)

    def test_colour_map(self):
        """SetColourMapEntries is reported and given to the decoder."""
        server, client = running_pair()
        server.stack.send(enc_messages.set_colour_map_entries(0, [(65535, 0, 0)]))
        converse(server, client)
        self.assertEqual(client.events[-1], m.SetColourMapEntries(0, [(65535, 0, 0)]))
        self.assertEqual(client.stack.rfb.framebuffer.colour_map[0].tolist(), [255, 0, 0])

    def test_bad_updates(self):
        """Unknown messages and undecodable rectangles are RemoteProtocolErrors."""
        for wire in (b"\x07",
                     enc_messages.framebuffer_update(1) + rect_header(60, 0, 10, 1, RAW),
                     enc_messages.framebuffer_update(1) + rect_header(0, 0, 1, 1, 99)):
            server, client = running_pair()
            client.feed(wire)
            self.assertIsInstance(client.error, RemoteProtocolError)


class LimitTests(SynchronousTestCase):

    def client_at_security(self, minor=8):
        client = ClientConnection(ClientSecurity(), limits=Limits(max_reason=10))
        client.receive_data(b"RFB 003.%03d\n" % minor)
        client.next_event()
        return client

    def test_reason_limit(self):
        """A refusal reason longer than the limit is refused from its length field."""
        client = self.client_at_security()
        client.receive_data(b"\x00" + struct.pack(">I", 11))
        self.assertRaises(RemoteProtocolError, client.next_event)

    def test_framebuffer_limit(self):
        """A ServerInit announcing more pixels than the limit is refused."""
        client = ClientConnection(ClientSecurity(),
                                  limits=Limits(max_client_framebuffer_pixels=100))
        client.receive_data(b"RFB 003.008\n\x01\x01" + struct.pack(">I", 0))
        while client.next_event() is not NEED_DATA:
            pass
        client.receive_data(m.encode_server_init(11, 10, DEFAULT_FORMAT, "", 10))
        with self.assertRaises(RemoteProtocolError) as cm:
            client.next_event()
        self.assertIn("11x10", cm.exception.reason)


def _client_scripts():
    v = b"RFB 003.008\n"
    return [b"", v, v + b"\x01\x02", v + b"\x01\x13", v + b"\x01\x13\x00\x02",
            v + b"\x01\x13\x00\x02\x00", v + b"\x01\x01",
            v + b"\x01\x01\x00\x00\x00\x00",
            v + b"\x01\x01\x00\x00\x00\x00" + m.encode_server_init(4, 4, DEFAULT_FORMAT, "", 9)]


class GarbageTests(SynchronousTestCase):

    @settings(max_examples=300)
    @given(st.sampled_from(_client_scripts()), st.binary(max_size=300))
    def test_garbage_from_the_server(self, prefix, garbage):
        """Whatever a server sends, the client reports events or RemoteProtocolError."""
        client = ClientConnection(ClientSecurity(tls="x509", password=b"pw"),
                                  limits=Limits(max_reason=100, max_server_cut_text=100))
        try:
            for chunk in (prefix, garbage):
                if client.state is ClientState.TLS_HANDSHAKE:
                    break
                if chunk:
                    client.receive_data(chunk)
                while client.next_event() not in (NEED_DATA,) and \
                        client.state not in (ClientState.CLOSED, ClientState.TLS_HANDSHAKE):
                    pass
        except RemoteProtocolError:
            self.assertIs(client.state, ClientState.CLOSED)


class SecretTests(SynchronousTestCase):

    def test_password_not_in_repr(self):
        """The client's security and options never show the password."""
        from vncd.client import ClientOptions
        self.assertNotIn("hunter2", repr(ClientSecurity(password=b"hunter2")))
        self.assertNotIn("hunter2", repr(ClientOptions(password=b"hunter2")))
