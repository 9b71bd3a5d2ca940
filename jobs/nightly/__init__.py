"""Nightly scoring's own pieces: routes, work lists, the manifest of outcomes, its tables."""
