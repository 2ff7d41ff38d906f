"""compat: vncd's command-line syntax.

QEMU option strings (``key=value`` lists with ``,,`` escaping and an
implied first key, and the JSON object form), the modern ``-object`` /
``-vnc`` vocabulary, and the translation of legacy ``-vnc`` TLS options
(``tls``, ``x509=``, ``x509verify=``, ``acl``) into credential objects.
Knows nothing about sockets; the result is a :class:`compat.config.Invocation`.
"""
