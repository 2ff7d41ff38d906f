"""The RFB protocol, sans-I/O: bytes in, events and bytes out.

* :mod:`vncd.rfb.states` -- the one table of handshake transitions per side.
* :mod:`vncd.rfb.server` / :mod:`vncd.rfb.client` -- the two connection objects.
* :mod:`vncd.rfb.messages` -- normal messages, with named limits.
* :mod:`vncd.rfb.security` -- which security a display offers (QEMU's table).
* :mod:`vncd.rfb.vncauth`, :mod:`vncd.rfb.vencrypt` -- the two authentications.
* :mod:`vncd.rfb.stack` -- an RFB connection with its VeNCrypt TLS layer.

Nothing here opens sockets, uses a reactor, or looks inside a certificate:
TLS is reached only through :class:`creds.session.TLSSession`.
"""
