"""Load and ceiling measurements of PRODUCT.md §9, run by ``orderly bench``.

Start with :mod:`benchmarks.runner`; README's "Benchmark" section and
``orderly bench --help`` say how to run it.
"""
