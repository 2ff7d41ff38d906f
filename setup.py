"""Build of vncd's optional C extension; everything else is in pyproject.toml.

``vncd.encoding._speedups`` (vncd/encoding/_speedups.c, plain CPython C
API) holds the Hextile tile loop, the Raw channel shuffle and the file
screen's band compare.  It is optional: without a C compiler and the
Python headers (Debian: ``gcc``, ``python3-dev``) the install still
succeeds and vncd uses its numpy code for the same work.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("vncd.encoding._speedups", ["vncd/encoding/_speedups.c"],
              extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra",
                                  "-Wno-missing-field-initializers", "-Wno-unused-parameter"],
              optional=True),
])
