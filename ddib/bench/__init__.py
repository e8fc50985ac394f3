"""Benchmarks that print numbers: solver accuracy vs cost, throughput, speed settings, source identification."""
