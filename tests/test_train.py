"""deepkern.train and deepkern.data: fit / evaluate / predict on small problems,
History contents, seeded reproducibility, DataLoader and splits."""
import sys

import numpy as np
import pytest

from deepkern import data, nn, optim, train

EPOCHS = 12


def blobs(n=300, classes=3, dim=2, seed=0):
    """Gaussian blobs around well-separated centres: a problem an MLP must solve."""
    g = np.random.default_rng(seed)
    centres = 4.0 * np.eye(classes, dim) - 2.0
    y = g.integers(0, classes, n)
    return centres[y] + 0.5 * g.standard_normal((n, dim)), y


def classifier(dtype=np.float32, seed=0):
    g = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(2, 16, dtype=dtype, rng=g), nn.ReLU(), nn.Linear(16, 3, dtype=dtype, rng=g))


def run_fit(seed=0, **kw):
    X, y = blobs()
    model = classifier(seed=seed)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    hist = train.fit(model, nn.CrossEntropyLoss(), opt, (X, y), epochs=EPOCHS, batch_size=16, seed=seed,
                     verbose=0, **kw)
    return model, hist, X, y


def test_fit_learns_a_separable_problem():
    model, hist, X, y = run_fit(validation=blobs(60, seed=1))
    assert len(hist) == EPOCHS
    assert set(hist.keys()) == {"loss", "accuracy", "val_loss", "val_accuracy", "time", "samples_per_s"}
    assert all(len(v) == EPOCHS for v in hist.history.values())
    assert hist["accuracy"][-1] >= 0.95 and hist["val_accuracy"][-1] >= 0.95
    assert hist["loss"][-1] < hist["loss"][0]
    assert all(t > 0 for t in hist["time"]) and all(s > 0 for s in hist["samples_per_s"])
    ev = train.evaluate(model, nn.CrossEntropyLoss(), blobs(60, seed=1), batch_size=7)
    assert ev["loss"] == pytest.approx(hist["val_loss"][-1], rel=1e-5)
    assert ev["accuracy"] == hist["val_accuracy"][-1]
    out = train.predict(model, X, batch_size=64)
    assert out.shape == (len(X), 3) and out.dtype == np.float32  # float64 X converted at the boundary
    assert (out.argmax(1) == y).mean() >= 0.95
    assert train.predict(model, X[:0]).shape == (0, 3)
    assert model.training  # predict and evaluate restore the mode


def test_validation_fraction_is_a_seeded_split():
    model, hist, X, y = run_fit(validation=0.25)
    (Xt, yt), (Xv, yv), _ = data.train_val_test_split(X, y, val_size=0.25, test_size=0, seed=0)
    assert len(Xv) == 75 and len(Xt) == 225
    assert train.evaluate(model, nn.CrossEntropyLoss(), (Xv, yv))["loss"] == pytest.approx(
        hist["val_loss"][-1], rel=1e-5)
    with pytest.raises(ValueError, match="fraction"):
        run_fit(validation=1.5)


def test_fit_is_reproducible_with_a_seed():
    _, h1, _, _ = run_fit(seed=3)
    _, h2, _, _ = run_fit(seed=3)
    _, h3, _, _ = run_fit(seed=4)
    assert h1["loss"] == h2["loss"] and h1["accuracy"] == h2["accuracy"]
    assert h1["loss"] != h3["loss"]


def test_fit_regression_and_float64(capsys):
    g = np.random.default_rng(5)
    X = g.standard_normal((200, 3))
    t = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3
    model = nn.Linear(3, 1, dtype=np.float64, rng=g)
    hist = train.fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.05), (X, t), epochs=15,
                     batch_size=10)
    assert "accuracy" not in hist and hist["loss"][-1] < 1e-3
    np.testing.assert_allclose(model.weight.data, [[1.0, -2.0, 0.5]], atol=0.02)
    out = capsys.readouterr().out
    assert out.count("epoch ") == 15 and "samples/s" in out


def test_fit_bad_arguments():
    X, y = blobs(20)
    model = classifier()
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="unknown metric"):
        train.fit(model, nn.CrossEntropyLoss(), opt, (X, y), 1, 4, metrics=("f1",))
    with pytest.raises(ValueError, match="reduction"):
        train.fit(model, nn.CrossEntropyLoss("none"), opt, (X, y), 1, 4)
    with pytest.raises(ValueError, match="batch_size"):
        train.fit(model, nn.CrossEntropyLoss(), opt, (X, y), 1, 0)
    with pytest.raises(ValueError, match="first dimension"):
        train.fit(model, nn.CrossEntropyLoss(), opt, (X, y[:5]), 1, 4)
    with pytest.raises(ValueError, match="empty"):
        train.fit(model, nn.CrossEntropyLoss(), opt, (X[:0], y[:0]), 1, 4)


def test_history_plot():
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    _, hist, _, _ = run_fit(validation=0.2)
    ax = hist.plot()
    assert [line.get_label() for line in ax.get_lines()] == ["loss", "val_loss"]


# -- data ----------------------------------------------------------------------

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


def test_load_digits_and_missing_sklearn(monkeypatch):
    pytest.importorskip("sklearn")
    X, y = data.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32 and y.dtype == np.int64 and set(y) == set(range(10))
    assert data.load_digits(flatten=False)[0].shape == (1797, 1, 8, 8)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install deepkern\[examples\]"):
        data.load_digits()
