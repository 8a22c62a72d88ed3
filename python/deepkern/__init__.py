"""deepkern: deep learning with hand-written C++ and CUDA kernels under a thin Python layer."""
from . import _C

__version__ = _C.__version__


def get_num_threads():
    """Threads the native kernels use."""
    return _C.get_num_threads()


def set_num_threads(n):
    """Set the threads the native kernels use (process-wide)."""
    _C.set_num_threads(int(n))
