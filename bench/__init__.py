"""Benchmarks for sessionlayer: ``python -m bench`` (or ``make bench``).

Each module measures one part against a plain-Python baseline and prints a
table; see :mod:`bench.codec` for the SPDU decoder.
"""
