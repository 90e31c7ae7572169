"""Benchmarks for outreach: ``python benchmarks/run.py`` (see ``run.py``).

Not part of the installed package and never run by the test suite (one smoke test
aside): each figure of the issues is measured here, against the real CLI, with data that
``data.py`` generates from a seed.
"""
