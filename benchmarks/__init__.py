"""Benchmarks: `make bench` runs them and writes their sections of docs/performance.md."""
