"""Activations and softmax: forward and backward against the float64 references,
float64 finite differences, PyTorch (when installed, also at kinks, extremes and
NaN), argument errors, and the CUDA path (skipped without a GPU and CuPy).
Run under each ISA with DEEPKERN_ISA=generic / avx2."""
import numpy as np
import pytest

import reference as ref
from deepkern import _C, ops
from helpers import DTYPES, assert_close, assert_grad, rng, torch_or_skip

SIZES = [0, 1, 7, 15, 17, 33, 1000]
BIG = 100_003  # past the threading threshold, not a multiple of any vector width


class Act:
    """One activation: its ops functions, keyword arguments and reference."""

    def __init__(self, name, kwargs=None, alpha=None, threshold=20.0, from_output=False, kinks=(0.0,)):
        self.name, self.kwargs, self.from_output, self.kinks = name, kwargs or {}, from_output, kinks
        self.alpha, self.threshold = alpha, threshold
        self.fwd, self.bwd = getattr(ops, name), getattr(ops, name + "_backward")

    def __repr__(self):
        return self.name + (str(self.kwargs) if self.kwargs else "")

    def forward(self, x):
        return self.fwd(x, **self.kwargs)

    def backward(self, dy, x):
        """dx through the public API: sigmoid and tanh take the forward output."""
        return self.bwd(dy, self.forward(x) if self.from_output else x, **self.kwargs)

    def ref_forward(self, x):
        return getattr(ref, self.name)(x, **self.kwargs)

    def ref_backward(self, dy, x):
        saved = self.ref_forward(x) if self.from_output else x
        return ref.activation_backward(self.name, dy, saved, self.alpha, self.threshold)

    def torch_pair(self, torch):
        F = torch.nn.functional
        return {"relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, **self.kwargs),
                "elu": lambda t: F.elu(t, **self.kwargs), "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                "softplus": lambda t: F.softplus(t, **self.kwargs), "silu": F.silu}[self.name]


ACTS = [
    Act("relu"),
    Act("leaky_relu"),
    Act("leaky_relu", {"negative_slope": 0.2}, alpha=0.2),
    Act("elu"),
    Act("elu", {"alpha": 0.5}, alpha=0.5),
    Act("sigmoid", from_output=True),
    Act("tanh", from_output=True),
    Act("softplus"),
    Act("softplus", {"beta": 2.0, "threshold": 5.0}, alpha=2.0, threshold=5.0, kinks=(2.5,)),
    Act("silu"),
]


def inputs(gen, shape, dtype):
    """Mostly moderate values, some large enough to saturate every function."""
    x = gen.standard_normal(shape) * 3
    if x.size:
        x.reshape(-1)[::11] *= 10
    return x.astype(dtype)


def assert_match(actual, expected, dtype, name):
    """assert_close where expected is finite; NaN and +-inf exactly where expected has them."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    finite = np.isfinite(expected)
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), f"{name}: NaN positions differ"
    assert np.array_equal(actual[~finite & ~np.isnan(expected)], expected[~finite & ~np.isnan(expected)]), \
        f"{name}: infinities differ"
    assert_close(actual[finite], expected[finite], dtype, name=name)


@pytest.mark.parametrize("act", ACTS, ids=repr)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_and_backward_match_reference(act, dtype):
    gen = rng(1)
    for size in SIZES + [BIG]:
        x, dy = inputs(gen, size, dtype), gen.standard_normal(size).astype(dtype)
        y = act.forward(x)
        assert y.shape == x.shape and y.dtype == dtype
        assert_close(y, act.ref_forward(x), dtype, name=f"{act} forward n={size}")
        dx = act.backward(dy, x)
        assert dx.shape == x.shape and dx.dtype == dtype
        # sigmoid/tanh: the reference differentiates from our y, so only the backward formula is checked
        expect = act.ref_backward(dy, x) if not act.from_output else \
            ref.activation_backward(act.name, dy, act.forward(x))
        assert_close(dx, expect, dtype, name=f"{act} backward n={size}")


@pytest.mark.parametrize("act", ACTS, ids=repr)
def test_any_shape(act):
    x = inputs(rng(2), (3, 1, 5, 7), np.float32)
    assert_close(act.forward(x), act.ref_forward(x), name=repr(act))
    assert act.forward(np.float64(0.5)).shape == ()
    # strided views are read, not rejected
    xt = inputs(rng(3), (9, 4), np.float64).T
    assert_close(act.forward(xt), act.ref_forward(xt), name=f"{act} transposed")


@pytest.mark.parametrize("act", ACTS, ids=repr)
def test_extremes(act):
    x = np.array([0.0, -0.0, 1e-30, -1e-30, 100, -100, 1e4, -1e4, 88.5, -88.5, 709, -709, 1e30, -1e30,
                  np.inf, -np.inf, np.nan] + list(act.kinks))
    for dtype in DTYPES:
        xd = x.astype(dtype)
        with np.errstate(all="ignore"):
            assert_match(act.forward(xd), act.ref_forward(xd), dtype, f"{act} forward")


def ulps(actual, expected, dtype):
    """|actual - expected| in units of the last place of expected in dtype."""
    expected = np.asarray(expected, np.longdouble)
    return np.abs(actual.astype(np.longdouble) - expected) / np.spacing(np.abs(expected).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_math_is_accurate_to_a_few_ulp(dtype):
    """exp, expm1, log1p and tanh (csrc/cpu/simd_math.h) through the ops that expose them
    most directly, against numpy in long double (x86's 64-bit mantissa: 11 bits beyond
    float64, so the reference's own rounding is negligible)."""
    gen = rng(11)
    lo = -87.0 if dtype == np.float32 else -708.0
    x = np.concatenate([gen.uniform(lo, 0, 20000), gen.uniform(-1, 0, 20000), -np.exp(gen.uniform(-60, 0, 5000))])
    x = x.astype(dtype)
    ones = np.ones_like(x)
    xd = x.astype(np.longdouble)
    checks = {"exp (elu_backward)": (ops.elu_backward(ones, x), np.exp(xd)),
              "expm1 (elu)": (ops.elu(x), np.expm1(xd)),
              "log1p(exp) (softplus)": (ops.softplus(x), np.log1p(np.exp(xd))),
              "tanh": (ops.tanh(x), np.tanh(xd)),
              "tanh(-x)": (ops.tanh(-x), np.tanh(-xd))}
    for name, (got, want) in checks.items():
        worst = ulps(got, want, dtype).max()
        assert worst <= 3.0, f"{name}: {worst:.2f} ulp"

def test_saturation_is_exact():
    for dtype in DTYPES:
        x = np.array([-1000, -1e4, 1000, 1e4], dtype)
        assert list(ops.sigmoid(x)) == [0, 0, 1, 1]
        assert list(ops.tanh(x)) == [-1, -1, 1, 1]
        assert list(ops.softplus(x[:2])) == [0, 0]
        assert list(ops.softplus(x[2:])) == list(x[2:])  # past the threshold
        assert np.isinf(ops.elu(np.array([np.inf], dtype))[0])


@pytest.mark.parametrize("act", ACTS, ids=repr)
def test_backward_finite_differences(act):
    gen = rng(4)
    x = gen.standard_normal(23) * 2
    x[np.abs(x - np.array(act.kinks)[:, None]).min(axis=0) < 1e-2] += 0.1  # away from kinks
    dy = gen.standard_normal(23)
    assert_grad(act.backward(dy, x), lambda: float((act.forward(x) * dy).sum()), x, name=repr(act))


@pytest.mark.parametrize("act", ACTS, ids=repr)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch_including_kinks_and_nan(act, dtype):
    torch = torch_or_skip()
    gen = rng(5)
    x = np.concatenate([inputs(gen, 97, np.float64), [0.0, -0.0, 1e4, -1e4, 100, -100, np.nan, np.inf, -np.inf],
                        list(act.kinks)]).astype(dtype)
    dy = gen.standard_normal(x.size).astype(dtype)
    t = torch.tensor(x, requires_grad=True)
    ty = act.torch_pair(torch)(t)
    (tdx,) = torch.autograd.grad(ty, t, torch.tensor(dy))
    tdx = tdx.numpy().copy()
    # torch's elu backward at x = NaN depends on where the NaN lies: its vectorised
    # loop gives NaN, its scalar tail passes dy through (the loop's width varies with
    # torch's CPU path). Its scalar answer, one element at a time, is the oracle there.
    for k in np.flatnonzero(np.isnan(x)):
        t1 = torch.tensor(x[k:k + 1], requires_grad=True)
        tdx[k] = torch.autograd.grad(act.torch_pair(torch)(t1), t1, torch.tensor(dy[k:k + 1]))[0].item()
    with np.errstate(all="ignore"):
        assert_match(act.forward(x), ty.detach().numpy(), dtype, f"{act} forward vs torch")
        assert_match(act.backward(dy, x), tdx, dtype, f"{act} backward vs torch")


def test_in_place_and_aliasing():
    x = inputs(rng(6), 1001, np.float32)
    expect = ref.silu(x)
    _C.activation(_C.Activation.silu, x, x, 0.0, 20.0)
    assert_close(x, expect)


# -- softmax ------------------------------------------------------------------------

# the last three pass the threading threshold (rows, then column blocks of
# one and of several Vecs)
SOFTMAX_SHAPES = [(1,), (7,), (3, 17), (4, 33, 5), (2, 3, 15, 7), (5, 1000), (2, 0, 3), (130, 300), (40, 30, 37),
                  (12, 20, 150)]


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_every_dim(shape, dtype):
    gen = rng(7)
    x = (gen.standard_normal(shape) * 4).astype(dtype)
    dy = gen.standard_normal(shape).astype(dtype)
    for dim in range(-len(shape), len(shape)):
        for log, f, fb, r in ((False, ops.softmax, ops.softmax_backward, ref.softmax),
                              (True, ops.log_softmax, ops.log_softmax_backward, ref.log_softmax)):
            name = f"{'log_' if log else ''}softmax{shape} dim={dim}"
            y = f(x, dim=dim)
            assert y.shape == x.shape and y.dtype == dtype
            if x.size == 0:  # empty in, empty out (the reference cannot reduce nothing)
                assert fb(dy, y, dim=dim).shape == x.shape
                continue
            assert_close(y, r(x, dim), dtype, name=name)
            dx = fb(dy, y, dim=dim)
            assert_close(dx, ref.softmax_backward(dy, y, dim, log), dtype, scale=np.sqrt(shape[dim] + 1),
                         name=name + " backward")


def test_softmax_stable_and_special_rows():
    x = np.array([[1e4, 1e4 - 1, -1e4], [-np.inf, 0.0, 1.0], [np.nan, 0.0, 1.0], [-np.inf] * 3])
    for dtype in DTYPES:
        xd = x.astype(dtype)
        with np.errstate(all="ignore"):
            assert_match(ops.softmax(xd), ref.softmax(xd), dtype, "softmax")
            assert_match(ops.log_softmax(xd), ref.log_softmax(xd), dtype, "log_softmax")
    assert ops.softmax(np.array(3.0)) == 1.0  # 0-D, as torch


@pytest.mark.parametrize("log", [False, True])
def test_softmax_backward_finite_differences(log):
    gen = rng(8)
    x, dy = gen.standard_normal((3, 5, 4)), gen.standard_normal((3, 5, 4))
    f, fb = (ops.log_softmax, ops.log_softmax_backward) if log else (ops.softmax, ops.softmax_backward)
    for dim in (0, 1, 2):
        assert_grad(fb(dy, f(x, dim), dim), lambda: float((f(x, dim) * dy).sum()), x, name=f"dim={dim}")


def test_softmax_matches_torch():
    torch = torch_or_skip()
    gen = rng(9)
    for dtype in DTYPES:
        x = (gen.standard_normal((3, 6, 19)) * 5).astype(dtype)
        dy = gen.standard_normal(x.shape).astype(dtype)
        for dim in (0, 1, -1):
            for f, fb, tf in ((ops.softmax, ops.softmax_backward, torch.softmax),
                              (ops.log_softmax, ops.log_softmax_backward, torch.log_softmax)):
                t = torch.tensor(x, requires_grad=True)
                ty = tf(t, dim)
                (tdx,) = torch.autograd.grad(ty, t, torch.tensor(dy))
                y = f(x, dim)
                assert_close(y, ty.detach().numpy(), dtype)
                assert_close(fb(dy, y, dim), tdx.numpy(), dtype, scale=5)


# -- errors -----------------------------------------------------------------------------


def test_errors():
    x32, x64 = np.ones((2, 3), np.float32), np.ones((2, 3), np.float64)
    with pytest.raises(TypeError, match=r"\[relu\] x must be float32 or float64, got int64"):
        ops.relu(np.ones(3, np.int64))
    with pytest.raises(TypeError, match=r"\[relu\] x must be a numpy array"):
        ops.relu("abc")
    with pytest.raises(TypeError, match=r"\[sigmoid\] y has dtype float64, expected float32"):
        ops.sigmoid_backward(x32, x64)
    with pytest.raises(ValueError, match=r"\[elu\] x must have shape \(2, 3\), got \(3, 2\)"):
        ops.elu_backward(x64, x64.T.copy())
    with pytest.raises(ValueError, match=r"\[softplus\] beta must be nonzero"):
        ops.softplus(x32, beta=0.0)
    with pytest.raises(TypeError, match=r"\[leaky_relu\] negative_slope must be a real number"):
        ops.leaky_relu(x32, negative_slope="0.1")
    with pytest.raises(ValueError, match=r"\[softmax\] dim 2 is out of range for a 2-D array"):
        ops.softmax(x32, dim=2)
    with pytest.raises(ValueError, match=r"\[log_softmax\] dim -3 is out of range"):
        ops.log_softmax(x32, dim=-3)
    with pytest.raises(TypeError, match=r"\[softmax\] dim must be an int"):
        ops.softmax(x32, dim=1.0)
    with pytest.raises(ValueError, match=r"\[softmax\] y must have shape \(3, 2\), got \(2, 3\)"):
        ops.softmax_backward(np.ones((3, 2)), x64)
    # outputs written in place: C-contiguous, writeable, right dtype, never copied
    with pytest.raises(ValueError, match=r"\[tanh\] y is written in place and must be C-contiguous"):
        _C.activation(_C.Activation.tanh, x64.T, np.empty((3, 2)).T, 0.0, 20.0)
    ro = np.empty((2, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"\[tanh\] y is written in place and must be writeable"):
        _C.activation(_C.Activation.tanh, x64, ro, 0.0, 20.0)
    with pytest.raises(TypeError, match=r"\[softmax\] y has dtype float32, expected float64"):
        _C.softmax(x64, np.empty((2, 3), np.float32), 1, False)


class FakeCudaArray:
    """Only the interface: the binding rejects these before touching the pointer."""

    def __init__(self, shape=(4,), typestr="<f4", strides=None, stream=None, **extra):
        self.__cuda_array_interface__ = dict(shape=shape, typestr=typestr, data=(0x1000, False),
                                             strides=strides, version=3, **extra)
        if stream is not None:
            self.__cuda_array_interface__["stream"] = stream


def test_cuda_arrays_are_checked_before_any_gpu_work():
    x = np.ones(4, np.float32)
    with pytest.raises(TypeError, match=r"\[relu\] y is a CUDA array but x is not"):
        _C.activation(_C.Activation.relu, x, FakeCudaArray(), 0.0, 20.0)
    if not _C.cuda_built:
        with pytest.raises(TypeError, match="built without CUDA"):
            _C.activation(_C.Activation.relu, FakeCudaArray(), FakeCudaArray(), 0.0, 20.0)
        return
    with pytest.raises(TypeError, match=r"\[relu\] x must be float32 or float64, got a CUDA array of typestr '<i4'"):
        _C.activation(_C.Activation.relu, FakeCudaArray(typestr="<i4"), FakeCudaArray(), 0.0, 20.0)
    with pytest.raises(ValueError, match=r"\[relu\] x must be a C-contiguous CUDA array"):
        _C.activation(_C.Activation.relu, FakeCudaArray((2, 3), strides=(4, 8)), FakeCudaArray((2, 3)), 0.0, 20.0)
    with pytest.raises(ValueError, match=r"stream'\] is 0"):
        _C.activation(_C.Activation.relu, FakeCudaArray(stream=0), FakeCudaArray(), 0.0, 20.0)
    with pytest.raises(ValueError, match=r"size overflows 64 bits"):
        _C.activation(_C.Activation.relu, FakeCudaArray((2**40, 2**40)), FakeCudaArray(), 0.0, 20.0)
    with pytest.raises(ValueError, match=r"masked CUDA array"):
        _C.activation(_C.Activation.relu, FakeCudaArray(mask=object()), FakeCudaArray(), 0.0, 20.0)
    with pytest.raises(TypeError, match=r"\[tanh\] y has dtype float64, expected float32"):
        _C.activation(_C.Activation.tanh, FakeCudaArray(), FakeCudaArray(typestr="<f8"), 0.0, 20.0)
    with pytest.raises(ValueError, match=r"\[tanh\] y must have shape \(4,\), got \(5,\)"):
        _C.activation(_C.Activation.tanh, FakeCudaArray(), FakeCudaArray((5,)), 0.0, 20.0)
    ro = FakeCudaArray()
    ro.__cuda_array_interface__["data"] = (0x1000, True)
    with pytest.raises(ValueError, match=r"\[tanh\] y is written in place and must be writeable"):
        _C.activation(_C.Activation.tanh, FakeCudaArray(), ro, 0.0, 20.0)


# -- CUDA: the same ops on the GPU against the CPU kernels --------------------------------


def _cupy_or_skip():
    if _C.cuda_device_count() == 0:
        pytest.skip("no CUDA device (or deepkern built without CUDA): the GPU kernels are not run")
    return pytest.importorskip("cupy", reason="CuPy is not installed: the GPU kernels are not run")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu(dtype):
    cp = _cupy_or_skip()
    gen = rng(10)
    for act in ACTS:
        for size in (1, 33, 1000, BIG):
            x, dy = inputs(gen, size, dtype), gen.standard_normal(size).astype(dtype)
            gx, gdy = cp.asarray(x), cp.asarray(dy)
            y = act.forward(gx)
            assert isinstance(y, cp.ndarray)
            assert_close(cp.asnumpy(y), act.forward(x), dtype, name=f"cuda {act}")
            saved = act.forward(gx) if act.from_output else gx
            dx = act.bwd(gdy, saved, **act.kwargs)
            assert_close(cp.asnumpy(dx), act.backward(dy, x), dtype, name=f"cuda {act} backward")
    for shape in SOFTMAX_SHAPES:
        x, dy = (gen.standard_normal(shape) * 4).astype(dtype), gen.standard_normal(shape).astype(dtype)
        for dim in range(len(shape)):
            for f, fb in ((ops.softmax, ops.softmax_backward), (ops.log_softmax, ops.log_softmax_backward)):
                y = f(cp.asarray(x), dim)
                assert_close(cp.asnumpy(y), f(x, dim), dtype)
                dx = fb(cp.asarray(dy), y, dim)
                assert_close(cp.asnumpy(dx), fb(dy, f(x, dim), dim), dtype, scale=np.sqrt(shape[dim] + 1))
