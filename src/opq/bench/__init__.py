"""Benchmarks of opq's components, each a function returning its figures (run by `opq bench`)."""
