"""Codreanu et al.'s large-batch recipe on real data: Fashion-MNIST, global batch 2048.

ResNet-8 (stride-2 stem) on all 60,000 Fashion-MNIST training images for 16
epochs (464 optimizer updates), evaluated on the 10,000 test images; linear LR
scaling from 0.1 per 128 images (peak 1.6), 2-epoch gradual warmup, linear
decay, and a 1-epoch final collapse (power-2 LR, weight decay 5e-5 -> 1e-4,
scale/aspect augmentation off). One row of benchmarks/reproduce.py's batch
ladder (part a). About 4 minutes on 2 ranks here. Needs Debian's
dataset-fashion-mnist (launch/install.sh installs it).

    launch/run.sh -np 2 python -m lbsgd.train --config configs/fashion_mnist_resnet.py
    launch/run.sh -np 2 python -m lbsgd.train --config configs/fashion_mnist_resnet.py \\
        --batch_size=8192 --model.precise_bn_batches=16
"""

from lbsgd.paper import fashion_mnist


def get_config():
    return fashion_mnist("fashion_mnist_resnet", batch_size=2048, collapse_epochs=1)
