"""deepkern.cuda: whether the CUDA kernels were built and a GPU can run them.

A module built without CUDA, or run on a machine with no driver or no GPU, still
imports: is_available() is then False (the native side turns "no driver" into a
device count of 0 instead of an error). Training on a GPU (Module.to("cuda"),
fit(device="cuda")) also needs CuPy, whose arrays the layers above the kernels
compute with; unavailable_reason() says which of the three is missing.
"""
import importlib.util

from . import _C


def is_built():
    """True when the native module was compiled with the CUDA kernels."""
    return bool(_C.cuda_built)


def device_count():
    """Number of usable GPUs (0 without CUDA, driver or device)."""
    return int(_C.cuda_device_count()) if is_built() else 0


def is_available():
    return device_count() > 0


def unavailable_reason():
    """None when modules can run on a GPU, else why not, in words: the build lacks
    CUDA, CuPy is not installed, or no GPU was found (each one that applies; without
    a CUDA build the GPU count is unknown, so only the other two are told)."""
    reasons = []
    if not is_built():
        reasons.append("deepkern was built without CUDA (rebuild with DEEPKERN_CUDA=ON and nvcc on the PATH)")
    if importlib.util.find_spec("cupy") is None:
        reasons.append("CuPy is not installed (pip install cupy-cuda13x, or the package for your CUDA version)")
    if is_built() and device_count() == 0:
        reasons.append("no CUDA GPU was found (or no driver)")
    return "; ".join(reasons) or None


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
