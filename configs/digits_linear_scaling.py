"""Lee et al.'s comparison on digits: a fixed large batch with the linear scaling rule and 5-epoch warmup.

One of the four methods of Section VI (Tables II-III), built by
lbsgd.paper.lee_method; benchmarks/lee_methods.py runs all four.

    launch/run.sh -np 2 python -m lbsgd.train --config configs/digits_linear_scaling.py
"""

from lbsgd.paper import lee_method


def get_config():
    return lee_method("digits", "linear_scaling")
