"""Reading runs back: figures, the scaling model, notebooks (Codreanu et al. V-A, Tables V, XI-XIII).

* `plots`: schedules, runs and ensembles as figures (`python -m lbsgd.plots`)
* `scaling`: the latency-bandwidth scaling model (`python -m lbsgd.scaling`)
* `notebook`: multi-rank training launched from a Jupyter cell, run readers
"""

from lbsgd._exports import lazy

_WHERE: dict = {}
__getattr__, __dir__ = lazy(__name__, _WHERE)
