"""Benchmarks: scripts run by hand that print a table (never run by the tests).

    .venv/bin/python -m benchmarks.encoders   # per-encoding cost at 1080p
    .venv/bin/python -m benchmarks.updates    # damage detection, fan-out, latency

Numbers depend on the machine and its load; each script says what it
measured and how many repetitions it took the best or the percentiles of.
"""
