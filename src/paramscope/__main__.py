"""``python -m paramscope``: the command line, as the ``paramscope`` console script runs it."""

from .cli import run

if __name__ == "__main__":  # not on import (pytest's --doctest-modules imports every module it is given)
    raise SystemExit(run())
