"""What is trained: the papers' networks with their BN tweaks, precise BN statistics, export (Codreanu et al. IV-C).

* `networks`: ResNet-50, CIFAR ResNets, EDSR (BN moving-average fraction,
  zero-gamma last BN)
* `batchnorm`: Keras' BatchNormalization computed by TensorFlow's fused kernel
* `precise_bn`: BN population statistics re-estimated with the current weights
* `export`: a finished run as `model.keras` and `ensemble.keras`
"""

from lbsgd._exports import lazy

_WHERE: dict = {}
__getattr__, __dir__ = lazy(__name__, _WHERE)
