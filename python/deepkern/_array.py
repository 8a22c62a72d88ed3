"""Which array library an array belongs to, and moving arrays between devices.

The modules, optimizers and training loop are written once against "xp", the
array module of their input: numpy for CPU arrays, CuPy for GPU arrays. Devices
are named "cpu", "cuda" (CuPy's current GPU) and "cuda:N". CuPy is imported only
when an array already is a CuPy array or something is moved to a GPU, so CPU-only
use never needs it installed.

CUDA arrays of other libraries (PyTorch tensors) are accepted by deepkern.ops,
but the layers above need numpy's API on them, which only CuPy gives:
array_module raises TypeError for them, naming cupy.asarray as the way in.
"""
import contextlib
import re
import sys

import numpy as np

_DEVICE = re.compile(r"(cpu|cuda)(?::(\d+))?\Z")


def parse_device(device):
    """("cpu", None), ("cuda", None) for the current GPU, or ("cuda", N); ValueError otherwise."""
    m = _DEVICE.match(device) if isinstance(device, str) else None
    if m is None or (m.group(1) == "cpu" and m.group(2) is not None):
        raise ValueError(f"[device] expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return m.group(1), (None if m.group(2) is None else int(m.group(2)))


def is_device(value):
    """True when `value` is a device name (so Module.to can tell it from a dtype)."""
    try:
        parse_device(value)
    except ValueError:
        return False
    return True


def _is_cupy(x):
    return type(x).__module__.partition(".")[0] == "cupy"


def array_module(x):
    """numpy, or cupy for a CuPy array (anything else that is not a CUDA array,
    lists and scalars included, counts as host data: numpy)."""
    if isinstance(x, np.ndarray) or not hasattr(x, "__cuda_array_interface__"):
        return np
    if _is_cupy(x):
        return sys.modules["cupy"]
    raise TypeError(f"[device] deepkern's modules and training loop take numpy or CuPy arrays; got a CUDA "
                    f"{type(x).__module__}.{type(x).__name__} (wrap it with cupy.asarray, which shares the memory)")


def is_gpu(x):
    return array_module(x) is not np


def device_of(x):
    """"cpu" or "cuda:N" for an array (host data of any kind is "cpu")."""
    return f"cuda:{x.device.id}" if is_gpu(x) else "cpu"


_cupy = None  # set once the checks below have passed: they cannot change within a process


def cupy_or_raise(what="device"):
    """The cupy module, or RuntimeError naming what is missing (see deepkern.cuda.unavailable_reason)."""
    global _cupy
    if _cupy is not None:
        return _cupy  # every batch's copy comes here: no driver query each time
    from . import cuda
    reason = cuda.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"[{what}] CUDA is not available: {reason}")
    try:
        import cupy
    except ImportError as e:  # installed, but built for another CUDA, or its libraries are missing
        why = " ".join(str(e).split())  # one line: CuPy's import errors span several
        raise RuntimeError(f"[{what}] CUDA is not available: CuPy is installed but does not import ({why})") from None
    _cupy = cupy
    return cupy


def _cuda_index(index):
    cupy = cupy_or_raise()
    return cupy.cuda.runtime.getDevice() if index is None else index


def canonical(device):
    """A device name with the GPU index spelled out: "cpu" or "cuda:N"."""
    kind, index = parse_device(device)
    return "cpu" if kind == "cpu" else f"cuda:{_cuda_index(index)}"


def to_device(a, device, copy=False):
    """`a` on `device`: itself when it is there already (unless copy), else a
    C-contiguous copy there. Host data of any kind (lists, scalars) becomes numpy."""
    kind, index = parse_device(device)
    if kind == "cpu":
        if is_gpu(a):
            return a.get()  # a new host array
        return np.array(a, order="C", copy=True) if copy else np.asarray(a)
    cupy = cupy_or_raise()
    index = _cuda_index(index)
    if is_gpu(a) and a.device.id == index and not copy:
        return a
    with cupy.cuda.Device(index):
        # cupy.copy copies across GPUs; cupy.array uploads host data.
        return cupy.copy(a, order="C") if is_gpu(a) else cupy.array(a, order="C")


def to_host(a, copy=False):
    """`a` as a numpy array (a new one from a GPU; from the host a copy only when asked)."""
    return to_device(a, "cpu", copy=copy)


def device_scope(device):
    """A context in which new CuPy arrays land on `device`'s GPU (nothing to do for "cpu")."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return contextlib.nullcontext()
    return cupy_or_raise().cuda.Device(_cuda_index(index))


def writeable(a):
    """numpy's writeable flag; CuPy arrays have none and are always writeable."""
    return getattr(a.flags, "writeable", True)


def as_array(a):
    """A numpy or CuPy array as it is; anything else (lists, scalars) as numpy."""
    return a if isinstance(a, np.ndarray) or is_gpu(a) else np.asarray(a)


def shape_of(x):
    """x's shape as a tuple without numpy's function dispatch, which CuPy arrays
    answer only for the functions CuPy defines (np.shape(x) may not be one)."""
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
