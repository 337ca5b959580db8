"""Helpers shared by the test packages and the benchmarks; no fixtures, no tests."""
