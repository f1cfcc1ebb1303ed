"""Tools beside the method: benchmarks (bench.py), the one-shot GPU check (gpu_check.py) and the
experiment harness (compare.py).

They are not part of the reading path. Run them from the repository root, as scripts or as
modules (`python tools/bench.py --help`, `python -m tools.compare --help`); each puts the root
on sys.path itself and runs the root's train.py by path.
"""
