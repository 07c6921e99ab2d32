"""Benchmarks of the inference runtime: `python -m bench` (or `make bench`).

Every measurement runs in a child process so that each one starts from the same
state and the serving process's memory is its own; this package only orchestrates
them, publishes the models they serve and writes `bench/results/`.
"""
