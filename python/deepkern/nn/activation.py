"""Activation modules: torch.nn's names and arguments over the native ops.

Each caches the one array its derivative needs: the input x for most, the output
y for Sigmoid, Tanh, Softmax and LogSoftmax, whose derivatives are cheapest from
y (sigmoid' = y (1 - y), tanh' = 1 - y^2, softmax's Jacobian-vector product from
y alone), as the kernels expect.
"""
from .. import ops
from .module import Module


class _Activation(Module):
    """y = f(x); dx = backward(dy, saved) with saved = x or y (`_saves_output`)."""

    _saves_output = False

    def __init__(self):
        super().__init__()
        self._cache = None

    def _forward(self, x):
        raise NotImplementedError

    def _backward(self, dy, saved):
        raise NotImplementedError

    def forward(self, x):
        y = self._forward(x)
        self._cache = y if self._saves_output else x
        return y

    def backward(self, dy):
        return self._backward(dy, self._saved())


class ReLU(_Activation):
    def _forward(self, x):
        return ops.relu(x)

    def _backward(self, dy, x):
        return ops.relu_backward(dy, x)


class LeakyReLU(_Activation):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def _forward(self, x):
        return ops.leaky_relu(x, self.negative_slope)

    def _backward(self, dy, x):
        return ops.leaky_relu_backward(dy, x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class ELU(_Activation):
    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = float(alpha)

    def _forward(self, x):
        return ops.elu(x, self.alpha)

    def _backward(self, dy, x):
        return ops.elu_backward(dy, x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class Sigmoid(_Activation):
    _saves_output = True

    def _forward(self, x):
        return ops.sigmoid(x)

    def _backward(self, dy, y):
        return ops.sigmoid_backward(dy, y)


class Tanh(_Activation):
    _saves_output = True

    def _forward(self, x):
        return ops.tanh(x)

    def _backward(self, dy, y):
        return ops.tanh_backward(dy, y)


class Softplus(_Activation):
    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = float(beta), float(threshold)

    def _forward(self, x):
        return ops.softplus(x, self.beta, self.threshold)

    def _backward(self, dy, x):
        return ops.softplus_backward(dy, x, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class SiLU(_Activation):
    def _forward(self, x):
        return ops.silu(x)

    def _backward(self, dy, x):
        return ops.silu_backward(dy, x)


class Softmax(_Activation):
    """Softmax over `dim` (default -1: torch's implicit choice for 2-D inputs)."""

    _saves_output = True

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = int(dim)

    def _forward(self, x):
        return ops.softmax(x, dim=self.dim)

    def _backward(self, dy, y):
        return ops.softmax_backward(dy, y, dim=self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    def _forward(self, x):
        return ops.log_softmax(x, dim=self.dim)

    def _backward(self, dy, y):
        return ops.log_softmax_backward(dy, y, dim=self.dim)
