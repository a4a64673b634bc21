"""Mauka's own analysis plugins, one module each, registered as entry points in pyproject.toml."""
