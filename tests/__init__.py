"""vncd's trial test suite.

Hypothesis runs derandomized with a bounded number of examples so a CI run
is repeatable and its length predictable; set ``VNCD_HYPOTHESIS=explore``
for a randomized, longer run by hand.
"""

import os

# creds configures OpenSSL process-wide on import (see creds._openssl_config).
# Trial imports pyOpenSSL before any test package, so a test process is always
# the "too late" case: TLS 1.3 session tickets stay on in-process, and the
# engine's once-per-process warning about it would land in whichever test
# happens to build the first server context.  Tests that need the real
# behaviour run vncd in a fresh interpreter (tests.creds.test_openssl_config
# covers both the setting and the warning there).
import creds
import creds.engine

creds.engine._tickets_warned = True

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass
else:
    settings.register_profile(
        "ci",
        deadline=None,
        derandomize=True,
        max_examples=150,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    settings.register_profile(
        "explore", deadline=None, max_examples=5000,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile(os.environ.get("VNCD_HYPOTHESIS", "ci"))
