"""What every test uses: tolerances per dtype, closeness checks, finite differences, torch."""
import numpy as np
import pytest

DTYPES = [np.float32, np.float64]

# |actual - expected| <= atol * scale + rtol * |expected|, per dtype.
TOL = {np.dtype(np.float32): (1e-5, 1e-4), np.dtype(np.float64): (1e-12, 1e-10)}


def rng(seed=0):
    return np.random.default_rng(seed)


def randn(gen, shape, dtype):
    return gen.standard_normal(shape).astype(dtype)


def assert_close(actual, expected, dtype=None, scale=1.0, name="result"):
    """Compare with the tolerance of `dtype` (default: actual's). `scale` widens the
    absolute part where the math says errors grow (e.g. sqrt(K) for a K-term sum)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    atol, rtol = TOL[np.dtype(dtype or actual.dtype)]
    err = np.abs(actual.astype(np.float64) - expected)
    bound = atol * np.asarray(scale) + rtol * np.abs(expected)
    bad = ~(err <= bound)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), err.shape) if err.ndim else ()
        raise AssertionError(
            f"{name}: {bad.sum()} of {err.size} elements off; worst at {i}: "
            f"got {actual[i]!r}, expected {expected[i]!r}, bound {np.broadcast_to(bound, err.shape)[i]:.3g}")


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar f() with respect to the float64 array x,
    perturbed in place (f must read x)."""
    assert x.dtype == np.float64
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = f()
        flat[i] = old - eps
        lo = f()
        flat[i] = old
        gflat[i] = (hi - lo) / (2 * eps)
    return g


def assert_grad(analytic, f, x, eps=1e-6, rtol=1e-6, atol=1e-7, name="grad"):
    """Analytic gradient of the scalar f() w.r.t. x against central differences (float64)."""
    num = numeric_grad(f, x, eps)
    err = np.abs(np.asarray(analytic) - num)
    bound = atol + rtol * np.abs(num)
    assert (err <= bound).all(), f"{name}: worst error {err.max():.3g} (bound {bound.max():.3g})"


def torch_or_skip():
    """torch, the second oracle; tests that need it skip with a reason where it is absent."""
    return pytest.importorskip("torch", reason="PyTorch is not installed: the second oracle is skipped")


# -- GPU ---------------------------------------------------------------------------
# GPU tests run the CUDA kernels on CuPy arrays and compare them with the CPU
# kernel and the float64 reference; they skip, with the reason, where there is
# no CUDA build, no GPU or no CuPy.
# Naming: every test marked requires_gpu is a function named test_gpu_* or lives
# in a class named TestGpu*, so that one selection, pytest -k "gpu or cuda or
# device" (bench/gpu_check.sh), runs all of them on a GPU machine.

def _gpu_skip_reason():
    import deepkern
    if not deepkern.cuda.is_built():
        return "deepkern was built without CUDA"
    if deepkern.cuda.device_count() == 0:
        return "no GPU on this machine"
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "CuPy is not installed (the GPU tests use CuPy arrays)"
    return None


_GPU_SKIP = _gpu_skip_reason()
requires_gpu = pytest.mark.skipif(_GPU_SKIP is not None, reason=f"GPU test: {_GPU_SKIP}")


def to_gpu(a):
    """A numpy array (or None) as a CuPy array of the same dtype."""
    import cupy
    return None if a is None else cupy.asarray(a)


def to_cpu(a):
    """A CuPy array (or a tuple/list of them, or None) back as numpy."""
    if isinstance(a, (tuple, list)):
        return type(a)(to_cpu(v) for v in a)
    return None if a is None or isinstance(a, (np.ndarray, int, float)) else a.get()
