"""Lee et al.'s comparison on phantom: the proposed adaptive batch with LR co-scaling and adaptive LR control.

One of the four methods of Section VI (Tables II-III), built by
lbsgd.paper.lee_method; benchmarks/lee_methods.py runs all four.

    launch/run.sh -np 2 python -m lbsgd.train --config configs/phantom_adaptive.py
"""

from lbsgd.paper import lee_method


def get_config():
    return lee_method("phantom", "adaptive")
