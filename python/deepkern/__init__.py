"""deepkern: deep learning with hand-written C++ and CUDA kernels under a thin Python layer.

The functional ops (deepkern.ops) are re-exported here; the subpackages are nn
(modules, losses, initialisers), optim, train (fit / evaluate / predict), data
and cuda. array_module, device_of and to_device tell and move arrays between
the CPU (numpy) and GPUs (CuPy).
"""
import operator
import sys

import numpy as np

from . import _C
from . import ops

__version__ = _C.__version__

# Every public function of ops, at top level (ops.__all__ when it defines one).
_op_names = getattr(ops, "__all__", None) or [
    n for n, v in vars(ops).items()
    if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == ops.__name__]
globals().update({n: getattr(ops, n) for n in _op_names})

from . import cuda, data, nn, optim, train  # noqa: E402  (they import ops)
from ._array import array_module, device_of, to_device  # noqa: E402
from .nn import load, save  # noqa: E402
from .nn.init import manual_seed  # noqa: E402
from . import callbacks, models  # noqa: E402
from .gradcheck import gradcheck  # noqa: E402  (the function; the module stays importable by name)


def get_num_threads():
    """Threads the native kernels use."""
    return _C.get_num_threads()


def set_num_threads(n):
    """Set the threads the native kernels use (process-wide), 1 to 1024."""
    n = operator.index(n)
    if not 1 <= n <= 1024:
        raise ValueError(f"[set_num_threads] n must be between 1 and 1024, got {n}")
    _C.set_num_threads(n)


def release_host_cache():
    """Hand back to the allocator the memory kept for reuse by large output arrays
    (outputs of 1 MiB or more take blocks freed by earlier ones of the same size; up
    to 1 GiB of freed blocks wait for reuse). Returns the bytes released."""
    kept = _C.host_cache_bytes()
    _C.release_host_cache()
    return kept


def show_config(file=None):
    """Print the version, the CPU instruction set in use, threads and CUDA status."""
    out = file if file is not None else sys.stdout
    isa, best = _C.isa(), _C.best_isa()
    lines = [f"deepkern {__version__}",
             f"  python {sys.version.split()[0]}, numpy {np.__version__}",
             f"  CPU ISA: {isa} (best available: {best}{', lowered by DEEPKERN_ISA' if isa != best else ''})",
             f"  threads: {get_num_threads()}"]
    if not cuda.is_built():
        lines.append("  CUDA: not built")
    else:
        v = cuda.runtime_version()
        n = cuda.device_count()
        lines.append(f"  CUDA: built (runtime {v // 1000}.{v % 1000 // 10}), "
                     f"available: {'yes' if n else 'no'}, {n} device(s)")
        lines += [f"    device {i}: {cuda.device_name(i)}" for i in range(n)]
    reason = cuda.unavailable_reason()
    lines.append("  modules and training on a GPU: " + ("ready (CuPy found)" if reason is None else f"no: {reason}"))
    print("\n".join(lines), file=out)


__all__ = sorted(_op_names) + ["nn", "optim", "train", "data", "cuda", "ops", "save", "load",
                               "manual_seed", "models", "callbacks", "gradcheck",
                               "get_num_threads", "set_num_threads", "show_config",
                               "array_module", "device_of", "to_device",
                               "__version__"]
