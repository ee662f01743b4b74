"""Fault injection against the real serving stack: `python -m chaos`."""
