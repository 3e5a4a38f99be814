"""Benchmarks of the relay, connection setup and concurrency (see bench/RESULTS.md)."""
