"""`python -m benchmarks ...`: the same benchmark as `pyalexnet bench ...`, run by the same code.

Through pyalexnet.cli.main (pyalexnet.bench.main), so that Ctrl-C, a reader gone away (`| head -1`) and a file error end as they do
for `pyalexnet bench` (exit 130, 141 quietly, one line), not with a traceback.
"""
import sys

from pyalexnet.bench import main

sys.exit(main(sys.argv[1:]))  # recorded in the results as `pyalexnet bench ARGV`
