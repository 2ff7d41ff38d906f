"""vncd: a VNC (RFB) server with QEMU's model of TLS credentials.

This package holds the RFB protocol, screens, encoders, the Twisted server,
the project's own RFB client and the ``vncd`` command.  It contains no
certificate logic: TLS goes through :mod:`creds.session` only.
"""

__version__ = "0.1.0"
