"""Large-batch optimizer pieces: weight decay, momentum correction, LARS (Codreanu et al. IV-B, V-B; You et al. 2017).

* `decay`: Caffe-style L2 on the averaged gradient, which variables it
  decays, the momentum correction, SGD's fused momentum update
* `lars`: LARS as a Keras 3 optimizer
"""

from lbsgd._exports import lazy

_WHERE: dict = {}
__getattr__, __dir__ = lazy(__name__, _WHERE)
