"""``python -m vncd``: the same as the ``vncd`` command."""

import sys

from vncd.cli import main

sys.exit(main())
