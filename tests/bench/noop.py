"""The baseline job of tests/bench/worker.py and storm.py: RQ's cost with nothing to do.

A module of its own with no imports, so that a work horse importing it (RQ imports
a job's function in the fork) pays next to nothing for it.
"""


def noop(*args: object) -> None:
    """Nothing."""
