"""Benchmarks. Run each as a module from the repository root, `python -m bench.NAME`: each prints a
table last and writes JSON under bench/out/. (As modules, `bench/queue.py` cannot shadow the
standard library's `queue`, as it would if bench/ were put on sys.path by `python bench/queue.py`.)
"""
