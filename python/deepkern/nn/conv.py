"""Conv2d: torch.nn.Conv2d's arguments, parameter names, shapes and initialisation.

weight (out_channels, in_channels / groups, kH, kW) and bias (out_channels,),
both U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_channels / groups * kH * kW
(torch's kaiming_uniform_ with a = sqrt(5)). Inputs are (N, C, H, W) or unbatched
(C, H, W). Forward and backward are one native call each (ops.conv2d /
ops.conv2d_backward); forward caches the input.
"""
import math

import numpy as np

from .. import ops
from . import init
from .module import Module, Parameter, _float_dtype


def _positive(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"[Conv2d] {name} must be a positive integer, got {value!r}")
    return int(value)


def _pair(value, name):
    """An int or an (h, w) pair of ints, as a tuple (torch stores pairs)."""
    v = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    if not (isinstance(v, (tuple, list)) and len(v) == 2 and
            all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v)):
        raise TypeError(f"[Conv2d] {name} must be an int or a pair of ints, got {value!r}")
    return int(v[0]), int(v[1])


class Conv2d(Module):
    """torch.nn.Conv2d (padding_mode "zeros"). `rng` (a numpy Generator) makes the
    initialisation reproducible."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", dtype=np.float32, rng=None):
        super().__init__()
        self.in_channels = _positive(in_channels, "in_channels")
        self.out_channels = _positive(out_channels, "out_channels")
        self.groups = _positive(groups, "groups")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"[Conv2d] in_channels ({self.in_channels}) and out_channels ({self.out_channels}) "
                             f"must be divisible by groups ({self.groups})")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride, self.dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"[Conv2d] padding must be 'same', 'valid', an int or a pair of ints, got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"[Conv2d] padding='same' needs stride 1 (as torch), got stride {self.stride}")
            self.padding = padding
        else:
            self.padding = _pair(padding, "padding")
        if padding_mode != "zeros":
            raise ValueError(f"[Conv2d] padding_mode {padding_mode!r} is not supported; only 'zeros' is")
        self.padding_mode = padding_mode
        dt = _float_dtype(dtype, "Conv2d")
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(np.empty(shape, dtype=dt))
        self.bias = Parameter(np.empty(self.out_channels, dtype=dt)) if bias else None
        self._cache = None
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), rng=rng)
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound, rng=rng)

    def _window(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def forward(self, x):
        y = ops.conv2d(x, self.weight.data, None if self.bias is None else self.bias.data, **self._window())
        self._cache = x
        return y

    def backward(self, dy):
        x = self._saved()
        dx, dw, db = ops.conv2d_backward(dy, x, self.weight.data, **self._window(), bias=self.bias is not None)
        self.weight.accumulate_grad(dw)
        if self.bias is not None:
            self.bias.accumulate_grad(db)
        return dx

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
             + (f", padding={self.padding}" if self.padding != (0, 0) else "")
             + (f", dilation={self.dilation}" if self.dilation != (1, 1) else "")
             + (f", groups={self.groups}" if self.groups != 1 else ""))
        return s + (", bias=False" if self.bias is None else "")
