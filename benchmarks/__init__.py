"""Benchmarks of the aevb package and the book (issue 7): ``make bench``.

``python -m benchmarks --out benchmarks/report.json`` measures training throughput against a
conventional PyTorch loop and against the machine's matrix-multiply speed, the time of Figure 2
at the paper's scale (on a GPU when there is one), and, with ``--chapters``, the time and
memory of every chapter. The book's "Performance" appendix plots the committed report.
"""
