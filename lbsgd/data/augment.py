"""Augmentation and decoding: scale/aspect crops the final collapse switches off (Codreanu et al. IV-B, V-B).

Inception-style scale and aspect-ratio augmentation, whose switch
(:class:`AugmentSwitch`) the final collapse turns off while the random crop
and flip stay; evaluation on a 224 centre crop of the 256-resized image. Every
random choice is seeded by (seed, epoch, index), so a resumed run sees the
same images.
"""

from __future__ import annotations

import tensorflow as tf

from lbsgd.config import DataConfig


EVAL_RESIZE_RATIO = 256 / 224  # evaluate on a 224 centre crop of the 256-resized image


class AugmentSwitch:
    """Per-epoch on/off switch for scale/aspect augmentation, read by the pipeline at run time.

    Holds one bool per epoch in a variable that the input pipeline reads when
    it produces that epoch's examples, so a callback (the final collapse)
    turns augmentation off without rebuilding the pipeline, and a resumed run
    reads the same values. The pipeline prefetches, so set an epoch's value
    before the epoch before it ends (RecipePhases writes the whole plan at
    train begin).
    """

    def __init__(self, num_epochs: int, on: bool = True):
        if num_epochs < 1:
            raise ValueError(f"Argument `num_epochs` must be >= 1. Received: num_epochs={num_epochs}")
        self.num_epochs = int(num_epochs)
        self.variable = tf.Variable(tf.fill([self.num_epochs], bool(on)), trainable=False,
                                    name="augment_switch")

    def set(self, first_epoch: int, on: bool, last_epoch: int | None = None) -> None:
        """Sets epochs [first_epoch, last_epoch) (default: to the end) on or off."""
        values = self.variable.numpy()
        values[first_epoch:last_epoch] = bool(on)
        self.variable.assign(values)

    def is_on(self, epoch):
        """The switch for `epoch` (a tensor), clipped to the table's range."""
        e = tf.clip_by_value(tf.cast(epoch, tf.int32), 0, self.num_epochs - 1)
        return tf.gather(self.variable, e)

    def values(self) -> list[bool]:
        return [bool(v) for v in self.variable.numpy()]


def _flip(image, seed, enabled):
    if not enabled:
        return image
    return tf.image.stateless_random_flip_left_right(image, seed=seed + 1)


def random_resized_crop(image, size: int, seed, min_area: float = 0.08):
    """Inception scale and aspect-ratio augmentation: a random box of area
    [min_area, 1] and aspect ratio [3/4, 4/3] of the image, resized to size x size."""
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([1, 0, 4], tf.float32), seed=seed,
        min_object_covered=min_area, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(min_area, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, begin, extent)
    return tf.image.resize(crop, [size, size], method="bilinear", antialias=True)


def resize_shorter_side(image, side: int):
    """Resizes so the shorter side is `side`, keeping the aspect ratio."""
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = side / tf.reduce_min(hw)
    new = tf.cast(tf.round(hw * scale), tf.int32)
    return tf.image.resize(image, tf.maximum(new, side), method="bilinear", antialias=True)


def _augment(image, seed, augment_on, cfg: DataConfig, crop):
    """Training augmentation of `cfg.augment`: "crop", or "scale_aspect" gated by
    `augment_on` (random-resized crop when on, the plain `crop` when off)."""
    if cfg.augment == "crop":
        return _flip(crop(image, seed), seed, cfg.flip)
    return tf.cond(tf.convert_to_tensor(augment_on),
                   lambda: _flip(random_resized_crop(image, cfg.image_size, seed, cfg.min_area),
                                 seed, cfg.flip),
                   lambda: crop(image, seed))


def array_decode(cfg: DataConfig, scale: float = 1.0):
    """Images already in RAM at `image_size` (digits, Fashion-MNIST, synthetic): pad-and-crop
    style. `scale` multiplies the stored values (1/255 for uint8 pixels)."""
    size, pad = cfg.image_size, max(1, cfg.image_size // 8)

    def crop(image, seed):
        image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        return tf.image.stateless_random_crop(image, [size, size, image.shape[-1]], seed=seed)

    def decode(image, training, seed, augment_on=True):
        image = tf.cast(image, tf.float32)
        if scale != 1.0:
            image = image * scale
        if not training or cfg.augment == "none":
            return image
        return _augment(image, seed, augment_on, cfg, crop)
    return decode


def file_decode(cfg: DataConfig, in_ram: bool):
    """Encoded image files (folder, ImageNet): ImageNet style crops and evaluation."""
    size = cfg.image_size
    resize = int(round(size * EVAL_RESIZE_RATIO))

    def crop(image, seed):
        image = resize_shorter_side(image, resize)
        return tf.image.stateless_random_crop(image, [size, size, 3], seed=seed)

    def decode(item, training, seed, augment_on=True):
        data = item if in_ram else tf.io.read_file(item)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = tf.cast(image, tf.float32) / 255.0
        image.set_shape([None, None, 3])
        if not training or cfg.augment == "none":
            image = resize_shorter_side(image, resize)
            hw = tf.shape(image)[:2]
            top, left = (hw[0] - size) // 2, (hw[1] - size) // 2
            return tf.ensure_shape(image[top:top + size, left:left + size, :], [size, size, 3])
        return tf.ensure_shape(_augment(image, seed, augment_on, cfg, crop), [size, size, 3])
    return decode
