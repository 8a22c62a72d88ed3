"""Layers with parameters or shape logic: Linear and Flatten.

Linear: y = x @ weight.T + bias, x (*, in_features), weight (out_features,
in_features), bias (out_features,), torch's shapes and default initialisation
(kaiming_uniform_ with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)), and the bias
U(-1/sqrt(in), 1/sqrt(in))). Forward and backward are one native GEMM-based call
each (ops.linear / ops.linear_backward), which fold leading dimensions into the batch.
"""
import math

import numpy as np

from .. import ops
from .._array import shape_of
from . import init
from .module import Module, Parameter, _float_dtype


def _size(value, name, op):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"[{op}] {name} must be a non-negative integer, got {value!r}")
    return int(value)


class Linear(Module):
    """torch.nn.Linear. `rng` (a numpy Generator) makes the initialisation reproducible."""

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        super().__init__()
        self.in_features = _size(in_features, "in_features", "Linear")
        self.out_features = _size(out_features, "out_features", "Linear")
        dt = _float_dtype(dtype, "Linear")
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=dt))
        self.bias = Parameter(np.empty(self.out_features, dtype=dt)) if bias else None
        self._cache = None
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), rng=rng)
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound, rng=rng)

    def forward(self, x):
        b = None if self.bias is None else self.bias.data
        y = ops.linear(x, self.weight.data, b)
        self._cache = x
        return y

    def backward(self, dy):
        x = self._saved()
        expect = tuple(x.shape[:-1]) + (self.out_features,)
        if shape_of(dy) != expect:
            raise ValueError(f"[Linear] dy must have shape {expect} (the output's), got {shape_of(dy)}")
        dx, dw, db = ops.linear_backward(dy, x, self.weight.data, bias=self.bias is not None)
        self.weight.accumulate_grad(dw)
        if self.bias is not None:
            self.bias.accumulate_grad(db)
        return dx

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    """torch.nn.Flatten: dims start_dim..end_dim merged into one."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)
        self._cache = None

    def forward(self, x):
        shape = tuple(x.shape)
        nd = max(len(shape), 1)  # torch treats a 0-d input as shape (1,)
        if not (-nd <= self.start_dim < nd and -nd <= self.end_dim < nd) or \
                self.start_dim % nd > self.end_dim % nd:
            raise ValueError(f"[Flatten] start_dim={self.start_dim}, end_dim={self.end_dim} do not fit an "
                             f"input of shape {shape}")
        s, e = self.start_dim % nd, self.end_dim % nd
        self._cache = shape
        if not shape:
            return x.reshape(1)
        return x.reshape(shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:])

    def backward(self, dy):
        return dy.reshape(self._saved())

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
