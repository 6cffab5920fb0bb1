"""Benchmarks: scripts that print figures beside the baseline they beat.

    python -m bench all --size small|large     # everything, one data set, report + plots
    python -m bench projector --size small|large

They run against their own PostgreSQL databases (BENCH_DATABASE_URL,
BENCH_READ_DATABASE_URL; defaults on this machine's server), Redis
(BENCH_CACHE_URL, BENCH_BROKER_URL) and never inside the test suite.
"""
