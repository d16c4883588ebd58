"""`python -m benchmarks ...`: the same benchmark as `pyalexnet bench ...`."""
import sys

from pyalexnet.bench import main

sys.exit(main(prog="python -m benchmarks"))
