"""max_pool2d, avg_pool2d, global_avg_pool2d and their backwards: against the float64
references and torch on edge shapes and random window configurations, float64
finite differences of every backward, torch's NaN/tie rules, bad arguments, and
the pooling modules. CI runs this file under every DEEPKERN_ISA."""
import types

import numpy as np
import pytest

import deepkern
import reference as ref
from deepkern import nn, ops
from helpers import DTYPES, assert_close, assert_grad, randn, requires_gpu, rng, to_cpu, to_gpu, torch_or_skip

# (shape, kernel_size, stride, padding, dilation, ceil_mode): the classes of window
# that take different paths (interior vectors with stride 1 and 2, scalar rims,
# stride 3, dilation, ceil_mode windows hanging over the padded edge, kernel ==
# input, 1x1 outputs, rows wider than two vectors, unbatched).
CASES = [
    ((2, 3, 8, 8), 2, None, 0, 1, False),
    ((2, 3, 13, 11), 3, 2, 1, 1, False),
    ((1, 2, 14, 14), 3, 2, 1, 1, True),
    ((2, 2, 6, 6), 3, 2, 1, 1, True),          # the last window covers input, padding and beyond
    ((2, 2, 9, 37), (2, 3), (1, 2), (1, 1), 1, False),
    ((1, 3, 11, 40), 3, 1, 1, 2, False),
    ((2, 3, 5, 5), 5, None, 0, 1, False),       # kernel == input: 1x1 output
    ((1, 1, 7, 7), 7, 1, 3, 1, True),
    ((2, 2, 10, 10), 3, 3, 1, 1, True),         # stride 3: the scalar path
    ((1, 1, 6, 67), 3, 2, 1, 1, False),         # 34 outputs per row: vector tails
    ((1, 2, 5, 9), 1, 2, 0, 1, True),
    ((1, 1, 9, 9), (4, 2), (3, 1), (2, 1), (2, 3), True),
    ((3, 9, 9), 2, None, 1, 1, True),           # unbatched
    ((0, 3, 8, 8), 2, None, 0, 1, False),       # empty batch
]


def _ids(case):
    return "x".join(map(str, case[0])) + f"-k{case[1]}s{case[2]}p{case[3]}d{case[4]}{'c' if case[5] else ''}"


def random_cases(count, seed):
    """Valid torch windows drawn at random (kernels, strides, paddings, dilations, odd sizes)."""
    g = rng(seed)
    out = []
    while len(out) < count:
        k = tuple(int(v) for v in g.integers(1, 5, 2))
        s = tuple(int(v) for v in g.integers(1, 4, 2))
        p = tuple(int(g.integers(0, kk // 2 + 1)) for kk in k)
        d = tuple(int(v) for v in g.integers(1, 3, 2))
        hw = tuple(int(v) for v in g.integers(1, 23, 2))
        ceil = bool(g.integers(0, 2))
        if all(ref._pool_out(hw[a], k[a], s[a], p[a], d[a], ceil) >= 1 for a in range(2)):
            out.append(((int(g.integers(1, 3)), int(g.integers(1, 4))) + hw, k, s, p, d, ceil))
    return out


def check_max(case, dtype, gen):
    shape, k, s, p, d, ceil = case
    x = randn(gen, shape, dtype)
    y, idx = ops.max_pool2d(x, k, s, p, d, ceil)
    ry, ridx = ref.max_pool2d(x, k, s, p, d, ceil)
    np.testing.assert_array_equal(y, ry.astype(dtype))  # a max is one of the inputs: exact
    np.testing.assert_array_equal(idx, ridx)
    dy = randn(gen, y.shape, dtype)
    assert_close(ops.max_pool2d_backward(dy, idx, shape), ref.max_pool2d_backward(dy, ridx, shape), dtype)
    return x, y, idx, dy


def check_avg(case, dtype, gen, count_include_pad):
    shape, k, s, p, _, ceil = case
    x = randn(gen, shape, dtype)
    y = ops.avg_pool2d(x, k, s, p, ceil, count_include_pad)
    assert_close(y, ref.avg_pool2d(x, k, s, p, ceil, count_include_pad), dtype)
    dy = randn(gen, y.shape, dtype)
    dx = ops.avg_pool2d_backward(dy, shape, k, s, p, ceil, count_include_pad)
    assert_close(dx, ref.avg_pool2d_backward(dy, shape, k, s, p, ceil, count_include_pad), dtype, scale=4)
    return x, y, dy, dx


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_max_pool2d_matches_reference(case, dtype):
    check_max(case, dtype, rng(1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_avg_pool2d_matches_reference(case, dtype):
    case = case[:4] + (1,) + case[5:]  # avg pooling has no dilation
    for include in (True, False):
        check_avg(case, dtype, rng(2), include)


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_windows_match_reference(dtype):
    gen = rng(3)
    for case in random_cases(16, seed=4):
        check_max(case, dtype, gen)
        check_avg(case[:4] + (1,) + case[5:], dtype, gen, bool(gen.integers(0, 2)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_avg_pool2d_matches_reference(dtype):
    gen = rng(5)
    for shape in [(2, 3, 7, 5), (1, 1, 1, 1), (3, 33, 17), (0, 4, 3, 3), (2, 5, 56, 56)]:
        x = randn(gen, shape, dtype)
        y = ops.global_avg_pool2d(x)
        assert_close(y, ref.global_avg_pool2d(x), dtype, scale=4)
        dy = randn(gen, y.shape, dtype)
        dx = ops.global_avg_pool2d_backward(dy, shape)
        assert_close(dx, np.broadcast_to(dy.astype(np.float64) / (shape[-1] * shape[-2]), shape), dtype)


def test_every_backward_matches_finite_differences():
    gen = rng(6)
    for shape, k, s, p, d, ceil in [CASES[1], CASES[3], CASES[5], CASES[11], CASES[12]]:
        x = randn(gen, shape, np.float64)
        y, idx = ops.max_pool2d(x, k, s, p, d, ceil)
        r = randn(gen, y.shape, np.float64)
        assert_grad(ops.max_pool2d_backward(r, idx, shape),
                    lambda: float((ops.max_pool2d(x, k, s, p, d, ceil)[0] * r).sum()), x, name="max_pool2d")
        for include in (True, False):
            y = ops.avg_pool2d(x, k, s, p, ceil, include)
            r = randn(gen, y.shape, np.float64)
            assert_grad(ops.avg_pool2d_backward(r, shape, k, s, p, ceil, include),
                        lambda: float((ops.avg_pool2d(x, k, s, p, ceil, include) * r).sum()), x, name="avg_pool2d")
        r = randn(gen, shape[:-2] + (1, 1), np.float64)
        assert_grad(ops.global_avg_pool2d_backward(r, shape),
                    lambda: float((ops.global_avg_pool2d(x) * r).sum()), x, name="global_avg_pool2d")


def test_ties_and_nans_follow_torchs_rule():
    gen = rng(7)
    x = gen.integers(0, 3, (2, 3, 12, 35)).astype(np.float32)  # many ties
    x[0, 0, 3, ::4] = np.nan
    x[1, 2, 5:7, 10:12] = np.nan                                # several NaNs in one window
    for k, s, p in [(2, 2, 0), (3, 2, 1), (3, 1, 1)]:
        y, idx = ops.max_pool2d(x, k, s, p)
        ry, ridx = ref.max_pool2d(x, k, s, p)
        np.testing.assert_array_equal(idx, ridx)
        np.testing.assert_array_equal(y, ry.astype(np.float32))
    x[:] = -np.inf  # all -inf: the window's first tap, as torch
    y, idx = ops.max_pool2d(x, 3, 2, 1)
    np.testing.assert_array_equal(idx, ref.max_pool2d(x, 3, 2, 1)[1])


def test_window_wholly_in_padding_gives_minus_inf_and_index_minus_one():
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    y, idx = ops.max_pool2d(x, 2, stride=1, padding=1, dilation=3)  # taps at -1 and 2 only
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == -np.inf and idx[0, 0, 0, 0] == -1
    np.testing.assert_array_equal(ops.max_pool2d_backward(np.ones_like(y), idx, x.shape), np.zeros_like(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_against_torch(dtype):
    torch = torch_or_skip()
    F = torch.nn.functional
    gen = rng(8)
    for shape, k, s, p, d, ceil in CASES + random_cases(12, seed=9):
        x = randn(gen, shape, dtype)
        tx = torch.from_numpy(x).requires_grad_(True)
        ty, tidx = F.max_pool2d(tx, k, s if s is not None else k, p, d, ceil, return_indices=True)
        y, idx = ops.max_pool2d(x, k, s, p, d, ceil)
        np.testing.assert_array_equal(y, ty.detach().numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())
        dy = randn(gen, y.shape, dtype)
        ty.backward(torch.from_numpy(dy))
        assert_close(ops.max_pool2d_backward(dy, idx, shape), tx.grad.numpy(), dtype)
        for include in (True, False):  # avg pooling has no dilation
            tx = torch.from_numpy(x).requires_grad_(True)
            ty = F.avg_pool2d(tx, k, s if s is not None else k, p, ceil, include)
            y = ops.avg_pool2d(x, k, s, p, ceil, include)
            assert_close(y, ty.detach().numpy(), dtype)
            dy = randn(gen, y.shape, dtype)
            ty.backward(torch.from_numpy(dy))
            assert_close(ops.avg_pool2d_backward(dy, shape, k, s, p, ceil, include), tx.grad.numpy(), dtype)
        tx = torch.from_numpy(x)
        assert_close(ops.global_avg_pool2d(x), F.adaptive_avg_pool2d(tx, 1).numpy(), dtype, scale=4)


def test_strided_inputs_and_thread_counts_give_identical_results():
    gen = rng(10)
    base = randn(gen, (4, 6, 30, 30), np.float32)
    view = base[:, ::2, 1:, ::-1]  # non-contiguous: copied by the binding
    old = deepkern.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            deepkern.set_num_threads(threads)
            y = ops.avg_pool2d(view, 3, 2, 1, True)
            results.append((*ops.max_pool2d(view, 3, 2, 1), y, ops.avg_pool2d_backward(y, view.shape, 3, 2, 1, True)))
    finally:
        deepkern.set_num_threads(old)
    for r in results[1:]:
        for a, b in zip(results[0], r):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(results[0][0], ref.max_pool2d(view, 3, 2, 1)[0].astype(np.float32))


# -- bad arguments: a clear error naming the op and argument, never a crash ---------

@pytest.mark.parametrize("kwargs, match", [
    (dict(kernel_size=9), "larger than the padded input"),
    (dict(kernel_size=3, dilation=4), "larger than the padded input"),
    (dict(kernel_size=3, padding=2), "at most half of kernel_size"),
    (dict(kernel_size=2, stride=0), "stride must be >= 1"),
    (dict(kernel_size=2, stride=-1), "stride must be >= 1"),
    (dict(kernel_size=0), "kernel_size must be >= 1"),
    (dict(kernel_size=2, dilation=0), "dilation must be >= 1"),
    (dict(kernel_size=2, padding=-1), "padding must be >= 0"),
])
def test_bad_windows_raise_value_error(kwargs, match):
    x = np.zeros((1, 2, 7, 7), np.float32)
    with pytest.raises(ValueError, match=r"\[max_pool2d\] .*" + match):
        ops.max_pool2d(x, **kwargs)
    if "dilation" not in kwargs:  # avg pooling has none
        with pytest.raises(ValueError, match=r"\[avg_pool2d\] .*" + match):
            ops.avg_pool2d(x, **kwargs)


def test_huge_windows_are_clipped_not_overflowed():
    x = randn(rng(12), (1, 2, 7, 5), np.float64)
    y, idx = ops.max_pool2d(x, 2 ** 31 - 1, padding=2 ** 30 - 1)
    np.testing.assert_array_equal(y[..., 0, 0], x.max(axis=(-2, -1)))
    assert_close(ops.avg_pool2d(x, (2 ** 30, 3), padding=(2 ** 29, 1), count_include_pad=False)[..., 0, :],
                 ref.avg_pool2d(x, (15, 3), padding=(7, 1), count_include_pad=False)[..., 0, :])
    with pytest.raises(ValueError, match=r"\[max_pool2d\] kernel_size must be < 2\^31"):
        ops.max_pool2d(x, 2 ** 62, padding=2 ** 61)
    with pytest.raises(ValueError, match=r"\[avg_pool2d\] stride must be < 2\^31"):
        ops.avg_pool2d(x, 2, stride=2 ** 63 - 1)


def test_bad_arrays_raise():
    x = np.zeros((1, 2, 6, 6), np.float32)
    with pytest.raises(TypeError, match=r"\[max_pool2d\] x must be float32 or float64"):
        ops.max_pool2d(x.astype(np.int32), 2)
    with pytest.raises(TypeError, match=r"\[avg_pool2d\] x must be float32 or float64"):
        ops.avg_pool2d(x.astype(np.float16), 2)
    with pytest.raises(ValueError, match=r"\[max_pool2d\] x must be \(N, C, H, W\) or \(C, H, W\)"):
        ops.max_pool2d(x[0, 0], 2)
    with pytest.raises(ValueError, match=r"non-empty C, H and W"):
        ops.max_pool2d(np.zeros((1, 0, 6, 6), np.float32), 2)
    with pytest.raises(TypeError, match=r"\[max_pool2d\] kernel_size must be an int or a pair"):
        ops.max_pool2d(x, 2.0)
    with pytest.raises(TypeError, match=r"\[avg_pool2d\] stride must be an int or a pair"):
        ops.avg_pool2d(x, 2, (1, 2, 3))
    y, idx = ops.max_pool2d(x, 2)
    with pytest.raises(ValueError, match=r"\[max_pool2d_backward\] indices has 1 entries outside"):
        bad = idx.copy()
        bad[0, 1, 2, 2] = 36
        ops.max_pool2d_backward(y, bad, x.shape)
    with pytest.raises(ValueError, match=r"\[max_pool2d_backward\] indices must have shape"):
        ops.max_pool2d_backward(y, idx[..., :2], x.shape)
    with pytest.raises(TypeError, match=r"\[max_pool2d_backward\] indices must be an integer array"):
        ops.max_pool2d_backward(y, idx.astype(np.float32), x.shape)
    with pytest.raises(ValueError, match=r"\[avg_pool2d_backward\] dy must have shape \(1, 2, 3, 3\)"):
        ops.avg_pool2d_backward(y[..., :2], x.shape, 2)
    with pytest.raises(ValueError, match=r"\[global_avg_pool2d_backward\] dy must have shape"):
        ops.global_avg_pool2d_backward(y, x.shape)
    with pytest.raises(TypeError, match=r"\[max_pool2d_backward\] input_shape must be a sequence"):
        ops.max_pool2d_backward(y, idx, None)
    # Written arrays passed straight to _C: checked, never copied.
    with pytest.raises(ValueError, match=r"\[max_pool2d\] y must have shape \(1, 2, 3, 3\)"):
        deepkern._C.max_pool2d(x, np.empty((1, 2, 3, 4), np.float32), np.empty((1, 2, 3, 3), np.int64),
                               (2, 2), (2, 2), (0, 0), (1, 1), False)
    with pytest.raises(TypeError, match=r"\[max_pool2d\] indices must be int64"):
        deepkern._C.max_pool2d(x, np.empty((1, 2, 3, 3), np.float32), np.empty((1, 2, 3, 3), np.int32),
                               (2, 2), (2, 2), (0, 0), (1, 1), False)
    with pytest.raises(ValueError, match=r"\[avg_pool2d\] y is written in place and must be C-contiguous"):
        deepkern._C.avg_pool2d(x, np.empty((1, 2, 3, 6), np.float32)[..., ::2], (2, 2), (2, 2), (0, 0), False, True)
    with pytest.raises(TypeError, match=r"\[avg_pool2d_backward\] dx has dtype float64, expected float32"):
        deepkern._C.avg_pool2d_backward(np.zeros((1, 2, 3, 3), np.float32), np.empty(x.shape), (2, 2), (2, 2),
                                        (0, 0), False, True)


# -- modules ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_modules_forward_and_backward(dtype):
    gen = rng(11)
    x = randn(gen, (2, 3, 9, 9), dtype)
    for module, fn, args in [(nn.MaxPool2d(3, 2, 1, ceil_mode=True), ref.max_pool2d, (3, 2, 1, 1, True)),
                             (nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), ref.avg_pool2d,
                              (3, 2, 1, True, False))]:
        with pytest.raises(RuntimeError, match="backward\\(\\) called before forward\\(\\)"):
            module.backward(x)
        y = module(x)
        expect = fn(x, *args)
        assert_close(y, expect[0] if isinstance(expect, tuple) else expect, dtype)
        dy = randn(gen, y.shape, dtype)
        if isinstance(module, nn.MaxPool2d):
            want = ref.max_pool2d_backward(dy, expect[1], x.shape)
        else:
            want = ref.avg_pool2d_backward(dy, x.shape, 3, 2, 1, True, False)
        assert_close(module.backward(dy), want, dtype, scale=4)
    y, idx = nn.MaxPool2d(2, return_indices=True)(x)
    assert idx.dtype == np.int64 and idx.shape == y.shape
    g = nn.GlobalAvgPool2d()
    y = g(x)
    assert y.shape == (2, 3, 1, 1)
    assert_close(g.backward(np.ones_like(y)), np.full(x.shape, 1 / 81), dtype)
    assert list(nn.MaxPool2d(2).parameters()) == [] and nn.AvgPool2d(2).state_dict() == {}


def test_module_gradients_match_finite_differences():
    gen = rng(13)
    x = randn(gen, (2, 2, 7, 6), np.float64)
    for m in (nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.AvgPool2d((3, 2), 2, 1, True, False), nn.GlobalAvgPool2d()):
        r = randn(gen, m(x).shape, np.float64)
        assert_grad(m.backward(r), lambda: float((m(x) * r).sum()), x, name=type(m).__name__)


# -- CUDA: the same ops on the GPU against the CPU kernels and the reference ------------

GPU_CASES = CASES + random_cases(12, seed=7) + [
    ((1, 1, 6, 6), 3, 1, 1, 1, False),      # overlapping windows: one input feeds up to 9 outputs
    ((1, 2, 33, 65), 2, 2, 0, 1, True),     # ceil_mode: a last window hanging over the edge
]


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", GPU_CASES, ids=_ids)
def test_gpu_max_pool2d_matches_cpu(case, dtype):
    shape, k, s, p, d, ceil = case
    gen = rng(11)
    x = randn(gen, shape, dtype)
    y, idx = ops.max_pool2d(x, k, s, p, d, ceil)
    gy, gidx = ops.max_pool2d(to_gpu(x), k, s, p, d, ceil)
    np.testing.assert_array_equal(to_cpu(gy), y)  # a max is one of the inputs: exact, index included
    np.testing.assert_array_equal(to_cpu(gidx), idx)
    dy = randn(gen, y.shape, dtype)
    gdx = to_cpu(ops.max_pool2d_backward(to_gpu(dy), gidx, shape))
    assert_close(gdx, ref.max_pool2d_backward(dy, idx, shape), dtype)
    assert_close(gdx, ops.max_pool2d_backward(dy, idx, shape), dtype)
    np.testing.assert_array_equal(to_cpu(ops.max_pool2d_backward(to_gpu(dy), gidx, shape)), gdx)  # deterministic


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_max_pool2d_ties_nans_and_bad_indices(dtype):
    x = np.zeros((2, 3, 6, 6), dtype)
    x[0, 0, 1, 1] = np.nan
    x[1, 2, 3:5, 3:5] = 7
    y, idx = ops.max_pool2d(x, 3, 1, 1)
    gy, gidx = ops.max_pool2d(to_gpu(x), 3, 1, 1)
    np.testing.assert_array_equal(to_cpu(gy), y)
    np.testing.assert_array_equal(to_cpu(gidx), idx)
    bad = idx.copy()
    bad[0, 0, 0, 0] = 36
    with pytest.raises(ValueError, match=r"\[max_pool2d_backward\] indices has 1 entries outside \[0, H \* W\)"):
        ops.max_pool2d_backward(to_gpu(y), to_gpu(bad), x.shape)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", GPU_CASES, ids=_ids)
def test_gpu_avg_pool2d_matches_cpu(case, dtype):
    shape, k, s, p, _, ceil = case
    gen = rng(12)
    x = randn(gen, shape, dtype)
    for include in (True, False):
        y = ops.avg_pool2d(x, k, s, p, ceil, include)
        gy = to_cpu(ops.avg_pool2d(to_gpu(x), k, s, p, ceil, include))
        assert_close(gy, ref.avg_pool2d(x, k, s, p, ceil, include), dtype)
        assert_close(gy, y, dtype)
        dy = randn(gen, y.shape, dtype)
        gdx = to_cpu(ops.avg_pool2d_backward(to_gpu(dy), shape, k, s, p, ceil, include))
        assert_close(gdx, ref.avg_pool2d_backward(dy, shape, k, s, p, ceil, include), dtype, scale=4)
        assert_close(gdx, ops.avg_pool2d_backward(dy, shape, k, s, p, ceil, include), dtype, scale=4)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 7, 7), (1, 5, 13, 17), (3, 4, 64, 64), (0, 2, 3, 3),
                                   (4, 5, 5)], ids=str)
def test_gpu_global_avg_pool2d_matches_cpu(shape, dtype):
    gen = rng(13)
    x = randn(gen, shape, dtype)
    gy = to_cpu(ops.global_avg_pool2d(to_gpu(x)))
    assert_close(gy, ref.global_avg_pool2d(x), dtype, scale=np.sqrt(shape[-1] * shape[-2]))
    assert_close(gy, ops.global_avg_pool2d(x), dtype, scale=np.sqrt(shape[-1] * shape[-2]))
    dy = randn(gen, gy.shape, dtype)
    gdx = to_cpu(ops.global_avg_pool2d_backward(to_gpu(dy), shape))
    np.testing.assert_array_equal(gdx, ops.global_avg_pool2d_backward(dy, shape))  # dy / (H W): one rounding


@requires_gpu
def test_gpu_strided_inputs_are_copied_as_on_the_cpu():
    x = randn(rng(14), (2, 3, 9, 16), np.float32)
    view, gview = x[:, :, :, ::2], to_gpu(x)[:, :, :, ::2]  # read-only views: copied, not rejected
    y, idx = ops.max_pool2d(view, 3, 2, 1)
    gy, gidx = ops.max_pool2d(gview, 3, 2, 1)
    np.testing.assert_array_equal(to_cpu(gy), y)
    np.testing.assert_array_equal(to_cpu(gidx), idx)
    assert_close(to_cpu(ops.avg_pool2d(gview, 2)), ops.avg_pool2d(view, 2), np.float32)
    assert_close(to_cpu(ops.global_avg_pool2d(gview)), ops.global_avg_pool2d(view), np.float32, scale=4)


@requires_gpu
def test_gpu_pool_checks_match_cpu():
    x = np.ones((2, 3, 4, 4), np.float32)
    for fn in (lambda a: ops.max_pool2d(a, 5), lambda a: ops.avg_pool2d(a, 3, padding=2)):
        with pytest.raises(ValueError) as cpu_err:
            fn(x)
        with pytest.raises(ValueError) as gpu_err:
            fn(to_gpu(x))
        assert str(gpu_err.value) == str(cpu_err.value)
    with pytest.raises(TypeError, match=r"\[max_pool2d\] y is not a CUDA array but x is"):
        deepkern._C.max_pool2d(to_gpu(x), np.empty((2, 3, 2, 2), np.float32), np.empty((2, 3, 2, 2), np.int64),
                               (2, 2), (2, 2), (0, 0), (1, 1), False)


def _fake_cuda(shape, typestr="<f4", readonly=False):
    """Only the CUDA array interface: the binding must reject it before any GPU work."""
    return types.SimpleNamespace(__cuda_array_interface__=dict(shape=shape, typestr=typestr, data=(0x1000, readonly),
                                                               strides=None, version=3))


@pytest.mark.skipif(not deepkern._C.cuda_built, reason="deepkern was built without CUDA")
def test_cuda_arrays_are_checked_before_any_gpu_work():
    C, f = deepkern._C, _fake_cuda
    win = ((2, 2), (2, 2), (0, 0), (1, 1), False)
    with pytest.raises(TypeError, match=r"\[max_pool2d\] indices must be int64, got a CUDA array of typestr '<i4'"):
        C.max_pool2d(f((2, 3, 4, 4)), f((2, 3, 2, 2)), f((2, 3, 2, 2), "<i4"), *win)
    with pytest.raises(ValueError, match=r"\[max_pool2d\] y must have shape \(2, 3, 2, 2\), got \(2, 3, 3, 2\)"):
        C.max_pool2d(f((2, 3, 4, 4)), f((2, 3, 3, 2)), f((2, 3, 2, 2), "<i8"), *win)
    with pytest.raises(ValueError, match=r"\[max_pool2d\] indices is written in place and must be writeable"):
        C.max_pool2d(f((2, 3, 4, 4)), f((2, 3, 2, 2)), f((2, 3, 2, 2), "<i8", True), *win)
    with pytest.raises(TypeError, match=r"\[avg_pool2d\] y has dtype float64, expected float32"):
        C.avg_pool2d(f((3, 4, 4)), f((3, 2, 2), "<f8"), (2, 2), (2, 2), (0, 0), False, True)
    with pytest.raises(ValueError, match=r"\[global_avg_pool2d_backward\] dx must be \(N, C, H, W\) or \(C, H, W\)"):
        C.global_avg_pool2d_backward(f((2, 1, 1)), f((2, 3)))
