"""Helpers shared by every test layer: the real command line, throw-away pipeline
repositories, and the servers of the scale-out tests."""
