"""lbsgd: large-minibatch SGD on CPU clusters with Horovod and Keras 3."""

__version__ = "0.1.0"
