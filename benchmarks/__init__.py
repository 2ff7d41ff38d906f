"""Benchmarks: scripts run by hand that print a table (never run by the tests).

    .venv/bin/python -m benchmarks.suite      # all of it vs QEMU 7.2 and x11vnc: table + JSON
    .venv/bin/python -m benchmarks.profile    # py-spy profile per encoding (the bench extra)
    .venv/bin/python -m benchmarks.encoders   # per-encoding cost at 1080p
    .venv/bin/python -m benchmarks.updates    # damage detection, fan-out, latency
    .venv/bin/python -m benchmarks.connections  # handshakes/s and CPU per handshake vs QEMU 7.2
    .venv/bin/python -m benchmarks.throughput   # full-frame 1080p updates/s vs x11vnc
    .venv/bin/python -m benchmarks.reload_storm --before DIR  # latency through a SIGHUP storm
    .venv/bin/python -m benchmarks.frontdoor    # -screen vnc: latency, throughput vs direct

Numbers depend on the machine and its load; each script says what it
measured and how many repetitions it took the best or the percentiles of.
"""
