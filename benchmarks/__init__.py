"""Benchmarks of pyalexnet (the harness lives in pyalexnet.bench so it ships with the package)."""
