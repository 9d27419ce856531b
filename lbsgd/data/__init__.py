"""Per-rank input data whose order is a pure function of (seed, epoch) (Codreanu et al. IV-A/B, V-B; Lee et al. IV-A).

* `sources`: datasets as indexable examples (digits, Fashion-MNIST, synthetic,
  image folders, CIFAR-10, ImageNet, phantoms)
* `augment`: scale/aspect crops and their switch (off in the final collapse), decoding
* `pipeline`: each rank's share of every epoch's global batches, validation sets
* `phantom`: the randomised Shepp-Logan phantoms of Lee et al. VI-A

Every public name of the first three is importable from `lbsgd.data` itself.
"""

from lbsgd._exports import lazy

_WHERE = {
    "AugmentSwitch": "augment", "EVAL_RESIZE_RATIO": "augment", "array_decode": "augment",
    "file_decode": "augment", "random_resized_crop": "augment",
    "resize_shorter_side": "augment", "DIGITS_EXAMPLES": "lbsgd.config.data",
    "IMAGE_EXTENSIONS": "lbsgd.config.data", "epoch_indices": "pipeline",
    "epoch_train_dataset": "pipeline", "fixed_train_subset": "pipeline",
    "steps_per_epoch": "pipeline", "train_dataset": "pipeline", "val_dataset": "pipeline",
    "pipeline_threads": "pipeline", "CORES_PER_PIPELINE_THREAD": "pipeline",
    "IMAGE_SIGNATURES": "sources", "Source": "sources", "load_source": "sources",
    "num_train_examples": "sources", "read_idx": "sources", "stratified_subset": "sources",
    "subset_indices": "sources",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy(__name__, _WHERE)
