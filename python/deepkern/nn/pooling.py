"""Pooling layers: MaxPool2d, AvgPool2d (torch.nn's arguments) and GlobalAvgPool2d.

Inputs are (N, C, H, W) or unbatched (C, H, W). Forward caches what backward
needs: the input's shape, and for max pooling the int64 indices of each
window's maximum (flat within each plane, as torch), so the backward is a
scatter that never re-reads the input.
"""
from .. import ops
from .._array import shape_of
from .module import Module


class MaxPool2d(Module):
    """torch.nn.MaxPool2d. With return_indices the forward returns (y, indices)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.return_indices, self.ceil_mode = bool(return_indices), bool(ceil_mode)
        self._cache = None

    def forward(self, x):
        y, indices = ops.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        self._cache = (indices, shape_of(x))
        return (y, indices) if self.return_indices else y

    def backward(self, dy):
        indices, shape = self._saved()
        return ops.max_pool2d_backward(dy, indices, shape)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride if self.stride is not None else self.kernel_size}"
                f", padding={self.padding}, dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """torch.nn.AvgPool2d (without divisor_override)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        self._cache = None

    def _window(self):
        return self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad

    def forward(self, x):
        y = ops.avg_pool2d(x, *self._window())
        self._cache = shape_of(x)
        return y

    def backward(self, dy):
        return ops.avg_pool2d_backward(dy, self._saved(), *self._window())

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride if self.stride is not None else self.kernel_size}"
                f", padding={self.padding}")


class GlobalAvgPool2d(Module):
    """The mean of each (H, W) plane: (N, C, H, W) -> (N, C, 1, 1) and (C, H, W) -> (C, 1, 1),
    as torch.nn.AdaptiveAvgPool2d(1); follow it with Flatten for (N, C)."""

    def __init__(self):
        super().__init__()
        self._cache = None

    def forward(self, x):
        y = ops.global_avg_pool2d(x)
        self._cache = shape_of(x)
        return y

    def backward(self, dy):
        return ops.global_avg_pool2d_backward(dy, self._saved())
