"""The RFB protocol, sans-I/O: bytes in, events and bytes out.

* :mod:`vncd.rfb.states` -- the one table of handshake transitions per side.
* :mod:`vncd.rfb.server` / :mod:`vncd.rfb.client` -- the two connection
  objects, on the shared loop of :mod:`vncd.rfb.connection`.
* :mod:`vncd.rfb.messages` -- normal messages, with the named limits of
  :mod:`vncd.rfb.limits`.
* :mod:`vncd.rfb.security` -- which security a display offers (QEMU's table).
* :mod:`vncd.rfb.vncauth`, :mod:`vncd.rfb.vencrypt` -- the two authentications.
* :mod:`vncd.rfb.tls`, :mod:`vncd.rfb.stack` -- an RFB connection with its
  VeNCrypt TLS layer.
* :mod:`vncd.rfb.events`, :mod:`vncd.rfb.errors` -- what comes out.
* :mod:`vncd.rfb.testing` -- in-memory pumps and a recording display.

Nothing here opens sockets, uses a reactor, or looks inside a certificate:
TLS is reached only through :class:`creds.session.TLSSession`.
"""
