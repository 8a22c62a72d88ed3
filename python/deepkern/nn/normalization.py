"""Batch normalisation layers: BatchNorm1d ((N, C) or (N, C, L)) and BatchNorm2d
((N, C, H, W)), torch.nn's arguments, parameter and buffer names.

Training normalises with the batch statistics and updates running_mean and
running_var in place (momentum; momentum=None gives torch's cumulative average,
1 / num_batches_tracked); eval normalises with the running statistics, unless
track_running_stats=False, which keeps using the batch's as torch does.
Forward caches the input and the statistics it used; backward differentiates
through the batch statistics only when they were the batch's.
"""
import numpy as np

from .. import ops
from .._array import shape_of
from .module import Module, Parameter, _float_dtype


class _BatchNorm(Module):
    _ndims = ()  # the input ranks a subclass accepts

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"[{name}] num_features must be a positive integer, got {num_features!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"[{name}] momentum must be in [0, 1] or None, got {momentum}")
        if not eps >= 0:
            raise ValueError(f"[{name}] eps must be >= 0, got {eps}")
        dt = _float_dtype(dtype, name)
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        c = self.num_features
        self.weight = Parameter(np.ones(c, dtype=dt)) if affine else None
        self.bias = Parameter(np.zeros(c, dtype=dt)) if affine else None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dtype=dt))
            self.register_buffer("running_var", np.ones(c, dtype=dt))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            for b in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(b, None)
        self._cache = None

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def forward(self, x):
        name = type(self).__name__
        shape = shape_of(x)
        if len(shape) not in self._ndims:
            want = " or ".join(f"{n}D" for n in self._ndims)
            raise ValueError(f"[{name}] expected {want} input, got shape {shape}")
        if shape[1] != self.num_features:
            raise ValueError(f"[{name}] expected {self.num_features} channels (dim 1), got shape {shape}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        batch_stats = self.training or self.running_mean is None
        use_running = not self.training or self.track_running_stats
        w = self.weight.data if self.affine else None
        b = self.bias.data if self.affine else None
        y, mean, invstd = ops.batch_norm(x, w, b, self.running_mean if use_running else None,
                                         self.running_var if use_running else None, batch_stats, factor, self.eps)
        self._cache = (x, mean, invstd, batch_stats)
        return y

    def backward(self, dy):
        x, mean, invstd, batch_stats = self._saved()
        w = self.weight.data if self.affine else None
        dx, dw, db = ops.batch_norm_backward(dy, x, w, mean, invstd, training=batch_stats)
        if self.affine:
            self.weight.accumulate_grad(dw)
            self.bias.accumulate_grad(db)
        return dx

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """torch.nn.BatchNorm1d over (N, C) or (N, C, L)."""
    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """torch.nn.BatchNorm2d over (N, C, H, W)."""
    _ndims = (4,)
