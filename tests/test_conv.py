"""conv2d and conv2d_backward: against the float64 reference and torch on every class
of stride / padding / dilation / groups, the shapes that take each algorithm (direct
depthwise, 1x1 GEMM, im2col tiles, stride-1 backward as a convolution, col2im,
batch-chunked and image-by-image weight gradients, output-channel vectors, the
strided implicit GEMM and its phase-split backward data and weight gradient),
float64 finite differences, thread-count invariance, bad arguments, and the Conv2d
module. CI runs this file under every DEEPKERN_ISA."""
import numpy as np
import pytest

import deepkern
import reference as ref
from deepkern import nn, ops
from helpers import DTYPES, assert_close, assert_grad, randn, requires_gpu, rng, to_cpu, to_gpu, torch_or_skip

# (x shape, w shape, stride, padding, dilation, groups)
CASES = [
    ((2, 3, 9, 9), (4, 3, 3, 3), 1, 1, 1, 1),
    ((2, 3, 11, 10), (5, 3, 3, 3), 2, 1, 1, 1),            # stride 2: col2im backward
    ((1, 2, 12, 12), (3, 2, 3, 3), 1, 2, 2, 1),            # dilation
    ((2, 4, 8, 7), (6, 2, 3, 2), 1, (1, 0), 1, 2),         # groups, rectangular kernel and padding
    ((2, 6, 9, 9), (6, 1, 3, 3), 1, 1, 1, 6),              # depthwise
    ((2, 3, 10, 9), (6, 1, 3, 3), 2, 1, 1, 3),             # depthwise, multiplier 2, stride 2
    ((1, 4, 13, 9), (4, 1, 5, 3), (2, 3), (2, 1), (1, 2), 4),  # depthwise, strided, dilated
    ((2, 5, 6, 7), (7, 5, 1, 1), 1, 0, 1, 1),              # 1x1: GEMM with no copy
    ((2, 5, 7, 7), (7, 5, 1, 1), 2, 0, 1, 1),              # 1x1 stride 2
    ((2, 4, 6, 6), (3, 4, 1, 1), 1, 1, 1, 1),              # 1x1 with padding
    ((2, 3, 8, 11), (2, 3, 4, 2), 1, "same", 1, 1),        # even kernel: asymmetric "same"
    ((1, 2, 9, 8), (2, 2, 2, 3), 1, "same", (2, 3), 1),
    ((2, 3, 7, 6), (2, 3, 3, 2), 1, "valid", 1, 1),
    ((2, 3, 5, 4), (4, 3, 5, 4), 1, 0, 1, 1),              # kernel == input: 1x1 output
    ((1, 1, 28, 28), (6, 1, 5, 5), 1, 2, 1, 1),            # one input channel (LeNet c1): direct
    ((1, 3, 6, 6), (2, 3, 3, 3), 3, 4, 1, 1),              # padding beyond the kernel, stride 3
    ((7, 6, 5), (5, 7, 3, 3), 1, 1, 1, 1),                 # unbatched
    ((0, 3, 8, 8), (4, 3, 3, 3), 1, 1, 1, 1),              # empty batch
    ((3, 16, 40, 36), (8, 16, 3, 3), 1, 1, 1, 1),          # several im2col tiles per image
    ((2, 8, 33, 35), (16, 4, 3, 3), 2, 1, 1, 2),           # tiles, strided, groups
    ((9, 5, 12, 12), (7, 5, 3, 3), 1, 1, 1, 1),            # more images than weight-gradient chunks
    ((17, 3, 6, 5), (4, 3, 3, 2), 2, 1, 1, 1),             # small planes: several images per GEMM
    ((12, 4, 5, 5), (6, 2, 3, 3), 1, "same", 1, 2),
    ((1, 64, 18, 18), (48, 64, 3, 3), 1, 1, 1, 1),         # batch 1: each image split over threads
    ((1, 2, 3, 3), (2, 1, 2, 2), 1000, 300, 300, 2),       # depthwise whose plane buffer would be huge: GEMM
    ((2, 32, 11, 9), (40, 32, 3, 3), 1, 1, 1, 1),          # Winograd F(2x2, 3x3), odd output sizes
    ((1, 40, 3, 4), (32, 40, 3, 3), 1, 2, 1, 1),           # Winograd, padding 2: its backward data crops
    ((14, 6, 9, 9), (9, 2, 1, 1), 1, 0, 1, 3),             # 1x1 with groups, several images per GEMM
    ((3, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1, 1),           # LeNet c2: vectors of output channels
    ((2, 3, 13, 11), (32, 3, 3, 2), (2, 1), (1, 2), (1, 2), 1),  # output-channel vectors: stride, dilation
    ((2, 4, 9, 30), (32, 2, 3, 3), 1, "same", 1, 2),       # output-channel vectors: groups, runs per row
    ((2, 3, 15, 12), (16, 3, 3, 3), (2, 1), 0, (2, 1), 1),  # output-channel vectors, input read in place
    ((1, 40, 40, 41), (4, 40, 3, 3), 1, 1, 1, 1),          # direct, input channels in two chunks
    ((2, 8, 32, 32), (20, 8, 3, 3), 2, 1, 1, 1),           # implicit GEMM: stride 2, rows of whole vectors
    ((1, 5, 32, 31), (18, 5, 3, 3), 2, 1, 1, 1),           # implicit, batch 1: tiles split over threads
    ((2, 40, 16, 32), (17, 40, 3, 3), 2, 1, 1, 1),         # implicit, input channels in two chunks
    ((2, 6, 33, 48), (30, 3, 5, 3), 3, (2, 1), (1, 2), 2), # implicit: groups, dilation, stride 3
    ((2, 4, 9, 16), (10, 4, 3, 3), (2, 1), 1, 1, 1),       # implicit, stride along rows only
    ((1, 3, 31, 64), (12, 3, 3, 3), 2, 1, 1, 1),           # implicit, two vectors per output row and more
    ((2, 7, 20, 32), (9, 7, 1, 1), 2, 0, 1, 1),            # 1x1 stride 2, rows of whole vectors: im2col
    ((2, 6, 17, 19), (32, 6, 3, 3), 2, 1, 1, 1),           # implicit weight gradient, odd sizes
    ((3, 8, 16, 16), (64, 2, 3, 3), 2, 1, 1, 4),           # implicit weight gradient: groups, 3 chunks
    ((2, 4, 21, 23), (16, 4, 5, 5), 3, 2, 2, 1),           # implicit weight gradient: dilation, stride 3
    ((1, 3, 20, 19), (48, 3, 3, 3), (1, 2), (0, 1), 1, 1),  # implicit weight gradient, batch 1
    ((1, 8, 16, 32), (80, 8, 3, 3), 2, 1, 1, 1),           # implicit backward data, output channels in chunks
    ((8, 144, 6, 5), (144, 144, 3, 3), 1, 1, 1, 1),        # Winograd weight gradient in fewer, larger chunks
]


def _ids(case):
    x, w, s, p, d, g = case
    return "x".join(map(str, x)) + "-w" + "x".join(map(str, w)) + f"-s{s}p{p}d{d}g{g}".replace(" ", "")


def _args(case):
    return dict(stride=case[2], padding=case[3], dilation=case[4], groups=case[5])


def random_cases(count, seed):
    """Valid torch convolutions drawn at random, odd sizes and channel counts included."""
    g = rng(seed)
    out = []
    while len(out) < count:
        groups = int(g.choice([1, 1, 2, 3]))
        depthwise = g.random() < 0.25
        cg = 1 if depthwise else int(g.integers(1, 6))
        if depthwise:
            groups = int(g.integers(1, 6))
        k = groups * int(g.integers(1, 4))
        r, s = (int(v) for v in g.integers(1, 6, 2))
        stride = tuple(int(v) for v in g.integers(1, 4, 2))
        dil = tuple(int(v) for v in g.integers(1, 3, 2))
        pad = [0, 1, 2, (int(g.integers(0, 3)), int(g.integers(0, 3))), "same", "valid"][int(g.integers(0, 6))]
        if pad == "same":
            stride = 1
        hw = tuple(int(v) for v in g.integers(1, 20, 2))
        x_shape = (int(g.integers(1, 4)), cg * groups) + hw
        w_shape = (k, cg, r, s)
        _, _, _, o = ref._conv_geometry(x_shape, w_shape, stride, pad, dil)
        if min(o) >= 1:
            out.append((x_shape, w_shape, stride, pad, dil, groups))
    return out


def check(case, dtype, gen, bias=True, gpu=False):
    """gpu: the same op on CuPy arrays (the CUDA kernels), results brought back."""
    put, get = (to_gpu, to_cpu) if gpu else (lambda a: a, lambda a: a)
    x_shape, w_shape = case[:2]
    kw = _args(case)
    x, w = randn(gen, x_shape, dtype), randn(gen, w_shape, dtype)
    b = randn(gen, w_shape[:1], dtype) if bias else None
    y = get(ops.conv2d(put(x), put(w), put(b), **kw))
    sums = w_shape[1] * w_shape[2] * w_shape[3]
    assert y.dtype == dtype
    assert_close(y, ref.conv2d(x, w, b, **kw), dtype, scale=np.sqrt(sums))
    dy = randn(gen, y.shape, dtype)
    dx, dw, db = get(ops.conv2d_backward(put(dy), put(x), put(w), **kw, bias=bias))
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, **kw)
    assert_close(dx, rdx, dtype, scale=np.sqrt(sums * w_shape[0]), name="dx")
    per_channel = max(1, dy.size // w_shape[0])
    assert_close(dw, rdw, dtype, scale=np.sqrt(per_channel), name="dw")
    if bias:
        assert_close(db, rdb, dtype, scale=np.sqrt(per_channel), name="db")
    else:
        assert db is None
    return x, w, b, dy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_matches_reference(case, dtype):
    check(case, dtype, rng(1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_configurations_match_reference(dtype):
    gen = rng(2)
    for case in random_cases(40, seed=3):
        check(case, dtype, gen, bias=bool(gen.integers(0, 2)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_against_torch(dtype):
    torch = torch_or_skip()
    F = torch.nn.functional
    gen = rng(4)
    for case in CASES + random_cases(20, seed=5):
        x_shape, w_shape = case[:2]
        kw = _args(case)
        x, w, b = randn(gen, x_shape, dtype), randn(gen, w_shape, dtype), randn(gen, w_shape[:1], dtype)
        tx, tw, tb = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
        ty = F.conv2d(tx, tw, tb, **kw)
        scale = np.sqrt(np.prod(w_shape[1:]))
        assert_close(ops.conv2d(x, w, b, **kw), ty.detach().numpy(), dtype, scale=scale)
        dy = randn(gen, ty.shape, dtype)
        ty.backward(torch.from_numpy(dy))
        dx, dw, db = ops.conv2d_backward(dy, x, w, **kw)
        per_channel = np.sqrt(max(1, dy.size // w_shape[0]))
        assert_close(dx, tx.grad.numpy(), dtype, scale=scale * np.sqrt(w_shape[0]), name="dx")
        assert_close(dw, tw.grad.numpy(), dtype, scale=per_channel, name="dw")
        assert_close(db, tb.grad.numpy(), dtype, scale=per_channel, name="db")


def test_every_backward_matches_finite_differences():
    gen = rng(6)
    tiny = [((1, 2, 5, 4), (3, 2, 3, 2), 1, 1, 1, 1), ((2, 2, 6, 5), (2, 1, 3, 3), 2, 1, 1, 2),
            ((1, 3, 5, 5), (3, 1, 2, 3), 1, "same", (2, 1), 3), ((1, 2, 7, 6), (2, 2, 2, 2), (2, 3), (1, 2), 2, 1),
            ((2, 3, 4), (2, 2, 1, 1), 1, 0, 1, 1)]
    for case in tiny:
        kw = _args(case)
        x, w, b = randn(gen, case[0], np.float64), randn(gen, case[1], np.float64), randn(gen, case[1][:1], np.float64)
        r = randn(gen, ops.conv2d(x, w, b, **kw).shape, np.float64)
        dx, dw, db = ops.conv2d_backward(r, x, w, **kw)
        loss = lambda: float((ops.conv2d(x, w, b, **kw) * r).sum())  # noqa: E731
        assert_grad(dx, loss, x, name=f"dx {_ids(case)}")
        assert_grad(dw, loss, w, name=f"dw {_ids(case)}")
        assert_grad(db, loss, b, name=f"db {_ids(case)}")


def test_thread_counts_and_strided_inputs_give_identical_results():
    gen = rng(7)
    old = deepkern.get_num_threads()
    cases = [((4, 6, 20, 20), (8, 6, 3, 3), 1, 1, 1, 1), ((4, 8, 21, 19), (8, 1, 3, 3), 2, 1, 1, 8),
             ((1, 32, 24, 24), (16, 32, 3, 3), 2, 1, 1, 1), ((16, 8, 12, 12), (8, 8, 1, 1), 1, 0, 1, 1),
             ((3, 32, 14, 13), (32, 32, 3, 3), 1, 1, 1, 1), ((1, 40, 20, 32), (20, 40, 3, 3), 2, 1, 1, 1),
             ((2, 12, 18, 17), (48, 12, 3, 3), 2, 1, 1, 1)]
    try:
        for case in cases:
            kw = _args(case)
            base = randn(gen, case[0][:1] + (case[0][1] * 2,) + case[0][2:], np.float32)
            x = base[:, ::2]  # non-contiguous: copied by the binding
            w = randn(gen, case[1], np.float32)
            dy = randn(gen, ops.conv2d(x, w, **kw).shape, np.float32)
            results = []
            for threads in (1, 2, 3):
                deepkern.set_num_threads(threads)
                results.append((ops.conv2d(x, w, **kw),) + ops.conv2d_backward(dy, x, w, **kw))
            for r in results[1:]:
                for a, b in zip(results[0], r):
                    np.testing.assert_array_equal(a, b)
            assert_close(results[0][0], ref.conv2d(np.ascontiguousarray(x), w, **kw), np.float32, scale=10)
    finally:
        deepkern.set_num_threads(old)


def test_inputs_are_not_modified_and_lists_are_accepted():
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float64).reshape(2, 3, 4, 4)
    w = np.ones((2, 3, 3, 3))
    before = x.copy(), w.copy()
    y = ops.conv2d(x, w, padding=1)
    ops.conv2d_backward(np.ones_like(y), x, w, padding=1)
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(w, before[1])
    y = ops.conv2d([[[1.0, 2.0], [3.0, 4.0]]], [[[[1.0]]]])
    assert y.dtype == np.float32 and y.shape == (1, 2, 2)


# -- bad arguments: a clear error naming the op and argument, never a crash ---------

@pytest.mark.parametrize("x_shape, w_shape, kwargs, exc, match", [
    ((1, 4, 5, 5), (2, 3, 3, 3), {}, ValueError, r"w has 3 input channels per group, x has 4"),
    ((1, 4, 5, 5), (2, 1, 3, 3), {"groups": 2}, ValueError, r"w has 1 input channels per group, x has 2"),
    ((1, 5, 5, 5), (2, 5, 3, 3), {"groups": 2}, ValueError, r"groups=2 must divide x's 5 input channels"),
    ((1, 4, 5, 5), (3, 2, 3, 3), {"groups": 2}, ValueError, r"groups=2 must divide w's 3 output channels"),
    ((1, 1, 2, 2), (1, 1, 3, 3), {}, ValueError, r"smaller than the kernel"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"dilation": 3}, ValueError, r"smaller than the kernel"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"stride": 0}, ValueError, r"stride must be in \[1, 2\^31\)"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"stride": -2}, ValueError, r"stride must be"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"dilation": 0}, ValueError, r"dilation must be"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"padding": -1}, ValueError, r"padding must be in \[0, 2\^31\)"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"padding": 2**40}, ValueError, r"padding must be in \[0, 2\^31\)"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"stride": 2**64}, ValueError, r"stride must fit in 64 bits"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"groups": 0}, ValueError, r"groups must be >= 1"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"padding": "same", "stride": 2}, ValueError, r"padding='same' needs stride 1"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"padding": "full"}, ValueError, r"padding must be 'same', 'valid'"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"padding": 1.5}, TypeError, r"padding must be an int or a pair"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"stride": (1, 2, 3)}, TypeError, r"stride must be an int or a pair"),
    ((1, 1, 5, 5), (1, 1, 3, 3), {"groups": 1.0}, TypeError, r"groups must be an int"),
    ((5, 5), (1, 1, 3, 3), {}, ValueError, r"x must be \(N, C, H, W\) or \(C, H, W\)"),
    ((1, 0, 5, 5), (1, 0, 3, 3), {}, ValueError, r"non-empty C, H and W"),
    ((1, 1, 5, 5), (1, 1, 3), {}, ValueError, r"w must be 4-D"),
    ((1, 1, 5, 5), (0, 1, 3, 3), {}, ValueError, r"w must have non-empty dimensions"),
])
def test_bad_arguments_raise(x_shape, w_shape, kwargs, exc, match):
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    with pytest.raises(exc, match=r"\[conv2d\] .*" + match):
        ops.conv2d(x, w, **kwargs)
    with pytest.raises(exc, match=r"\[conv2d_backward\] .*" + match):
        ops.conv2d_backward(np.zeros((1, 1, 3, 3), np.float32), x, w, **kwargs)


def test_bad_arrays_raise():
    x, w = np.zeros((2, 3, 6, 6), np.float32), np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(TypeError, match=r"\[conv2d\] x must be float32 or float64"):
        ops.conv2d(x.astype(np.int32), w)
    with pytest.raises(TypeError, match=r"\[conv2d\] w has dtype float64, expected float32"):
        ops.conv2d(x, w.astype(np.float64))
    with pytest.raises(TypeError, match=r"\[conv2d\] b has dtype float64, expected float32"):
        ops.conv2d(x, w, np.zeros(4))
    with pytest.raises(ValueError, match=r"\[conv2d\] b must have shape \(4,\)"):
        ops.conv2d(x, w, np.zeros(3, np.float32))
    with pytest.raises(TypeError, match=r"\[conv2d\] x must be a numpy array"):
        ops.conv2d("x", w)
    y = ops.conv2d(x, w)
    with pytest.raises(ValueError, match=r"\[conv2d_backward\] dy must have shape \(2, 4, 4, 4\)"):
        ops.conv2d_backward(y[..., :3], x, w)
    with pytest.raises(ValueError, match=r"\[conv2d_backward\] dy must have shape"):
        ops.conv2d_backward(y[0], x, w)
    with pytest.raises(TypeError, match=r"\[conv2d_backward\] x has dtype float64"):
        ops.conv2d_backward(y, x.astype(np.float64), w)
    # Written arrays passed straight to _C: checked, never copied.
    with pytest.raises(ValueError, match=r"\[conv2d\] y must have shape \(2, 4, 4, 4\)"):
        deepkern._C.conv2d(x, w, None, np.empty((2, 4, 4, 5), np.float32), (1, 1), (0, 0), (1, 1), 1, False)
    with pytest.raises(ValueError, match=r"\[conv2d\] y is written in place and must be C-contiguous"):
        deepkern._C.conv2d(x, w, None, np.empty((2, 4, 4, 8), np.float32)[..., ::2], (1, 1), (0, 0), (1, 1), 1,
                           False)
    with pytest.raises(ValueError, match=r"\[conv2d_backward\] dw must have shape \(4, 3, 3, 3\)"):
        deepkern._C.conv2d_backward(y, x, w, None, np.empty((4, 3, 3, 2), np.float32), None, (1, 1), (0, 0),
                                    (1, 1), 1, False)
    ro = np.empty(4, np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"\[conv2d_backward\] db is written in place and must be writeable"):
        deepkern._C.conv2d_backward(y, x, w, None, None, ro, (1, 1), (0, 0), (1, 1), 1, False)


def test_output_shapes_follow_torch():
    x = np.zeros((2, 3, 10, 7), np.float32)
    assert ops.conv2d(x, np.zeros((4, 3, 3, 3), np.float32), stride=(3, 2), padding=(1, 2)).shape == (2, 4, 4, 5)
    assert ops.conv2d(x, np.zeros((4, 3, 4, 2), np.float32), padding="same", dilation=(1, 3)).shape == (2, 4, 10, 7)
    assert ops.conv2d(x, np.zeros((4, 3, 4, 2), np.float32), padding="valid").shape == (2, 4, 7, 6)
    assert ops.conv2d(x[0], np.zeros((6, 1, 1, 1), np.float32), groups=3).shape == (6, 10, 7)
    assert ops.conv2d(x[:0], np.zeros((4, 3, 3, 3), np.float32)).shape == (0, 4, 8, 5)
    dx, dw, db = ops.conv2d_backward(np.zeros((0, 4, 8, 5), np.float32), x[:0], np.ones((4, 3, 3, 3), np.float32))
    assert dx.shape == (0, 3, 10, 7) and not dw.any() and not db.any()


# -- the Conv2d module ------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_module_forward_backward_and_accumulation(dtype):
    gen = rng(8)
    m = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2, dtype=dtype,
                  rng=np.random.default_rng(0))
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    assert m.weight.shape == (6, 2, 3, 2) and m.weight.dtype == dtype and m.bias.shape == (6,)
    with pytest.raises(RuntimeError, match=r"backward\(\) called before forward\(\)"):
        m.backward(np.zeros((1, 6, 4, 4), dtype))
    x = randn(gen, (3, 4, 9, 8), dtype)
    kw = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    y = m(x)
    assert_close(y, ref.conv2d(x, m.weight.data, m.bias.data, **kw), dtype, scale=4)
    dy = randn(gen, y.shape, dtype)
    dx = m.backward(dy)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, m.weight.data, **kw)
    assert_close(dx, rdx, dtype, scale=4)
    assert_close(m.weight.grad, rdw, dtype, scale=8)
    assert_close(m.bias.grad, rdb, dtype, scale=8)
    m(x)
    m.backward(dy)  # gradients accumulate
    assert_close(m.weight.grad, 2 * rdw, dtype, scale=16)
    nb = nn.Conv2d(3, 2, 3, padding="same", bias=False, dtype=dtype)
    assert nb.bias is None and [n for n, _ in nb.named_parameters()] == ["weight"]
    assert nb(randn(gen, (2, 3, 5, 4), dtype)).shape == (2, 2, 5, 4)
    assert nb.backward(np.ones((2, 2, 5, 4), dtype)).shape == (2, 3, 5, 4)
    assert nb.weight.grad.shape == (2, 3, 3, 3)


def test_conv2d_module_init_follows_torch():
    m = nn.Conv2d(8, 16, 3, rng=np.random.default_rng(1))
    bound = 1 / np.sqrt(8 * 9)  # kaiming_uniform_(a=sqrt(5)): gain sqrt(1/3) * sqrt(3 / fan_in)
    assert np.abs(m.weight.data).max() <= bound and np.abs(m.weight.data).max() > 0.9 * bound
    assert np.abs(m.bias.data).max() <= bound
    assert m.weight.data.std() == pytest.approx(bound / np.sqrt(3), rel=0.1)
    a, b = nn.Conv2d(2, 3, 3, rng=np.random.default_rng(5)), nn.Conv2d(2, 3, 3, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert repr(nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2, bias=False)) == \
        "Conv2d(2, 4, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), groups=2, bias=False)"


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), ValueError, "must be divisible by groups"),
    (dict(in_channels=0, out_channels=4, kernel_size=3), ValueError, "in_channels must be a positive integer"),
    (dict(in_channels=2, out_channels=4, kernel_size=3, stride=2, padding="same"), ValueError,
     "padding='same' needs stride 1"),
    (dict(in_channels=2, out_channels=4, kernel_size=3, padding="full"), ValueError, "padding must be 'same'"),
    (dict(in_channels=2, out_channels=4, kernel_size=2.5), TypeError, "kernel_size must be an int or a pair"),
    (dict(in_channels=2, out_channels=4, kernel_size=3, padding_mode="reflect"), ValueError, "padding_mode"),
    (dict(in_channels=2, out_channels=4, kernel_size=3, dtype=np.int32), TypeError, "dtype must be float32"),
])
def test_conv2d_module_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=r"\[Conv2d\] .*" + match):
        nn.Conv2d(**kwargs)


def test_conv2d_module_matches_torch_and_loads_its_state_dict():
    torch = torch_or_skip()
    tm = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2).double()
    m = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=np.float64)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = randn(rng(9), (2, 4, 11, 10), np.float64)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = tm(tx)
    assert_close(m(x), ty.detach().numpy(), np.float64)
    dy = randn(rng(10), ty.shape, np.float64)
    ty.backward(torch.from_numpy(dy))
    assert_close(m.backward(dy), tx.grad.numpy(), np.float64)
    assert_close(m.weight.grad, tm.weight.grad.numpy(), np.float64)
    assert_close(m.bias.grad, tm.bias.grad.numpy(), np.float64)


def test_conv2d_module_gradients_match_finite_differences():
    gen = rng(11)
    m = nn.Conv2d(2, 4, (2, 3), stride=(1, 2), padding="valid", groups=2, dtype=np.float64)
    x = randn(gen, (2, 2, 5, 6), np.float64)
    r = randn(gen, m(x).shape, np.float64)
    m.zero_grad()
    dx = m.backward(r)
    loss = lambda: float((m(x) * r).sum())  # noqa: E731
    assert_grad(dx, loss, x, name="Conv2d dx")
    assert_grad(m.weight.grad, loss, m.weight.data, name="Conv2d dweight")
    assert_grad(m.bias.grad, loss, m.bias.data, name="Conv2d dbias")


def test_tf32_changes_nothing_on_the_cpu():
    gen = rng(40)
    x, w, b = randn(gen, (2, 4, 9, 8), np.float32), randn(gen, (6, 2, 3, 3), np.float32), randn(gen, (6,), np.float32)
    y = ops.conv2d(x, w, b, padding=1, groups=2)
    np.testing.assert_array_equal(ops.conv2d(x, w, b, padding=1, groups=2, tf32=True), y)
    dy = randn(gen, y.shape, np.float32)
    for got, want in zip(ops.conv2d_backward(dy, x, w, padding=1, groups=2, tf32=True),
                         ops.conv2d_backward(dy, x, w, padding=1, groups=2)):
        np.testing.assert_array_equal(got, want)


# -- CUDA arrays: the CPU path's checks and messages, before any GPU work ------------

from test_activation import FakeCudaArray  # noqa: E402  (only the interface, never dereferenced)

_GEOMETRY = ((1, 1), (0, 0), (1, 1), 1, False)


def test_cuda_arrays_mixed_with_numpy_or_without_cuda_raise_type_error():
    F = FakeCudaArray
    x, w = np.zeros((2, 3, 6, 6), np.float32), np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(TypeError, match=r"\[conv2d\] w is a CUDA array but x is not"):
        deepkern._C.conv2d(x, F((4, 3, 3, 3)), None, np.zeros((2, 4, 4, 4), np.float32), *_GEOMETRY)
    with pytest.raises(TypeError, match=r"\[conv2d\] b is not a CUDA array but x is"):
        deepkern._C.conv2d(F((2, 3, 6, 6)), F((4, 3, 3, 3)), np.zeros(4, np.float32), F((2, 4, 4, 4)), *_GEOMETRY)
    with pytest.raises(TypeError, match=r"\[conv2d_backward\] db is a CUDA array but dy is not"):
        deepkern._C.conv2d_backward(np.zeros((2, 4, 4, 4), np.float32), x, w, None, None, F((4,)), *_GEOMETRY)
    if not deepkern._C.cuda_built:
        with pytest.raises(TypeError, match="built without CUDA"):
            deepkern._C.conv2d(F((2, 3, 6, 6)), F((4, 3, 3, 3)), None, F((2, 4, 4, 4)), *_GEOMETRY)


@pytest.mark.skipif(not deepkern._C.cuda_built, reason="deepkern was built without CUDA: no CUDA argument checks")
def test_cuda_arguments_get_the_cpu_messages():
    F, C = FakeCudaArray, deepkern._C
    with pytest.raises(ValueError, match=r"\[conv2d\] w has 2 input channels per group, x has 3"):
        C.conv2d(F((2, 3, 6, 6)), F((4, 2, 3, 3)), None, F((2, 4, 4, 4)), *_GEOMETRY)
    with pytest.raises(ValueError, match=r"\[conv2d\] y must have shape \(2, 4, 4, 4\), got \(2, 4, 4, 5\)"):
        C.conv2d(F((2, 3, 6, 6)), F((4, 3, 3, 3)), None, F((2, 4, 4, 5)), *_GEOMETRY)
    with pytest.raises(TypeError, match=r"\[conv2d\] b has dtype float64, expected float32"):
        C.conv2d(F((2, 3, 6, 6)), F((4, 3, 3, 3)), F((4,), "<f8"), F((2, 4, 4, 4)), *_GEOMETRY)
    with pytest.raises(ValueError, match=r"\[conv2d\] b must have shape \(4,\), got \(3,\)"):
        C.conv2d(F((2, 3, 6, 6)), F((4, 3, 3, 3)), F((3,)), F((2, 4, 4, 4)), *_GEOMETRY)
    with pytest.raises(ValueError, match=r"\[conv2d_backward\] dy must have shape \(2, 4, 4, 4\)"):
        C.conv2d_backward(F((2, 4, 4, 3)), F((2, 3, 6, 6)), F((4, 3, 3, 3)), None, None, None, *_GEOMETRY)
    with pytest.raises(ValueError, match=r"\[conv2d_backward\] dw must have shape \(4, 3, 3, 3\)"):
        C.conv2d_backward(F((2, 4, 4, 4)), F((2, 3, 6, 6)), F((4, 3, 3, 3)), None, F((4, 3, 3, 2)), None, *_GEOMETRY)
    ro = F((4,))
    ro.__cuda_array_interface__["data"] = (0x1000, True)
    with pytest.raises(ValueError, match=r"\[conv2d_backward\] db is written in place and must be writeable"):
        C.conv2d_backward(F((2, 4, 4, 4)), F((2, 3, 6, 6)), F((4, 3, 3, 3)), None, None, ro, *_GEOMETRY)


# -- CUDA: the kernels on CuPy arrays against the float64 reference (check(gpu=True)) --

GPU_CASES = [
    ((7, 128, 64, 64), (8, 128, 5, 5), 1, 2, 1, 1),        # workspace over its cap: several batch chunks
    ((1, 96, 30, 30), (64, 96, 3, 3), 2, 1, 1, 1),         # batch 1, 128-wide GEMM tiles
    ((3, 32, 17, 15), (32, 1, 3, 3), 1, 1, 1, 32),         # depthwise, odd planes
    ((2, 16, 12, 12), (48, 1, 5, 5), 2, 2, 2, 16),         # depthwise, multiplier 3, stride, dilation
    ((2, 64, 9, 9), (64, 2, 3, 3), 1, 1, 1, 32),           # many thin groups
]


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES + GPU_CASES, ids=_ids)
def test_gpu_matches_reference(case, dtype):
    check(case, dtype, rng(1), gpu=True)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_random_configurations_match_reference(dtype):
    gen = rng(41)
    for case in random_cases(40, seed=42):
        check(case, dtype, gen, bias=bool(gen.integers(0, 2)), gpu=True)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_results_are_deterministic(dtype):
    gen = rng(43)
    for case in [((6, 24, 20, 20), (32, 24, 3, 3), 1, 1, 1, 1), ((4, 12, 15, 15), (24, 1, 3, 3), 2, 1, 1, 12)]:
        x, w, b = randn(gen, case[0], dtype), randn(gen, case[1], dtype), randn(gen, case[1][:1], dtype)
        kw = _args(case)
        y = ops.conv2d(to_gpu(x), to_gpu(w), to_gpu(b), **kw)
        dy = to_gpu(randn(gen, y.shape, dtype))
        first = to_cpu(ops.conv2d_backward(dy, to_gpu(x), to_gpu(w), **kw))
        for _ in range(3):
            for u, v in zip(to_cpu(ops.conv2d_backward(dy, to_gpu(x), to_gpu(w), **kw)), first):
                np.testing.assert_array_equal(u, v)
            np.testing.assert_array_equal(to_cpu(ops.conv2d(to_gpu(x), to_gpu(w), to_gpu(b), **kw)), to_cpu(y))


@requires_gpu
def test_gpu_tf32_is_close():
    """TF32 rounds each input to 11 significant bits (relative error 2^-11), so each
    product is off by at most about 2^-10 of its size: the bound is 2^-9 times the
    sums of |products| (the same convolutions of |x|, |w| and |dy|)."""
    gen = rng(44)
    case = ((2, 16, 14, 13), (24, 8, 3, 3), 1, 1, 1, 2)
    x, w, b = randn(gen, case[0], np.float32), randn(gen, case[1], np.float32), randn(gen, (24,), np.float32)
    kw = _args(case)
    y = to_cpu(ops.conv2d(to_gpu(x), to_gpu(w), to_gpu(b), **kw, tf32=True))
    err = np.abs(y - ref.conv2d(x, w, b, **kw))
    assert (err <= 2.0 ** -9 * ref.conv2d(np.abs(x), np.abs(w), np.abs(b), **kw) + 1e-5).all()
    dy = randn(gen, y.shape, np.float32)
    got = to_cpu(ops.conv2d_backward(to_gpu(dy), to_gpu(x), to_gpu(w), **kw, tf32=True))
    want = ref.conv2d_backward(dy, x, w, **kw)
    mags = ref.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), **kw)
    for name, g, r, mag in zip(("dx", "dw", "db"), got, want, mags):
        assert (np.abs(g - r) <= 2.0 ** -9 * mag + 1e-5).all(), name
