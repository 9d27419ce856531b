"""Randomised Shepp-Logan phantoms for the image-restoration task (Lee et al. VI-A).

Lee et al. train a modified EDSR to restore "Phantom" images: the classical
Shepp-Logan head phantom with the orientation, shape and size of each of its
ten ellipses randomised. :func:`phantoms` draws such images (any size; 256 in
the paper) deterministically from a seed; :func:`restoration_pairs` adds
Gaussian noise to make (noisy input, clean target) pairs. Values are in [0, 1].
"""

from __future__ import annotations

import numpy as np

# The modified Shepp-Logan phantom (Toft): intensity, semi-axes a, b, centre x0, y0,
# rotation in degrees. Images are the clipped sum of the ellipses' intensities.
SHEPP_LOGAN = np.array([
    [1.0, 0.6900, 0.9200, 0.00, 0.0000, 0.0],
    [-0.8, 0.6624, 0.8740, 0.00, -0.0184, 0.0],
    [-0.2, 0.1100, 0.3100, 0.22, 0.0000, -18.0],
    [-0.2, 0.1600, 0.4100, -0.22, 0.0000, 18.0],
    [0.1, 0.2100, 0.2500, 0.00, 0.3500, 0.0],
    [0.1, 0.0460, 0.0460, 0.00, 0.1000, 0.0],
    [0.1, 0.0460, 0.0460, 0.00, -0.1000, 0.0],
    [0.1, 0.0460, 0.0230, -0.08, -0.6050, 0.0],
    [0.1, 0.0230, 0.0230, 0.00, -0.6060, 0.0],
    [0.1, 0.0230, 0.0460, 0.06, -0.6050, 0.0],
])


def phantoms(num: int, size: int, seed: int = 0, scale_range=(0.8, 1.2)) -> np.ndarray:
    """`num` randomised phantoms, float32 of shape (num, size, size, 1) in [0, 1].

    Each ellipse gets a random rotation in [0, 180) degrees and its semi-axes
    independent random factors in `scale_range` (shape and size); the two
    outer ellipses (the skull) share theirs so they stay a ring.
    """
    if num < 0 or size < 2:
        raise ValueError(f"Arguments `num` >= 0 and `size` >= 2 required. Received: num={num}, "
                         f"size={size}")
    rng = np.random.default_rng(seed)
    coords = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    x = coords[None, :]
    y = -coords[:, None]
    out = np.zeros((num, size, size), np.float32)
    for n in range(num):
        scales = rng.uniform(*scale_range, size=(10, 2))
        angles = rng.uniform(0.0, 180.0, size=10)
        scales[1], angles[1] = scales[0], angles[0]
        image = np.zeros((size, size), np.float64)
        for (intensity, a, b, x0, y0, _), (sa, sb), phi in zip(SHEPP_LOGAN, scales, angles):
            t = np.deg2rad(phi)
            xr = (x - x0) * np.cos(t) + (y - y0) * np.sin(t)
            yr = -(x - x0) * np.sin(t) + (y - y0) * np.cos(t)
            image += intensity * (((xr / (a * sa)) ** 2 + (yr / (b * sb)) ** 2) <= 1.0)
        out[n] = np.clip(image, 0.0, 1.0)
    return out[..., None]


def restoration_pairs(num: int, size: int, noise_std: float, seed: int = 0):
    """(noisy inputs, clean targets) for `num` phantoms; the noise is fixed by the seed."""
    clean = phantoms(num, size, seed)
    noise = np.random.default_rng(seed + 1_000_003).normal(0.0, noise_std, clean.shape)
    return (clean + noise).astype(np.float32), clean
