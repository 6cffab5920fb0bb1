"""Benchmarks: scripts that print figures beside the baseline they beat.

    python -m bench projector --size small|large

They run against their own PostgreSQL databases (BENCH_DATABASE_URL,
BENCH_READ_DATABASE_URL; defaults on this machine's server) and never inside
the test suite.
"""
