"""Benchmarks: `make bench` (bench/run.py) and the soak (bench/soak.py)."""
