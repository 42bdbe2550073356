"""Benchmarks: scripts that measure shoprec stages, not timed tests."""
