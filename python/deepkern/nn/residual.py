"""Residual connections: Residual(body, shortcut=None) computes body(x) + shortcut(x)
(the identity when shortcut is None); BasicBlock is ResNet's two-convolution block
(He et al. 2016) with torchvision's layout and parameter names (conv1, bn1, conv2,
bn2, downsample.0 / downsample.1), so torchvision weights load by name.

Backward: the gradient of a sum reaches both branches unchanged, and the input's
gradient is the sum of what the two branches return.
"""
import numpy as np

from .. import ops
from .module import Module, Sequential


class Residual(Module):
    def __init__(self, body, shortcut=None):
        super().__init__()
        if not isinstance(body, Module) or (shortcut is not None and not isinstance(shortcut, Module)):
            raise TypeError("[Residual] body and shortcut must be deepkern.nn Modules")
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        y = self.body(x)
        s = self.shortcut(x) if self.shortcut is not None else x
        if y.shape != s.shape:
            raise ValueError(f"[Residual] body gives shape {y.shape} but the shortcut {s.shape}")
        return y + s

    def backward(self, dy):
        dx = self.body.backward(dy)
        return dx + (self.shortcut.backward(dy) if self.shortcut is not None else dy)


class BasicBlock(Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), convolutions 3x3 with
    padding 1, conv1 with `stride`; the shortcut is the identity, or a 1x1 convolution
    with `stride` and batch norm when the shape changes."""

    expansion = 1

    def __init__(self, in_channels, out_channels, stride=1, dtype=np.float32, rng=None):
        super().__init__()
        from .conv import Conv2d  # noqa: deferred: conv is a sibling module
        from .normalization import BatchNorm2d
        from .activation import ReLU
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False, dtype=dtype, rng=rng)
        self.bn1 = BatchNorm2d(out_channels, dtype=dtype)
        self.relu1 = ReLU()
        self.conv2 = Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False, dtype=dtype, rng=rng)
        self.bn2 = BatchNorm2d(out_channels, dtype=dtype)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = Sequential(
                Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, dtype=dtype, rng=rng),
                BatchNorm2d(out_channels, dtype=dtype))
        self._cache = None

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        out += self.downsample(x) if self.downsample is not None else x
        y = ops.relu(out)
        self._cache = out
        return y

    def backward(self, dy):
        d = ops.relu_backward(dy, self._saved())
        dx = self.conv1.backward(self.bn1.backward(self.relu1.backward(self.conv2.backward(self.bn2.backward(d)))))
        return dx + (self.downsample.backward(d) if self.downsample is not None else d)
