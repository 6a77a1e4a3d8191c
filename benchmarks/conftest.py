"""Benchmarks run with `pytest benchmarks/ --benchmark-only` (pytest-benchmark); never part of CI's test run."""
