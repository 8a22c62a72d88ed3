"""deepkern.models: every builder's output shape, seeded initialisation, parameter
names, float64 gradients (deepkern.gradcheck), and a short training run for the
networks the CLI's acceptance targets name."""
import numpy as np
import pytest

import deepkern
from deepkern import gradcheck, models, nn, optim, train


def x_of(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def same_init(build):
    a, b, c = build(seed=1), build(seed=1), build(seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert any(not np.array_equal(sa[k], sc[k]) for k in sa if sa[k].dtype.kind == "f" and sa[k].size > 1)


def test_mlp_and_logistic_regression():
    m = models.mlp(64, 10)
    assert m(x_of((5, 64))).shape == (5, 10)
    assert [p.shape for p in m.parameters()] == [(128, 64), (128,), (64, 128), (64,), (10, 64), (10,)]
    assert models.mlp(4, 3, hidden=(), activation="tanh")(x_of((2, 4))).shape == (2, 3)
    same_init(lambda seed: models.mlp(8, 3, hidden=(5,), seed=seed))
    m64 = models.mlp(6, 2, hidden=(4,), dtype=np.float64)
    assert m64(x_of((3, 6), dtype=np.float64)).dtype == np.float64
    assert gradcheck(models.mlp(6, 3, hidden=(5, 4), activation="tanh"), [x_of((4, 6), dtype=np.float64)])
    lr = models.logistic_regression(30, 2)
    assert isinstance(lr, nn.Linear) and lr(x_of((7, 30))).shape == (7, 2)
    with pytest.raises(ValueError, match="activation"):
        models.mlp(4, 3, activation="gelu")
    with pytest.raises(ValueError, match="in_features"):
        models.mlp(0, 3)


def test_mlp_dropout():
    m = models.mlp(8, 3, hidden=(16,), dropout=0.5)
    assert any(isinstance(layer, nn.Dropout) for layer in m)
    x = x_of((4, 8))
    m.eval()
    assert np.array_equal(m(x), m(x))


@pytest.mark.parametrize("size, flat", [(8, 64), (28, 400), (32, 400)])
def test_lenet5_adapts_to_the_input_size(size, flat):
    m = models.lenet5(1, 10, input_size=size)
    assert m(x_of((2, 1, size, size))).shape == (2, 10)
    assert m[7].in_features == flat
    same_init(lambda seed: models.lenet5(1, 10, input_size=8, seed=seed))


def test_lenet5_and_vgg_gradients():
    m = models.lenet5(1, 4, input_size=8)
    assert gradcheck(m, [x_of((2, 1, 8, 8), dtype=np.float64)], max_elements=20)
    v = models.vgg_small(2, 3, widths=(4, 6))
    assert v(x_of((2, 2, 8, 8))).shape == (2, 3)
    assert gradcheck(v, [x_of((3, 2, 4, 4), dtype=np.float64)], max_elements=15)


def test_resnet():
    m = models.resnet(8, in_channels=3, num_classes=10, width=4)
    blocks = [layer for layer in m if isinstance(layer, nn.BasicBlock)]
    assert len(blocks) == 3 and blocks[1].downsample is not None
    assert m(x_of((2, 3, 8, 8))).shape == (2, 10)
    # batch 4: the last stage sees 1x1 images, and batch norm over fewer than 3 values per
    # channel is ill-conditioned (two values normalise to +-1 whatever they are)
    assert gradcheck(models.resnet(8, 1, 3, width=2), [x_of((4, 1, 4, 4), dtype=np.float64)], max_elements=10)
    with pytest.raises(ValueError, match="6n"):
        models.resnet(10)


def test_lstm_classifier():
    m = models.lstm_classifier(8, hidden_size=12, num_classes=10)
    assert [n for n, _ in m.named_parameters()] == ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0",
                                                     "rnn.bias_hh_l0", "fc.weight", "fc.bias"]
    assert m(x_of((3, 8, 8))).shape == (3, 10)
    same_init(lambda seed: models.lstm_classifier(4, 6, 3, seed=seed))
    assert gradcheck(models.lstm_classifier(4, 5, 3, num_layers=2), [x_of((3, 6, 4), dtype=np.float64)])


def test_gru_classifier():
    m = models.gru_classifier(8, hidden_size=12, num_classes=10)
    assert m(x_of((3, 8, 8))).shape == (3, 10)
    assert gradcheck(models.gru_classifier(4, 5, 3), [x_of((3, 6, 4), dtype=np.float64)])


def test_recurrent_classifier_needs_batch_first():
    with pytest.raises(ValueError, match="batch_first"):
        models.RecurrentClassifier(nn.LSTM(4, 5), 3)


def test_missing_layers_are_a_clear_error(monkeypatch):
    monkeypatch.delattr(nn, "Conv2d", raising=False)
    with pytest.raises(RuntimeError, match=r"\[models.lenet5\] needs deepkern.nn.Conv2d"):
        models.lenet5()


def test_lstm_learns_digits_rows():
    """A short run on the rows of scikit-learn's digits (the CLI's lstm target is longer)."""
    pytest.importorskip("sklearn")
    X, y = deepkern.data.load_digits(rows=True)
    (Xt, yt), _, (Xs, ys) = deepkern.data.train_val_test_split(X / 16, y, val_size=0, test_size=0.2, seed=0)
    m = models.lstm_classifier(8, hidden_size=32, num_classes=10)
    train.fit(m, nn.CrossEntropyLoss(), optim.Adam(m.parameters(), lr=0.01), (Xt, yt), epochs=4, batch_size=32,
              verbose=0)
    assert train.evaluate(m, nn.CrossEntropyLoss(), (Xs, ys))["accuracy"] >= 0.85
