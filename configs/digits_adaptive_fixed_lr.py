"""Lee et al.'s comparison on digits: the adaptive batch (Algorithm 1) with a fixed LR.

One of the four methods of Section VI (Tables II-III), built by
lbsgd.paper.lee_method; benchmarks/lee_methods.py runs all four.

    launch/run.sh -np 2 python -m lbsgd.train --config configs/digits_adaptive_fixed_lr.py
"""

from lbsgd.paper import lee_method


def get_config():
    return lee_method("digits", "adaptive_fixed_lr")
