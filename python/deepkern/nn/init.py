"""Weight initialisers with torch.nn.init's names, signatures and formulas.

Each fills an array (or a Parameter's .data) in place and returns it. The random
ones take `rng=`, a numpy Generator; without one they draw from this module's
default generator, which deepkern.manual_seed(seed) reseeds (torch.manual_seed's
role), so a whole model's initialisation is reproducible either way.
Values are drawn in float64 and rounded once to the array's dtype. A GPU (CuPy)
array gets the values drawn on the host from the same generator, then copied: a
seed initialises a model identically on either device.
"""
import math

import numpy as np

from .._array import array_module, writeable
from .module import Parameter

_default_rng = np.random.default_rng()


def manual_seed(seed):
    """Reseed the generator used by initialisers called without rng=."""
    global _default_rng
    _default_rng = np.random.default_rng(seed)
    return _default_rng


def _rng(rng):
    if rng is None:
        return _default_rng
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"[init] rng must be a numpy Generator, got {type(rng).__name__}")
    return rng


def _array(tensor, op):
    a = tensor.data if isinstance(tensor, Parameter) else tensor
    if not (isinstance(a, np.ndarray) or hasattr(a, "__cuda_array_interface__")) or a.dtype.kind != "f":
        raise TypeError(f"[{op}] expected a float numpy or CuPy array or Parameter, got {type(tensor).__name__}")
    array_module(a)  # a CUDA array of another library: TypeError naming cupy.asarray
    if not writeable(a):
        raise ValueError(f"[{op}] the array is filled in place and must be writeable")
    return a


def calculate_gain(nonlinearity, param=None):
    """The gain torch recommends for a nonlinearity (std multiplier keeping variance)."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"[calculate_gain] negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"[calculate_gain] unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(a, op):
    if a.ndim < 2:
        raise ValueError(f"[{op}] fan in and fan out need an array with at least 2 dimensions, got shape {a.shape}")
    receptive = int(np.prod(a.shape[2:])) if a.ndim > 2 else 1
    return a.shape[1] * receptive, a.shape[0] * receptive


def _fan(a, mode, op):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"[{op}] mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(a, op)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a=0.0, b=1.0, rng=None):
    """U(a, b)."""
    arr = _array(tensor, "uniform_")
    if not a <= b:
        raise ValueError(f"[uniform_] needs a <= b, got a={a}, b={b}")
    arr[...] = array_module(arr).asarray(_rng(rng).uniform(a, b, size=arr.shape))
    return tensor


def normal_(tensor, mean=0.0, std=1.0, rng=None):
    """N(mean, std^2)."""
    arr = _array(tensor, "normal_")
    if std < 0:
        raise ValueError(f"[normal_] std must be >= 0, got {std}")
    arr[...] = array_module(arr).asarray(_rng(rng).normal(mean, std, size=arr.shape))
    return tensor


def constant_(tensor, val):
    _array(tensor, "constant_")[...] = val
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0, rng=None):
    """U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    arr = _array(tensor, "xavier_uniform_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(arr, "xavier_uniform_")
    bound = gain * math.sqrt(6.0 / max(fan_in + fan_out, 1))
    return uniform_(tensor, -bound, bound, rng)


def xavier_normal_(tensor, gain=1.0, rng=None):
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    arr = _array(tensor, "xavier_normal_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(arr, "xavier_normal_")
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / max(fan_in + fan_out, 1)), rng)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    """U(-b, b), b = gain * sqrt(3 / fan) with gain = calculate_gain(nonlinearity, a) (He et al., 2015)."""
    arr = _array(tensor, "kaiming_uniform_")
    fan = _fan(arr, mode, "kaiming_uniform_")
    if fan == 0:
        return tensor  # torch leaves zero-element arrays alone
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(tensor, -bound, bound, rng)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    """N(0, std^2), std = gain / sqrt(fan)."""
    arr = _array(tensor, "kaiming_normal_")
    fan = _fan(arr, mode, "kaiming_normal_")
    if fan == 0:
        return tensor
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan), rng)

