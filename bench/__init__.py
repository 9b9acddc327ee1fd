"""Benchmarks: long-running measurements kept out of `make test`; `make bench` runs them all."""
