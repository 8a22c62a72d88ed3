"""deepkern.data: DataLoader, splits, normalisation, augmentation, the MNIST IDX and
CIFAR-10 readers (on small files the tests write, including truncated, wrong-magic
and malicious ones) and the scikit-learn data sets."""
import gzip
import os
import pickle
import sys

import numpy as np
import pytest

from deepkern import data


# -- DataLoader and splits -----------------------------------------------------------

def test_dataloader_batches_shuffle_and_seed():
    X = np.arange(23, dtype=np.float64).reshape(23, 1)
    y = np.arange(23)
    dl = data.DataLoader((X, y), batch_size=5)
    batches = list(dl)
    assert len(dl) == 5 and [len(b[0]) for b in batches] == [5, 5, 5, 5, 3]
    assert np.array_equal(np.concatenate([b[1] for b in batches]), y)
    assert len(data.DataLoader(X, 5, drop_last=True)) == 4
    assert [len(b) for b in data.DataLoader(X, 5, drop_last=True)] == [5] * 4
    sh = data.DataLoader((X, y), 5, shuffle=True, seed=1, dtype=np.float32)
    e1, e2 = [np.concatenate([b[1] for b in sh]) for _ in range(2)]
    assert sorted(e1) == list(range(23)) and not np.array_equal(e1, e2)  # epochs differ
    first = next(iter(sh))
    assert first[0].dtype == np.float32 and np.array_equal(first[0][:, 0], first[1])  # rows stay paired
    again = data.DataLoader((X, y), 5, shuffle=True, seed=1)
    assert np.array_equal(np.concatenate([b[1] for b in again]), e1)
    assert list(data.DataLoader(X[:0], 4)) == []
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader(X, 0)
    with pytest.raises(ValueError, match="samples"):
        data.DataLoader((X, y[:3]))


def test_dataloader_epochs_depend_on_seed_and_epoch_only():
    """What makes resuming exact: epoch e's order is the same whatever came before."""
    y = np.arange(40)
    a = data.DataLoader(y, 8, shuffle=True, seed=7)
    orders = [np.concatenate(list(a)) for _ in range(3)]
    b = data.DataLoader(y, 8, shuffle=True, seed=7)
    b.set_epoch(2)
    assert np.array_equal(np.concatenate(list(b)), orders[2])
    c = data.DataLoader(y, 8, shuffle=True, seed=8)
    assert not np.array_equal(np.concatenate(list(c)), orders[0])
    u1, u2 = data.DataLoader(y, 8, shuffle=True), data.DataLoader(y, 8, shuffle=True)
    assert not np.array_equal(np.concatenate(list(u1)), np.concatenate(list(u2)))  # unseeded: OS entropy
    g1, g2 = (data.DataLoader(y, 8, shuffle=True, seed=np.random.default_rng(1)) for _ in range(2))
    assert np.array_equal(np.concatenate(list(g1)), np.concatenate(list(g2)))
    with pytest.raises(ValueError, match="seed"):
        data.DataLoader(y, 8, seed=-1)


def test_dataloader_transform_is_seeded_and_leaves_the_data_alone():
    X = np.zeros((10, 1, 4, 4), np.float32)
    noise = data.GaussianNoise(0.5)
    dl = data.DataLoader(X, 5, transform=noise, seed=3)
    e1 = np.concatenate(list(dl))
    e2 = np.concatenate(list(dl))
    assert not np.array_equal(e1, e2) and np.all(X == 0)
    again = data.DataLoader(X, 5, transform=noise, seed=3)
    assert np.array_equal(np.concatenate(list(again)), e1)
    assert e1.dtype == np.float32 and 0.4 < e1.std() < 0.6
    with pytest.raises(TypeError, match="transform"):
        data.DataLoader(X, 5, transform=3)


def test_train_val_test_split_and_standardize():
    X, y = np.arange(100.0).reshape(50, 2), np.arange(50)
    (Xt, yt), (Xv, yv), (Xs, ys) = data.train_val_test_split(X, y, val_size=0.1, test_size=10, seed=0)
    assert (len(yt), len(yv), len(ys)) == (35, 5, 10)
    assert sorted(np.concatenate([yt, yv, ys])) == list(range(50))
    assert np.array_equal(Xt[:, 0], 2 * yt)
    tr, va, te = data.train_val_test_split(X, val_size=0, test_size=0.5, shuffle=False)
    assert np.array_equal(tr, X[:25]) and len(va) == 0 and np.array_equal(te, X[25:])
    with pytest.raises(ValueError, match="exceed"):
        data.train_val_test_split(X, val_size=0.6, test_size=0.6)
    a, b = data.standardize(np.array([[1.0, 5.0], [3.0, 5.0]]), np.array([[2.0, 6.0]]))
    assert np.allclose(a, [[-1, 0], [1, 0]]) and np.allclose(b, [[0, 1]])


def test_standardizer_per_feature_and_per_channel():
    g = np.random.default_rng(0)
    X = (g.standard_normal((50, 3, 4, 5)) * [[[2.0]], [[5.0]], [[0.5]]] + [[[1.0]], [[-3.0]], [[7.0]]])
    X = X.astype(np.float32)
    s = data.Standardizer(per="channel").fit(X)
    assert s.mean.shape == (3, 1, 1) and s.mean.dtype == np.float32
    Z = s.transform(X)
    assert np.allclose(Z.mean(axis=(0, 2, 3)), 0, atol=1e-5) and np.allclose(Z.std(axis=(0, 2, 3)), 1, atol=1e-4)
    test = X[:7] * 2
    assert np.allclose(s.transform(test), (test - X.mean(axis=(0, 2, 3), keepdims=True)[0])
                       / X.std(axis=(0, 2, 3), keepdims=True)[0], atol=1e-4)  # train statistics, not test's
    assert np.allclose(s.inverse_transform(Z), X, atol=1e-4)
    f = data.Standardizer().fit(X)
    assert f.mean.shape == (3, 4, 5)
    assert np.allclose(f.transform(X).mean(axis=0), 0, atol=1e-5)
    with pytest.raises(ValueError, match="per"):
        data.Standardizer(per="pixel")
    with pytest.raises(RuntimeError, match="fit"):
        data.Standardizer().transform(X)
    with pytest.raises(ValueError, match="shape"):
        f.transform(X[:, :2])


# -- augmentation --------------------------------------------------------------------

def test_random_crop_is_a_window_of_the_padded_image():
    g = np.random.default_rng(1)
    X = g.standard_normal((16, 2, 6, 7))
    crop = data.RandomCrop((6, 7), padding=2)
    out = crop(X, np.random.default_rng(5))
    assert out.shape == X.shape
    padded = np.pad(X, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for n in range(16):
        hits = [(i, j) for i in range(5) for j in range(5)
                if np.array_equal(padded[n, :, i:i + 6, j:j + 7], out[n])]
        assert hits, f"sample {n} is not a window of its padded image"
        offsets.add(hits[0])
    assert len(offsets) > 1  # samples get their own offsets
    assert np.array_equal(out, crop(X, np.random.default_rng(5)))
    assert data.RandomCrop(4)(X, np.random.default_rng(0)).shape == (16, 2, 4, 4)
    with pytest.raises(ValueError, match="larger"):
        data.RandomCrop(9)(X, np.random.default_rng(0))
    with pytest.raises(ValueError, match="N, C, H, W"):
        crop(X[0], np.random.default_rng(0))


def test_flip_and_noise():
    X = np.arange(2 * 1 * 2 * 3, dtype=np.float64).reshape(2, 1, 2, 3).repeat(50, axis=0)
    out = data.RandomHorizontalFlip(0.5)(X, np.random.default_rng(0))
    flipped = np.array([np.array_equal(o, x[..., ::-1]) for o, x in zip(out, X)])
    kept = np.array([np.array_equal(o, x) for o, x in zip(out, X)])
    assert np.all(flipped | kept) and 20 < flipped.sum() < 80
    assert np.array_equal(data.RandomHorizontalFlip(1.0)(X, np.random.default_rng(0)), X[..., ::-1])
    assert X[0, 0, 0, 0] == 0  # input untouched
    both = data.Compose([data.RandomHorizontalFlip(1.0), data.GaussianNoise(0.0)])
    assert np.array_equal(both(X, np.random.default_rng(0)), X[..., ::-1])
    with pytest.raises(ValueError):
        data.RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError):
        data.GaussianNoise(-1)


# -- MNIST IDX -----------------------------------------------------------------------

def idx_bytes(array, code=0x08):
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, raw, gz=False):
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if gz else raw)
    return path


def test_read_idx_plain_gzip_and_types(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    assert np.array_equal(data.read_idx(write(tmp_path / "a", idx_bytes(img))), img)
    assert np.array_equal(data.read_idx(write(tmp_path / "a.gz", idx_bytes(img), gz=True)), img)
    f = np.linspace(-1, 1, 12).reshape(3, 4)
    out = data.read_idx(write(tmp_path / "f", idx_bytes(f, 0x0E)))
    assert out.dtype == np.float64 and out.dtype.isnative and np.array_equal(out, f)
    i = np.array([-5, 70000], dtype=np.int32)
    assert np.array_equal(data.read_idx(write(tmp_path / "i", idx_bytes(i, 0x0C))), i)


def test_read_idx_errors(tmp_path):
    img = np.zeros((3, 4, 4), np.uint8)
    with pytest.raises(FileNotFoundError, match=r"\[read_idx\] no such file"):
        data.read_idx(tmp_path / "missing")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(write(tmp_path / "m", b"\x50\x4b\x03\x04" + idx_bytes(img)[4:]))
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(write(tmp_path / "e", b""))
    with pytest.raises(ValueError, match="truncated: shape"):
        data.read_idx(write(tmp_path / "t", idx_bytes(img)[:-5]))
    with pytest.raises(ValueError, match="truncated header"):
        data.read_idx(write(tmp_path / "h", idx_bytes(img)[:9]))
    with pytest.raises(ValueError, match="trailing"):
        data.read_idx(write(tmp_path / "x", idx_bytes(img) + b"\0"))
    huge = bytes([0, 0, 8, 3]) + np.array([2 ** 31, 2 ** 31, 2 ** 31], ">u4").tobytes()
    with pytest.raises(ValueError, match="truncated"):  # no 2^93-byte allocation attempted
        data.read_idx(write(tmp_path / "huge", huge))
    with pytest.raises(ValueError, match="corrupt gzip"):
        data.read_idx(write(tmp_path / "g.gz", gzip.compress(idx_bytes(img))[:-8]))


def test_load_mnist_from_a_directory(tmp_path):
    g = np.random.default_rng(0)
    img = g.integers(0, 256, (6, 28, 28)).astype(np.uint8)
    lab = g.integers(0, 10, 6).astype(np.uint8)
    write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(img), gz=True)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(lab))
    X, y = data.load_mnist(tmp_path)
    assert X.shape == (6, 1, 28, 28) and X.dtype == np.float32 and y.dtype == np.int64
    assert np.allclose(X[:, 0] * 255, img) and np.array_equal(y, lab)
    assert data.load_mnist(tmp_path, flatten=True)[0].shape == (6, 784)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        data.load_mnist(tmp_path, train=False)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(lab[:5]))
    with pytest.raises(ValueError, match="6 images but 5 labels"):
        data.load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        data.load_mnist(tmp_path / "nope")


# -- CIFAR-10 ------------------------------------------------------------------------

def cifar_batch(n, seed):
    g = np.random.default_rng(seed)
    return g.integers(0, 256, (n, 3072)).astype(np.uint8), g.integers(0, 10, n)


def write_python_batch(path, pixels, labels, protocol=2):
    d = {b"batch_label": b"synthetic", b"labels": [int(v) for v in labels], b"data": pixels,
         b"filenames": [b"f%d.png" % i for i in range(len(labels))]}
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=protocol)


def test_cifar10_python_format(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    parts = [cifar_batch(4, i) for i in range(6)]
    for i in range(5):
        write_python_batch(root / f"data_batch_{i + 1}", *parts[i], protocol=2 if i % 2 else 4)
    write_python_batch(root / "test_batch", *parts[5], protocol=5)
    X, y = data.load_cifar10(tmp_path)  # the parent directory is found too
    assert X.shape == (20, 3, 32, 32) and X.dtype == np.float32 and y.dtype == np.int64
    assert np.allclose(X.reshape(20, -1) * 255, np.concatenate([p[0] for p in parts[:5]]), atol=1e-3)
    assert np.array_equal(y, np.concatenate([p[1] for p in parts[:5]]))
    Xt, yt = data.load_cifar10(root, train=False)
    assert np.array_equal(yt, parts[5][1])
    assert data.load_cifar10(root / "data_batch_1")[0].shape == (4, 3, 32, 32)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_cifar10_refuses_a_malicious_pickle(tmp_path):
    marker = str(tmp_path / "pwned")
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": _Evil(marker), b"labels": [1]}, f, protocol=2)
    with pytest.raises(ValueError, match=r"refusing to unpickle the global (io|builtins)\.open"):
        data.load_cifar10(tmp_path, train=False)
    assert not os.path.exists(marker)
    with open(tmp_path / "test_batch", "wb") as f:  # a class instance is refused too
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [1], b"x": _Evil(marker)}, f)
    with pytest.raises(ValueError, match="refusing"):
        data.load_cifar10(tmp_path, train=False)
    assert not os.path.exists(marker)


def test_cifar10_python_format_errors(tmp_path):
    write_python_batch(tmp_path / "test_batch", *cifar_batch(3, 0))
    raw = (tmp_path / "test_batch").read_bytes()
    (tmp_path / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        data.load_cifar10(tmp_path, train=False)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"labels": [1]}, f)
    with pytest.raises(ValueError, match="lacks 'data'"):
        data.load_cifar10(tmp_path, train=False)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, f)
    with pytest.raises(ValueError, match=r"\(N, 3072\)"):
        data.load_cifar10(tmp_path, train=False)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 12]}, f)
    with pytest.raises(ValueError, match="labels must be in 0..9"):
        data.load_cifar10(tmp_path, train=False)
    write_python_batch(tmp_path / "data_batch_1", *cifar_batch(3, 0))
    with pytest.raises(FileNotFoundError, match="data_batch_2"):
        data.load_cifar10(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 batches"):
        data.load_cifar10(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        data.load_cifar10(tmp_path / "nothing")


def test_cifar10_binary_format(tmp_path):
    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    pixels, labels = cifar_batch(5, 1)
    record = np.concatenate([labels[:, None].astype(np.uint8), pixels], axis=1)
    (root / "test_batch.bin").write_bytes(record.tobytes())
    X, y = data.load_cifar10(tmp_path, train=False)
    assert X.shape == (5, 3, 32, 32) and np.array_equal(y, labels)
    assert np.allclose(X.reshape(5, -1) * 255, pixels, atol=1e-3)
    (root / "test_batch.bin").write_bytes(record.tobytes()[:-100])
    with pytest.raises(ValueError, match="not a whole number of 3073-byte records"):
        data.load_cifar10(root, train=False)


# -- scikit-learn data sets ----------------------------------------------------------

def test_sklearn_datasets(monkeypatch):
    pytest.importorskip("sklearn")
    X, y = data.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32 and y.dtype == np.int64 and set(y) == set(range(10))
    img = data.load_digits(flatten=False)[0]
    rows = data.load_digits(rows=True)[0]
    assert img.shape == (1797, 1, 8, 8) and rows.shape == (1797, 8, 8)
    assert np.array_equal(rows[5], img[5, 0]) and np.array_equal(rows[5].ravel(), X[5])
    Xb, yb = data.load_breast_cancer()
    assert Xb.shape == (569, 30) and set(yb) == {0, 1}
    Xi, yi = data.load_iris(dtype=np.float64)
    assert Xi.shape == (150, 4) and Xi.dtype == np.float64 and set(yi) == {0, 1, 2}
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install deepkern\[examples\]"):
        data.load_digits()
