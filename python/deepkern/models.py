"""A small model zoo built from deepkern.nn: mlp, logistic_regression, lenet5,
vgg_small, resnet(depth), lstm_classifier, gru_classifier.

Every builder takes `dtype` (float32 or float64) and `seed` (or `rng`, a numpy
Generator): the same seed gives the same initial weights. Image models take NCHW
input and adapt to its size (`input_size`), so one builder serves scikit-learn's
8x8 digits, MNIST's 28x28 and CIFAR's 32x32. Recurrent classifiers take
batch-first sequences (N, T, features) and classify from the last time step.
"""
import inspect
import numbers

import numpy as np

from . import nn
from ._array import array_module


def _rng(seed, rng):
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"[models] rng must be a numpy Generator, got {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


def _make(cls, *args, dtype, rng, **kw):
    """cls(*args, **kw) with dtype= and rng= passed where the constructor takes them."""
    params = inspect.signature(cls).parameters
    if "dtype" in params:
        kw["dtype"] = dtype
    if "rng" in params:
        kw["rng"] = rng
    return cls(*args, **kw)


def _need(name, builder):
    if not hasattr(nn, name):
        raise RuntimeError(f"[models.{builder}] needs deepkern.nn.{name}, which this build lacks")
    return getattr(nn, name)


def _positive(v, name, builder):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"[models.{builder}] {name} must be a positive integer, got {v!r}")
    return int(v)


_ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "elu": "ELU", "silu": "SiLU",
                "leaky_relu": "LeakyReLU"}


def mlp(in_features, num_classes, hidden=(128, 64), activation="relu", dropout=0.0, dtype=np.float32,
        seed=0, rng=None):
    """Linear layers in_features -> hidden... -> num_classes with `activation` (and
    Dropout(dropout) when > 0) between them; outputs logits."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"[models.mlp] activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    g = _rng(seed, rng)
    sizes = [_positive(in_features, "in_features", "mlp")] + [_positive(h, "hidden", "mlp") for h in hidden]
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b, dtype=dtype, rng=g), getattr(nn, _ACTIVATIONS[activation])()]
        if dropout > 0:
            layers.append(_make(_need("Dropout", "mlp"), dropout, dtype=dtype, rng=g))
    layers.append(nn.Linear(sizes[-1], _positive(num_classes, "num_classes", "mlp"), dtype=dtype, rng=g))
    return nn.Sequential(*layers)


def logistic_regression(in_features, num_classes=2, dtype=np.float32, seed=0, rng=None):
    """One Linear layer: multinomial logistic regression with CrossEntropyLoss (or,
    with num_classes=1, binary with BCEWithLogitsLoss)."""
    return nn.Linear(_positive(in_features, "in_features", "logistic_regression"),
                     _positive(num_classes, "num_classes", "logistic_regression"), dtype=dtype, rng=_rng(seed, rng))


def _hw(input_size):
    h, w = (input_size, input_size) if isinstance(input_size, numbers.Integral) else tuple(input_size)
    return int(h), int(w)


def lenet5(in_channels=1, num_classes=10, input_size=32, dtype=np.float32, seed=0, rng=None):
    """LeCun's LeNet-5 with ReLU and max pooling: conv5x5(6) - pool - conv5x5(16) - pool -
    fc120 - fc84 - fc(num_classes). A convolution pads by 2 when its input is smaller
    than LeNet's (28x28 MNIST: the first; 8x8 digits: both), so any input >= 4x4 fits."""
    Conv2d = _need("Conv2d", "lenet5")
    g = _rng(seed, rng)
    h, w = _hw(input_size)
    pad1 = 0 if min(h, w) >= 32 else 2
    h, w = (h + 2 * pad1 - 4) // 2, (w + 2 * pad1 - 4) // 2
    pad2 = 0 if min(h, w) >= 10 else 2
    h, w = (h + 2 * pad2 - 4) // 2, (w + 2 * pad2 - 4) // 2
    if h < 1 or w < 1:
        raise ValueError(f"[models.lenet5] input_size {input_size} is too small (>= 4x4 needed)")
    return nn.Sequential(
        _make(Conv2d, in_channels, 6, 5, padding=pad1, dtype=dtype, rng=g), nn.ReLU(), nn.MaxPool2d(2),
        _make(Conv2d, 6, 16, 5, padding=pad2, dtype=dtype, rng=g), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * h * w, 120, dtype=dtype, rng=g), nn.ReLU(),
        nn.Linear(120, 84, dtype=dtype, rng=g), nn.ReLU(),
        nn.Linear(84, num_classes, dtype=dtype, rng=g))


def vgg_small(in_channels=3, num_classes=10, widths=(32, 64, 128), dropout=0.0, dtype=np.float32, seed=0,
              rng=None):
    """VGG-style: per width two conv3x3 (padding 1) + BatchNorm + ReLU, then 2x2 max
    pooling; global average pooling and a Linear classifier. Each stage halves the
    image, so the input needs at least 2**len(widths) pixels a side."""
    Conv2d = _need("Conv2d", "vgg_small")
    g = _rng(seed, rng)
    layers, c = [], in_channels
    for wd in widths:
        for _ in range(2):
            layers += [_make(Conv2d, c, wd, 3, padding=1, bias=False, dtype=dtype, rng=g),
                       nn.BatchNorm2d(wd, dtype=dtype), nn.ReLU()]
            c = wd
        layers.append(nn.MaxPool2d(2))
    layers += [nn.GlobalAvgPool2d(), nn.Flatten()]
    if dropout > 0:
        layers.append(_make(_need("Dropout", "vgg_small"), dropout, dtype=dtype, rng=g))
    layers.append(nn.Linear(c, num_classes, dtype=dtype, rng=g))
    return nn.Sequential(*layers)


def resnet(depth=20, in_channels=3, num_classes=10, width=16, dtype=np.float32, seed=0, rng=None):
    """The CIFAR ResNet of He et al. (2016): depth = 6n + 2 (8, 14, 20, 32, ...). A 3x3
    stem conv (width channels) + BN + ReLU, three stages of n BasicBlocks with width,
    2 width, 4 width channels (the 2nd and 3rd start with stride 2), global average
    pooling, Linear."""
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"[models.resnet] depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth!r}")
    Conv2d, BasicBlock = _need("Conv2d", "resnet"), _need("BasicBlock", "resnet")
    g = _rng(seed, rng)
    n = (depth - 2) // 6
    layers = [_make(Conv2d, in_channels, width, 3, padding=1, bias=False, dtype=dtype, rng=g),
              nn.BatchNorm2d(width, dtype=dtype), nn.ReLU()]
    c = width
    for stage in range(3):
        out = width * 2 ** stage
        for i in range(n):
            layers.append(_make(BasicBlock, c, out, stride=2 if stage > 0 and i == 0 else 1, dtype=dtype, rng=g))
            c = out
    layers += [nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(c, num_classes, dtype=dtype, rng=g)]
    return nn.Sequential(*layers)


class RecurrentClassifier(nn.Module):
    """fc(rnn(x).output[:, -1]): a batch-first LSTM or GRU over (N, T, features)
    whose output at the last time step feeds a Linear layer. Backward sends the
    Linear's input gradient into the last step of d_output (zeros elsewhere)."""

    def __init__(self, rnn, num_classes, dtype=np.float32, rng=None):
        super().__init__()
        if not getattr(rnn, "batch_first", False):
            raise ValueError("[RecurrentClassifier] the recurrent layer must be batch_first")
        hidden = rnn.hidden_size * (2 if getattr(rnn, "bidirectional", False) else 1)
        self.rnn = rnn
        self.fc = nn.Linear(hidden, num_classes, dtype=dtype, rng=rng)
        self._cache = None

    def forward(self, x):
        out, _ = self.rnn(x)
        self._cache = out.shape
        # A contiguous copy of the last step: the CUDA kernels take no strided views.
        return self.fc(array_module(out).ascontiguousarray(out[:, -1]))

    def backward(self, dy):
        shape = self._saved()
        d_out = array_module(dy).zeros(shape, dtype=dy.dtype)
        d_out[:, -1] = self.fc.backward(dy)
        return self.rnn.backward(d_out)


def _recurrent(kind, input_size, hidden_size, num_classes, num_layers, dtype, seed, rng):
    cls = _need(kind, f"{kind.lower()}_classifier")
    g = _rng(seed, rng)
    rnn = _make(cls, input_size, hidden_size, num_layers=num_layers, batch_first=True, dtype=dtype, rng=g)
    return RecurrentClassifier(rnn, num_classes, dtype=dtype, rng=g)


def lstm_classifier(input_size, hidden_size=64, num_classes=10, num_layers=1, dtype=np.float32, seed=0, rng=None):
    """RecurrentClassifier over a batch-first nn.LSTM."""
    return _recurrent("LSTM", input_size, hidden_size, num_classes, num_layers, dtype, seed, rng)


def gru_classifier(input_size, hidden_size=64, num_classes=10, num_layers=1, dtype=np.float32, seed=0, rng=None):
    """RecurrentClassifier over a batch-first nn.GRU."""
    return _recurrent("GRU", input_size, hidden_size, num_classes, num_layers, dtype, seed, rng)


__all__ = ["mlp", "logistic_regression", "lenet5", "vgg_small", "resnet", "lstm_classifier", "gru_classifier",
           "RecurrentClassifier"]
