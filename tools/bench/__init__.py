"""Benchmarks: one command per figure, each prints a table and writes JSON (see BENCHMARKS.md)."""
