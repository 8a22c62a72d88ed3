"""deepkern.cuda: whether the CUDA kernels were built and a GPU can run them.

A module built without CUDA, or run on a machine with no driver or no GPU, still
imports: is_available() is then False (the native side turns "no driver" into a
device count of 0 instead of an error).
"""
from . import _C


def is_built():
    """True when the native module was compiled with the CUDA kernels."""
    return bool(_C.cuda_built)


def device_count():
    """Number of usable GPUs (0 without CUDA, driver or device)."""
    return int(_C.cuda_device_count()) if is_built() else 0


def is_available():
    return device_count() > 0


def device_name(device=0):
    """The name of GPU `device`, e.g. "NVIDIA H100 80GB HBM3"."""
    n = device_count()
    if isinstance(device, bool) or not isinstance(device, int) or not 0 <= device < n:
        if not is_built():
            raise RuntimeError("[cuda] deepkern was built without CUDA (DEEPKERN_CUDA=OFF or no nvcc)")
        raise ValueError(f"[cuda] device {device!r} is not one of the {n} available GPU(s)")
    return str(_C.cuda_device_name(device))


def runtime_version():
    """The CUDA runtime version the module was built against (e.g. 13000), 0 without CUDA."""
    return int(_C.cuda_runtime_version)
