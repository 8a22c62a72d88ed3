"""Batch augmentation for image data (N, C, H, W) (GaussianNoise takes any shape).

Each augmentation is called as aug(xb, rng) with a numpy Generator and returns a
new array (the input, which may be a view of the data set, is never written), so
DataLoader(..., transform=aug) draws every random choice from its seeded per-epoch
generator: a run is reproducible and resumable. Each works on the whole batch at
once (one gather, one mask), never sample by sample. Batches may be numpy or CuPy
arrays; the random draws are made on the host either way (so a seed augments
alike on both devices) and copied to the batch's device.
"""
import numbers

import numpy as np

from ._array import array_module


def _check_images(x, op):
    if x.ndim != 4:
        raise ValueError(f"[{op}] expects a batch of images (N, C, H, W), got shape {x.shape}")


def _pair(v, name, op):
    vals = (v, v) if isinstance(v, numbers.Integral) else tuple(v)
    if len(vals) != 2 or any(isinstance(a, bool) or not isinstance(a, numbers.Integral) for a in vals):
        raise ValueError(f"[{op}] {name} must be an int or a pair of ints, got {v!r}")
    return int(vals[0]), int(vals[1])


class RandomCrop:
    """torchvision's RandomCrop(size, padding) per sample: zero-pad by `padding`,
    then cut a size window at a random offset (each sample its own)."""

    def __init__(self, size, padding=0, fill=0.0):
        self.size = _pair(size, "size", "RandomCrop")
        self.padding = _pair(padding, "padding", "RandomCrop")
        if min(self.size) < 1 or min(self.padding) < 0:
            raise ValueError(f"[RandomCrop] size must be >= 1 and padding >= 0, got {size!r}, {padding!r}")
        self.fill = fill

    def __call__(self, x, rng):
        _check_images(x, "RandomCrop")
        (ph, pw), (h, w) = self.padding, self.size
        n, c, H, W = x.shape
        if h > H + 2 * ph or w > W + 2 * pw:
            raise ValueError(f"[RandomCrop] crop {self.size} is larger than the padded image "
                             f"{(H + 2 * ph, W + 2 * pw)}")
        xp = array_module(x)
        padded = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=self.fill)
        oy = xp.asarray(rng.integers(0, H + 2 * ph - h + 1, n))
        ox = xp.asarray(rng.integers(0, W + 2 * pw - w + 1, n))
        rows = (oy[:, None] + xp.arange(h))[:, None, :, None]
        cols = (ox[:, None] + xp.arange(w))[:, None, None, :]
        return padded[xp.arange(n)[:, None, None, None], xp.arange(c)[None, :, None, None], rows, cols]


class RandomHorizontalFlip:
    """Mirror each image left-right with probability p."""

    def __init__(self, p=0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"[RandomHorizontalFlip] p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, x, rng):
        _check_images(x, "RandomHorizontalFlip")
        xp = array_module(x)
        flip = xp.asarray(rng.random(len(x)) < self.p)
        return xp.where(flip.reshape((-1,) + (1,) * (x.ndim - 1)), x[..., ::-1], x)


class GaussianNoise:
    """x + std * N(0, 1), noise drawn in x's dtype."""

    def __init__(self, std=0.1):
        if not std >= 0:
            raise ValueError(f"[GaussianNoise] std must be >= 0, got {std!r}")
        self.std = float(std)

    def __call__(self, x, rng):
        dt = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        noise = rng.standard_normal(x.shape, dtype=dt)
        noise *= dt.type(self.std)
        noise = array_module(x).asarray(noise)
        return (x + noise).astype(dt, copy=False)


class Compose:
    """Apply augmentations in order, all drawing from the same generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"[Compose] transforms[{i}] is not callable")

    def __call__(self, x, rng):
        for t in self.transforms:
            x = t(x, rng)
        return x
