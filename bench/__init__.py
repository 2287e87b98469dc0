"""Benchmarks of jibrild against the floor of its interpreter and libraries.

`make bench` runs them; `python -m bench --help` lists the options.
"""
