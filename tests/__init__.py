"""vncd's trial test suite.

Hypothesis runs derandomized with a bounded number of examples so a CI run
is repeatable and its length predictable; set ``VNCD_HYPOTHESIS=explore``
for a randomized, longer run by hand.
"""

import os

# creds configures OpenSSL process-wide on import; it must come before any
# test module imports pyOpenSSL (see creds._openssl_config).
import creds  # noqa: F401

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
