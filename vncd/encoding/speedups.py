# -*- test-case-name: tests.vncd.test_speedups -*-
"""The optional C extension :mod:`vncd.encoding._speedups`, if it was built.

``pip install`` compiles ``vncd/encoding/_speedups.c`` (``setup.py``) when
a C compiler and the Python headers are there.  Its loops -- the Hextile
and ZRLE tile writers, the Raw channel shuffle, the file screen's
square-by-square look (``look_tiles``), a tile compare for damage
(``tile_compare``) -- replace numpy code that does the same work several
times slower; the numpy code stays,
both as the fallback when the extension is missing and as the reference
the tests compare the extension with.

:data:`module` is the extension, or ``None`` (:data:`why_not` says why,
logged once at debug level).  Knows nothing about connections.
"""

from __future__ import annotations

from twisted.logger import Logger

__all__ = ["module", "why_not"]

log = Logger(namespace="vncd.encoding.speedups")

#: Why the extension is not used (``None`` when it is).
why_not: str | None = None

try:
    from vncd.encoding import _speedups as module
except ImportError as exc:  # not built: no compiler or headers at install time
    module = None
    why_not = f"vncd.encoding._speedups cannot be imported ({exc}); using numpy"
    log.debug("{why}", why=why_not)
