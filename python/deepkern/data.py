"""Data: a seeded mini-batch loader, dataset splits, normalisation, augmentation,
readers for MNIST (IDX) and CIFAR-10 files, and the data sets that ship offline
with scikit-learn (the `examples` extra).

DataLoader(data, batch_size, shuffle, seed, drop_last, dtype, transform) walks
arrays that share their first dimension. Epoch e is shuffled with a permutation
drawn from a Generator seeded by (seed, e), and its augmentation draws from one
seeded by (seed, e, 1): an epoch's batches depend on the seed and the epoch number
alone, so a run resumed at epoch e sees the batches an uninterrupted run would
(fit calls set_epoch), and epochs still differ. A shuffled batch is one
fancy-indexing gather (a contiguous copy); an unshuffled one is a slice.
The arrays may be numpy or CuPy arrays: batches are gathered (and transformed)
where the data lives, then, with device=, copied to that device, one copy per
array per batch (fit passes the model's device).

File readers never unpickle arbitrary objects: CIFAR-10's python batches go
through a restricted unpickler that admits plain data (dicts, lists, bytes,
numbers) and numpy arrays only. A missing, truncated or malformed file raises one
clear error naming the file and what was wrong.
"""
import gzip
import io
import numbers
import os
import pickle

import numpy as np

from ._array import array_module, as_array, canonical, device_of, to_device, to_host
from .augment import Compose, GaussianNoise, RandomCrop, RandomHorizontalFlip  # noqa: F401 (re-exported)


def _as_arrays(data, op):
    single = not isinstance(data, (tuple, list))
    arrays = [data] if single else list(data)
    if not arrays:
        raise ValueError(f"[{op}] no arrays given")
    arrays = [as_array(a) for a in arrays]  # CuPy arrays stay on their GPU
    for i, a in enumerate(arrays):
        if a.ndim == 0:
            raise ValueError(f"[{op}] array {i} is 0-d; every array needs a first (sample) dimension")
        if len(a) != len(arrays[0]):
            raise ValueError(f"[{op}] array {i} has {len(a)} samples, array 0 has {len(arrays[0])}")
    return arrays, single


class DataLoader:
    """Mini-batches of (X,) or (X, y, ...): yields a tuple of batches, or one array
    when `data` is a single array. `transform(xb, rng)` (e.g. an augmentation from
    deepkern.data) is applied to the first array's batches with the epoch's generator.
    device: None (batches stay where the data is), "cpu", "cuda" or "cuda:N" (each
    batch copied there after the transform)."""

    def __init__(self, data, batch_size=1, shuffle=False, seed=None, drop_last=False, dtype=None, transform=None,
                 device=None):
        self.arrays, self._single = _as_arrays(data, "DataLoader")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"[DataLoader] batch_size must be a positive integer, got {batch_size!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"[DataLoader] transform must be callable (xb, rng) -> xb, got {type(transform).__name__}")
        if dtype is not None:
            dt = np.dtype(dtype)
            self.arrays = [array_module(a).ascontiguousarray(a, dtype=dt) if a.dtype.kind == "f" else a
                           for a in self.arrays]
        self.device = None if device is None else canonical(device)  # checked (and CUDA's presence) up front
        # Whether batches need a copy: not when the data already lives there (the common CPU case).
        self._move = self.device is not None and any(device_of(a) != self.device for a in self.arrays)
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), bool(shuffle), bool(drop_last)
        self.transform = transform
        # Without a seed, one drawn from the OS: runs differ, epochs of one run stay reproducible.
        if seed is None:
            seed = np.random.SeedSequence().entropy
        elif isinstance(seed, np.random.Generator):
            seed = seed.integers(2 ** 63)
        elif isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"[DataLoader] seed must be a non-negative integer, a numpy Generator or None, "
                             f"got {seed!r}")
        self.seed = int(seed)
        self.epoch = 0

    @property
    def num_samples(self):
        return len(self.arrays[0])

    def __len__(self):
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch):
        """The epoch the next iteration draws its shuffle and augmentation for."""
        self.epoch = int(epoch)

    def __iter__(self):
        n, b, epoch = self.num_samples, self.batch_size, self.epoch
        self.epoch += 1
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else None
        # The permutation is drawn on the host (the same batches on any device), then
        # copied once per epoch to where each array is.
        orders = [array_module(a).asarray(order) for a in self.arrays] if order is not None else None
        rng = np.random.default_rng([self.seed, epoch, 1]) if self.transform is not None else None
        for k in range(len(self)):
            sl = slice(k * b, min((k + 1) * b, n))
            batch = [a[o[sl]] for a, o in zip(self.arrays, orders)] if orders is not None else \
                [a[sl] for a in self.arrays]
            if rng is not None:
                batch[0] = self.transform(batch[0], rng)
            if self._move:
                batch = [to_device(a, self.device) for a in batch]
            yield batch[0] if self._single else tuple(batch)


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
    out = tuple(tuple(a[array_module(a).asarray(idx)] for a in arrays) for idx in parts)
    return tuple(p[0] for p in out) if single else out


# -- normalisation ---------------------------------------------------------------

class Standardizer:
    """(x - mean) / std with statistics fitted on the training set and applied to
    any other. per="feature": one mean and std per feature (statistics over the
    sample axis; for (N, C, H, W) that is one per pixel); per="channel": one per
    channel of (N, C, ...) data (statistics over every axis but 1). Features or
    channels whose std is below eps are only centred. X may be numpy or CuPy: the
    statistics are computed where X is and kept as numpy arrays (mean, std), so one
    fitted Standardizer transforms data on either device."""

    def __init__(self, per="feature", eps=1e-8):
        if per not in ("feature", "channel"):
            raise ValueError(f"[Standardizer] per must be 'feature' or 'channel', got {per!r}")
        self.per, self.eps = per, float(eps)
        self.mean = self.std = None

    def fit(self, X):
        X = as_array(X)
        xp = array_module(X)
        if X.dtype.kind != "f":
            X = X.astype(np.float64)
        if len(X) == 0:
            raise ValueError("[Standardizer] cannot fit on an empty array")
        if self.per == "channel":
            if X.ndim < 2:
                raise ValueError(f"[Standardizer] per='channel' needs (N, C, ...) data, got shape {X.shape}")
            axes = (0,) + tuple(range(2, X.ndim))
        else:
            axes = (0,)
        mean = X.mean(axis=axes, keepdims=True, dtype=np.float64)
        std = X.std(axis=axes, keepdims=True, dtype=np.float64)
        self.mean = to_host(mean[0].astype(X.dtype))
        self.std = to_host(xp.where(std < self.eps, 1.0, std)[0].astype(X.dtype))
        return self

    def transform(self, X):
        if self.mean is None:
            raise RuntimeError("[Standardizer] call fit(X_train) before transform")
        X = as_array(X)
        if X.shape[1:] != self.mean.shape and not (self.per == "channel" and X.ndim == self.mean.ndim + 1
                                                   and X.shape[1] == self.mean.shape[0]):
            raise ValueError(f"[Standardizer] fitted on samples of shape {self.mean.shape}, got {X.shape[1:]}")
        xp = array_module(X)
        return ((X - xp.asarray(self.mean)) / xp.asarray(self.std)).astype(self.mean.dtype)

    def fit_transform(self, X):
        return self.fit(X).transform(X)

    def inverse_transform(self, X):
        X = as_array(X)
        xp = array_module(X)
        return (X * xp.asarray(self.std) + xp.asarray(self.mean)).astype(self.mean.dtype)


def standardize(train, *others, eps=1e-8, per="feature"):
    """Standardizer(per, eps) fitted on `train`, applied to train and each of
    `others`. Returns the transformed train, or a tuple when others are given."""
    s = Standardizer(per, eps).fit(train)
    res = [s.transform(a) for a in (train,) + others]
    return res[0] if not others else tuple(res)


# -- MNIST: the IDX format ---------------------------------------------------------

_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_bytes(path, op):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"[{op}] no such file: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # gzip, whatever the name says
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise ValueError(f"[{op}] {path}: corrupt gzip data ({e})") from None
    return raw


def read_idx(path):
    """One IDX file (MNIST's format, plain or gzipped) as a numpy array of its
    stored type (big-endian types converted to native)."""
    raw = _read_bytes(path, "read_idx")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"[read_idx] {path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'}; "
                         "expected 00 00, a type code and the number of dimensions)")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"[read_idx] {path}: truncated header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize  # Python ints: no overflow
    have = len(raw) - header
    if have != need:
        what = "truncated" if have < need else "has trailing bytes"
        raise ValueError(f"[read_idx] {path}: {what}: shape {shape} needs {need} data bytes, found {have}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory, names, op):
    for n in names:
        for candidate in (n, n + ".gz"):
            p = os.path.join(directory, candidate)
            if os.path.isfile(p):
                return p
    raise FileNotFoundError(f"[{op}] none of {', '.join(names)} (or .gz) in {directory}")


def load_mnist(path, train=True, dtype=np.float32, flatten=False):
    """MNIST (or Fashion-MNIST) from the directory `path` holding the IDX files
    (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-..., optionally .gz).
    Returns (X, y): X (N, 1, 28, 28) scaled to [0, 1] ((N, 784) when flatten), y int64."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"[load_mnist] no such directory: {path}")
    prefix = "train" if train else "t10k"
    images = read_idx(_find(path, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"], "load_mnist"))
    labels = read_idx(_find(path, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"], "load_mnist"))
    if images.ndim != 3 or labels.ndim != 1:
        raise ValueError(f"[load_mnist] expected images (N, H, W) and labels (N,), got {images.shape} and "
                         f"{labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"[load_mnist] {len(images)} images but {len(labels)} labels")
    X = images.astype(dtype) / dtype(255) if images.dtype == np.uint8 else images.astype(dtype)
    X = X.reshape(len(X), -1) if flatten else X[:, None]
    return np.ascontiguousarray(X), labels.astype(np.int64)


# -- CIFAR-10 ----------------------------------------------------------------------

def _latin1_encode(text, encoding="latin1"):
    """What protocol-2 pickles of bytes call (_codecs.encode), limited to latin1."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError("[load_cifar10] _codecs.encode admitted for latin1 text only")
    return text.encode("latin1")


class _Refused(pickle.UnpicklingError):
    pass


class _PlainDataUnpickler(pickle.Unpickler):
    """Admits the globals a pickled numpy array needs, nothing else: a pickle that
    names os.system, builtins.eval or any class is refused before it runs."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            mod = __import__(module, fromlist=[name])
            return getattr(mod, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise _Refused(f"refusing to unpickle the global {module}.{name} (only plain data and numpy arrays "
                       "are admitted)")


def _cifar_python_batch(path):
    raw = _read_bytes(path, "load_cifar10")
    try:
        d = _PlainDataUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _Refused as e:
        raise ValueError(f"[load_cifar10] {path}: {e}") from None
    except Exception as e:  # truncated or garbage data fails in many ways
        raise ValueError(f"[load_cifar10] {path}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"[load_cifar10] {path}: expected a dict, got {type(d).__name__}")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise ValueError(f"[load_cifar10] {path}: the batch lacks 'data' or 'labels' (keys: {sorted(map(str, d))})")
    data, labels = d["data"], np.asarray(d["labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"[load_cifar10] {path}: 'data' must be a uint8 array (N, 3072), got "
                         f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise ValueError(f"[load_cifar10] {path}: 'labels' must be {len(data)} integers")
    return data, labels


def _cifar_binary_batch(path):
    raw = _read_bytes(path, "load_cifar10")
    record = 1 + 3072
    if len(raw) == 0 or len(raw) % record:
        raise ValueError(f"[load_cifar10] {path}: {len(raw)} bytes is not a whole number of {record}-byte "
                         "records (truncated or not a CIFAR-10 binary batch)")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    return rec[:, 1:], rec[:, 0]


_CIFAR_FILES = {True: [f"data_batch_{i}" for i in range(1, 6)], False: ["test_batch"]}


def load_cifar10(path, train=True, dtype=np.float32):
    """CIFAR-10 from a local copy: `path` is the python-format directory
    (cifar-10-batches-py), the binary one (cifar-10-batches-bin), their parent, or a
    single batch file. Returns (X (N, 3, 32, 32) scaled to [0, 1], y int64)."""
    path = os.fspath(path)
    if os.path.isfile(path):
        files = [path]
    elif os.path.isdir(path):
        files = None
        for d in (path, os.path.join(path, "cifar-10-batches-py"), os.path.join(path, "cifar-10-batches-bin")):
            names = _CIFAR_FILES[train]
            for suffix in ("", ".bin"):
                found = [os.path.join(d, n + suffix) for n in names]
                if os.path.isfile(found[0]):
                    missing = [f for f in found if not os.path.isfile(f)]
                    if missing:
                        raise FileNotFoundError(f"[load_cifar10] missing batch file(s): {', '.join(missing)}")
                    files = found
                    break
            if files:
                break
        if files is None:
            raise FileNotFoundError(f"[load_cifar10] no CIFAR-10 batches ({_CIFAR_FILES[train][0]} or "
                                    f"{_CIFAR_FILES[train][0]}.bin) in {path}")
    else:
        raise FileNotFoundError(f"[load_cifar10] no such file or directory: {path}")
    parts = [_cifar_binary_batch(f) if f.endswith(".bin") else _cifar_python_batch(f) for f in files]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"[load_cifar10] labels must be in 0..9, found {labels.min()}..{labels.max()}")
    X = data.reshape(-1, 3, 32, 32).astype(dtype) / dtype(255)
    return X, labels


# -- scikit-learn's offline data sets ------------------------------------------------

def _sklearn(name):
    try:
        import sklearn.datasets as ds
    except ImportError as e:
        raise ImportError(f"[{name}] needs scikit-learn: pip install deepkern[examples]") from e
    return getattr(ds, name)()


def load_digits(flatten=True, dtype=np.float32, rows=False):
    """scikit-learn's 8x8 digits (1797 images, 10 classes, pixel values 0..16).
    Returns (X, y): X (1797, 64) when flatten, else images (1797, 1, 8, 8) (NCHW);
    rows=True gives sequences of 8 rows of 8 pixels, (1797, 8, 8). y int64."""
    d = _sklearn("load_digits")
    X = d.data.astype(dtype)
    if rows:
        X = X.reshape(-1, 8, 8)
    elif not flatten:
        X = X.reshape(-1, 1, 8, 8)
    return X, d.target.astype(np.int64)


def load_breast_cancer(dtype=np.float32):
    """scikit-learn's Wisconsin breast cancer data: X (569, 30), y int64 in {0, 1}."""
    d = _sklearn("load_breast_cancer")
    return d.data.astype(dtype), d.target.astype(np.int64)


def load_iris(dtype=np.float32):
    """scikit-learn's iris: X (150, 4), y int64 in {0, 1, 2}."""
    d = _sklearn("load_iris")
    return d.data.astype(dtype), d.target.astype(np.int64)
