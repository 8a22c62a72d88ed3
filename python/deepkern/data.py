"""Data: a seeded mini-batch loader, dataset splits, standardisation, and the digits
data set that ships offline with scikit-learn (the `examples` extra).

DataLoader(data, batch_size, shuffle, seed, drop_last, dtype) walks arrays that
share their first dimension. Shuffling draws a fresh permutation per epoch from a
numpy Generator created once from `seed`, so a run is reproducible and epochs still
differ. A shuffled batch is one fancy-indexing gather (a contiguous copy); an
unshuffled one is a slice. `dtype` converts the float arrays once, up front.
"""
import numbers

import numpy as np


def _as_arrays(data, op):
    single = not isinstance(data, (tuple, list))
    arrays = [data] if single else list(data)
    if not arrays:
        raise ValueError(f"[{op}] no arrays given")
    arrays = [np.asarray(a) for a in arrays]
    for i, a in enumerate(arrays):
        if a.ndim == 0:
            raise ValueError(f"[{op}] array {i} is 0-d; every array needs a first (sample) dimension")
        if len(a) != len(arrays[0]):
            raise ValueError(f"[{op}] array {i} has {len(a)} samples, array 0 has {len(arrays[0])}")
    return arrays, single


class DataLoader:
    """Mini-batches of (X,) or (X, y, ...): yields a tuple of batches, or one array
    when `data` is a single array."""

    def __init__(self, data, batch_size=1, shuffle=False, seed=None, drop_last=False, dtype=None):
        self.arrays, self._single = _as_arrays(data, "DataLoader")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"[DataLoader] batch_size must be a positive integer, got {batch_size!r}")
        if dtype is not None:
            dt = np.dtype(dtype)
            self.arrays = [np.ascontiguousarray(a, dtype=dt) if a.dtype.kind == "f" else a for a in self.arrays]
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), bool(shuffle), bool(drop_last)
        self._rng = np.random.default_rng(seed)

    @property
    def num_samples(self):
        return len(self.arrays[0])

    def __len__(self):
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        n, b = self.num_samples, self.batch_size
        order = self._rng.permutation(n) if self.shuffle else None
        for k in range(len(self)):
            sl = slice(k * b, min((k + 1) * b, n))
            batch = tuple(a[order[sl]] if order is not None else a[sl] for a in self.arrays)
            yield batch[0] if self._single else batch


def _count(size, n, name):
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise ValueError(f"[train_val_test_split] {name} must be a fraction in [0, 1) or a count, got {size!r}")
    if isinstance(size, numbers.Integral):
        if not 0 <= size <= n:
            raise ValueError(f"[train_val_test_split] {name}={size} is not a count in [0, {n}]")
        return int(size)
    if not 0.0 <= size < 1.0:
        raise ValueError(f"[train_val_test_split] {name}={size} is not a fraction in [0, 1)")
    return int(round(size * n))


def train_val_test_split(*arrays, val_size=0.1, test_size=0.2, shuffle=True, seed=0):
    """Split arrays that share their first dimension into train, validation and test
    parts; sizes are fractions of the whole or counts. Returns (train, val, test),
    each a tuple with one array per input (a single array when one was given)."""
    arrays, single = _as_arrays(list(arrays), "train_val_test_split")
    single = len(arrays) == 1
    n = len(arrays[0])
    n_val, n_test = _count(val_size, n, "val_size"), _count(test_size, n, "test_size")
    if n_val + n_test > n:
        raise ValueError(f"[train_val_test_split] val ({n_val}) + test ({n_test}) exceed the {n} samples")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    parts = (order[:n - n_val - n_test], order[n - n_val - n_test:n - n_test], order[n - n_test:])
    out = tuple(tuple(a[idx] for a in arrays) for idx in parts)
    return tuple(p[0] for p in out) if single else out


def standardize(train, *others, eps=1e-8):
    """(x - mean) / std per feature with the statistics of `train` (features whose
    std is below eps are only centred). Returns the transformed train and others."""
    train = np.asarray(train)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std < eps, 1.0, std).astype(train.dtype)
    res = [((np.asarray(a) - mean) / std).astype(train.dtype) for a in (train,) + others]
    return res[0] if not others else tuple(res)


def load_digits(flatten=True, dtype=np.float32):
    """scikit-learn's 8x8 digits (1797 images, 10 classes, pixel values 0..16).
    Returns (X, y): X (1797, 64) when flatten, else (1797, 1, 8, 8) (NCHW); y int64."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:
        raise ImportError("[load_digits] needs scikit-learn: pip install deepkern[examples]") from e
    d = sk_load_digits()
    X = d.data.astype(dtype)
    return (X if flatten else X.reshape(-1, 1, 8, 8)), d.target.astype(np.int64)
